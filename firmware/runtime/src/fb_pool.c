/* AVERAGE_POOL_2D int8 and MEAN over H, W (LiteRT reference kernels). */
#include "fb_arith.h"
#include "fb_dsp.h"

fb_status fb_avgpool_s8(const fb_pool_params *p, const fb_view *input, fb_view *output)
{
    const fb_status status = fb_pool_check_args(p, input, output);
    if (status != FB_OK) {
        return status;
    }
    const int32_t channels = output->c;
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t ky_start, ky_end;
        fb_valid_taps(iy0, 1, p->filter_h, input->full_h, &ky_start, &ky_end);
        int8_t *out_px = fb_view_at(output, oy, output->x0);
        for (int32_t ox = output->x0; ox < output->x0 + output->w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int32_t kx_start, kx_end;
            fb_valid_taps(ix0, 1, p->filter_w, input->full_w, &kx_start, &kx_end);
            /* Only taps inside the map count (TFLite's SAME padding rule). */
            const int32_t count = (ky_end - ky_start) * (kx_end - kx_start);
            if (count == 0) {
                return FB_ERR_ARG;  /* LiteRT fails on a window entirely in the padding too */
            }
            for (int32_t c = 0; c < channels; ++c) {
                int32_t acc = 0;
                for (int32_t ky = ky_start; ky < ky_end; ++ky) {
                    const int8_t *x = fb_view_at(input, iy0 + ky, ix0 + kx_start) + c;
                    for (int32_t kx = kx_start; kx < kx_end; ++kx) {
                        acc += *x;
                        x += channels;
                    }
                }
                /* divide rounding half away from zero */
                acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                out_px[c] = (int8_t)fb_clamp(acc, p->act_min, p->act_max);
            }
            out_px += channels;
        }
    }
    return FB_OK;
}

static int32_t floor_log2_u32(uint32_t n)
{
    int32_t log = -1;
    while (n != 0) {
        n >>= 1;
        ++log;
    }
    return log;
}

int32_t fb_mean_acc_bytes(int32_t channels)
{
    return channels > 0 ? channels * (int32_t)sizeof(int32_t) : 0;
}

void fb_mean_acc_reset(int32_t *acc, int32_t channels)
{
    for (int32_t c = 0; c < channels; ++c) {
        acc[c] = 0;
    }
}

fb_status fb_mean_acc_s8(const fb_view *tile, int32_t *acc)
{
    if (acc == NULL || !fb_view_valid(tile)) {
        return FB_ERR_ARG;
    }
    /* Integer sums are exact in any order, so tiles may arrive in any order;
     * each pixel must be added exactly once. */
    for (int32_t y = 0; y < tile->h; ++y) {
        const int8_t *row = tile->data + y * tile->row_stride;
        for (int32_t i = 0; i < tile->w; ++i) {
            const int8_t *x = row + i * tile->c;
            for (int32_t c = 0; c < tile->c; ++c) {
                acc[c] += x[c];
            }
        }
    }
    return FB_OK;
}

fb_status fb_mean_finish_s8(const fb_mean_params *p, int32_t count, int32_t channels, const int32_t *acc,
                            int8_t *output)
{
    if (p == NULL || acc == NULL || output == NULL || count <= 0 || channels <= 0 || p->shift < -31 ||
        p->shift > 30) {
        return FB_ERR_ARG;
    }
    /* Fold 1/count into the multiplier as LiteRT's QuantizedMeanOrSum does:
     * multiplier * 2^s / count with s = floor(log2(count)), capped. */
    int32_t s = floor_log2_u32((uint32_t)count);
    if (s > 32) {
        s = 32;
    }
    if (s > 31 + p->shift) {
        s = 31 + p->shift;
    }
    const int32_t multiplier = (int32_t)((((int64_t)p->multiplier) << s) / count);
    const int32_t shift = p->shift - s;
    const int32_t zero_sum = (int32_t)((int64_t)p->input_zero_point * count);
    for (int32_t c = 0; c < channels; ++c) {
        const int32_t out = fb_mbqm(acc[c] - zero_sum, multiplier, shift) + p->output_zero_point;
        output[c] = (int8_t)fb_clamp(out, -128, 127);
    }
    return FB_OK;
}

fb_status fb_mean_s8(const fb_mean_params *p, const fb_view *input, int8_t *output)
{
    if (p == NULL || output == NULL || !fb_view_valid(input)) {
        return FB_ERR_ARG;
    }
    /* a global mean needs the whole map */
    if (input->y0 != 0 || input->x0 != 0 || input->h != input->full_h || input->w != input->full_w) {
        return FB_ERR_ARG;
    }
    int32_t c = 0;
#if FB_KERNELS_DSP
    const fb_status groups = fb_mean_s8_groups_dsp(p, input, output);
    if (groups != FB_OK) {
        return groups;
    }
    c = input->c & ~3;
#endif
    /* One channel at a time: no accumulator array needed for the whole map. */
    for (; c < input->c; ++c) {
        int32_t sum = 0;
        for (int32_t y = 0; y < input->h; ++y) {
            const int8_t *x = input->data + y * input->row_stride + c;
            for (int32_t i = 0; i < input->w; ++i) {
                sum += *x;
                x += input->c;
            }
        }
        fb_status st = fb_mean_finish_s8(p, input->h * input->w, 1, &sum, output + c);
        if (st != FB_OK) {
            return st;
        }
    }
    return FB_OK;
}
