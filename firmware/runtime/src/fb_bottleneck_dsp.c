/* An inverted residual block (fb_bottleneck_s8) for cores with the DSP
 * extension: the same contract, scratch and bytes as fb_bottleneck_s8_portable
 * (fb_bottleneck.c), with channel_block 4.
 *
 * Each pass takes four expansion channels i..i+3, so that every load and
 * unpack feeds four channels:
 *   1. expansion: per input pixel, each word of four input channels is
 *      unpacked once (SXTB16, SXTB16 ROR 8) and feeds the four channels' filter
 *      rows, 2 SMLAD each; the four results are stored side by side, so the
 *      expanded rows hold one word of four channels per pixel;
 *   2. depthwise: per output pixel and tap, one word of the four channels
 *      (from those rows, or from the block input without an expansion),
 *      SMLABB/SMLATT as fb_dw_conv_dsp.c does; interior pixels start from the
 *      offset-folded bias, border pixels add the offset over their valid taps;
 *   3. projection: per band pixel the word of four depthwise values plus the
 *      input offset (SXTAB16) meets output channel o's four weights in 2 SMLAD:
 *      one load and store of the int32 accumulator per four MACs instead of
 *      per MAC, the main cost of the one-channel-at-a-time order.
 * The pass's filters are widened to int16 pairs (doubled for the expansion and
 * the depthwise, whose requantization takes twice the accumulator) into the
 * widened-filters part of scratch; their requantization records are made per
 * pass on the stack. After the last pass each band is requantized channel by
 * channel (one record per channel and band), then fb_add_s8 adds the block
 * input in place. Requantization is the single-rounding SMMLAR form of
 * fb_dsp.h. Blocks it does not take (channel_block 1; an expansion whose in_c
 * is not a multiple of 4; any channel whose record is not fast; clamps outside
 * int8) run the portable code, which gives the same bytes on the same scratch.
 */
#include "fb_arith.h"
#include "fb_bottleneck.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

/* as in fb_dw_conv_dsp.c: byte stores stay byte stores, loads stay where they are used */
#pragma GCC optimize("no-tree-slp-vectorize", "no-schedule-insns")

static inline uint32_t pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* The four channels of one pass: their widened filters (in scratch) and records. */
typedef struct {
    const uint32_t *w_project;     /* [out_c]: (w[o][i], w[o][i+2]), (w[o][i+1], w[o][i+3]) */
    const uint32_t *w_dw;          /* [kh*kw]: 2 * (c0, c2), 2 * (c1, c3) */
    const uint32_t *w_expand;      /* [in_c/4][4 channels]: 2 * (x0, x2), 2 * (x1, x3) taps */
    fb_requant_rec expand_rec[4], dw_rec[4];
    int32_t expand_start[4];       /* 2 * (bias + input_offset * sum of the filter row) */
    int32_t dw_start[4];           /* 2 * (bias + input_offset * sum of the channel's taps) */
} bn_pass;

/* The whole-call conditions of the fast path. Records do not depend on the
 * band, so checking every channel once here means every pass's records are fast. */
static int fast_ok(const fb_bottleneck_params *p)
{
    if (p->channel_block != 4 || (p->mid_c & 3) != 0) {
        return 0;
    }
    fb_requant_rec rec;
    const fb_conv_params *d = &p->dw.conv;
    if (p->has_expand) {
        const fb_conv_params *e = &p->expand;
        if ((p->in_c & 3) != 0 || !fb_act_range_ok(e->act_min, e->act_max)) {
            return 0;
        }
        const int32_t dot = fb_max_abs_dot(p->in_c, e->input_offset);
        for (int32_t c = 0; c < p->mid_c; ++c) {
            if (!fb_requant_record(p->expand_q.multiplier[c], p->expand_q.shift[c], e->output_offset,
                                   p->expand_bias != NULL ? p->expand_bias[c] : 0, dot, &rec)) {
                return 0;
            }
        }
    }
    /* the depthwise and projection inputs plus their offsets are int16 lanes */
    if (!fb_act_range_ok(d->act_min, d->act_max) || d->input_offset < -32000 || d->input_offset > 32000 ||
        !fb_act_range_ok(p->project.act_min, p->project.act_max) || p->project.input_offset < -32000 ||
        p->project.input_offset > 32000) {
        return 0;
    }
    const int32_t dw_dot = fb_max_abs_dot(p->kh * p->kw, d->input_offset);
    for (int32_t c = 0; c < p->mid_c; ++c) {
        if (!fb_requant_record(p->dw_q.multiplier[c], p->dw_q.shift[c], d->output_offset,
                               p->dw_bias != NULL ? p->dw_bias[c] : 0, dw_dot, &rec)) {
            return 0;
        }
    }
    const int32_t project_dot = fb_max_abs_dot(p->mid_c, p->project.input_offset);
    for (int32_t o = 0; o < p->out_c; ++o) {
        if (!fb_requant_record(p->project_q.multiplier[o], p->project_q.shift[o], p->project.output_offset,
                               p->project_bias != NULL ? p->project_bias[o] : 0, project_dot, &rec)) {
            return 0;
        }
    }
    return 1;
}

