/* The cycle counter of the silicon HALs: DWT CYCCNT extended to 64 bits,
 * with SysTick on the core clock as the fallback on parts (or emulators)
 * whose CYCCNT does not count. */
#include "cortexm.h"

#define DEMCR CM_REG(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL CM_REG(0xE0001000u)
#define DWT_CYCCNT CM_REG(0xE0001004u)
#define DWT_LAR CM_REG(0xE0001FB0u)
#define DWT_LAR_KEY 0xC5ACCE55u
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CTRL_NOCYCCNT (1u << 25)

static int use_dwt;
static uint32_t cycles_last;
static uint32_t cycles_high;

/* The M7's DWT ignores writes until its lock-access register is unlocked.
 * A function of its own, so images for other cores never contain it. */
void cortexm_dwt_unlock(void)
{
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = DWT_LAR_KEY;
}

void cortexm_cycles_start(void)
{
    cortexm_systick_start(); /* the fallback, and harmless when CYCCNT works */
    DEMCR |= DEMCR_TRCENA;
    if (DWT_CTRL & DWT_CTRL_NOCYCCNT)
        return;
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    uint32_t before = DWT_CYCCNT;
    for (volatile int i = 0; i < 64; i++) {
    }
    use_dwt = DWT_CYCCNT != before;
    cycles_last = DWT_CYCCNT;
    cycles_high = 0;
}

/* CYCCNT wraps every 2^32 cycles (about 9 s at 480 MHz); the app reads the
 * counter after every layer, far more often than it wraps. */
uint64_t cortexm_cycles(void)
{
    if (!use_dwt)
        return cortexm_systick_ticks();
    uint32_t primask = cm_primask_save_disable();
    uint32_t now = DWT_CYCCNT;
    if (now < cycles_last)
        cycles_high++;
    cycles_last = now;
    uint64_t value = ((uint64_t)cycles_high << 32) | now;
    cm_primask_restore(primask);
    return value;
}

/* CYCCNT counts every cycle and needs nothing; SysTick (the fallback, and the
 * wrap interrupt that also runs beside CYCCNT) starts afresh, so its phase and
 * the moment its interrupt frame lands on the stack repeat from run to run. */
void cortexm_cycles_restart(void)
{
    cortexm_systick_start();
}

const char *cortexm_cycles_source(void)
{
    return use_dwt ? "cycles" : "systick";
}
