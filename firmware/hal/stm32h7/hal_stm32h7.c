/*
 * HAL for the STM32H743 (Cortex-M7) on real silicon and on Renode's model of
 * it: the same image runs on both.
 *
 * Written from the reference manual RM0433 and the ARMv7-M architecture
 * manual, register by register (no vendor headers):
 *   - power: LDO supply, voltage scale 1, then VOS0 (SYSCFG ODEN) for
 *     480 MHz on revision V parts; revision Y parts stop at 400 MHz (VOS1);
 *   - flash: 4 wait states, WRHIGHFREQ 2 (enough for a 240 MHz AXI clock);
 *   - clocks: PLL1 from the 64 MHz HSI (no crystal assumed: the Nucleo's HSE
 *     depends on solder bridges, the OpenMV has its own), ref 4 MHz,
 *     sys_ck = FB_CPU_HZ, AXI/AHB = sys_ck/2, every APB = sys_ck/4;
 *   - I- and D-cache on;
 *   - console: the USART at FB_UART_BASE on the board file's pins, 8N1,
 *     FB_CONSOLE_BAUD, polled;
 *   - time: DWT CYCCNT (after the lock-access unlock the M7 needs), SysTick
 *     on the core clock when CYCCNT does not count.
 *
 * Every wait on a ready flag is bounded: a model (Renode) that never sets a
 * flag costs a few milliseconds, not a hang. The console's baud divisor is
 * computed from the clock the switch really reached (RCC_CFGR.SWS), so a
 * PLL that does not lock still gives a working console at 64 MHz.
 *
 * hal_exit() resets the chip (AIRCR.SYSRESETREQ) after the last byte left
 * (stm32/silicon.h, shared with the F4): the firmware then says READY again,
 * which is how the serial runner starts afresh after a fault without a debug
 * probe. There is no host file system (hal_host_open answers -1: the host
 * sends inputs over the UART).
 */
#include <stdint.h>

#include "../cortexm/cortexm.h"
#include "../hal.h"

#define REG(addr) CM_REG(addr)

/* USART (USARTv2 register layout, RM0433 section 48.7) */
#define USART_CR1 REG(FB_UART_BASE + 0x00u)
#define USART_CR2 REG(FB_UART_BASE + 0x04u)
#define USART_CR3 REG(FB_UART_BASE + 0x08u)
#define USART_BRR REG(FB_UART_BASE + 0x0Cu)
#define USART_ISR REG(FB_UART_BASE + 0x1Cu)
#define USART_RDR REG(FB_UART_BASE + 0x24u)
#define USART_TDR REG(FB_UART_BASE + 0x28u)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR3_OVRDIS (1u << 12)
#define STM32_USART_STATUS USART_ISR
#define STM32_USART_TX USART_TDR
#define STM32_USART_RX USART_RDR
#include "../stm32/silicon.h" /* after the USART: hal_send, hal_recv and hal_exit on it */

/* RCC (RM0433 section 8.7) */
#define RCC_BASE 0x58024400u
#define RCC_CR REG(RCC_BASE + 0x000u)
#define RCC_CFGR REG(RCC_BASE + 0x010u)
#define RCC_D1CFGR REG(RCC_BASE + 0x018u)
#define RCC_D2CFGR REG(RCC_BASE + 0x01Cu)
#define RCC_D3CFGR REG(RCC_BASE + 0x020u)
#define RCC_PLLCKSELR REG(RCC_BASE + 0x028u)
#define RCC_PLLCFGR REG(RCC_BASE + 0x02Cu)
#define RCC_PLL1DIVR REG(RCC_BASE + 0x030u)
#define RCC_D2CCIP2R REG(RCC_BASE + 0x054u)
#define RCC_AHB4ENR REG(RCC_BASE + 0x0E0u)
#define RCC_APB1LENR REG(RCC_BASE + 0x0E8u)
#define RCC_APB2ENR REG(RCC_BASE + 0x0F0u)
#define RCC_APB4ENR REG(RCC_BASE + 0x0F4u)
#define RCC_CR_HSIRDY (1u << 2)
#define RCC_CR_PLL1ON (1u << 24)
#define RCC_CR_PLL1RDY (1u << 25)
#define RCC_CFGR_SW_PLL1 3u
#define RCC_CFGR_SWS_SHIFT 3
#define RCC_APB4ENR_SYSCFGEN (1u << 1)

