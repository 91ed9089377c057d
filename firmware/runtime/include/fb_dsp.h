/* Internal: kernel selection and the DSP-extension building blocks of the
 * optimized kernels (fb_*_dsp.c).
 *
 * FB_KERNELS_DSP is 1 when the optimized kernels are compiled in and the public
 * entry points (fb_conv_s8, ...) dispatch to them:
 *   - on an Armv7E-M / Armv8-M core with the DSP extension (__ARM_FEATURE_DSP),
 *     unless the build passes -DFB_KERNELS_DSP=0 (harness/build.py passes 0 or 1
 *     from the board's core);
 *   - on the host with -DFB_HOST_DSP=1: the same kernel code on a plain-C
 *     emulation of the intrinsics (fb_acle_host.h), for bit-exact tests.
 * Otherwise the portable kernels run.
 *
 * Only intrinsics from ACLE's arm_acle.h are used, plus a few one-instruction
 * helpers ACLE has no intrinsic for (SXTB16/SXTAB16 with a rotated operand,
 * LDRD and LDM with post-increment, SMMLAR, SMLAD accumulating in place),
 * written as inline asm on Arm and in C (on the emulated intrinsics) on the host.
 */
#ifndef FB_DSP_H
#define FB_DSP_H

#include <stdint.h>
#include <string.h>

#include "fb_runtime.h"

#if defined(FB_HOST_DSP) && FB_HOST_DSP
#  if defined(__arm__)
#    error "FB_HOST_DSP is for host builds; Arm builds use the real DSP instructions"
#  endif
#  undef FB_KERNELS_DSP
#  define FB_KERNELS_DSP 1
#  define FB_DSP_EMULATED 1
#elif !defined(FB_KERNELS_DSP)
#  if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#    define FB_KERNELS_DSP 1
#  else
#    define FB_KERNELS_DSP 0
#  endif
#elif FB_KERNELS_DSP && !(defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP)
#  error "FB_KERNELS_DSP=1 needs a core with the DSP extension (-mcpu=cortex-m4/m7/m33...)"
#endif

/* -- requantization records and prepared tables (every build) -----------------
 *
 * The optimized kernels' per-layer constants. They are computed by
 * fb_conv_s8_prepare() / fb_dw_conv_s8_prepare() (fb_conv.c, fb_dw_conv.c),
 * which every build compiles so that the host can prepare them for a
 * target; only the optimized kernels read them. */

/* Requantization.
 *
 * TFLite's double-rounding MultiplyByQuantizedMultiplier (fb_mbqm) plus the
 * output offset in three instructions (SMMLAR, subtract the sign, shift; plus
 * one to double x where the kernel does not accumulate 2x already), for
 * |x| < 2^30, a multiplier m > 2^30 and a right shift e = -shift >= 1:
 *
 *   srdhm(x, m) = floor((x*m + 2^30) / 2^31)   (the reference's truncating
 *               = floor((2x*m + 2^31) / 2^32)   division equals this floor for
 *               = SMMLAR(2x, m, 0)              both signs; 2x fits in int32)
 *   RoundingDivideByPOT(s, e) = floor((s + 2^(e-1) - [s < 0]) / 2^e)
 *
 * so with k = 2^(e-1) + offset * 2^e folded into SMMLAR's accumulator,
 *
 *   out = (SMMLAR(2x, m, k) - [x < 0]) >> e
 *
 * because [s < 0] = [x*m < -2^30] = [x < 0] when m > 2^30. Nothing overflows
 * while |k| <= 2^30 (|s| <= 2^30 - 1). fb_requant_record() checks the conditions
 * on (m, shift, offset), the kernels bound |x| from the bias and the filter
 * size, and tests/firmware compare the result with TFLite's arithmetic over
 * millions of values including every kind of rounding tie. */
typedef struct {
    int32_t bias2;        /* twice the op's bias (0 without one): kernels accumulate 2x */
    int32_t multiplier;   /* TFLite multiplier, > 2^30 */
    int32_t round_offset; /* 2^(e-1) + output_offset * 2^e */
    int32_t right_shift;  /* e */
} fb_requant_rec;

