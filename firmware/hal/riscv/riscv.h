/* RISC-V machine-mode registers the shared HAL parts use (the privileged
 * architecture specification). Written out by hand: no vendor SDK.
 *
 * The image is built for rv32imc, and binutils 2.40 takes CSR instructions
 * only with the Zicsr extension named. Naming it in -march would also change
 * the multilib gcc picks (there is an rv32im one, none with zicsr), so each
 * CSR access turns it on for its own instruction (`.option arch, +zicsr`);
 * the object files still say rv32imc. */
#ifndef FB_RISCV_H
#define FB_RISCV_H

#include <stdint.h>

#define RV_CSR_READER(csr)                                                      \
    static inline uint32_t rv_read_##csr(void)                                  \
    {                                                                           \
        uint32_t value;                                                         \
        __asm volatile(".option push\n\t.option arch, +zicsr\n\t"               \
                       "csrr %0, " #csr "\n\t.option pop"                       \
                       : "=r"(value));                                          \
        return value;                                                           \
    }

RV_CSR_READER(mcause)
RV_CSR_READER(mepc)
RV_CSR_READER(mtval)
RV_CSR_READER(mstatus)
RV_CSR_READER(minstret)
RV_CSR_READER(minstreth)

static inline void rv_write_mtvec(uintptr_t value)
{
    __asm volatile(".option push\n\t.option arch, +zicsr\n\t"
                   "csrw mtvec, %0\n\t.option pop" ::"r"(value)
                   : "memory");
}

static inline uintptr_t rv_sp(void)
{
    uintptr_t sp;
    __asm volatile("mv %0, sp" : "=r"(sp));
    return sp;
}

/* The retired-instruction counter as one 64-bit value (riscv/counter.c). */
uint64_t riscv_instret(void);

#endif