/* Widen channels i..i+3 of the three filters into `widened` and make their records. */
static void prepare_pass(const fb_bottleneck_params *p, int32_t i, uint32_t *widened, bn_pass *ps)
{
    const int32_t mid_c = p->mid_c, in_c = p->in_c, taps = p->kh * p->kw;
    uint32_t *wp = widened;
    for (int32_t o = 0; o < p->out_c; ++o, wp += 2) {
        const int8_t *f = p->project_filter + o * mid_c + i;
        wp[0] = pack16(f[0], f[2]);
        wp[1] = pack16(f[1], f[3]);
    }
    uint32_t *wd = wp;
    int32_t sum[4] = { 0, 0, 0, 0 };
    for (int32_t t = 0; t < taps; ++t, wd += 2) {
        const int8_t *f = p->dw_filter + t * mid_c + i;
        wd[0] = pack16(2 * f[0], 2 * f[2]);
        wd[1] = pack16(2 * f[1], 2 * f[3]);
        for (int32_t k = 0; k < 4; ++k) {
            sum[k] += f[k];
        }
    }
    const fb_conv_params *d = &p->dw.conv;
    const int32_t dw_dot = fb_max_abs_dot(taps, d->input_offset);
    for (int32_t k = 0; k < 4; ++k) {
        const int32_t bias = p->dw_bias != NULL ? p->dw_bias[i + k] : 0;
        (void)fb_requant_record(p->dw_q.multiplier[i + k], p->dw_q.shift[i + k], d->output_offset, bias, dw_dot,
                                &ps->dw_rec[k]);
        ps->dw_start[k] = 2 * (bias + d->input_offset * sum[k]);
    }
    ps->w_project = widened;
    ps->w_dw = wp;
    ps->w_expand = wd;
    if (!p->has_expand) {
        return;
    }
    uint32_t *we = wd;
    for (int32_t k = 0; k < 4; ++k) {
        sum[k] = 0;
    }
    for (int32_t g = 0; g < in_c / 4; ++g) {
        for (int32_t k = 0; k < 4; ++k, we += 2) {
            const int8_t *f = p->expand_filter + (i + k) * in_c + 4 * g;
            we[0] = pack16(2 * f[0], 2 * f[2]);
            we[1] = pack16(2 * f[1], 2 * f[3]);
            sum[k] += f[0] + f[1] + f[2] + f[3];
        }
    }
    const fb_conv_params *e = &p->expand;
    const int32_t dot = fb_max_abs_dot(in_c, e->input_offset);
    for (int32_t k = 0; k < 4; ++k) {
        const int32_t bias = p->expand_bias != NULL ? p->expand_bias[i + k] : 0;
        (void)fb_requant_record(p->expand_q.multiplier[i + k], p->expand_q.shift[i + k], e->output_offset, bias,
                                dot, &ps->expand_rec[k]);
        ps->expand_start[k] = 2 * (bias + e->input_offset * sum[k]);
    }
}

/* -- 1. expansion ---------------------------------------------------------------------- */

