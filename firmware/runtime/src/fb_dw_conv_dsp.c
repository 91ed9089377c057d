/* DEPTHWISE_CONV_2D int8 (depth multiplier 1) for cores with the DSP
 * extension: the same contract and bytes as fb_dw_conv_s8_portable.
 *
 * Channels go four at a time. The filter is widened (in the layer's prepared
 * tables, fb_dw_conv_s8_prepare() in fb_dw_conv.c), doubled (the
 * requantization takes twice the accumulator, fb_requant_apply2), as int16
 * pairs in the order SXTB16 unpacks a word of input: per channel quadruple,
 * the (c0, c2) pairs of all taps ("lane" 0), then the (c1, c3) pairs (lane 1).
 * An input word of four channels is unpacked by SXTB16 (bytes 0, 2: lane 0)
 * or SXTB16 ROR 8 (bytes 1, 3: lane 1) and SMLABB/SMLATT accumulate the two
 * channels of a lane.
 *
 * 3x3 filters (dilation 1 along rows) go one lane at a time: a pass keeps two
 * accumulators per pixel, so it takes three horizontally adjacent pixels at
 * once (stride 1: five input columns instead of nine; stride 2: seven), each
 * column word loaded and unpacked once per lane for all the pixels that read
 * it, each row's three weights loaded with one LDM, and the requantization
 * records shared by the pixels. Per row and lane, three pixels at stride 1:
 * LDM + 5 LDR + 5 SXTB16 + 18 SMLAxx (+ 1 ADD) for 18 MACs, where one pixel at
 * a time with both lanes took 3 LDR + 6 SXTB16 + 3 LDRD + 12 SMLAxx for 12
 * (measured: the 3x3 depthwise layers of MobileNetV2 w0.35 take 10-25% fewer
 * instructions). Other filters take one pixel with both lanes per input word.
 *
 * Pixels whose taps all lie inside the map start from bias + input_offset *
 * (sum of the channel's weights), so their taps need no offset; the pixels of
 * a row that are inside the map horizontally are one run, found once per
 * call; the top and bottom rows' run takes its valid filter rows with the
 * offset added by SXTAB16 (two pixels per pass), and the few pixels left and
 * right of the run their valid taps (border_pixel, or a one-pixel pass when
 * all three columns are inside). Requantization is the single-rounding
 * SMMLAR form of fb_dsp.h from per-channel records. Records, offset-folded
 * biases and widened weights are the prepared tables: in flash when the
 * caller passes them (fb_channel_quant.prepared), else prepared in scratch on
 * every call. Channel counts that are not a multiple of 4 and depth
 * multipliers other than 1 take the portable code.
 *
 * Scratch: none with prepared tables; else the tables,
 * fb_dw_conv_s8_prepared_size() = 16 + (16 + 4 + 2 * kh * kw) * C bytes.
 */
#include "fb_arith.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

/* gcc's SLP vectorizer would merge the four byte stores of a pixel into a word
 * built with BFI (five instructions instead of four), and its first scheduling
 * pass hoists all nine taps' loads, which spills registers. */
#pragma GCC optimize("no-tree-slp-vectorize", "no-schedule-insns")

typedef struct {
    const uint32_t *weights;       /* [C/4][2 lanes][kh*kw] int16 pairs, 4-byte aligned */
    const fb_requant_rec *table;   /* C records */
    const int32_t *bias_full;      /* C: 2 * (bias + input_offset * sum of the channel's weights) */
    int32_t groups, taps, kw, channels, tap_step, row_step, offset2, act_min, act_max;
} dw_job;

/* acc += four channels of one tap; x02/x13 are the unpacked input word, w
 * the tap's lane-0 weights (lane 1's lie `taps` words further). */
#define DW_MAC(w_ptr, lane1, x02, x13)                                        \
    do {                                                                      \
        const uint32_t w02_ = (w_ptr)[0], w13_ = (w_ptr)[lane1];              \
        ++(w_ptr);                                                            \
        a0 = __smlabb((x02), (int32_t)w02_, a0);                              \
        a2 = __smlatt((x02), (int32_t)w02_, a2);                              \
        a1 = __smlabb((x13), (int32_t)w13_, a1);                              \
        a3 = __smlatt((x13), (int32_t)w13_, a3);                              \
    } while (0)

