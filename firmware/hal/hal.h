/*
 * The tiny board HAL the measurement app is written against.
 *
 * One implementation per target lives in firmware/hal/<target>/ (the board
 * file's `[runners.<kind>] hal = "<target>"` picks it); the parts every target
 * of an architecture shares (start-up, fault handler, time counter) are in
 * firmware/hal/cortexm/ or firmware/hal/riscv/, and what all targets share
 * (semihosting exit and host files, stack painting) in firmware/hal/common/.
 * A real-silicon target adds clocks (RCC), its USART, DWT CYCCNT and caches
 * behind the same functions.
 */
#ifndef FB_HAL_H
#define FB_HAL_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes hal_exit() hands to the emulator (QEMU's own exit status). */
#define HAL_EXIT_OK 0
#define HAL_EXIT_FAULT 3

/* Clocks, console UART and time counter; first thing main() calls. */
void hal_setup(void);

/* Console: blocking byte I/O on the UART the host talks to. */
void hal_send(const void *data, size_t len);
uint8_t hal_recv(void);

/* Host files: the fast way in for inputs on an emulator (semihosting).
 * hal_host_open gives a handle >= 0, or -1 where there is no host or the file
 * is missing or is not `expected_len` bytes long (the host then sends the
 * input over the console instead); hal_host_read_at copies `len` bytes from
 * byte `offset` of the file: 0 on success, -1 on failure; hal_host_close ends
 * it (a negative handle is ignored). The app reads an ordinary model's input
 * whole; a streamed model's file stays open for the run while it reads
 * pieces, possibly more than once. */
int hal_host_open(const char *path, size_t expected_len);
int hal_host_read_at(int handle, uint32_t offset, void *buf, size_t len);
void hal_host_close(int handle);

/* Time counter: monotonic, 64-bit, in the unit hal_time_source() names
 * ("systick": SysTick ticks on the processor clock; "cycles": DWT CYCCNT;
 * "minstret": RISC-V's retired-instruction counter).
 * The host turns ticks into instructions or cycles with the board file's ratio. */
uint64_t hal_time(void);
const char *hal_time_source(void);
/* Start the counter afresh at this instant, before a timed region. A counter
 * that ticks once per several instructions (SysTick under QEMU) otherwise
 * meets the region at whatever phase the wait for the host left it in, and
 * two runs of one image could read one tick apart; from a fresh start they
 * read the same. Counters that count every instruction or cycle need nothing. */
void hal_time_restart(void);

/* Stack high-water mark: paint the free stack below the current SP with a
 * byte, later ask how deep the stack went (bytes from the top of the stack
 * down to the lowest byte that no longer holds the paint). */
void hal_stack_paint(uint8_t pattern);
size_t hal_stack_used(uint8_t pattern);
size_t hal_stack_depth(void);        /* bytes in use right now (top - SP) */
size_t hal_stack_size(void);         /* the whole stack region */

/* Ends the run: an emulator quits with `code` as its exit status; real
 * silicon parks the core. */
/* The silicon HALs (stm32h7, stm32f4: real boards and Renode) reset the chip
 * instead once the last byte has left, so that after a fault the board says
 * READY again without a debug probe. */
void hal_exit(int code) __attribute__((noreturn));

/* What the fault handler saw. The stacked registers are those the core
 * pushed on exception entry. A RISC-V trap fills the same fields (and FAULT
 * frame) with its own registers: exception = mcause (1 instruction access
 * fault, 2 illegal instruction, 5/7 load/store access fault, ...), pc = mepc,
 * lr = ra, xpsr = mstatus, cfsr = mtval (the faulting address or
 * instruction), hfsr = mmfar = bfar = 0, sp = sp when the trap was taken. */
typedef struct {
    uint32_t exception;   /* IPSR: 3 HardFault, 4 MemManage, 5 BusFault, 6 UsageFault, >=16 IRQ */
    uint32_t pc, lr, xpsr;
    uint32_t cfsr, hfsr, mmfar, bfar;
    uint32_t sp;          /* SP before the exception frame was pushed */
} hal_fault_t;

/* Called once by the fault handler before it exits; the app overrides this
 * weak hook to report the fault over the console. */
void hal_fault_report(const hal_fault_t *fault);

#endif
