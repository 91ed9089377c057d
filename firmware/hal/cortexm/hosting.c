/*
 * The time counter, which depends on where the firmware runs rather than on
 * the board: QEMU implements no DWT, so under QEMU (FB_RUNNER_QEMU) it is
 * SysTick on the processor clock; elsewhere the DWT cycle counter (cycles.c,
 * which falls back to SysTick when a platform has no DWT). The host files,
 * which depend on it too, are in common/host_files.c.
 */
#include <stdint.h>

#include "cortexm.h"
#include "hal.h"

#if FB_RUNNER_QEMU

uint64_t hal_time(void)
{
    return cortexm_systick_ticks();
}

const char *hal_time_source(void)
{
    return "systick";
}

void hal_time_restart(void)
{
    cortexm_systick_start();
}

#else

uint64_t hal_time(void)
{
    return cortexm_cycles();
}

const char *hal_time_source(void)
{
    return cortexm_cycles_source();
}

void hal_time_restart(void)
{
    cortexm_cycles_restart();
}

#endif
