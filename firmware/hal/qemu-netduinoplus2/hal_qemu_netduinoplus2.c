/*
 * HAL for QEMU's netduinoplus2 (STM32F405, Cortex-M4F).
 *
 * Console: USART1 (FB_UART_BASE, from the board file), QEMU's stm32f2xx_usart
 * model, which is the first -serial. That model drops received bytes unless
 * CR1 has both UE and RE set, so the host must wait for READY before sending.
 * QEMU does not model the RCC or GPIO: on real silicon this file would also
 * start the PLL, clock USART1 and route PA9/PA10; here the core runs at the
 * 168 MHz QEMU gives it. Exit: semihosting. The time counter (SysTick on
 * that clock) is in cortexm/hosting.c, host files in common/host_files.c, the
 * USART in stm32f4/usart.h.
 */
#include <stdint.h>

#include "../common/semihost.h"
#include "../cortexm/cortexm.h"
#include "../hal.h"
#include "../stm32f4/usart.h"

#define APB2_HZ 84000000u /* USART1 sits on APB2 = HCLK / 2 */
#define CONSOLE_BAUD 115200u

void hal_setup(void)
{
    usart_start(APB2_HZ, CONSOLE_BAUD);
    cortexm_systick_start();
}

void hal_exit(int code)
{
    stm32_usart_drain();
    semihost_exit(code);
}
