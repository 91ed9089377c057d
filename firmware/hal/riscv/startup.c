/*
 * RISC-V start-up (machine mode, no firmware below us): _start sets the
 * global pointer, the stack pointer and the thread pointer, riscv_reset points
 * mtvec at the fault reporter, copies .data and .tdata, zeroes .tbss and .bss
 * and calls main.
 *
 * The linker script build.py generates provides the symbols below. The stack
 * sits at the bottom of RAM, so an overflow runs off the start of RAM instead
 * of silently corrupting .bss. Thread-local storage exists only because
 * picolibc keeps errno there: tp points at the one thread's block (.tdata,
 * then .tbss), as the psABI's local-exec model has it.
 */
#include <stdint.h>

#include "../common/semihost.h"
#include "riscv.h"

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __tdata_load[], __tdata_start[], __tdata_end[];
extern uint32_t __tbss_start[], __tbss_end[];
extern uint32_t __bss_start[], __bss_end[];

int main(void);
void riscv_reset(void) __attribute__((noreturn, used));
void riscv_trap_entry(void); /* trap.c */

/* gp first, and without linker relaxation: relaxation would turn `la gp`
 * into an addition to gp itself. */
__attribute__((naked, section(".text.start"))) void _start(void)
{
    __asm volatile(".option push\n\t.option norelax\n\t"
                   "la gp, __global_pointer$\n\t"
                   ".option pop\n\t"
                   "la sp, __stack_top\n\t"
                   "la tp, __tdata_start\n\t"
                   "j riscv_reset\n\t");
}

void riscv_reset(void)
{
    /* Direct mode (the low two bits 0): every trap goes to the reporter;
     * nothing enables interrupts, so any trap is a fault. */
    rv_write_mtvec((uintptr_t)riscv_trap_entry);

    const uint32_t *src = __data_load;
    for (uint32_t *dst = __data_start; dst < __data_end;)
        *dst++ = *src++;
    src = __tdata_load;
    for (uint32_t *dst = __tdata_start; dst < __tdata_end;)
        *dst++ = *src++;
    for (uint32_t *dst = __tbss_start; dst < __tbss_end;)
        *dst++ = 0;
    for (uint32_t *dst = __bss_start; dst < __bss_end;)
        *dst++ = 0;

    main();
    semihost_exit(0);
}
