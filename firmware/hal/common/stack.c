/*
 * Stack high-water mark by painting: fill the free stack (below the current
 * SP) with a byte, run, then find the lowest byte that changed. The linker
 * script (harness/backend/build.py) puts the stack at the bottom of RAM,
 * between __stack_bottom and __stack_top, on every architecture.
 */
#include <stddef.h>
#include <stdint.h>

#include "../hal.h"
#include "arch.h"

extern uint8_t __stack_bottom[], __stack_top[];

/* SP is read after this function's prologue and the loop calls nothing, so
 * everything below SP is free. Only an interrupt taken while painting writes
 * there (its frame may then read as used: at most 104 bytes too much). */
void hal_stack_paint(uint8_t pattern)
{
    uintptr_t limit = arch_sp();
    uint32_t word = pattern * 0x01010101u;
    /* Word stores through a volatile pointer: the compiler must not turn
     * this into a memset call that uses the stack being painted. */
    for (volatile uint32_t *p = (volatile uint32_t *)__stack_bottom; (uintptr_t)p < limit; p++)
        *p = word;
}

size_t hal_stack_used(uint8_t pattern)
{
    const volatile uint8_t *p = __stack_bottom;
    while (p < __stack_top && *p == pattern)
        p++;
    return (size_t)(__stack_top - (const uint8_t *)p);
}

size_t hal_stack_depth(void)
{
    return (size_t)((uintptr_t)__stack_top - arch_sp());
}

size_t hal_stack_size(void)
{
    return (size_t)(__stack_top - __stack_bottom);
}
