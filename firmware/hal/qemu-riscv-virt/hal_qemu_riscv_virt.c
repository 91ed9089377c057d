/*
 * HAL for QEMU's RISC-V `virt` machine, the stand-in for the ESP32-C3.
 *
 * Console: the NS16550A UART (FB_UART_BASE, from the board file), polled. QEMU
 * moves a received byte into the receive FIFO only when there is room, so
 * nothing is lost as long as we keep reading; the baud rate is not modelled.
 * Exit: semihosting. The time counter (minstret) is in riscv/counter.c, host
 * files in common/host_files.c.
 */
#include <stdint.h>

#include "../common/semihost.h"
#include "../hal.h"

#ifndef FB_UART_BASE
#error "FB_UART_BASE must be defined (the board file's uart_address)"
#endif

#define UART_REG(offset) (*(volatile uint8_t *)(FB_UART_BASE + (offset)))
#define UART_RBR UART_REG(0u) /* receive buffer (read) */
#define UART_THR UART_REG(0u) /* transmit holding register (write) */
#define UART_IER UART_REG(1u)
#define UART_FCR UART_REG(2u)
#define UART_LCR UART_REG(3u)
#define UART_LSR UART_REG(5u)
#define FCR_ENABLE_AND_CLEAR 0x07u /* FIFOs on, both cleared */
#define LCR_8N1 0x03u
#define LSR_DATA_READY (1u << 0)
#define LSR_THR_EMPTY (1u << 5)
#define LSR_TX_IDLE (1u << 6) /* holding and shift registers both empty */

void hal_setup(void)
{
    UART_IER = 0; /* polled: no interrupts */
    UART_LCR = LCR_8N1;
    UART_FCR = FCR_ENABLE_AND_CLEAR;
}

void hal_send(const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        while (!(UART_LSR & LSR_THR_EMPTY)) {
        }
        UART_THR = bytes[i];
    }
}

uint8_t hal_recv(void)
{
    while (!(UART_LSR & LSR_DATA_READY)) {
    }
    return UART_RBR;
}

void hal_exit(int code)
{
    /* Let the last byte leave the transmitter before QEMU quits. */
    while (!(UART_LSR & LSR_TX_IDLE)) {
    }
    semihost_exit(code);
}
