/* MAX_POOL_2D int8 (LiteRT reference_integer_ops::MaxPool), window by window. */
#include "fb_arith.h"

fb_status fb_maxpool_s8(const fb_pool_params *p, const fb_view *input, fb_view *output)
{
    if (p == NULL || !fb_view_valid(input) || !fb_view_valid(output)) {
        return FB_ERR_ARG;
    }
    if (input->c != output->c || p->stride_h <= 0 || p->stride_w <= 0 || p->filter_h <= 0 ||
        p->filter_w <= 0 || p->act_min > p->act_max || p->act_min < -128 || p->act_max > 127) {
        return FB_ERR_ARG;
    }
    const int32_t y_lo = output->y0 * p->stride_h - p->pad_top;
    const int32_t y_hi = (output->y0 + output->h - 1) * p->stride_h - p->pad_top + p->filter_h - 1;
    const int32_t x_lo = output->x0 * p->stride_w - p->pad_left;
    const int32_t x_hi = (output->x0 + output->w - 1) * p->stride_w - p->pad_left + p->filter_w - 1;
    if (!fb_view_covers(input, y_lo < 0 ? 0 : y_lo, y_hi >= input->full_h ? input->full_h - 1 : y_hi,
                        x_lo < 0 ? 0 : x_lo, x_hi >= input->full_w ? input->full_w - 1 : x_hi)) {
        return FB_ERR_ARG;
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
            for (int32_t c = 0; c < channels; ++c) {
                int32_t m = -128;       /* numeric_limits<int8_t>::lowest(): no tap, no change */
                for (int32_t ky = ky_start; ky < ky_end && kx_start < kx_end; ++ky) {
                    const int8_t *x = fb_view_at(input, iy0 + ky, ix0 + kx_start) + c;
                    for (int32_t kx = kx_start; kx < kx_end; ++kx) {
                        m = *x > m ? *x : m;
                        x += channels;
                    }
                }
                out_px[c] = (int8_t)fb_clamp(m, p->act_min, p->act_max);
            }
            out_px += channels;
        }
    }
    return FB_OK;
}
