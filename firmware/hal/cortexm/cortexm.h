/* Cortex-M system registers the shared HAL parts use (ARMv7-M architecture
 * reference manual, "System Control Space"). Written out by hand: no CMSIS. */
#ifndef FB_CORTEXM_H
#define FB_CORTEXM_H

#include <stddef.h>
#include <stdint.h>

#define CM_REG(addr) (*(volatile uint32_t *)(addr))

/* SysTick */
#define SYST_CSR CM_REG(0xE000E010u)
#define SYST_RVR CM_REG(0xE000E014u)
#define SYST_CVR CM_REG(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE_CPU (1u << 2)

/* System control block */
#define SCB_ICSR CM_REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_VTOR CM_REG(0xE000ED08u)
#define SCB_SHCSR CM_REG(0xE000ED24u)
#define SCB_CFSR CM_REG(0xE000ED28u)
#define SCB_HFSR CM_REG(0xE000ED2Cu)
#define SCB_MMFAR CM_REG(0xE000ED34u)
#define SCB_BFAR CM_REG(0xE000ED38u)
#define SCB_CPACR CM_REG(0xE000ED88u)

static inline uint32_t cm_primask_save_disable(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void cm_primask_restore(uint32_t primask)
{
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
}

static inline uintptr_t cm_sp(void)
{
    uintptr_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Shared pieces the per-target HALs call. */
void cortexm_systick_start(void);
uint64_t cortexm_systick_ticks(void);
/* Silicon HALs: DWT CYCCNT as a 64-bit counter, SysTick when it does not count. */
void cortexm_dwt_unlock(void);
void cortexm_cycles_start(void);
uint64_t cortexm_cycles(void);
const char *cortexm_cycles_source(void);
void cortexm_cycles_restart(void);
/* Semihosting (exit, host files) is shared with RISC-V: ../common/semihost.h. */

#endif