/* PWR (RM0433 section 6.8) */
#define PWR_BASE 0x58024800u
#define PWR_CR3 REG(PWR_BASE + 0x00Cu)
#define PWR_CSR1 REG(PWR_BASE + 0x004u)
#define PWR_D3CR REG(PWR_BASE + 0x018u)
#define PWR_CR3_BYPASS (1u << 0)
#define PWR_CR3_LDOEN (1u << 1)
#define PWR_CR3_SCUEN (1u << 2)
#define PWR_CSR1_ACTVOSRDY (1u << 13)
#define PWR_D3CR_VOSRDY (1u << 13)
#define PWR_D3CR_VOS_SHIFT 14
#define PWR_D3CR_VOS_SCALE1 3u

/* SYSCFG_PWRCR: ODEN selects VOS0 on top of scale 1 (revision V only) */
#define SYSCFG_PWRCR REG(0x5800042Cu)

/* Embedded flash (RM0433 section 4.9) */
#define FLASH_ACR REG(0x52002000u)
#define FLASH_ACR_LATENCY_4WS 4u
#define FLASH_ACR_WRHIGHFREQ_2 (2u << 4)

/* DBGMCU_IDC: REV_ID 0x1003 is revision Y (400 MHz), 0x2003 revision V (480 MHz) */
#define DBGMCU_IDC REG(0x5C001000u)
#define REV_ID_Y 0x1003u

#define GPIOA_BASE 0x58020000u /* ports B..K follow, 0x400 apart */


/* Cortex-M7 system registers (ARMv7-M ARM, B3.2 and C1.8) */
#define SCB_CCR CM_REG(0xE000ED14u)
#define SCB_CCR_DC (1u << 16)
#define SCB_CCR_IC (1u << 17)
#define SCB_CCSIDR CM_REG(0xE000ED80u)
#define SCB_CSSELR CM_REG(0xE000ED84u)
#define SCB_ICIALLU CM_REG(0xE000EF50u)
#define SCB_DCISW CM_REG(0xE000EF60u)

#define HSI_HZ 64000000u
#define PLL_REF_HZ 4000000u     /* HSI / DIVM1(16): PLL1RGE 4-8 MHz, wide VCO */
#define REV_Y_MAX_HZ 400000000u

static uint32_t core_hz = HSI_HZ;

static void power_up(uint32_t target_hz)
{
    /* LDO supply (the H743 has no SMPS); the supply setting is write-once. */
    PWR_CR3 = (PWR_CR3 & ~(PWR_CR3_BYPASS | PWR_CR3_SCUEN)) | PWR_CR3_LDOEN;
    stm32_wait_bits(&PWR_CSR1, PWR_CSR1_ACTVOSRDY, PWR_CSR1_ACTVOSRDY);

    PWR_D3CR = (PWR_D3CR & ~(3u << PWR_D3CR_VOS_SHIFT)) | (PWR_D3CR_VOS_SCALE1 << PWR_D3CR_VOS_SHIFT);
    stm32_wait_bits(&PWR_D3CR, PWR_D3CR_VOSRDY, PWR_D3CR_VOSRDY);
    if (target_hz > REV_Y_MAX_HZ) {
        RCC_APB4ENR |= RCC_APB4ENR_SYSCFGEN;
        (void)RCC_APB4ENR; /* read back: the clock is on before SYSCFG is written */
        SYSCFG_PWRCR |= 1u; /* ODEN: VOS0 */
        stm32_wait_bits(&PWR_D3CR, PWR_D3CR_VOSRDY, PWR_D3CR_VOSRDY);
    }
}

