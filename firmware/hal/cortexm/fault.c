/*
 * Fault reporting: capture the stacked PC/LR/xPSR and the fault status
 * registers, hand them to hal_fault_report() (the app prints a FAULT frame)
 * and end the run.
 */
#include <stdint.h>

#include "../hal.h"
#include "cortexm.h"

__attribute__((weak)) void hal_fault_report(const hal_fault_t *fault)
{
    (void)fault;
}

/* Not static: the naked entry below branches here by name. */
void cortexm_fault_handler(const uint32_t *frame, uint32_t exc_return)
    __attribute__((noreturn, used));

void cortexm_fault_handler(const uint32_t *frame, uint32_t exc_return)
{
    static volatile int reporting;
    if (reporting) {
        /* A fault while reporting a fault (say the console itself faults):
         * nothing sensible is left to do; the host's timeout catches this. */
        for (;;) {
        }
    }
    reporting = 1;

    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));

    /* Exception frame: r0 r1 r2 r3 r12 lr pc xpsr [s0-s15 fpscr pad]. */
    hal_fault_t fault = {
        .exception = ipsr & 0x1FFu,
        .pc = frame[6],
        .lr = frame[5],
        .xpsr = frame[7],
        .cfsr = SCB_CFSR,
        .hfsr = SCB_HFSR,
        .mmfar = SCB_MMFAR,
        .bfar = SCB_BFAR,
    };
    /* EXC_RETURN bit 4 clear: an extended frame with FP state was pushed. */
    uint32_t frame_bytes = (exc_return & 0x10u) ? 32u : 104u;
    /* xPSR bit 9: the core inserted a padding word to align the frame. */
    fault.sp = (uint32_t)(uintptr_t)frame + frame_bytes + ((fault.xpsr & 0x200u) ? 4u : 0u);

    hal_fault_report(&fault);
    hal_exit(HAL_EXIT_FAULT);
}

/* Naked entry: pick the stack the frame was pushed on (EXC_RETURN bit 2). */
__attribute__((naked)) void cortexm_fault_entry(void)
{
    __asm volatile(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "mov r1, lr\n\t"
        "b cortexm_fault_handler\n\t");
}