/* Fill rec for one channel whose accumulators satisfy |acc| <= |bias| +
 * max_abs_dot; 0 when the fast formula does not apply (the kernel then runs
 * the portable code, which handles every case). */
int fb_requant_record(int32_t multiplier, int32_t shift, int32_t output_offset, int32_t bias,
                      int32_t max_abs_dot, fb_requant_rec *rec);
/* Records for n channels (bias may be NULL); 0 if any channel is not fast. */
int fb_requant_table(const fb_channel_quant *q, const int32_t *bias, int32_t n, int32_t output_offset,
                     int32_t max_abs_dot, fb_requant_rec *table);

/* Bound on |sum of taps filter * (x + input_offset)| for int8 x and filter. */
static inline int32_t fb_max_abs_dot(int32_t taps, int32_t input_offset)
{
    const int64_t x = 128 + (int64_t)(input_offset < 0 ? -input_offset : input_offset);
    const int64_t bound = (int64_t)taps * 128 * x;
    return bound > 0x7FFFFFFF ? 0x7FFFFFFF : (int32_t)bound;
}

static inline int fb_act_range_ok(int32_t act_min, int32_t act_max)
{
    return -128 <= act_min && act_min <= act_max && act_max <= 127;
}

/* Prepared tables (fb_prepared_header, see fb_runtime.h), then
 *   conv:      fb_requant_rec[out_c] | when taps % 4 != 0, the last filter row
 *              zero-padded to 4 * ceil(taps / 4) bytes
 *   depthwise: fb_requant_rec[C] | int32 bias_full[C] = 2 * (bias + input_offset
 *              * sum of the channel's weights) | int16 weights [C/4][2][kh*kw][2]:
 *              2 * (w[c0], w[c2]) of channels 4g.. at each tap, then 2 * (w[c1], w[c3])
 * Each part starts 4-byte aligned (the depthwise weights 8-byte aligned when
 * the tables are). The optimized kernels read them from
 * fb_channel_quant.prepared or, without it, prepare them at the start of scratch. */
static inline const fb_requant_rec *fb_prepared_records(const void *tables)
{
    return (const fb_requant_rec *)(const void *)((const int8_t *)tables + FB_PREPARED_HEADER_BYTES);
}

/* The header if `tables` were prepared for this kernel (tag) and filter, else NULL. */
static inline const fb_prepared_header *fb_prepared_check(const void *tables, int32_t tag,
                                                          const fb_filter_dims *fd)
{
    const fb_prepared_header *h = (const fb_prepared_header *)tables;
    if (tables == NULL || ((uintptr_t)tables & 3u) != 0 || h->tag != tag || h->out_c != fd->out_c ||
        h->taps != fd->kh * fd->kw * fd->in_c) {
        return NULL;
    }
    return h;
}

#if FB_KERNELS_DSP

#if defined(FB_DSP_EMULATED)
#  include "fb_acle_host.h"
#else
#  include <arm_acle.h>
#endif

/* 32-bit load from any address (LDR; Armv7-M allows unaligned LDR, not LDRD/LDM). */
static inline uint32_t fb_load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* FB_LDM4_POSTINC(ptr, a, b, c, d): four words from a 4-byte aligned address
 * into a, b, c, d (declared with FB_LDM4_REGS), then advance it by 16. LDM
 * loads the lowest register from the lowest address, so on Arm the four
 * variables are pinned to ascending registers r6..r9. */
#if defined(FB_DSP_EMULATED)
#define FB_LDM4_REGS(a, b, c, d) uint32_t a, b, c, d
#define FB_LDM4_POSTINC(ptr, a, b, c, d)                                    \
    do {                                                                    \
        const uint8_t *p4_ = (const uint8_t *)(const void *)(ptr);          \
        (a) = fb_load_u32(p4_);                                             \
        (b) = fb_load_u32(p4_ + 4);                                         \
        (c) = fb_load_u32(p4_ + 8);                                         \
        (d) = fb_load_u32(p4_ + 12);                                        \
        (ptr) = (const void *)(p4_ + 16);                                   \
    } while (0)
