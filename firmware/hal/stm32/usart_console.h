/*
 * The console's polled byte I/O on an STM32 USART, alike on the F4's register
 * layout (SR, DR) and the H7's (ISR, TDR, RDR): TXE, TC and RXNE are bits 7,
 * 6 and 5 of the status register in both. The including HAL names its
 * registers first: STM32_USART_STATUS, STM32_USART_TX, STM32_USART_RX.
 * Defines the HAL's hal_send and hal_recv (hal.h), so only the one HAL file
 * of an image includes it.
 */
#ifndef FB_STM32_USART_CONSOLE_H
#define FB_STM32_USART_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "../hal.h"

#if !defined(STM32_USART_STATUS) || !defined(STM32_USART_TX) || !defined(STM32_USART_RX)
#error "define STM32_USART_STATUS, STM32_USART_TX and STM32_USART_RX before including stm32/usart_console.h"
#endif

#define STM32_USART_RXNE (1u << 5)
#define STM32_USART_TC (1u << 6)
#define STM32_USART_TXE (1u << 7)

void hal_send(const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        while (!(STM32_USART_STATUS & STM32_USART_TXE)) {
        }
        STM32_USART_TX = bytes[i];
    }
}

uint8_t hal_recv(void)
{
    while (!(STM32_USART_STATUS & STM32_USART_RXNE)) {
    }
    return (uint8_t)STM32_USART_RX;
}

/* Until the last byte has left the shift register. */
static inline void stm32_usart_drain(void)
{
    while (!(STM32_USART_STATUS & STM32_USART_TC)) {
    }
}

#endif /* FB_STM32_USART_CONSOLE_H */
