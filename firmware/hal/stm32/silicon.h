/*
 * What the STM32F4 and STM32H7 silicon HALs share: the board file's settings,
 * bounded waits on ready flags, the console's clocks and pins and its byte
 * I/O (stm32/usart_console.h), and hal_exit: once the last byte has left,
 * reset the chip, so that the firmware says READY again (after a fault too,
 * without a debug probe). It defines hal_send, hal_recv and hal_exit, so
 * only the HAL file includes it, after naming its USART's registers
 * (STM32_USART_STATUS, STM32_USART_TX, STM32_USART_RX).
 *
 * The console: the USARTs of both families sit at the same addresses with the
 * same enable bits (USART1 and USART6 on APB2, the others on APB1, the H7's
 * APB1L), the GPIO ports' clock bits are the port numbers, and the pins go to
 * the USART the same way. Only the registers' addresses differ: the HAL
 * passes them.
 */
#ifndef FB_STM32_SILICON_H
#define FB_STM32_SILICON_H

#include <stdint.h>

#include "../cortexm/cortexm.h"
#include "../hal.h"

#if !defined(FB_UART_BASE) || !defined(FB_CPU_HZ) || !defined(FB_CONSOLE_BAUD) ||               \
    !defined(FB_CONSOLE_TX_PORT) || !defined(FB_CONSOLE_RX_PORT) || !defined(FB_CONSOLE_AF)
#error "the board file's [runners.serial|renode] table provides FB_UART_BASE, FB_CPU_HZ, FB_CONSOLE_*"
#endif

#include "gpio.h"
#include "usart_console.h"

/* A few ms at the reset clock; silicon is ready in microseconds, and a model
 * (Renode) that never sets a flag costs that much, not a hang. */
#define STM32_READY_SPINS 200000u

/* Waits until (*reg & mask) == want; 0 when the flag never came. */
static inline int stm32_wait_bits(volatile uint32_t *reg, uint32_t mask, uint32_t want)
{
    for (uint32_t i = 0; i < STM32_READY_SPINS; i++) {
        if ((*reg & mask) == want)
            return 1;
    }
    return 0;
}

/* GPIO ports A..K, 0x400 apart from port A's registers at `port_a_base`. */
#define STM32_GPIO_PORT(port_a_base, port) ((port_a_base) + 0x400u * (uint32_t)(port))

/* Clocks the console's USART and its pins' GPIO ports. */
static inline void stm32_console_clocks_on(volatile uint32_t *apb1_enr, volatile uint32_t *apb2_enr,
                                           volatile uint32_t *gpio_enr)
{
    switch (FB_UART_BASE) {
    case 0x40011000u: *apb2_enr |= 1u << 4; break;  /* USART1 */
    case 0x40011400u: *apb2_enr |= 1u << 5; break;  /* USART6 */
    case 0x40004400u: *apb1_enr |= 1u << 17; break; /* USART2 */
    case 0x40004800u: *apb1_enr |= 1u << 18; break; /* USART3 */
    case 0x40004C00u: *apb1_enr |= 1u << 19; break; /* UART4 */
    case 0x40005000u: *apb1_enr |= 1u << 20; break; /* UART5 */
    case 0x40007800u: *apb1_enr |= 1u << 30; break; /* UART7 (H7, F42x/F43x) */
    case 0x40007C00u: *apb1_enr |= 1u << 31; break; /* UART8 (H7, F42x/F43x) */
    default: break;
    }
    *gpio_enr |= (1u << FB_CONSOLE_TX_PORT) | (1u << FB_CONSOLE_RX_PORT);
    (void)*gpio_enr; /* read back: the ports are clocked before their registers are written */
}

/* The console's TX and RX pins to the USART's alternate function. */
static inline void stm32_console_pins_to_af(uint32_t port_a_base)
{
    stm32_gpio_to_af(STM32_GPIO_PORT(port_a_base, FB_CONSOLE_TX_PORT), FB_CONSOLE_TX_PIN, FB_CONSOLE_AF, 0);
    /* RX pulled up: an unconnected adapter reads as an idle line, not noise. */
    stm32_gpio_to_af(STM32_GPIO_PORT(port_a_base, FB_CONSOLE_RX_PORT), FB_CONSOLE_RX_PIN, FB_CONSOLE_AF, 1);
}

#define STM32_SCB_AIRCR CM_REG(0xE000ED0Cu)
#define STM32_SCB_AIRCR_RESET (0x05FAu << 16 | 1u << 2) /* VECTKEY | SYSRESETREQ */

void hal_exit(int code)
{
    (void)code;
    stm32_usart_drain();
    __asm volatile("dsb" ::: "memory");
    STM32_SCB_AIRCR = STM32_SCB_AIRCR_RESET;
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}

#endif /* FB_STM32_SILICON_H */
