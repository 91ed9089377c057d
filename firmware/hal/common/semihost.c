/*
 * Semihosting for emulators (QEMU needs `-semihosting-config enable=on,...`):
 * ending the run and reading input files from the host. Arm and RISC-V
 * semihosting share the operations and their parameter blocks; only the trap
 * differs (arch_semihost_trap: BKPT 0xAB on Cortex-M, the ebreak sequence on
 * RISC-V), an operation number and a pointer to its parameter block in, the
 * result out.
 *
 * SYS_EXIT_EXTENDED (0x20) takes a two-word block {reason, subcode}; with the
 * reason ADP_Stopped_ApplicationExit the subcode becomes QEMU's exit status.
 *
 * Files: SYS_OPEN {path, mode, strlen(path)} gives a handle (-1: failed),
 * SYS_FLEN {handle} its length, SYS_SEEK {handle, position} returns 0 on
 * success, SYS_READ {handle, buffer, length} the number of bytes NOT read,
 * SYS_CLOSE {handle}. A streamed model reads its input many times in small
 * pieces, so the file stays open for the whole run (one SYS_OPEN per run).
 * The blocks are words of 32 bits: both targets are 32-bit.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arch.h"
#include "semihost.h"

#define SYS_OPEN 0x01u
#define SYS_CLOSE 0x02u
#define SYS_READ 0x06u
#define SYS_SEEK 0x0Au
#define SYS_FLEN 0x0Cu
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define OPEN_MODE_RB 1u /* fopen "rb" */

void semihost_exit(int code)
{
    if (code != 0) {
        /* After a fault the FAULT frame is the last thing the host reads. QEMU
         * hands UART bytes to a pseudo-terminal, and when QEMU quits the kernel
         * drops what the host has not read yet; a busy host is slow to read. So
         * give it time (about 0.1-0.5 s of host time; only on this path). */
        for (volatile uint32_t spin = 0; spin < 30000000u; ++spin) {
        }
    }
    volatile uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    arch_semihost_trap(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}

void semihost_close(int handle)
{
    if (handle < 0)
        return;
    volatile uint32_t block[1] = {(uint32_t)handle};
    arch_semihost_trap(SYS_CLOSE, block);
}

int semihost_open(const char *path, size_t expected_length)
{
    volatile uint32_t open_block[3] = {(uint32_t)(uintptr_t)path, OPEN_MODE_RB, (uint32_t)strlen(path)};
    uint32_t handle = arch_semihost_trap(SYS_OPEN, open_block);
    if (handle == 0xFFFFFFFFu)
        return -1;
    if (handle > 0x7FFFFFFFu) { /* no host hands out such handles; an int cannot carry it */
        volatile uint32_t close_block[1] = {handle};
        arch_semihost_trap(SYS_CLOSE, close_block);
        return -1;
    }
    volatile uint32_t flen_block[1] = {handle};
    if (arch_semihost_trap(SYS_FLEN, flen_block) != expected_length) {
        semihost_close((int)handle);
        return -1;
    }
    return (int)handle;
}

int semihost_read_at(int handle, uint32_t offset, void *buffer, size_t length)
{
    if (handle < 0)
        return -1;
    volatile uint32_t seek_block[2] = {(uint32_t)handle, offset};
    if (arch_semihost_trap(SYS_SEEK, seek_block) != 0)
        return -1;
    if (length == 0)
        return 0;
    volatile uint32_t read_block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buffer, (uint32_t)length};
    return arch_semihost_trap(SYS_READ, read_block) == 0 ? 0 : -1; /* 0: nothing left unread */
}