/* One 4-tap group of the input pixel (word xv) for the four channels. */
#define EXPAND_GROUP(w_ptr, xv)                                               \
    do {                                                                      \
        const int32_t x02_ = __sxtb16((int32_t)(xv));                         \
        const int32_t x13_ = fb_sxtb16_ror8(xv);                              \
        uint32_t wa_, wb_;                                                    \
        FB_LDRD_POSTINC(wa_, wb_, w_ptr);                                     \
        FB_SMLAD_ACC(a0, x02_, wa_);                                          \
        FB_SMLAD_ACC(a0, x13_, wb_);                                          \
        FB_LDRD_POSTINC(wa_, wb_, w_ptr);                                     \
        FB_SMLAD_ACC(a1, x02_, wa_);                                          \
        FB_SMLAD_ACC(a1, x13_, wb_);                                          \
        FB_LDRD_POSTINC(wa_, wb_, w_ptr);                                     \
        FB_SMLAD_ACC(a2, x02_, wa_);                                          \
        FB_SMLAD_ACC(a2, x13_, wb_);                                          \
        FB_LDRD_POSTINC(wa_, wb_, w_ptr);                                     \
        FB_SMLAD_ACC(a3, x02_, wa_);                                          \
        FB_SMLAD_ACC(a3, x13_, wb_);                                          \
    } while (0)

/* The pass's four expansion channels of n input pixels (in_c bytes each) into
 * dst (four bytes per pixel). `fixed_groups`: in_c / 4 when known at compile
 * time (unrolled), else 0. */
static inline __attribute__((always_inline)) void expand_pixels(const bn_pass *ps, const int8_t *src, int32_t n,
                                                                int32_t in_c, int8_t *dst, const int clamp,
                                                                int32_t lo, int32_t hi, const int fixed_groups)
{
    const int32_t groups = in_c / 4;
    for (int32_t x = 0; x < n; ++x, src += in_c, dst += 4) {
        int32_t a0 = ps->expand_start[0], a1 = ps->expand_start[1], a2 = ps->expand_start[2],
                a3 = ps->expand_start[3];
        const uint32_t *w = ps->w_expand;
        const int8_t *xp = src;
        if (fixed_groups) {
#pragma GCC unroll 4
            for (int32_t g = 0; g < fixed_groups; ++g) {
                const uint32_t xv = fb_load_u32(xp);
                xp += 4;
                EXPAND_GROUP(w, xv);
            }
        } else {
            for (int32_t g = 0; g < groups; ++g) {
                const uint32_t xv = fb_load_u32(xp);
                xp += 4;
                EXPAND_GROUP(w, xv);
            }
        }
        fb_requant_store4(dst, a0, a1, a2, a3, ps->expand_rec, clamp, lo, hi);
    }
}

static inline __attribute__((always_inline)) void expand_rows_clamped(const fb_bottleneck_params *p,
                                                                      const bn_pass *ps, const fb_view *input,
                                                                      int32_t row_lo, int32_t rows, int32_t col_lo,
                                                                      int32_t cols, int8_t *dst, const int clamp)
{
    const int32_t in_c = p->in_c, lo = p->expand.act_min, hi = p->expand.act_max;
    for (int32_t r = 0; r < rows; ++r, dst += 4 * cols) {
        const int8_t *src = input->data + (row_lo + r) * input->row_stride + col_lo * in_c;
        if (in_c == 8) {              /* MobileNetV2 w0.35's widest maps */
            expand_pixels(ps, src, cols, in_c, dst, clamp, lo, hi, 2);
        } else if (in_c == 16) {
            expand_pixels(ps, src, cols, in_c, dst, clamp, lo, hi, 4);
        } else {
            expand_pixels(ps, src, cols, in_c, dst, clamp, lo, hi, 0);
        }
    }
}

static void expand_rows(const fb_bottleneck_params *p, const bn_pass *ps, const fb_view *input, int32_t row_lo,
                        int32_t rows, int32_t col_lo, int32_t cols, int8_t *dst)
{
    if (p->expand.act_min <= -128 && p->expand.act_max >= 127) {
        expand_rows_clamped(p, ps, input, row_lo, rows, col_lo, cols, dst, FB_CLAMP_SSAT);
    } else {
        expand_rows_clamped(p, ps, input, row_lo, rows, col_lo, cols, dst, FB_CLAMP_RANGE);
    }
}

/* -- 2. depthwise ---------------------------------------------------------------------- */

/* Four channels of the map at element (y, x): base + (y - y0) * row + (x - x0) * px. */
typedef struct {
    const int8_t *base;
    int32_t y0, x0, px, row;
} bn_plane4;