/* Input word without offset (interior pixels). */
#define DW_TAP(w_ptr, lane1, xword)                                           \
    do {                                                                      \
        const uint32_t xv_ = (xword);                                         \
        const int32_t x02_ = __sxtb16((int32_t)xv_);                          \
        const int32_t x13_ = fb_sxtb16_ror8(xv_);                             \
        DW_MAC(w_ptr, lane1, x02_, x13_);                                     \
    } while (0)

/* Input word plus the input offset (border pixels). */
#define DW_TAP_OFFSET(w_ptr, lane1, xword)                                    \
    do {                                                                      \
        const uint32_t xv_ = (xword);                                         \
        const int32_t x02_ = __sxtab16(offset2, (int32_t)xv_);               \
        const int32_t x13_ = fb_sxtab16_ror8(offset2, xv_);                   \
        DW_MAC(w_ptr, lane1, x02_, x13_);                                     \
    } while (0)

/* A pixel (any filter) whose kh x kw taps all lie inside the map; x: input of
 * tap (0, 0). */
static inline __attribute__((always_inline)) void interior_pixel(const dw_job *job, const int8_t *x, int8_t *out,
                                                                 const int clamp)
{
    const fb_requant_rec *rec = job->table;
    const int32_t *bias = job->bias_full;
    const int32_t taps = job->taps, kh = taps / job->kw;
    for (int32_t g = 0; g < job->groups; ++g, rec += 4, bias += 4, x += 4, out += 4) {
        const uint32_t *w = job->weights + 2 * g * taps;
        int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
        const int8_t *xr = x;
        for (int32_t r = 0; r < kh; ++r) {
            const int8_t *xt = xr;
            for (int32_t t = 0; t < job->kw; ++t) {
                DW_TAP(w, taps, fb_load_u32(xt));
                xt += job->tap_step;
            }
            xr += job->row_step;
        }
        fb_requant_store4(out, a0, a1, a2, a3, rec, clamp, job->act_min, job->act_max);
    }
}

/* A pixel with taps ky in [ky0, ky1), kx in [kx0, kx1) inside the map (maybe
 * none); x: input of tap (ky0, kx0). */
static inline __attribute__((always_inline)) void border_pixel(const dw_job *job, const int8_t *x, int32_t ky0,
                                                               int32_t ky1, int32_t kx0, int32_t kx1, int8_t *out,
                                                               const int clamp)
{
    const int32_t offset2 = job->offset2;
    const int32_t taps = job->taps;
    const fb_requant_rec *rec = job->table;
    for (int32_t g = 0; g < job->groups; ++g, rec += 4, x += 4, out += 4) {
        int32_t a0 = rec[0].bias2, a1 = rec[1].bias2, a2 = rec[2].bias2, a3 = rec[3].bias2;
        const int8_t *xr = x;
        for (int32_t ky = ky0; ky < ky1; ++ky) {
            const uint32_t *w = job->weights + 2 * g * taps + ky * job->kw + kx0;
            const int8_t *xt = xr;
            for (int32_t kx = kx0; kx < kx1; ++kx) {
                DW_TAP_OFFSET(w, taps, fb_load_u32(xt));
                xt += job->tap_step;
            }
            xr += job->row_step;
        }
        fb_requant_store4(out, a0, a1, a2, a3, rec, clamp, job->act_min, job->act_max);
    }
}

/* -- 3x3 filters, one lane at a time ------------------------------------------
 *
 * A filter row of a lane for the NP pixels of a pass: the row's three weights
 * (one LDM), then the input columns in order, each loaded, unpacked and met
 * with the weights of every pixel it reads it. Written out per shape in
 * inline asm on Arm: the six accumulators, three weights, the column word,
 * the input pointer and step and the weights pointer take 13 of the 14
 * registers, and gcc, given the same code in C, spills accumulators and keeps
 * every tap's address on the stack. The host compiles the same arithmetic in
 * C (lane_rows_c); tests/firmware run the asm on QEMU. */