#else
#define FB_LDM4_REGS(a, b, c, d)                                            \
    register uint32_t a __asm__("r6"), b __asm__("r7"), c __asm__("r8"), d __asm__("r9")
#define FB_LDM4_POSTINC(ptr, a, b, c, d)                                    \
    __asm__("ldmia %0!, {%1, %2, %3, %4}"                                   \
            : "+r"(ptr), "=r"(a), "=r"(b), "=r"(c), "=r"(d)                 \
            : "m"(*(const char (*)[16])(const void *)(ptr)))
#endif

#if defined(FB_DSP_EMULATED)
static inline uint32_t fb_ror8(uint32_t x) { return (x >> 8) | (x << 24); }
/* bytes 1 and 3 of x, sign-extended into the two halfwords */
static inline int32_t fb_sxtb16_ror8(uint32_t x) { return __sxtb16((int32_t)fb_ror8(x)); }
/* halfwords of a plus sign-extended bytes 1 and 3 of x */
static inline int32_t fb_sxtab16_ror8(int32_t a, uint32_t x) { return __sxtab16(a, (int32_t)fb_ror8(x)); }
/* two words from a 4-byte aligned address, then advance it by 8 */
#define FB_LDRD_POSTINC(lo, hi, ptr)                                        \
    do {                                                                    \
        const uint8_t *p2_ = (const uint8_t *)(const void *)(ptr);          \
        (lo) = fb_load_u32(p2_);                                            \
        (hi) = fb_load_u32(p2_ + 4);                                        \
        (ptr) = (const void *)(p2_ + 8);                                    \
    } while (0)
#else
/* gcc has no intrinsic for the rotated forms and does not fold __ror into them */
static inline int32_t fb_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t fb_sxtab16_ror8(int32_t a, uint32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
/* gcc splits 64-bit loads into two LDRs on Cortex-M; one LDRD is one instruction */
#define FB_LDRD_POSTINC(lo, hi, ptr)                                        \
    __asm__("ldrd %0, %1, [%2], #8"                                         \
            : "=r"(lo), "=r"(hi), "+r"(ptr)                                 \
            : "m"(*(const char (*)[8])(const void *)(ptr)))
#endif

/* acc = SMLAD(a, b, acc) with the accumulator updated in place. Same result as
 * ACLE's __smlad; with __smlad's free output register gcc rotates the four
 * accumulators of fb_conv_dsp.c through spare registers and then spills. */
#if defined(FB_DSP_EMULATED)
#define FB_SMLAD_ACC(acc, a, b) ((acc) = __smlad((int32_t)(a), (int32_t)(b), (acc)))
#else
#define FB_SMLAD_ACC(acc, a, b) __asm__("smlad %0, %1, %2, %0" : "+r"(acc) : "r"(a), "r"(b))
#endif

/* SMMLAR: (acc * 2^32 + a * b + 2^31) >> 32, the rounded high word of a
 * 64-bit multiply-accumulate (ACLE has no intrinsic for it). */
#if defined(FB_DSP_EMULATED)
static inline int32_t fb_smmlar(int32_t a, int32_t b, int32_t acc)
{
    const uint64_t sum = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * b) + 0x80000000u;
    return (int32_t)(uint32_t)(sum >> 32);
}
#else
static inline int32_t fb_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
#endif

/* From twice the accumulator, 2x: the conv and depthwise kernels accumulate 2x
 * directly (doubled input columns or doubled widened weights), which saves the
 * shift. */
static inline int32_t fb_requant_apply2(int32_t acc2, int32_t multiplier, int32_t round_offset,
                                        int32_t right_shift)
{
    const int32_t t = fb_smmlar(acc2, multiplier, round_offset);
    return (int32_t)((uint32_t)t - ((uint32_t)acc2 >> 31)) >> right_shift;
}

static inline int32_t fb_requant_apply(int32_t acc, int32_t multiplier, int32_t round_offset,
                                       int32_t right_shift)
{
    return fb_requant_apply2((int32_t)((uint32_t)acc << 1), multiplier, round_offset, right_shift);
}

