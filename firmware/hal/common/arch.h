/* The few instructions the shared HAL parts (firmware/hal/common/) need that
 * differ by architecture, from the architecture's own HAL directory: the
 * stack pointer and the semihosting trap. */
#ifndef FB_HAL_ARCH_H
#define FB_HAL_ARCH_H

#if defined(__riscv)
#include "../riscv/arch.h"
#elif defined(__arm__)
#include "../cortexm/arch.h"
#else
#error "firmware/hal/common: no HAL for this architecture (Arm Cortex-M or RISC-V)"
#endif

#endif