/* acc += the four channels of one tap; x02/x13 are the unpacked input word. */
#define DW_MAC(w_ptr, x02, x13)                                               \
    do {                                                                      \
        uint32_t w02_, w13_;                                                  \
        FB_LDRD_POSTINC(w02_, w13_, w_ptr);                                   \
        a0 = __smlabb((x02), (int32_t)w02_, a0);                              \
        a2 = __smlatt((x02), (int32_t)w02_, a2);                              \
        a1 = __smlabb((x13), (int32_t)w13_, a1);                              \
        a3 = __smlatt((x13), (int32_t)w13_, a3);                              \
    } while (0)

#define DW_TAP(w_ptr, xword)                                                  \
    do {                                                                      \
        const uint32_t xv_ = (xword);                                         \
        const int32_t x02_ = __sxtb16((int32_t)xv_);                          \
        const int32_t x13_ = fb_sxtb16_ror8(xv_);                             \
        DW_MAC(w_ptr, x02_, x13_);                                            \
    } while (0)

#define DW_TAP_OFFSET(w_ptr, xword)                                           \
    do {                                                                      \
        const uint32_t xv_ = (xword);                                         \
        const int32_t x02_ = __sxtab16(offset2, (int32_t)xv_);               \
        const int32_t x13_ = fb_sxtab16_ror8(offset2, xv_);                   \
        DW_MAC(w_ptr, x02_, x13_);                                            \
    } while (0)

/* Depthwise channels i..i+3 of output rows [b0, b0 + nb) into dst (four bytes
 * per pixel). `three`: 3x3, dilation 1 (interior pixels fully unrolled). */
static inline __attribute__((always_inline)) void dw_band_clamped(const fb_bottleneck_params *p, const bn_pass *ps,
                                                                  const bn_plane4 *pl, int32_t in_h, int32_t in_w,
                                                                  int32_t b0, int32_t nb, int32_t out_w,
                                                                  int8_t *dst, const int clamp, const int three)
{
    const fb_conv_params *c = &p->dw.conv;
    const int32_t kh = p->kh, kw = p->kw;
    const int32_t lo = c->act_min, hi = c->act_max;
    const int32_t tap_step = c->dilation_w * pl->px, row_step = c->dilation_h * pl->row;
    const int32_t offset2 = (int32_t)pack16(c->input_offset, c->input_offset);
    const fb_requant_rec *rec = ps->dw_rec;
    for (int32_t oy = b0; oy < b0 + nb; ++oy) {
        const int32_t iy0 = oy * c->stride_h - c->pad_top;
        int32_t ky0, ky1;
        fb_valid_taps(iy0, c->dilation_h, kh, in_h, &ky0, &ky1);
        for (int32_t ox = 0; ox < out_w; ++ox, dst += 4) {
            const int32_t ix0 = ox * c->stride_w - c->pad_left;
            int32_t kx0, kx1;
            fb_valid_taps(ix0, c->dilation_w, kw, in_w, &kx0, &kx1);
            if (ky0 >= ky1 || kx0 >= kx1) {               /* every tap in the padding */
                fb_requant_store4(dst, rec[0].bias2, rec[1].bias2, rec[2].bias2, rec[3].bias2, rec, clamp, lo, hi);
                continue;
            }
            const int8_t *x = pl->base + (iy0 + ky0 * c->dilation_h - pl->y0) * pl->row +
                              (ix0 + kx0 * c->dilation_w - pl->x0) * pl->px;
            if (ky1 - ky0 < kh || kx1 - kx0 < kw) {
                /* border: bias plus the valid taps with their offset */
                int32_t a0 = rec[0].bias2, a1 = rec[1].bias2, a2 = rec[2].bias2, a3 = rec[3].bias2;
                for (int32_t ky = ky0; ky < ky1; ++ky, x += row_step) {
                    const uint32_t *w = ps->w_dw + 2 * (ky * kw + kx0);
                    const int8_t *xt = x;
                    for (int32_t kx = kx0; kx < kx1; ++kx, xt += tap_step) {
                        DW_TAP_OFFSET(w, fb_load_u32(xt));
                    }
                }
                fb_requant_store4(dst, a0, a1, a2, a3, rec, clamp, lo, hi);
                continue;
            }
            int32_t a0 = ps->dw_start[0], a1 = ps->dw_start[1], a2 = ps->dw_start[2], a3 = ps->dw_start[3];
            const uint32_t *w = ps->w_dw;
            if (three) {
                DW_TAP(w, fb_load_u32(x));
                DW_TAP(w, fb_load_u32(x + tap_step));
                DW_TAP(w, fb_load_u32(x + 2 * tap_step));
                x += row_step;
                DW_TAP(w, fb_load_u32(x));
                DW_TAP(w, fb_load_u32(x + tap_step));
                DW_TAP(w, fb_load_u32(x + 2 * tap_step));
                x += row_step;
                DW_TAP(w, fb_load_u32(x));
                DW_TAP(w, fb_load_u32(x + tap_step));
                DW_TAP(w, fb_load_u32(x + 2 * tap_step));
            } else {
                for (int32_t ky = 0; ky < kh; ++ky, x += row_step) {
                    const int8_t *xt = x;
                    for (int32_t kx = 0; kx < kw; ++kx, xt += tap_step) {
                        DW_TAP(w, fb_load_u32(xt));
                    }
                }
            }
            fb_requant_store4(dst, a0, a1, a2, a3, rec, clamp, lo, hi);
        }
    }
}

