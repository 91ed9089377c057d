/* RISC-V's side of firmware/hal/common/arch.h. */
#ifndef FB_RISCV_ARCH_H
#define FB_RISCV_ARCH_H

#include <stdint.h>

#include "riscv.h"

static inline uintptr_t arch_sp(void)
{
    return rv_sp();
}

/* RISC-V semihosting: a0 the operation, a1 a pointer to its parameter block,
 * the result comes back in a0. The trap is EBREAK between two hint
 * instructions (slli x0, x0, 0x1f and srai x0, x0, 7), which is how a
 * debugger or emulator tells it from a breakpoint: all three must be 32-bit
 * instructions (no compressed EBREAK, hence norvc), and the 16-byte alignment
 * keeps the 12 bytes from straddling a page boundary, where QEMU would not
 * look for them. (The alignment comes before norvc: its padding may need a
 * 2-byte nop, and the linker, relaxing, keeps the group aligned.) */
static inline uint32_t arch_semihost_trap(uint32_t operation, volatile uint32_t *block)
{
    register uint32_t a0 __asm("a0") = operation;
    register uint32_t a1 __asm("a1") = (uint32_t)(uintptr_t)block;
    __asm volatile(".balign 16\n\t.option push\n\t.option norvc\n\t"
                   "slli x0, x0, 0x1f\n\tebreak\n\tsrai x0, x0, 7\n\t.option pop"
                   : "+r"(a0)
                   : "r"(a1)
                   : "memory");
    return a0;
}

#endif