/* the unpack of a column word: lane 0 or 1, plus the input offset (O) or not */
#define DW_UNPACK_0 "sxtb16 %[xv], %[xv]\n\t"
#define DW_UNPACK_1 "sxtb16 %[xv], %[xv], ror #8\n\t"
#define DW_UNPACK_O0 "sxtab16 %[xv], %[off], %[xv]\n\t"
#define DW_UNPACK_O1 "sxtab16 %[xv], %[off], %[xv], ror #8\n\t"
/* input column k of the row at xr, columns c1 bytes apart */
#define DW_COL0 "ldr %[xv], [%[xr]]\n\t"
#define DW_COL1 "ldr %[xv], [%[xr], %[c1]]\n\t"
#define DW_COL2 "ldr %[xv], [%[xr], %[c1], lsl #1]\n\t"
#define DW_COL3 "add %[xv], %[xr], %[c1], lsl #1\n\tldr %[xv], [%[xv], %[c1]]\n\t"
#define DW_COL4 "ldr %[xv], [%[xr], %[c1], lsl #2]\n\t"
#define DW_COL5 "add %[xv], %[xr], %[c1], lsl #2\n\tldr %[xv], [%[xv], %[c1]]\n\t"
#define DW_COL6 "add %[xv], %[c1], %[c1], lsl #1\n\tldr %[xv], [%[xr], %[xv], lsl #1]\n\t"
/* pixel p's two accumulators += the unpacked column times weight k */
#define DW_M(p, k) "smlabb %[a" #p "l], %[xv], %[w" #k "], %[a" #p "l]\n\t" \
                   "smlatt %[a" #p "h], %[xv], %[w" #k "], %[a" #p "h]\n\t"

/* One row for NP pixels S columns apart (U: the unpack). */
#define DW_ROW_3_1(U)                                                                              \
    DW_COL0 U DW_M(0, 0) DW_COL1 U DW_M(0, 1) DW_M(1, 0) DW_COL2 U DW_M(0, 2) DW_M(1, 1) DW_M(2, 0) \
    DW_COL3 U DW_M(1, 2) DW_M(2, 1) DW_COL4 U DW_M(2, 2)
#define DW_ROW_3_2(U)                                                                              \
    DW_COL0 U DW_M(0, 0) DW_COL1 U DW_M(0, 1) DW_COL2 U DW_M(0, 2) DW_M(1, 0) DW_COL3 U DW_M(1, 1) \
    DW_COL4 U DW_M(1, 2) DW_M(2, 0) DW_COL5 U DW_M(2, 1) DW_COL6 U DW_M(2, 2)
#define DW_ROW_2_1(U)                                                                              \
    DW_COL0 U DW_M(0, 0) DW_COL1 U DW_M(0, 1) DW_M(1, 0) DW_COL2 U DW_M(0, 2) DW_M(1, 1)           \
    DW_COL3 U DW_M(1, 2)
#define DW_ROW_2_2(U)                                                                              \
    DW_COL0 U DW_M(0, 0) DW_COL1 U DW_M(0, 1) DW_COL2 U DW_M(0, 2) DW_M(1, 0) DW_COL3 U DW_M(1, 1) \
    DW_COL4 U DW_M(1, 2)
#define DW_ROW_1(U) DW_COL0 U DW_M(0, 0) DW_COL1 U DW_M(0, 1) DW_COL2 U DW_M(0, 2)

#if !defined(FB_DSP_EMULATED)
#define DW_ACC1 [a0l] "+r"(a0), [a0h] "+r"(a1)
#define DW_ACC2 DW_ACC1, [a1l] "+r"(a2), [a1h] "+r"(a3)
#define DW_ACC3 DW_ACC2, [a2l] "+r"(a4), [a2h] "+r"(a5)
/* LDM fills its registers in ascending order: the three weights are pinned */
#define DW_WEIGHT_REGS register uint32_t w0_ __asm__("r8"), w1_ __asm__("r9"), w2_ __asm__("r10")
#define DW_LDM3 "ldmia %[wp]!, {%[w0], %[w1], %[w2]}\n\t"
#define DW_OUT_W [wp] "+r"(w), [w0] "=&r"(w0_), [w1] "=&r"(w1_), [w2] "=&r"(w2_), [xv] "=&r"(xv_)

