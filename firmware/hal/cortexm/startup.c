/*
 * Cortex-M start-up: the vector table, Reset_Handler (FPU on, .data copied,
 * .bss zeroed, main called) and the default exception entry.
 *
 * The linker script build.py generates provides the symbols below. The stack
 * sits at the bottom of RAM, so an overflow runs off the start of RAM instead
 * of silently corrupting .bss.
 */
#include <stdint.h>

#include "../common/semihost.h"
#include "cortexm.h"

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

int main(void);
void Reset_Handler(void);
void cortexm_fault_entry(void);   /* fault.c */

/* Every exception nobody handles goes to the fault reporter: an unexpected
 * interrupt is as much a bug as a HardFault. Weak, so a HAL can take one over
 * (systick.c does); naked, so EXC_RETURN is still in LR when the reporter
 * runs. (An alias would have to live in the same file as its target.) */
#define WEAK_TO_FAULT(name)                                                   \
    __attribute__((weak, naked)) void name(void)                              \
    {                                                                         \
        __asm volatile("b cortexm_fault_entry");                              \
    }
WEAK_TO_FAULT(NMI_Handler)
WEAK_TO_FAULT(HardFault_Handler)
WEAK_TO_FAULT(MemManage_Handler)
WEAK_TO_FAULT(BusFault_Handler)
WEAK_TO_FAULT(UsageFault_Handler)
WEAK_TO_FAULT(SVC_Handler)
WEAK_TO_FAULT(DebugMon_Handler)
WEAK_TO_FAULT(PendSV_Handler)
WEAK_TO_FAULT(SysTick_Handler)

/* 16 system entries + 240 interrupts: the architectural maximum, so even a
 * stray interrupt of a part with many lands in the reporter (1 KB of flash). */
#define NUM_VECTORS 256
typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used))
const vector_t cortexm_vectors[NUM_VECTORS] = {
    [0] = (vector_t)(uintptr_t)__stack_top,
    [1] = Reset_Handler,
    [2] = NMI_Handler,
    [3] = HardFault_Handler,
    [4] = MemManage_Handler,
    [5] = BusFault_Handler,
    [6] = UsageFault_Handler,
    [11] = SVC_Handler,
    [12] = DebugMon_Handler,
    [14] = PendSV_Handler,
    [15] = SysTick_Handler,
    [16 ... NUM_VECTORS - 1] = cortexm_fault_entry,
};

void Reset_Handler(void)
{
    /* Full access to CP10/CP11 before any floating-point instruction runs. */
    SCB_CPACR |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");

    /* The table may not be at address 0 on real parts (flash at 0x08000000). */
    SCB_VTOR = (uint32_t)(uintptr_t)cortexm_vectors;

    /* MemManage/BusFault/UsageFault stay disabled: they escalate to a
     * HardFault (HFSR.FORCED) whose CFSR still names the cause. */

    const uint32_t *src = __data_load;
    for (uint32_t *dst = __data_start; dst < __data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = __bss_start; dst < __bss_end;)
        *dst++ = 0;

    main();
    semihost_exit(0);
}
