/* MAX_POOL_2D int8 (LiteRT reference_integer_ops::MaxPool), window by window. */
#include "fb_arith.h"

fb_status fb_maxpool_s8(const fb_pool_params *p, const fb_view *input, fb_view *output)
{
    const fb_status status = fb_pool_check_args(p, input, output);
    if (status != FB_OK) {
        return status;
    }
    if (p->act_min < -128 || p->act_max > 127) {
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
