/*
 * The STM32F4 USART (RM0090 section 30.6) at FB_UART_BASE: its registers and
 * the console's byte I/O. Shared by the silicon HAL and the QEMU
 * netduinoplus2 HAL, whose stm32f2xx_usart model has the same register map.
 */
#ifndef FB_STM32F4_USART_H
#define FB_STM32F4_USART_H

#include <stddef.h>
#include <stdint.h>

#include "../cortexm/cortexm.h"

#ifndef FB_UART_BASE
#error "FB_UART_BASE must be defined (the board file's uart_address)"
#endif

#define USART_SR CM_REG(FB_UART_BASE + 0x00u)
#define USART_DR CM_REG(FB_UART_BASE + 0x04u)
#define USART_BRR CM_REG(FB_UART_BASE + 0x08u)
#define USART_CR1 CM_REG(FB_UART_BASE + 0x0Cu)
#define USART_CR2 CM_REG(FB_UART_BASE + 0x10u)
#define USART_CR3 CM_REG(FB_UART_BASE + 0x14u)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_UE (1u << 13)

/* 8N1, oversampling by 16: BRR = f_APB / baud, rounded. */
static inline void usart_start(uint32_t apb_hz, uint32_t baud)
{
    USART_CR1 = 0;
    USART_CR2 = 0;
    USART_CR3 = 0;
    USART_BRR = (apb_hz + baud / 2u) / baud;
    USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
}

static inline void usart_send(const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        while (!(USART_SR & USART_SR_TXE)) {
        }
        USART_DR = bytes[i];
    }
}

/* Reading SR then DR also clears an overrun: the lost byte shows as a frame
 * that fails its CRC, and the host resends. */
static inline uint8_t usart_recv(void)
{
    while (!(USART_SR & USART_SR_RXNE)) {
    }
    return (uint8_t)USART_DR;
}

/* Until the last byte has left the shift register. */
static inline void usart_drain(void)
{
    while (!(USART_SR & USART_SR_TC)) {
    }
}

#endif
