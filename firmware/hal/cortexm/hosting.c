/*
 * The HAL functions that depend on where the firmware runs, not on the board:
 *
 * - Host files. Under QEMU (FB_RUNNER_QEMU) an input waits in a host file,
 *   read through semihosting. On silicon and Renode there is no host to ask
 *   (a BKPT would fault): the functions answer -1 and the input, streamed or
 *   not, comes over the UART.
 * - The time counter. QEMU implements no DWT, so it is SysTick on the
 *   processor clock there; elsewhere the DWT cycle counter (cycles.c, which
 *   falls back to SysTick when a platform has no DWT).
 */
#include <stddef.h>
#include <stdint.h>

#include "cortexm.h"
#include "hal.h"

#if FB_RUNNER_QEMU

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

#else

int hal_host_open(const char *path, size_t expected_len)
{
    (void)path;
    (void)expected_len;
    return -1;
}

int hal_host_read_at(int handle, uint32_t offset, void *buf, size_t len)
{
    (void)handle;
    (void)offset;
    (void)buf;
    (void)len;
    return -1;
}

void hal_host_close(int handle)
{
    (void)handle;
}

uint64_t hal_time(void)
{
    return cortexm_cycles();
}

const char *hal_time_source(void)
{
    return cortexm_cycles_source();
}

#endif