static void clocks_up(uint32_t target_hz)
{
    uint32_t divn = target_hz / (PLL_REF_HZ / 2u); /* sys = ref * N / P, P = 2 */

    /* Wait states first: the core must never run faster than the flash allows. */
    FLASH_ACR = FLASH_ACR_LATENCY_4WS | FLASH_ACR_WRHIGHFREQ_2;
    stm32_wait_bits(&FLASH_ACR, 0x3Fu, FLASH_ACR_LATENCY_4WS | FLASH_ACR_WRHIGHFREQ_2);

    stm32_wait_bits(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY);
    RCC_PLLCKSELR = (16u << 4) | 0u;                       /* DIVM1 = 16, PLLSRC = HSI */
    RCC_PLLCFGR = (1u << 16) | (1u << 17) | (1u << 18)      /* DIVP1EN, DIVQ1EN, DIVR1EN */
                  | (2u << 2);                              /* PLL1RGE 4-8 MHz, wide VCO, integer */
    RCC_PLL1DIVR = ((divn - 1u) << 0) | (1u << 9)          /* N, P = 2 */
                   | (3u << 16) | (1u << 24);               /* Q = 4, R = 2 */
    RCC_CR |= RCC_CR_PLL1ON;
    int locked = stm32_wait_bits(&RCC_CR, RCC_CR_PLL1RDY, RCC_CR_PLL1RDY);

    /* Bus dividers before the switch: AXI/AHB <= 240 MHz, APBs <= 120 MHz. */
    RCC_D1CFGR = (8u << 0) | (4u << 4) | (0u << 8);       /* HPRE /2, D1PPRE /2, D1CPRE /1 */
    RCC_D2CFGR = (4u << 4) | (4u << 8);                    /* D2PPRE1 /2, D2PPRE2 /2 */
    RCC_D3CFGR = (4u << 4);                                /* D3PPRE /2 */
    RCC_D2CCIP2R &= ~((7u << 0) | (7u << 3));             /* USARTs clocked from their APB */

    if (locked) {
        RCC_CFGR = (RCC_CFGR & ~7u) | RCC_CFGR_SW_PLL1;
        stm32_wait_bits(&RCC_CFGR, 7u << RCC_CFGR_SWS_SHIFT, RCC_CFGR_SW_PLL1 << RCC_CFGR_SWS_SHIFT);
    }
    /* What the core really runs at decides the console's divisor. */
    core_hz = ((RCC_CFGR >> RCC_CFGR_SWS_SHIFT) & 7u) == RCC_CFGR_SW_PLL1 ? target_hz : HSI_HZ;
}

/* D-cache: invalidate every set and way of level 1, then enable both caches. */
static void caches_on(void)
{
    __asm volatile("dsb\n\tisb" ::: "memory");
    SCB_ICIALLU = 0;
    SCB_CSSELR = 0; /* level 1 data cache */
    __asm volatile("dsb" ::: "memory");
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    uint32_t line_shift = (ccsidr & 7u) + 4u;         /* log2(line bytes) */
    uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
    for (uint32_t way = 0; way < ways; way++)
        for (uint32_t set = 0; set < sets; set++)
            SCB_DCISW = (way << way_shift) | (set << line_shift);
    __asm volatile("dsb" ::: "memory");
    SCB_CCR |= SCB_CCR_IC | SCB_CCR_DC;
    __asm volatile("dsb\n\tisb" ::: "memory");
}

static uint32_t apb_hz_of_console(void)
{
    /* Every APB runs at sys_ck / 4 (HPRE /2, then /2). */
    return core_hz / 4u;
}

static void console_up(void)
{
    stm32_console_clocks_on(&RCC_APB1LENR, &RCC_APB2ENR, &RCC_AHB4ENR);
    stm32_console_pins_to_af(GPIOA_BASE);
    USART_CR1 = 0;
    USART_CR2 = 0;
    USART_CR3 = USART_CR3_OVRDIS; /* an overrun loses a byte (the frame CRC catches it), never blocks */
    USART_BRR = (apb_hz_of_console() + FB_CONSOLE_BAUD / 2u) / FB_CONSOLE_BAUD; /* oversampling 16 */
    USART_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_UE;
}

static void time_up(void)
{
    cortexm_dwt_unlock();
    cortexm_cycles_start();
}

void hal_setup(void)
{
    uint32_t target_hz = FB_CPU_HZ;
    if ((DBGMCU_IDC >> 16) == REV_ID_Y && target_hz > REV_Y_MAX_HZ)
        target_hz = REV_Y_MAX_HZ;
    power_up(target_hz);
    clocks_up(target_hz);
    caches_on();
    console_up();
    time_up();
}