/* All three rows, no offset, in one statement (nothing for gcc to move
 * between them); the row step is read from memory for want of a register.
 * UNPACK is DW_UNPACK_0 or DW_UNPACK_1: the lane (channel pair) of the words;
 * the accumulator operands (a DW_ACC list, commas and all) come last. */
#define DW_PASS_ASM(ROW, UNPACK, ...)                                           \
    do {                                                                        \
        DW_WEIGHT_REGS;                                                         \
        uint32_t xv_;                                                           \
        const int8_t *xp_ = x;                                                  \
        __asm__(DW_LDM3 ROW(UNPACK) "ldr %[xv], %[row]\n\tadd %[xr], %[xr], %[xv]\n\t" \
                DW_LDM3 ROW(UNPACK) "ldr %[xv], %[row]\n\tadd %[xr], %[xr], %[xv]\n\t" \
                DW_LDM3 ROW(UNPACK)                                             \
                : __VA_ARGS__, DW_OUT_W, [xr] "+r"(xp_)                         \
                : [c1] "r"(c1), [row] "m"(row)                                  \
                : "memory");                                                    \
    } while (0)
/* DW_PASS_ASM for the lane in `lane` (0 or 1, known per call site). */
#define DW_PASS_LANE(ROW, ...)                                                  \
    do {                                                                        \
        if (lane) {                                                             \
            DW_PASS_ASM(ROW, DW_UNPACK_1, __VA_ARGS__);                         \
        } else {                                                                \
            DW_PASS_ASM(ROW, DW_UNPACK_0, __VA_ARGS__);                         \
        }                                                                       \
    } while (0)
/* One row with the input offset (the top and bottom rows of the map: a
 * run-time number of rows). */
#define DW_ROW_ASM(text, ACC)                                                   \
    do {                                                                        \
        DW_WEIGHT_REGS;                                                         \
        uint32_t xv_;                                                           \
        __asm__(DW_LDM3 text                                                    \
                : ACC, DW_OUT_W                                                 \
                : [xr] "r"(xr), [c1] "r"(c1), [off] "r"(offset2)                \
                : "memory");                                                    \
    } while (0)
#endif

#if defined(FB_DSP_EMULATED)
/* The rows of a lane pass in C: the asm's arithmetic, for the host build. */
static void lane_rows_c(const uint32_t *w, const int8_t *xr, int32_t rows, int32_t c1, int32_t row, int lane,
                        int offset, int32_t offset2, int np, int stride, int32_t acc[6])
{
    for (int32_t r = 0; r < rows; ++r, xr += row, w += 3) {
        for (int col = 0; col < (np - 1) * stride + 3; ++col) {
            const uint32_t xv = fb_load_u32(xr + col * c1);
            const int32_t xu = offset ? (lane ? fb_sxtab16_ror8(offset2, xv) : __sxtab16(offset2, (int32_t)xv))
                                      : (lane ? fb_sxtb16_ror8(xv) : __sxtb16((int32_t)xv));
            for (int j = 0; j < np; ++j) {
                const int kx = col - j * stride;
                if (kx >= 0 && kx < 3) {
                    acc[2 * j] = __smlabb(xu, (int32_t)w[kx], acc[2 * j]);
                    acc[2 * j + 1] = __smlatt(xu, (int32_t)w[kx], acc[2 * j + 1]);
                }
            }
        }
    }
}
#endif

/* One lane of channel quadruple g for NP pixels S columns apart (pixel j's
 * input at x + j * S * tap_step), filter rows [ky0, ky1) (all three unless
 * `offset`, which then adds the input offset per tap and starts from the
 * plain biases). x: pixel 0's input at tap (ky0, 0) of the quadruple's first
 * channel; out: pixel 0's output there. Shapes: NP 3 (S 1 or 2) without the
 * offset, 2 (S 1 or 2) or 1 with or without it (the offset takes the
 * register of the third pixel). */
