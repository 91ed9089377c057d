/*
 * HAL for QEMU's netduinoplus2 (STM32F405, Cortex-M4F).
 *
 * Console: USART1 (FB_UART_BASE, from the board file), QEMU's stm32f2xx_usart
 * model, which is the first -serial. That model drops received bytes unless
 * CR1 has both UE and RE set, so the host must wait for READY before sending.
 * QEMU does not model the RCC or GPIO: on real silicon this file would also
 * start the PLL, clock USART1 and route PA9/PA10; here the core runs at the
 * 168 MHz QEMU gives it. Time: SysTick on that clock. Exit and host file
 * reads: semihosting.
 */
#include <stdint.h>

#include "../cortexm/cortexm.h"
#include "../hal.h"

#ifndef FB_UART_BASE
#error "FB_UART_BASE must be defined (the board file's uart_address)"
#endif

#define APB2_HZ 84000000u /* USART1 sits on APB2 = HCLK / 2 */
#define CONSOLE_BAUD 115200u

#define USART_SR CM_REG(FB_UART_BASE + 0x00u)
#define USART_DR CM_REG(FB_UART_BASE + 0x04u)
#define USART_BRR CM_REG(FB_UART_BASE + 0x08u)
#define USART_CR1 CM_REG(FB_UART_BASE + 0x0Cu)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_UE (1u << 13)

void hal_setup(void)
{
    /* Oversampling by 16: BRR = f_APB / baud, rounded. */
    USART_BRR = (APB2_HZ + CONSOLE_BAUD / 2) / CONSOLE_BAUD;
    USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
    cortexm_systick_start();
}

void hal_send(const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        while (!(USART_SR & USART_SR_TXE)) {
        }
        USART_DR = bytes[i];
    }
}

uint8_t hal_recv(void)
{
    while (!(USART_SR & USART_SR_RXNE)) {
    }
    return (uint8_t)USART_DR;
}

int hal_host_read(const char *path, void *buf, size_t len)
{
    return cortexm_semihost_read_file(path, buf, len);
}

int hal_host_open(const char *path, size_t expected_len)
{
    return cortexm_semihost_open(path, expected_len);
}

int hal_host_read_at(int handle, uint32_t offset, void *buf, size_t len)
{
    return cortexm_semihost_read_at(handle, offset, buf, len);
}

void hal_host_close(int handle)
{
    cortexm_semihost_close(handle);
}

uint64_t hal_time(void)
{
    return cortexm_systick_ticks();
}

const char *hal_time_source(void)
{
    return "systick";
}

void hal_exit(int code)
{
    while (!(USART_SR & USART_SR_TC)) {
    }
    cortexm_semihost_exit(code);
}
