/*
 * HAL for the STM32F405/F407/F446 (Cortex-M4F) on real silicon and on
 * Renode's model of the STM32F4: the same image runs on both.
 *
 * Written from the reference manuals RM0090 (F405/F407) and RM0390 (F446)
 * and the ARMv7-M architecture manual (no vendor headers):
 *   - power: voltage scale 1; above 168 MHz (F446 only) the over-drive mode
 *     (ODEN, then ODSWEN) after the PLL locked. The part is told apart by
 *     DBGMCU_IDCODE: DEV_ID 0x413 is the F405/F407 (1-bit VOS, no over-drive,
 *     168 MHz at most), 0x421 the F446 and 0x419 the F42x/F43x (2-bit VOS);
 *   - flash: 5 wait states (150-180 MHz at 2.7-3.6 V), prefetch and the ART
 *     accelerator's instruction and data caches on;
 *   - clocks: the main PLL from the 16 MHz HSI (no crystal assumed), VCO input
 *     2 MHz, SYSCLK = FB_CPU_HZ, AHB = SYSCLK, APB1 = /4, APB2 = /2;
 *   - console: the USART at FB_UART_BASE on the board file's pins, 8N1, polled;
 *   - time: DWT CYCCNT, SysTick on the core clock when CYCCNT does not count.
 *
 * As on the H7: every wait on a ready flag is bounded, the console divisor
 * follows the clock the switch really reached, hal_exit() resets the chip,
 * and there is no host file system.
 */
#include <stdint.h>

#include "../cortexm/cortexm.h"
#include "../hal.h"
#include "usart.h"
#include "../stm32/silicon.h" /* after usart.h: hal_send, hal_recv and hal_exit on that USART */

#define REG(addr) CM_REG(addr)

/* RCC (RM0090 section 7.3, RM0390 section 6.3) */
#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG(RCC_BASE + 0x04u)
#define RCC_CFGR REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR REG(RCC_BASE + 0x44u)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_PLL 2u
#define RCC_APB1ENR_PWREN (1u << 28)

/* PWR */
#define PWR_CR REG(0x40007000u)
#define PWR_CSR REG(0x40007004u)
#define PWR_CR_VOS_SHIFT 14
#define PWR_CR_ODEN (1u << 16)
#define PWR_CR_ODSWEN (1u << 17)
#define PWR_CSR_ODRDY (1u << 16)
#define PWR_CSR_ODSWRDY (1u << 17)

/* Flash interface */
#define FLASH_ACR REG(0x40023C00u)
#define FLASH_ACR_LATENCY_5WS 5u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

#define DBGMCU_IDCODE REG(0xE0042000u)
#define DEV_ID_F405_F407 0x413u

#define GPIOA_BASE 0x40020000u /* ports B..K follow, 0x400 apart */

#define HSI_HZ 16000000u
#define PLL_M 8u                 /* HSI / 8 = 2 MHz VCO input (less jitter than 1 MHz) */
#define NO_OVERDRIVE_MAX_HZ 168000000u

static uint32_t core_hz = HSI_HZ;

static void clocks_up(void)
{
    uint32_t target_hz = FB_CPU_HZ;
    int two_bit_vos = (DBGMCU_IDCODE & 0xFFFu) != DEV_ID_F405_F407;
    if (!two_bit_vos && target_hz > NO_OVERDRIVE_MAX_HZ)
        target_hz = NO_OVERDRIVE_MAX_HZ;

    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR;
    /* Scale 1: VOS = 1 on the F405/F407, VOS = 0b11 on the F446/F42x. */
    uint32_t vos = two_bit_vos ? 3u : 1u;
    PWR_CR = (PWR_CR & ~(3u << PWR_CR_VOS_SHIFT)) | (vos << PWR_CR_VOS_SHIFT);

    /* Wait states first: the core must never run faster than the flash allows. */
    FLASH_ACR = FLASH_ACR_LATENCY_5WS | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    stm32_wait_bits(&FLASH_ACR, 0xFu, FLASH_ACR_LATENCY_5WS);

    /* SYSCLK = 2 MHz * N / P with P = 2, so N = SYSCLK / 1 MHz; Q keeps the
     * 48 MHz domain at or below 48 MHz. */
    uint32_t pll_n = target_hz / 1000000u;
    uint32_t pll_q = (2000000u * pll_n + 47999999u) / 48000000u;
    stm32_wait_bits(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY);
    RCC_PLLCFGR = (RCC_PLLCFGR & 0xF0000000u)                /* keep PLLR (F446) as it is */
                  | (pll_q << 24) | (0u << 22)               /* PLLQ, PLLSRC = HSI */
                  | (0u << 16) | (pll_n << 6) | PLL_M;       /* PLLP = 2, PLLN, PLLM */
    RCC_CR |= RCC_CR_PLLON;
    int locked = stm32_wait_bits(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY);

    if (locked && target_hz > NO_OVERDRIVE_MAX_HZ) {
        PWR_CR |= PWR_CR_ODEN;
        stm32_wait_bits(&PWR_CSR, PWR_CSR_ODRDY, PWR_CSR_ODRDY);
        PWR_CR |= PWR_CR_ODSWEN;
        stm32_wait_bits(&PWR_CSR, PWR_CSR_ODSWRDY, PWR_CSR_ODSWRDY);
    }

    /* AHB /1, APB1 /4 (<= 45 MHz), APB2 /2 (<= 90 MHz), before the switch. */
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) | (0u << 4) | (5u << 10) | (4u << 13);
    if (locked) {
        RCC_CFGR = (RCC_CFGR & ~3u) | RCC_CFGR_SW_PLL;
        stm32_wait_bits(&RCC_CFGR, 3u << 2, RCC_CFGR_SW_PLL << 2);
    }
    core_hz = ((RCC_CFGR >> 2) & 3u) == RCC_CFGR_SW_PLL ? target_hz : HSI_HZ;
}

static uint32_t apb_hz_of_console(void)
{
    /* APB2 (0x4001xxxx) runs at SYSCLK / 2, APB1 (0x4000xxxx) at SYSCLK / 4. */
    return (FB_UART_BASE >= 0x40010000u) ? core_hz / 2u : core_hz / 4u;
}

static void console_up(void)
{
    stm32_console_clocks_on(&RCC_APB1ENR, &RCC_APB2ENR, &RCC_AHB1ENR);
    stm32_console_pins_to_af(GPIOA_BASE);
    usart_start(apb_hz_of_console(), FB_CONSOLE_BAUD);
}

static void time_up(void)
{
    cortexm_cycles_start();
}

void hal_setup(void)
{
    clocks_up();
    console_up();
    time_up();
}
