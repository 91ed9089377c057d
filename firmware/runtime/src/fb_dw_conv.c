/* DEPTHWISE_CONV_2D int8 with per-channel requantization (LiteRT reference
 * DepthwiseConvPerChannel). Output channel oc = ic * M + m reads input channel ic.
 *
 * Per output pixel, the int32 accumulators of all output channels live in
 * scratch and each tap adds one contiguous filter row: input and filter are both
 * read sequentially (NHWC), which is what a later SIMD version wants too. */
#include "fb_arith.h"
#include "fb_dsp.h"

/* The optimized kernel's needs (fb_dw_conv_dsp.c): per-channel requantization
 * records (16 bytes), offset-folded biases (4) and the filter widened to int16
 * (2 per tap), per channel; the portable kernel uses the first 4 bytes per
 * channel for its accumulators. Independent of the build. */
int32_t fb_dw_conv_s8_buffer_size(const fb_filter_dims *fd, const fb_view *input, const fb_view *output)
{
    (void)input;
    (void)output;
    if (fd == NULL || fd->out_c <= 0 || fd->kh <= 0 || fd->kw <= 0) {
        return 0;
    }
    return fd->out_c * (20 + 2 * fd->kh * fd->kw);
}

/* acc[ic*M + m] += f[ic*M + m] * (x[ic] + offset) for one tap. */
static void accumulate_tap(int32_t *acc, const int8_t *x, const int8_t *f, int32_t channels,
                           int32_t depth_multiplier, int32_t input_offset)
{
    if (depth_multiplier == 1) {
        int32_t c = 0;
        for (; c + 2 <= channels; c += 2) {
            acc[c] += (int32_t)f[c] * ((int32_t)x[c] + input_offset);
            acc[c + 1] += (int32_t)f[c + 1] * ((int32_t)x[c + 1] + input_offset);
        }
        for (; c < channels; ++c) {
            acc[c] += (int32_t)f[c] * ((int32_t)x[c] + input_offset);
        }
        return;
    }
    for (int32_t ic = 0; ic < channels; ++ic) {
        const int32_t xv = (int32_t)x[ic] + input_offset;
        for (int32_t m = 0; m < depth_multiplier; ++m) {
            acc[ic * depth_multiplier + m] += (int32_t)f[ic * depth_multiplier + m] * xv;
        }
    }
}

fb_status fb_dw_conv_s8_portable(const fb_dw_conv_params *p, const fb_channel_quant *q,
                                 const fb_view *input, const fb_filter_dims *fd, const int8_t *filter,
                                 const int32_t *bias, fb_view *output, int8_t *scratch)
{
    const fb_status st = fb_dw_conv_check_args(p, q, input, fd, filter, output);
    if (st != FB_OK) {
        return st;
    }
    const fb_conv_params *cp = &p->conv;
    const int32_t mult = p->depth_multiplier;
    if (scratch == NULL || !fb_aligned4(scratch)) {
        return FB_ERR_SCRATCH;
    }

    int32_t *acc = (int32_t *)(void *)scratch;
    const int32_t out_c = fd->out_c;
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        const int32_t iy0 = oy * cp->stride_h - cp->pad_top;
        int32_t ky_start, ky_end;
        fb_valid_taps(iy0, cp->dilation_h, fd->kh, input->full_h, &ky_start, &ky_end);
        int8_t *out_px = fb_view_at(output, oy, output->x0);
        for (int32_t ox = output->x0; ox < output->x0 + output->w; ++ox) {
            const int32_t ix0 = ox * cp->stride_w - cp->pad_left;
            int32_t kx_start, kx_end;
            fb_valid_taps(ix0, cp->dilation_w, fd->kw, input->full_w, &kx_start, &kx_end);
            for (int32_t oc = 0; oc < out_c; ++oc) {
                acc[oc] = bias != NULL ? bias[oc] : 0;
            }
            for (int32_t ky = ky_start; ky < ky_end; ++ky) {
                const int32_t iy = iy0 + ky * cp->dilation_h;
                for (int32_t kx = kx_start; kx < kx_end; ++kx) {
                    const int8_t *x = fb_view_at(input, iy, ix0 + kx * cp->dilation_w);
                    const int8_t *f = filter + (ky * fd->kw + kx) * out_c;
                    accumulate_tap(acc, x, f, input->c, mult, cp->input_offset);
                }
            }
            for (int32_t oc = 0; oc < out_c; ++oc) {
                int32_t out = fb_mbqm(acc[oc], q->multiplier[oc], q->shift[oc]) + cp->output_offset;
                out_px[oc] = (int8_t)fb_clamp(out, cp->act_min, cp->act_max);
            }
            out_px += out_c;
        }
    }
    return FB_OK;
}

fb_status fb_dw_conv_s8(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                        const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                        fb_view *output, int8_t *scratch)
{
#if FB_KERNELS_DSP
    return fb_dw_conv_s8_dsp(p, q, input, fd, filter, bias, output, scratch);
#else
    return fb_dw_conv_s8_portable(p, q, input, fd, filter, bias, output, scratch);
#endif
}
