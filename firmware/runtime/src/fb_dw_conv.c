/* DEPTHWISE_CONV_2D int8 with per-channel requantization (LiteRT reference
 * DepthwiseConvPerChannel). Output channel oc = ic * M + m reads input channel ic.
 *
 * Per output pixel and channel (four channels at a time with depth multiplier
 * 1) the accumulators stay in registers while the pixel's valid taps are
 * visited: the kernel needs no scratch. Also here: the
 * tables of the optimized kernel (fb_dw_conv_dsp.c), prepared in every build. */
#include "fb_arith.h"
#include "fb_dsp.h"

static int fb_dw_dims_ok(const fb_filter_dims *fd)
{
    return fd != NULL && fd->out_c > 0 && fd->kh > 0 && fd->kw > 0 && fd->in_c == 1;
}

/* The optimized kernel's tables (layout in fb_dsp.h): header, per-channel
 * requantization records (16 bytes), offset-folded biases (4) and the filter
 * widened to int16 (2 per tap), per channel. */
int32_t fb_dw_conv_s8_prepared_size(const fb_filter_dims *fd)
{
    if (!fb_dw_dims_ok(fd)) {
        return 0;
    }
    return FB_PREPARED_HEADER_BYTES + fd->out_c * (20 + 2 * fd->kh * fd->kw);
}

/* The portable kernel needs no scratch; the optimized one only for the tables
 * when they are not prepared (it builds them in scratch). */
int32_t fb_dw_conv_s8_buffer_size(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                                  const fb_filter_dims *fd, const fb_view *output)
{
    (void)p;
    (void)input;
    (void)output;
    if (q == NULL || !fb_dw_dims_ok(fd)) {
        return 0;
    }
#if FB_KERNELS_DSP
    return q->prepared == NULL ? fb_dw_conv_s8_prepared_size(fd) : 0;
#else
    return 0;
#endif
}

fb_status fb_dw_conv_s8_prepare(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_filter_dims *fd,
                                const int8_t *filter, const int32_t *bias, void *tables)
{
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || !fb_dw_dims_ok(fd) ||
        filter == NULL || tables == NULL || !fb_aligned4(tables)) {
        return FB_ERR_ARG;
    }
    const fb_conv_params *cp = &p->conv;
    const int32_t channels = fd->out_c;
    const int32_t taps = fd->kh * fd->kw;
    fb_prepared_header *header = (fb_prepared_header *)tables;
    header->tag = FB_PREPARED_DW;
    header->fast = 0;
    header->out_c = channels;
    header->taps = taps;
    /* x + input_offset must stay an int16 lane; channel groups of four only;
     * clamping inside int8 only */
    if (p->depth_multiplier != 1 || (channels & 3) != 0 || cp->input_offset < -32000 ||
        cp->input_offset > 32000 || !fb_act_range_ok(cp->act_min, cp->act_max)) {
        return FB_OK;
    }
    fb_requant_rec *table = (fb_requant_rec *)(void *)((int8_t *)tables + FB_PREPARED_HEADER_BYTES);
    if (!fb_requant_table(q, bias, channels, cp->output_offset, fb_max_abs_dot(taps, cp->input_offset), table)) {
        return FB_OK;
    }
    int32_t *bias_full = (int32_t *)(void *)(table + channels);
    int16_t *weights = (int16_t *)(void *)(bias_full + channels);
    /* widen the filter: group g, lane 0, tap t -> (c0, c2) of channels 4g..;
     * lane 1 -> (c1, c3) */
    for (int32_t g = 0; g < channels / 4; ++g) {
        int32_t sum[4] = { 0, 0, 0, 0 };
        for (int32_t t = 0; t < taps; ++t) {
            const int8_t *f = filter + t * channels + 4 * g;
            int16_t *lane0 = weights + 2 * (2 * g * taps + t);
            int16_t *lane1 = lane0 + 2 * taps;
            lane0[0] = (int16_t)(2 * f[0]);     /* doubled: the accumulators come out 2x */
            lane0[1] = (int16_t)(2 * f[2]);
            lane1[0] = (int16_t)(2 * f[1]);
            lane1[1] = (int16_t)(2 * f[3]);
            for (int32_t i = 0; i < 4; ++i) {
                sum[i] += f[i];
            }
        }
        for (int32_t i = 0; i < 4; ++i) {
            /* |bias| + |offset * sum| < 2^30: fb_requant_table checked that bound */
            bias_full[4 * g + i] = table[4 * g + i].bias2 + 2 * cp->input_offset * sum[i];
        }
    }
    header->fast = 1;
    return FB_OK;
}

/* Where a pixel's taps lie: x and f point at the first valid tap's input and
 * filter (channel 0), nky x nkx valid taps; x steps x_step along a filter row
 * and y_step between rows, f steps f_step and f_row. */
typedef struct {
    const int8_t *x, *f;
    int32_t nky, nkx, x_step, y_step, f_step, f_row, offset;
} dw_taps;

