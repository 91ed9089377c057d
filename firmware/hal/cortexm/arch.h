/* Cortex-M's side of firmware/hal/common/arch.h. */
#ifndef FB_CORTEXM_ARCH_H
#define FB_CORTEXM_ARCH_H

#include <stdint.h>

#include "cortexm.h"

static inline uintptr_t arch_sp(void)
{
    return cm_sp();
}

/* On M-profile the semihosting trap is BKPT 0xAB: r0 the operation, r1 a
 * pointer to its parameter block, the result comes back in r0. */
static inline uint32_t arch_semihost_trap(uint32_t operation, volatile uint32_t *block)
{
    register uint32_t r0 __asm("r0") = operation;
    register uint32_t r1 __asm("r1") = (uint32_t)(uintptr_t)block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#endif