static inline __attribute__((always_inline)) void lane_pass(const dw_job *job, int32_t g, const int lane,
                                                            const int8_t *x, int32_t ky0, int32_t ky1,
                                                            int8_t *out, int32_t out_step, const int NP,
                                                            const int S, const int offset, const int clamp)
{
    const int32_t c1 = job->tap_step, row = job->row_step, offset2 = job->offset2;
    const uint32_t *w = job->weights + (2 * g + lane) * 9 + 3 * ky0;
    const fb_requant_rec *rec = job->table + 4 * g + lane;
    /* pixel j: channels lane (a{2j}) and lane + 2 (a{2j+1}) */
    int32_t a0, a1;
    if (offset) {
        a0 = rec[0].bias2, a1 = rec[2].bias2;
    } else {
        a0 = job->bias_full[4 * g + lane], a1 = job->bias_full[4 * g + lane + 2];
    }
    int32_t a2 = a0, a3 = a1, a4 = a0, a5 = a1;
#if defined(FB_DSP_EMULATED)
    {
        int32_t acc[6] = { a0, a1, a2, a3, a4, a5 };
        lane_rows_c(w, x, offset ? ky1 - ky0 : 3, c1, row, lane, offset, offset2, NP, S, acc);
        a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5];
    }
#else
    if (!offset) {
        if (NP == 3 && S == 1) {
            DW_PASS_LANE(DW_ROW_3_1, DW_ACC3);
        } else if (NP == 3) {
            DW_PASS_LANE(DW_ROW_3_2, DW_ACC3);
        } else if (NP == 2 && S == 1) {
            DW_PASS_LANE(DW_ROW_2_1, DW_ACC2);
        } else if (NP == 2) {
            DW_PASS_LANE(DW_ROW_2_2, DW_ACC2);
        } else {
            DW_PASS_LANE(DW_ROW_1, DW_ACC1);
        }
    } else {
        const int8_t *xr = x;
        for (int32_t r = ky0; r < ky1; ++r, xr += row) {
            if (NP == 2 && S == 1) {
                if (lane) DW_ROW_ASM(DW_ROW_2_1(DW_UNPACK_O1), DW_ACC2);
                else DW_ROW_ASM(DW_ROW_2_1(DW_UNPACK_O0), DW_ACC2);
            } else if (NP == 2) {
                if (lane) DW_ROW_ASM(DW_ROW_2_2(DW_UNPACK_O1), DW_ACC2);
                else DW_ROW_ASM(DW_ROW_2_2(DW_UNPACK_O0), DW_ACC2);
            } else {
                if (lane) DW_ROW_ASM(DW_ROW_1(DW_UNPACK_O1), DW_ACC1);
                else DW_ROW_ASM(DW_ROW_1(DW_UNPACK_O0), DW_ACC1);
            }
        }
    }
#endif
    (void)offset2;
    (void)S;
    (void)ky1;
    const int32_t lo = job->act_min, hi = job->act_max;
    {
        const int32_t m = rec[0].multiplier, rnd = rec[0].round_offset, s = rec[0].right_shift;
        const int8_t v0 = fb_requant_out(a0, m, rnd, s, clamp, lo, hi);
        const int8_t v1 = NP > 1 ? fb_requant_out(a2, m, rnd, s, clamp, lo, hi) : 0;
        const int8_t v2 = NP > 2 ? fb_requant_out(a4, m, rnd, s, clamp, lo, hi) : 0;
        out[lane] = v0;
        if (NP > 1) out[out_step + lane] = v1;
        if (NP > 2) out[2 * out_step + lane] = v2;
    }
    {
        const int32_t m = rec[2].multiplier, rnd = rec[2].round_offset, s = rec[2].right_shift;
        const int8_t v0 = fb_requant_out(a1, m, rnd, s, clamp, lo, hi);
        const int8_t v1 = NP > 1 ? fb_requant_out(a3, m, rnd, s, clamp, lo, hi) : 0;
        const int8_t v2 = NP > 2 ? fb_requant_out(a5, m, rnd, s, clamp, lo, hi) : 0;
        out[lane + 2] = v0;
        if (NP > 1) out[out_step + lane + 2] = v1;
        if (NP > 2) out[2 * out_step + lane + 2] = v2;
    }
}

