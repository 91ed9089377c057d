/*
 * A 64-bit time counter from the 24-bit SysTick: the counter runs down from
 * 0xFFFFFF on the processor clock and its interrupt counts the wraps.
 *
 * Used on emulators, where DWT CYCCNT is not implemented (QEMU reads it as 0)
 * but SysTick follows QEMU's virtual clock, which -icount shift=0 ties to the
 * number of executed instructions.
 */
#include <stdint.h>

#include "cortexm.h"

#define SYSTICK_BITS 24
#define SYSTICK_MASK ((1u << SYSTICK_BITS) - 1u)

static volatile uint32_t systick_wraps;

void SysTick_Handler(void)
{
    systick_wraps++;
}

void cortexm_systick_start(void)
{
    systick_wraps = 0;
    SYST_CSR = 0;
    SYST_RVR = SYSTICK_MASK;
    SYST_CVR = 0; /* any write clears the counter */
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE_CPU;
}

/* A period ends when the counter reaches 0, which is also when the wrap
 * interrupt becomes pending: ticks = wraps * 2^24 + (2^24 - value) mod 2^24.
 * With interrupts masked, a wrap that happened but whose interrupt has not
 * run yet shows as PENDSTSET: count it and re-read the value, which is then
 * known to be past the wrap. */
uint64_t cortexm_systick_ticks(void)
{
    uint32_t primask = cm_primask_save_disable();
    uint32_t wraps = systick_wraps;
    uint32_t value = SYST_CVR;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
        value = SYST_CVR;
        wraps++;
    }
    cm_primask_restore(primask);
    return ((uint64_t)wraps << SYSTICK_BITS) + ((0u - value) & SYSTICK_MASK);
}
