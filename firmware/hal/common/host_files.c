/*
 * Host files (the hal_host_open family), which depend on where the firmware
 * runs, not on the board or the architecture: under QEMU (FB_RUNNER_QEMU) an
 * input waits in a host file, read through semihosting. On silicon and Renode
 * there is no host to ask (the trap would fault): the functions answer -1 and
 * the input, streamed or not, comes over the UART.
 */
#include <stddef.h>
#include <stdint.h>

#include "../hal.h"
#include "semihost.h"

#if FB_RUNNER_QEMU

int hal_host_open(const char *path, size_t expected_len)
{
    return semihost_open(path, expected_len);
}

int hal_host_read_at(int handle, uint32_t offset, void *buf, size_t len)
{
    return semihost_read_at(handle, offset, buf, len);
}

void hal_host_close(int handle)
{
    semihost_close(handle);
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

#endif
