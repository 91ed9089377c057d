/* DEPTHWISE_CONV_2D int8 (depth multiplier 1) for cores with the DSP
 * extension: the same contract and bytes as fb_dw_conv_s8_portable.
 *
 * Channels go four at a time. The filter is widened (in the layer's prepared
 * tables, fb_dw_conv_s8_prepare() in fb_dw_conv.c), doubled (the
 * requantization takes twice the accumulator, fb_requant_apply2), as int16
 * pairs in the order SXTB16 unpacks a word of input, (c0, c2) and (c1, c3),
 * grouped by channel quadruple and then by tap, so that one LDRD with
 * post-increment fetches a tap's four weights. Per tap the input word of
 * four channels is unpacked by SXTB16 (bytes 0, 2) and SXTB16 ROR 8 (bytes 1,
 * 3) and SMLABB/SMLATT accumulate the four products: 8 instructions per 4 MACs.
 * Pixels whose taps all lie inside the map start from bias + input_offset *
 * (sum of the channel's weights), so their taps need no offset; pixels at the
 * border add the offset with SXTAB16 over their valid taps only.
 * Requantization is the single-rounding SMMLAR form of fb_dsp.h from
 * per-channel records. Records, offset-folded biases and widened weights are
 * the prepared tables: in flash when the caller passes them
 * (fb_channel_quant.prepared), else prepared in scratch on every call. Channel
 * counts that are not a multiple of 4 and depth multipliers other than 1 take
 * the portable code.
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
    const uint32_t *weights;       /* [C/4][kh*kw][2] int16 pairs, 4-byte aligned (LDRD) */
    const fb_requant_rec *table;   /* C records */
    const int32_t *bias_full;      /* C: 2 * (bias + input_offset * sum of the channel's weights) */
    int32_t groups, taps, kw, channels, tap_step, row_step, offset2, act_min, act_max;
} dw_job;

/* Requantize and store four channels' accumulators. */
static inline __attribute__((always_inline)) void store_four(int8_t *out, int32_t a0, int32_t a1, int32_t a2,
                                                             int32_t a3, const fb_requant_rec *rec,
                                                             const int clamp, int32_t lo, int32_t hi)
{
    const int8_t v0 = fb_requant_out(a0, rec[0].multiplier, rec[0].round_offset, rec[0].right_shift, clamp, lo, hi);
    const int8_t v1 = fb_requant_out(a1, rec[1].multiplier, rec[1].round_offset, rec[1].right_shift, clamp, lo, hi);
    const int8_t v2 = fb_requant_out(a2, rec[2].multiplier, rec[2].round_offset, rec[2].right_shift, clamp, lo, hi);
    const int8_t v3 = fb_requant_out(a3, rec[3].multiplier, rec[3].round_offset, rec[3].right_shift, clamp, lo, hi);
    out[0] = v0;
    out[1] = v1;
    out[2] = v2;
    out[3] = v3;
}

/* acc += four channels of one tap; x02/x13 are the unpacked input word. */
#define DW_MAC(w_ptr, x02, x13)                                               \
    do {                                                                      \
        uint32_t w02_, w13_;                                                  \
        FB_LDRD_POSTINC(w02_, w13_, w_ptr);                                   \
        a0 = __smlabb((x02), (int32_t)w02_, a0);                              \
        a2 = __smlatt((x02), (int32_t)w02_, a2);                              \
        a1 = __smlabb((x13), (int32_t)w13_, a1);                              \
        a3 = __smlatt((x13), (int32_t)w13_, a3);                              \
    } while (0)

/* Input word without offset (interior pixels). */
#define DW_TAP(w_ptr, xword)                                                  \
    do {                                                                      \
        const uint32_t xv_ = (xword);                                         \
        const int32_t x02_ = __sxtb16((int32_t)xv_);                          \
        const int32_t x13_ = fb_sxtb16_ror8(xv_);                             \
        DW_MAC(w_ptr, x02_, x13_);                                            \
    } while (0)

/* Input word plus the input offset (border pixels). */
#define DW_TAP_OFFSET(w_ptr, xword)                                           \
    do {                                                                      \
        const uint32_t xv_ = (xword);                                         \
        const int32_t x02_ = __sxtab16(offset2, (int32_t)xv_);               \
        const int32_t x13_ = fb_sxtab16_ror8(offset2, xv_);                   \
        DW_MAC(w_ptr, x02_, x13_);                                            \
    } while (0)

/* A pixel whose kh x kw taps all lie inside the map; x: input of tap (0, 0).
 * `three`: a 3x3 filter with dilation 1, fully unrolled. */
