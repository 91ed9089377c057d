/*
 * HAL for QEMU's mps2-an500 (Cortex-M7), the stand-in for the STM32H743.
 *
 * Console: CMSDK APB UART0 (FB_UART_BASE, from the board file). QEMU only
 * passes received bytes on while RX is enabled and the one-byte buffer is
 * empty, so nothing is lost as long as we keep reading. Exit: semihosting.
 * The time counter (SysTick on the 25 MHz system clock) is in cortexm/hosting.c,
 * host files in common/host_files.c.
 */
#include <stdint.h>

#include "../common/semihost.h"
#include "../cortexm/cortexm.h"
#include "../hal.h"

#ifndef FB_UART_BASE
#error "FB_UART_BASE must be defined (the board file's uart_address)"
#endif

#define MPS2_SYSCLK_HZ 25000000u
#define CONSOLE_BAUD 115200u

#define UART_DATA CM_REG(FB_UART_BASE + 0x00u)
#define UART_STATE CM_REG(FB_UART_BASE + 0x04u)
#define UART_CTRL CM_REG(FB_UART_BASE + 0x08u)
#define UART_BAUDDIV CM_REG(FB_UART_BASE + 0x10u)
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TX_EN (1u << 0)
#define UART_CTRL_RX_EN (1u << 1)

void hal_setup(void)
{
    /* The divisor must be >= 16 or QEMU ignores it (and real FPGAs misbehave). */
    UART_BAUDDIV = MPS2_SYSCLK_HZ / CONSOLE_BAUD;
    UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
    cortexm_systick_start();
}

void hal_send(const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = bytes[i];
    }
}

uint8_t hal_recv(void)
{
    while (!(UART_STATE & UART_STATE_RXFULL)) {
    }
    return (uint8_t)UART_DATA;
}

void hal_exit(int code)
{
    /* Let the last byte leave the transmit buffer before QEMU quits. */
    while (UART_STATE & UART_STATE_TXFULL) {
    }
    semihost_exit(code);
}