/* Sum of f * (x + offset) over the taps for channel (input ic, output oc). */
static int32_t tap_sum(const dw_taps *t, int32_t ic, int32_t oc)
{
    int32_t acc = 0;
    const int8_t *x = t->x + ic;
    const int8_t *f = t->f + oc;
    for (int32_t ky = 0; ky < t->nky; ++ky, x += t->y_step, f += t->f_row) {
        const int8_t *xt = x;
        const int8_t *ft = f;
        for (int32_t kx = 0; kx < t->nkx; ++kx, xt += t->x_step, ft += t->f_step) {
            acc += (int32_t)*ft * ((int32_t)*xt + t->offset);
        }
    }
    return acc;
}

/* The same for four consecutive channels c.. of depth multiplier 1, with the
 * accumulators in registers (acc[] holds the biases on entry). */
static void tap_sum4(const dw_taps *t, int32_t c, int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int32_t offset = t->offset;
    const int8_t *x = t->x + c;
    const int8_t *f = t->f + c;
    for (int32_t ky = 0; ky < t->nky; ++ky, x += t->y_step, f += t->f_row) {
        const int8_t *xt = x;
        const int8_t *ft = f;
        for (int32_t kx = 0; kx < t->nkx; ++kx, xt += t->x_step, ft += t->f_step) {
            a0 += (int32_t)ft[0] * ((int32_t)xt[0] + offset);
            a1 += (int32_t)ft[1] * ((int32_t)xt[1] + offset);
            a2 += (int32_t)ft[2] * ((int32_t)xt[2] + offset);
            a3 += (int32_t)ft[3] * ((int32_t)xt[3] + offset);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

static inline int8_t dw_output(const fb_conv_params *cp, const fb_channel_quant *q, int32_t oc, int32_t acc)
{
    const int32_t out = fb_mbqm(acc, q->multiplier[oc], q->shift[oc]) + cp->output_offset;
    return (int8_t)fb_clamp(out, cp->act_min, cp->act_max);
}

fb_status fb_dw_conv_s8_portable(const fb_dw_conv_params *p, const fb_channel_quant *q,
                                 const fb_view *input, const fb_filter_dims *fd, const int8_t *filter,
                                 const int32_t *bias, fb_view *output, const fb_scratch *scratch)
{
    (void)scratch;              /* none needed */
    const fb_status st = fb_dw_conv_check_args(p, q, input, fd, filter, output);
    if (st != FB_OK) {
        return st;
    }
    const fb_conv_params *cp = &p->conv;
    const int32_t mult = p->depth_multiplier;
    const int32_t out_c = fd->out_c;
    dw_taps t = { NULL, NULL, 0, 0, cp->dilation_w * input->c, cp->dilation_h * input->row_stride, out_c,
                  fd->kw * out_c, cp->input_offset };
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        const int32_t iy0 = oy * cp->stride_h - cp->pad_top;
        int32_t ky_start, ky_end;
        fb_valid_taps(iy0, cp->dilation_h, fd->kh, input->full_h, &ky_start, &ky_end);
        int8_t *out_px = fb_view_at(output, oy, output->x0);
        for (int32_t ox = output->x0; ox < output->x0 + output->w; ++ox, out_px += out_c) {
            const int32_t ix0 = ox * cp->stride_w - cp->pad_left;
            int32_t kx_start, kx_end;
            fb_valid_taps(ix0, cp->dilation_w, fd->kw, input->full_w, &kx_start, &kx_end);
            t.nky = ky_end - ky_start;
            t.nkx = kx_end - kx_start;
            if (t.nky > 0 && t.nkx > 0) {     /* else every tap is padding: no taps */
                t.x = fb_view_at(input, iy0 + ky_start * cp->dilation_h, ix0 + kx_start * cp->dilation_w);
                t.f = filter + (ky_start * fd->kw + kx_start) * out_c;
            } else {
                t.nky = 0;
            }
            int32_t oc = 0;
            if (mult == 1) {
                for (; oc + 4 <= out_c; oc += 4) {
                    int32_t acc[4] = { 0, 0, 0, 0 };
                    if (bias != NULL) {
                        acc[0] = bias[oc];
                        acc[1] = bias[oc + 1];
                        acc[2] = bias[oc + 2];
                        acc[3] = bias[oc + 3];
                    }
                    tap_sum4(&t, oc, acc);
                    for (int32_t i = 0; i < 4; ++i) {
                        out_px[oc + i] = dw_output(cp, q, oc + i, acc[i]);
                    }
                }
            }
            /* output channel oc = ic * M + m reads input channel ic */
            for (; oc < out_c; ++oc) {
                const int32_t acc = (bias != NULL ? bias[oc] : 0) + tap_sum(&t, oc / mult, oc);
                out_px[oc] = dw_output(cp, q, oc, acc);
            }
        }
    }
    return FB_OK;
}

fb_status fb_dw_conv_s8(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                        const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                        fb_view *output, const fb_scratch *scratch)
{
#if FB_KERNELS_DSP
    return fb_dw_conv_s8_dsp(p, q, input, fd, filter, bias, output, scratch);
#else
    return fb_dw_conv_s8_portable(p, q, input, fd, filter, bias, output, scratch);
#endif
}