static void dw_band(const fb_bottleneck_params *p, const bn_pass *ps, const bn_plane4 *pl, int32_t in_h,
                    int32_t in_w, int32_t b0, int32_t nb, int32_t out_w, int8_t *dst)
{
    const fb_conv_params *c = &p->dw.conv;
    const int ssat = c->act_min <= -128 && c->act_max >= 127;
    const int three = p->kh == 3 && p->kw == 3 && c->dilation_w == 1;
    if (ssat) {
        if (three) dw_band_clamped(p, ps, pl, in_h, in_w, b0, nb, out_w, dst, FB_CLAMP_SSAT, 1);
        else dw_band_clamped(p, ps, pl, in_h, in_w, b0, nb, out_w, dst, FB_CLAMP_SSAT, 0);
    } else {
        if (three) dw_band_clamped(p, ps, pl, in_h, in_w, b0, nb, out_w, dst, FB_CLAMP_RANGE, 1);
        else dw_band_clamped(p, ps, pl, in_h, in_w, b0, nb, out_w, dst, FB_CLAMP_RANGE, 0);
    }
}

/* -- 3. projection --------------------------------------------------------------------- */

/* acc[px][o] += sum_k (dw_k(px) + offset) * w[o][i + k] over the band's pixels. */
static void project_pass(const bn_pass *ps, int32_t out_c, int32_t input_offset, const int8_t *dw, int32_t pixels,
                         int32_t *acc)
{
    const int32_t offset2 = (int32_t)pack16(input_offset, input_offset);
    const int32_t pairs = out_c >> 1;
    for (int32_t px = 0; px < pixels; ++px, dw += 4, acc += out_c) {
        const uint32_t xv = fb_load_u32(dw);
        const int32_t v02 = __sxtab16(offset2, (int32_t)xv);
        const int32_t v13 = fb_sxtab16_ror8(offset2, xv);
        if ((v02 | v13) == 0) {
            continue;       /* all four at the zero point (common after ReLU): adds nothing */
        }
        const uint32_t *w = ps->w_project;
        int32_t *a = acc;
        for (int32_t o = 0; o < pairs; ++o, a += 2) {
            int32_t s0 = a[0], s1 = a[1];
            FB_LDM4_REGS(w0a, w0b, w1a, w1b);
            FB_LDM4_POSTINC(w, w0a, w0b, w1a, w1b);
            FB_SMLAD_ACC(s0, v02, w0a);
            FB_SMLAD_ACC(s0, v13, w0b);
            FB_SMLAD_ACC(s1, v02, w1a);
            FB_SMLAD_ACC(s1, v13, w1b);
            a[0] = s0;
            a[1] = s1;
        }
        if (out_c & 1) {
            int32_t s0 = a[0];
            FB_SMLAD_ACC(s0, v02, w[0]);
            FB_SMLAD_ACC(s0, v13, w[1]);
            a[0] = s0;
        }
    }
}

/* -- the band's output ------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void write_channel(int8_t *out, int32_t out_rows, int32_t row_stride,
                                                                int32_t out_w, int32_t out_c, const int32_t *acc,
                                                                const fb_requant_rec *rec, const int clamp,
                                                                int32_t lo, int32_t hi)
{
    const int32_t m = rec->multiplier, r = rec->round_offset, s = rec->right_shift;
    for (int32_t y = 0; y < out_rows; ++y, out += row_stride) {
        int8_t *o = out;
        for (int32_t x = 0; x < out_w; ++x, o += out_c, acc += out_c) {
            *o = fb_requant_out((int32_t)((uint32_t)*acc << 1), m, r, s, clamp, lo, hi);
        }
    }
}

/* Rows [b0, b0 + nb) of the output from their accumulators, channel by
 * channel (one record per channel and band, none kept), then the residual. */
