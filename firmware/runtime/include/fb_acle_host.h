/* Plain-C emulation of the ACLE DSP intrinsics the optimized kernels use, so
 * that the very same kernel code can be compiled for the host and tested byte
 * for byte there (harness/hostrt.py builds it with -DFB_HOST_DSP=1).
 *
 * Each function computes exactly what the Armv7E-M instruction computes,
 * including wrap-around of the 32-bit accumulators (the instructions only set
 * the Q flag on overflow, which nothing here reads). Only fb_dsp.h includes
 * this header, and only when the compiler has no real DSP extension.
 */
#ifndef FB_ACLE_HOST_H
#define FB_ACLE_HOST_H

#include <stdint.h>

/* Signed 16-bit halves of a 32-bit register. */
static inline int32_t fb_host_lo16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu); }
static inline int32_t fb_host_hi16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }
static inline int32_t fb_host_byte(uint32_t x, int index) { return (int32_t)(int8_t)(uint8_t)(x >> (8 * index)); }
static inline uint32_t fb_host_pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* SXTB16: bytes 0 and 2 sign-extended into the two halfwords. */
static inline int32_t __sxtb16(int32_t x)
{
    return (int32_t)fb_host_pack16(fb_host_byte((uint32_t)x, 0), fb_host_byte((uint32_t)x, 2));
}

/* SXTAB16: halfwords of a plus sign-extended bytes 0 and 2 of x, each modulo 2^16. */
static inline int32_t __sxtab16(int32_t a, int32_t x)
{
    return (int32_t)fb_host_pack16(fb_host_lo16((uint32_t)a) + fb_host_byte((uint32_t)x, 0),
                                   fb_host_hi16((uint32_t)a) + fb_host_byte((uint32_t)x, 2));
}

/* SMLAD: c + lo(a)*lo(b) + hi(a)*hi(b), modulo 2^32. */
static inline int32_t __smlad(int32_t a, int32_t b, int32_t c)
{
    const uint32_t p0 = (uint32_t)(fb_host_lo16((uint32_t)a) * fb_host_lo16((uint32_t)b));
    const uint32_t p1 = (uint32_t)(fb_host_hi16((uint32_t)a) * fb_host_hi16((uint32_t)b));
    return (int32_t)((uint32_t)c + p0 + p1);
}

/* SMLABB / SMLATT: c + one 16x16 product (bottom or top halves), modulo 2^32. */
static inline int32_t __smlabb(int32_t a, int32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(fb_host_lo16((uint32_t)a) * fb_host_lo16((uint32_t)b)));
}
static inline int32_t __smlatt(int32_t a, int32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(fb_host_hi16((uint32_t)a) * fb_host_hi16((uint32_t)b)));
}

/* SSAT: saturate to a signed `bits`-bit range (1 <= bits <= 32). */
static inline int32_t __ssat(int32_t x, unsigned bits)
{
    const int64_t hi = ((int64_t)1 << (bits - 1)) - 1;
    const int64_t lo = -((int64_t)1 << (bits - 1));
    return (int32_t)(x > hi ? hi : (x < lo ? lo : x));
}

#endif /* FB_ACLE_HOST_H */