/* NP pixels S columns apart, all channels. */
static inline __attribute__((always_inline)) void three_pixels(const dw_job *job, const int8_t *x, int32_t ky0,
                                                               int32_t ky1, int8_t *out, int32_t out_step,
                                                               const int NP, const int S, const int offset,
                                                               const int clamp)
{
    for (int32_t g = 0; g < job->groups; ++g, x += 4, out += 4) {
        lane_pass(job, g, 0, x, ky0, ky1, out, out_step, NP, S, offset, clamp);
        lane_pass(job, g, 1, x, ky0, ky1, out, out_step, NP, S, offset, clamp);
    }
}

/* Floor division by d > 0. */
static inline int32_t div_floor(int32_t a, int32_t d)
{
    const int32_t q = a / d;
    return (a % d != 0 && a < 0) ? q - 1 : q;
}

/* Any one pixel: its valid taps, then the kernel for them. */
static inline __attribute__((always_inline)) void any_pixel(const fb_conv_params *cp, const fb_filter_dims *fd,
                                                            const fb_view *input, const dw_job *job, int32_t iy0,
                                                            int32_t ky0, int32_t ky1, int32_t ox, int8_t *out,
                                                            int32_t out_step, const int clamp, const int three)
{
    const int32_t ix0 = ox * cp->stride_w - cp->pad_left;
    int32_t kx0, kx1;
    fb_valid_taps(ix0, cp->dilation_w, fd->kw, input->full_w, &kx0, &kx1);
    if (ky0 >= ky1 || kx0 >= kx1) {           /* every tap in the padding */
        border_pixel(job, input->data, 0, 0, 0, 0, out, clamp);
        return;
    }
    const int8_t *x = fb_view_at(input, iy0 + ky0 * cp->dilation_h, ix0 + kx0 * cp->dilation_w);
    if (three && kx1 - kx0 == 3) {
        if (ky1 - ky0 == 3) {
            three_pixels(job, x, 0, 3, out, out_step, 1, 1, 0, clamp);
        } else {
            three_pixels(job, x, ky0, ky1, out, out_step, 1, 1, 1, clamp);
        }
    } else if (ky1 - ky0 < fd->kh || kx1 - kx0 < fd->kw) {
        border_pixel(job, x, ky0, ky1, kx0, kx1, out, clamp);
    } else {
        interior_pixel(job, x, out, clamp);
    }
}

/* The run of pixels [ox, ox_end) of a row, all inside the map horizontally,
 * filter rows [ky0, ky1) inside vertically (`offset`: not all three); x: the
 * input of pixel ox at tap (ky0, 0). Returns the first pixel not done. */
static inline __attribute__((always_inline)) int32_t run3(const dw_job *job, const int8_t *x, int32_t ky0,
                                                          int32_t ky1, int32_t ox, int32_t ox_end, int8_t **out,
                                                          int32_t out_step, const int S, const int offset,
                                                          const int clamp)
{
    /* three pixels at a time (two with the offset: its register is the 14th) */
    const int NP = !offset ? 3 : 2;
    for (; ox + NP <= ox_end; ox += NP, x += NP * S * job->tap_step, *out += NP * out_step) {
        three_pixels(job, x, ky0, ky1, *out, out_step, NP, S, offset, clamp);
    }
    return ox;
}

/* Row by row. A row's pixels whose columns all lie inside the map are a
 * contiguous run [in_lo, in_hi); with a 3x3 filter it goes a few pixels at a
 * time (run3), the rest one at a time. */