static fb_status write_band(const fb_bottleneck_params *p, const fb_view *input, fb_view *output, int32_t b0,
                            int32_t nb, const int32_t *acc)
{
    const fb_conv_params *c = &p->project;
    const int32_t out_c = p->out_c, out_w = output->w;
    const int32_t dot = fb_max_abs_dot(p->mid_c, c->input_offset);
    const int ssat = c->act_min <= -128 && c->act_max >= 127;
    int8_t *out = output->data + b0 * output->row_stride;
    for (int32_t o = 0; o < out_c; ++o) {
        fb_requant_rec rec;
        (void)fb_requant_record(p->project_q.multiplier[o], p->project_q.shift[o], c->output_offset,
                                p->project_bias != NULL ? p->project_bias[o] : 0, dot, &rec);
        if (ssat) {
            write_channel(out + o, nb, output->row_stride, out_w, out_c, acc + o, &rec, FB_CLAMP_SSAT, -128, 127);
        } else {
            write_channel(out + o, nb, output->row_stride, out_w, out_c, acc + o, &rec, FB_CLAMP_RANGE, c->act_min,
                          c->act_max);
        }
    }
    if (!p->has_residual) {
        return FB_OK;
    }
    /* ADD(block input, projection output) over the band, in place: the same
     * kernel (and bytes) as the layer-by-layer ADD; it reads each element
     * before it writes it */
    const fb_view a = { input->data + b0 * input->row_stride, b0, 0, nb, input->w, input->c, input->row_stride,
                        input->h, input->w };
    fb_view b = { out, b0, 0, nb, out_w, out_c, output->row_stride, output->h, output->w };
    return fb_add_s8(&p->add, &a, &b, &b);
}

fb_status fb_bottleneck_s8_dsp(const fb_bottleneck_params *p, const fb_view *input, fb_view *output,
                               const fb_scratch *scratch)
{
    fb_bottleneck_layout lay;
    const fb_status st = fb_bottleneck_begin(p, input, output, scratch, &lay);
    if (st != FB_OK) {
        return st;
    }
    if (!fast_ok(p)) {
        return fb_bottleneck_s8_portable(p, input, output, scratch);
    }
    const fb_conv_params *d = &p->dw.conv;
    const int32_t in_h = input->h, in_w = input->w, out_h = output->h, out_w = output->w;
    const int32_t out_c = p->out_c;
    int32_t *acc = lay.acc;
    /* the depthwise reads the pass's expanded rows, or the block input's channels i..i+3 */
    bn_plane4 pl = { lay.expanded, 0, lay.col_lo, 4, 4 * lay.cols };
    if (!p->has_expand) {
        pl.x0 = 0;
        pl.px = input->c;
        pl.row = input->row_stride;
    }
    for (int32_t b0 = 0; b0 < out_h; b0 += p->band_rows) {
        const int32_t nb = out_h - b0 < p->band_rows ? out_h - b0 : p->band_rows;
        const int32_t pixels = nb * out_w;
        fb_bottleneck_band_start(p, acc, pixels);
        int32_t row_lo, rows;
        fb_bottleneck_read_range(b0, nb, d->stride_h, d->pad_top, p->kh, d->dilation_h, in_h, &row_lo, &rows);
        pl.y0 = p->has_expand ? row_lo : 0;
        for (int32_t i = 0; i < p->mid_c; i += 4) {
            bn_pass ps;
            prepare_pass(p, i, lay.widened, &ps);
            if (p->has_expand) {
                if (rows > 0 && lay.cols > 0) {
                    expand_rows(p, &ps, input, row_lo, rows, lay.col_lo, lay.cols, lay.expanded);
                }
            } else {
                pl.base = input->data + i;
            }
            dw_band(p, &ps, &pl, in_h, in_w, b0, nb, out_w, lay.dw);
            project_pass(&ps, out_c, p->project.input_offset, lay.dw, pixels, acc);
        }
        const fb_status wst = write_band(p, input, output, b0, nb, acc);
        if (wst != FB_OK) {
            return wst;
        }
    }
    return FB_OK;
}

#endif /* FB_KERNELS_DSP */
