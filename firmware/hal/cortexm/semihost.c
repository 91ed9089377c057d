/*
 * ARM semihosting for emulators (QEMU needs
 * `-semihosting-config enable=on,target=native`): ending the run and reading
 * an input file from the host.
 *
 * On M-profile the semihosting trap is BKPT 0xAB: r0 the operation, r1 a
 * pointer to its parameter block, the result comes back in r0. Only call
 * these where a debugger or emulator answers: on a bare board BKPT faults.
 *
 * SYS_EXIT_EXTENDED (0x20) takes a two-word block {reason, subcode}; with the
 * reason ADP_Stopped_ApplicationExit the subcode becomes QEMU's exit status.
 * On M-profile the semihosting trap is BKPT 0xAB.
 */
#include <stdint.h>

#include "cortexm.h"

#include <stddef.h>
#include <string.h>

#define SYS_OPEN 0x01u
#define SYS_CLOSE 0x02u
#define SYS_READ 0x06u
#define SYS_FLEN 0x0Cu
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define OPEN_MODE_RB 1u /* fopen "rb" */

static uint32_t semihost_call(uint32_t operation, volatile uint32_t *block)
{
    register uint32_t r0 __asm("r0") = operation;
    register uint32_t r1 __asm("r1") = (uint32_t)(uintptr_t)block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void cortexm_semihost_exit(int code)
{
    volatile uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    semihost_call(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}

int cortexm_semihost_read_file(const char *path, void *buffer, size_t length)
{
    volatile uint32_t open_block[3] = {(uint32_t)(uintptr_t)path, OPEN_MODE_RB, (uint32_t)strlen(path)};
    uint32_t handle = semihost_call(SYS_OPEN, open_block);
    if (handle == 0xFFFFFFFFu)
        return -1;
    volatile uint32_t handle_block[1] = {handle};
    int ok = semihost_call(SYS_FLEN, handle_block) == length;
    if (ok) {
        volatile uint32_t read_block[3] = {handle, (uint32_t)(uintptr_t)buffer, (uint32_t)length};
        ok = semihost_call(SYS_READ, read_block) == 0; /* returns the bytes NOT read */
    }
    handle_block[0] = handle;
    semihost_call(SYS_CLOSE, handle_block);
    return ok ? 0 : -1;
}
