/*
 * Fault reporting: every trap (nothing enables interrupts, and semihosting's
 * EBREAK is answered by the emulator, not trapped) lands here. The reporter
 * fills the HAL's fault record from the trap CSRs (hal.h says which field
 * holds which), hands it to hal_fault_report() (the app prints a FAULT frame)
 * and ends the run, as the Cortex-M fault handler does.
 */
#include <stdint.h>

#include "../hal.h"
#include "riscv.h"

extern uint32_t __stack_top[];

__attribute__((weak)) void hal_fault_report(const hal_fault_t *fault)
{
    (void)fault;
}

/* Not static: the naked entry below jumps here by name. */
void riscv_fault_handler(uint32_t sp, uint32_t ra) __attribute__((noreturn, used));

void riscv_fault_handler(uint32_t sp, uint32_t ra)
{
    static volatile int reporting;
    if (reporting) {
        /* A fault while reporting a fault (say the console itself faults):
         * nothing sensible is left to do; the host's timeout catches this. */
        for (;;) {
        }
    }
    reporting = 1;

    hal_fault_t fault = {
        .exception = rv_read_mcause(),
        .pc = rv_read_mepc(),
        .lr = ra,
        .xpsr = rv_read_mstatus(),
        .cfsr = rv_read_mtval(),
        .sp = sp,
    };
    hal_fault_report(&fault);
    hal_exit(HAL_EXIT_FAULT);
}

/* The trap vector (mtvec, direct mode: 4-byte aligned). The hardware saves
 * only mepc, so the entry keeps the interrupted sp and ra as they were, then
 * moves to the top of the stack: the trap may come from a bad sp (an
 * overflow), and nothing returns to the interrupted code. */
__attribute__((naked, aligned(4))) void riscv_trap_entry(void)
{
    __asm volatile("mv a0, sp\n\t"
                   "mv a1, ra\n\t"
                   "la sp, __stack_top\n\t"
                   "j riscv_fault_handler\n\t");
}