/* Kernels' output stage from twice the accumulator: requantized, offset,
 * clamped to [act_min, act_max].
 * FB_CLAMP_SSAT: the activation range is all of int8, one SSAT clamps.
 * FB_CLAMP_RANGE: two compares; the kernels take it only for ranges inside
 * int8 (fb_act_range_ok), else the portable code's clamp-then-cast applies. */
#define FB_CLAMP_SSAT 0
#define FB_CLAMP_RANGE 1
static inline __attribute__((always_inline)) int8_t fb_requant_out(int32_t acc2, int32_t multiplier,
                                                                   int32_t round_offset, int32_t right_shift,
                                                                   int clamp, int32_t act_min,
                                                                   int32_t act_max)
{
    int32_t v = fb_requant_apply2(acc2, multiplier, round_offset, right_shift);
    if (clamp == FB_CLAMP_RANGE) {
        v = v < act_min ? act_min : v;
        v = v > act_max ? act_max : v;
    } else {
        v = __ssat(v, 8);
    }
    return (int8_t)v;
}

/* Four channels' doubled accumulators requantized with their records and
 * stored side by side (out[0..3]). */
static inline __attribute__((always_inline)) void fb_requant_store4(int8_t *out, int32_t a0, int32_t a1, int32_t a2,
                                                                    int32_t a3, const fb_requant_rec *rec,
                                                                    int clamp, int32_t act_min, int32_t act_max)
{
    const int8_t v0 = fb_requant_out(a0, rec[0].multiplier, rec[0].round_offset, rec[0].right_shift, clamp,
                                     act_min, act_max);
    const int8_t v1 = fb_requant_out(a1, rec[1].multiplier, rec[1].round_offset, rec[1].right_shift, clamp,
                                     act_min, act_max);
    const int8_t v2 = fb_requant_out(a2, rec[2].multiplier, rec[2].round_offset, rec[2].right_shift, clamp,
                                     act_min, act_max);
    const int8_t v3 = fb_requant_out(a3, rec[3].multiplier, rec[3].round_offset, rec[3].right_shift, clamp,
                                     act_min, act_max);
    out[0] = v0;
    out[1] = v1;
    out[2] = v2;
    out[3] = v3;
}

/* The optimized kernels (same contracts as the public ones). */
fb_status fb_conv_s8_dsp(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                         const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                         fb_view *output, const fb_scratch *scratch);
fb_status fb_dw_conv_s8_dsp(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                            const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                            fb_view *output, const fb_scratch *scratch);
fb_status fb_fully_connected_s8_dsp(const fb_fc_params *p, const double *effective_scale,
                                    const int8_t *input, const int8_t *filter, const int32_t *bias,
                                    int8_t *output);
fb_status fb_add_s8_dsp(const fb_add_params *p, const fb_view *a, const fb_view *b, fb_view *out);

/* MUL's optimized rows (fb_mul_dsp.c): fb_mul_s8 walks the broadcast and
 * hands each innermost row to fb_mul_dsp_row when fb_mul_dsp_prepare accepts
 * the quantization (else it runs its portable row). */
typedef struct {
    int32_t offset1, offset2, multiplier, round_offset, right_shift, act_min, act_max, full_range;
} fb_mul_dsp_job;
int fb_mul_dsp_prepare(const fb_mul_params *p, fb_mul_dsp_job *job);
void fb_mul_dsp_row(const fb_mul_dsp_job *job, const int8_t *a, int32_t step_a, const int8_t *b, int32_t step_b,
                    int8_t *out, int32_t n);

/* fb_mean_s8's optimized walk (fb_mean_dsp.c): the means of channels 0 ..
 * 4 * floor(C / 4) - 1 of a whole map, four channels per 32-bit load summed in
 * 16-bit lanes; fb_mean_s8 (fb_pool.c) does the remaining channels. */
fb_status fb_mean_s8_groups_dsp(const fb_mean_params *p, const fb_view *input, int8_t *output);

#endif /* FB_KERNELS_DSP */

#endif /* FB_DSP_H */