static inline __attribute__((always_inline)) void interior_pixel(const dw_job *job, const int8_t *x, int8_t *out,
                                                                 const int clamp, const int three)
{
    const uint32_t *w = job->weights;
    const fb_requant_rec *rec = job->table;
    const int32_t *bias = job->bias_full;
    const int32_t c1 = job->tap_step, c2 = 2 * job->tap_step;
    for (int32_t g = 0; g < job->groups; ++g, rec += 4, bias += 4, x += 4, out += 4) {
        int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
        const int8_t *xr = x;
        if (three) {
            const int32_t row = job->row_step;
            DW_TAP(w, fb_load_u32(xr));
            DW_TAP(w, fb_load_u32(xr + c1));
            DW_TAP(w, fb_load_u32(xr + c2));
            xr += row;
            DW_TAP(w, fb_load_u32(xr));
            DW_TAP(w, fb_load_u32(xr + c1));
            DW_TAP(w, fb_load_u32(xr + c2));
            xr += row;
            DW_TAP(w, fb_load_u32(xr));
            DW_TAP(w, fb_load_u32(xr + c1));
            DW_TAP(w, fb_load_u32(xr + c2));
        } else {
            const int32_t kh = job->taps / job->kw;
            for (int32_t r = 0; r < kh; ++r) {
                const int8_t *xt = xr;
                for (int32_t t = 0; t < job->kw; ++t) {
                    DW_TAP(w, fb_load_u32(xt));
                    xt += c1;
                }
                xr += job->row_step;
            }
        }
        store_four(out, a0, a1, a2, a3, rec, clamp, job->act_min, job->act_max);
    }
}

/* A pixel with taps ky in [ky0, ky1), kx in [kx0, kx1) inside the map (maybe
 * none); x: input of tap (ky0, kx0). */
static inline __attribute__((always_inline)) void border_pixel(const dw_job *job, const int8_t *x, int32_t ky0,
                                                               int32_t ky1, int32_t kx0, int32_t kx1, int8_t *out,
                                                               const int clamp)
{
    const int32_t offset2 = job->offset2;
    const fb_requant_rec *rec = job->table;
    for (int32_t g = 0; g < job->groups; ++g, rec += 4, x += 4, out += 4) {
        int32_t a0 = rec[0].bias2, a1 = rec[1].bias2, a2 = rec[2].bias2, a3 = rec[3].bias2;
        const int8_t *xr = x;
        for (int32_t ky = ky0; ky < ky1; ++ky) {
            const uint32_t *w = job->weights + 2 * (g * job->taps + ky * job->kw + kx0);
            const int8_t *xt = xr;
            for (int32_t kx = kx0; kx < kx1; ++kx) {
                DW_TAP_OFFSET(w, fb_load_u32(xt));
                xt += job->tap_step;
            }
            xr += job->row_step;
        }
        store_four(out, a0, a1, a2, a3, rec, clamp, job->act_min, job->act_max);
    }
}

static inline __attribute__((always_inline)) void dw_rows(const fb_conv_params *cp, const fb_filter_dims *fd,
                                                          const fb_view *input, fb_view *output,
                                                          const dw_job *job, const int clamp)
{
    const int three = fd->kh == 3 && fd->kw == 3 && cp->dilation_w == 1;
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        const int32_t iy0 = oy * cp->stride_h - cp->pad_top;
        int32_t ky0, ky1;
        fb_valid_taps(iy0, cp->dilation_h, fd->kh, input->full_h, &ky0, &ky1);
        int8_t *out = fb_view_at(output, oy, output->x0);
        for (int32_t ox = output->x0; ox < output->x0 + output->w; ++ox, out += output->c) {
            const int32_t ix0 = ox * cp->stride_w - cp->pad_left;
            int32_t kx0, kx1;
            fb_valid_taps(ix0, cp->dilation_w, fd->kw, input->full_w, &kx0, &kx1);
            if (ky0 >= ky1 || kx0 >= kx1) {           /* every tap in the padding */
                border_pixel(job, input->data, 0, 0, 0, 0, out, clamp);
                continue;
            }
            const int8_t *x = fb_view_at(input, iy0 + ky0 * cp->dilation_h, ix0 + kx0 * cp->dilation_w);
            if (ky1 - ky0 < fd->kh || kx1 - kx0 < fd->kw) {
                border_pixel(job, x, ky0, ky1, kx0, kx1, out, clamp);
            } else if (three) {
                interior_pixel(job, x, out, clamp, 1);
            } else {
                interior_pixel(job, x, out, clamp, 0);
            }
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
    const int32_t channels = fd->out_c;
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