static inline __attribute__((always_inline)) void dw_rows(const fb_conv_params *cp, const fb_filter_dims *fd,
                                                          const fb_view *input, fb_view *output,
                                                          const dw_job *job, const int clamp)
{
    const int three = fd->kh == 3 && fd->kw == 3 && cp->dilation_w == 1;
    const int32_t x_lo = output->x0, x_hi = output->x0 + output->w, oc = output->c;
    /* ix0 = ox * stride - pad_left >= 0 and ix0 + (kw - 1) * dilation < full_w */
    int32_t in_lo = -div_floor(-cp->pad_left, cp->stride_w);
    int32_t in_hi = div_floor(input->full_w - 1 - (fd->kw - 1) * cp->dilation_w + cp->pad_left, cp->stride_w) + 1;
    in_lo = in_lo < x_lo ? x_lo : (in_lo > x_hi ? x_hi : in_lo);
    in_hi = in_hi > x_hi ? x_hi : (in_hi < in_lo ? in_lo : in_hi);
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        const int32_t iy0 = oy * cp->stride_h - cp->pad_top;
        int32_t ky0, ky1;
        fb_valid_taps(iy0, cp->dilation_h, fd->kh, input->full_h, &ky0, &ky1);
        int8_t *out = fb_view_at(output, oy, x_lo);
        int32_t ox = x_lo;
        if (three && ky0 < ky1) {
            for (; ox < in_lo; ++ox, out += oc) {
                any_pixel(cp, fd, input, job, iy0, ky0, ky1, ox, out, oc, clamp, three);
            }
            const int8_t *x = fb_view_at(input, iy0 + ky0 * cp->dilation_h, ox * cp->stride_w - cp->pad_left);
            if (ky1 - ky0 == 3) {
                ox = cp->stride_w == 1 ? run3(job, x, 0, 3, ox, in_hi, &out, oc, 1, 0, clamp)
                                       : cp->stride_w == 2 ? run3(job, x, 0, 3, ox, in_hi, &out, oc, 2, 0, clamp)
                                                           : ox;
            } else {
                ox = cp->stride_w == 1 ? run3(job, x, ky0, ky1, ox, in_hi, &out, oc, 1, 1, clamp)
                                       : cp->stride_w == 2 ? run3(job, x, ky0, ky1, ox, in_hi, &out, oc, 2, 1, clamp)
                                                           : ox;
            }
        }
        for (; ox < x_hi; ++ox, out += oc) {
            any_pixel(cp, fd, input, job, iy0, ky0, ky1, ox, out, oc, clamp, three);
        }
    }
}

fb_status fb_dw_conv_s8_dsp(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                            const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                            fb_view *output, const fb_scratch *scratch)
{
    const fb_status st = fb_dw_conv_check_args(p, q, input, fd, filter, output);
    if (st != FB_OK) {
        return st;
    }
    const fb_conv_params *cp = &p->conv;
    const void *tables = q->prepared;
    if (tables == NULL) {
        /* prepare the tables in scratch (whether or not the fast path applies) */
        if (!fb_scratch_ok(scratch, fb_dw_conv_s8_buffer_size(p, q, input, fd, output))) {
            return FB_ERR_SCRATCH;
        }
        const fb_status prep = fb_dw_conv_s8_prepare(p, q, fd, filter, bias, scratch->buf);
        if (prep != FB_OK) {
            return prep;
        }
        tables = scratch->buf;
    }
    const fb_prepared_header *header = fb_prepared_check(tables, FB_PREPARED_DW, fd);
    if (header == NULL) {
        return FB_ERR_ARG;
    }
    if (!header->fast) {
        return fb_dw_conv_s8_portable(p, q, input, fd, filter, bias, output, scratch);
    }
    const int32_t channels = fd->out_c;
    const fb_requant_rec *table = fb_prepared_records(tables);
    const int32_t *bias_full = (const int32_t *)(const void *)(table + channels);
    const uint32_t *weights = (const uint32_t *)(const void *)(bias_full + channels);
    const int32_t offset2 = (int32_t)(((uint32_t)cp->input_offset & 0xFFFFu) | ((uint32_t)cp->input_offset << 16));
    const dw_job job = { weights, table, bias_full, channels / 4, fd->kh * fd->kw, fd->kw,
                         channels, cp->dilation_w * input->c, cp->dilation_h * input->row_stride, offset2,
                         cp->act_min, cp->act_max };
    if (cp->act_min <= -128 && cp->act_max >= 127) {
        dw_rows(cp, fd, input, output, &job, FB_CLAMP_SSAT);
    } else {
        dw_rows(cp, fd, input, output, &job, FB_CLAMP_RANGE);
    }
    return FB_OK;
}

#endif /* FB_KERNELS_DSP */
