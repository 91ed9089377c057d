/*
 * The STM32F4 USART (RM0090 section 30.6) at FB_UART_BASE as the console: its
 * registers and start, and (stm32/usart_console.h) the HAL's byte I/O.
 * Shared by the silicon HAL and the QEMU netduinoplus2 HAL, whose
 * stm32f2xx_usart model has the same register map. It defines hal_send and
 * hal_recv, so only the one HAL file of an image includes it.
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

/* Reading SR then DR also clears an overrun: the lost byte shows as a frame
 * that fails its CRC, and the host resends. */
#define STM32_USART_STATUS USART_SR
#define STM32_USART_TX USART_DR
#define STM32_USART_RX USART_DR
#include "../stm32/usart_console.h"

#endif
