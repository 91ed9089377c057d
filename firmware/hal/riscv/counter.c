/*
 * The time counter: minstret, the retired-instruction counter, as 64 bits.
 * Under QEMU with -icount shift=0 it counts exactly the executed
 * instructions, so one tick is one instruction (the board file's
 * instructions_per_tick = 1). (The ESP32-C3 itself implements no minstret:
 * a silicon HAL would read Espressif's performance counter instead.)
 */
#include <stdint.h>

#include "../hal.h"
#include "riscv.h"

/* The halves are two CSRs: read high, low, high again, and retry when the
 * low half wrapped between the reads. */
uint64_t riscv_instret(void)
{
    uint32_t high, low;
    do {
        high = rv_read_minstreth();
        low = rv_read_minstret();
    } while (rv_read_minstreth() != high);
    return ((uint64_t)high << 32) | low;
}

uint64_t hal_time(void)
{
    return riscv_instret();
}

const char *hal_time_source(void)
{
    return "minstret";
}

/* minstret counts every retired instruction: no phase to reset. */
void hal_time_restart(void)
{
}
