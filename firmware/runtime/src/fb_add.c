/* ADD int8 (LiteRT reference AddFunc): both inputs are brought to a common
 * scale with 20 extra bits of headroom (left_shift), summed, then requantized
 * to the output. */
#include "fb_arith.h"
#include "fb_dsp.h"


fb_status fb_add_s8_portable(const fb_add_params *p, const fb_view *a, const fb_view *b, fb_view *out)
{
    const fb_status st = fb_add_check_args(p, a, b, out);
    if (st != FB_OK) {
        return st;
    }
    const int32_t row = out->w * out->c;
    for (int32_t y = 0; y < out->h; ++y) {
        const int8_t *pa = a->data + y * a->row_stride;
        const int8_t *pb = b->data + y * b->row_stride;
        int8_t *po = out->data + y * out->row_stride;
        for (int32_t i = 0; i < row; ++i) {
            po[i] = fb_add_one(p, pa[i], pb[i]);
        }
    }
    return FB_OK;
}

fb_status fb_add_s8(const fb_add_params *p, const fb_view *a, const fb_view *b, fb_view *out)
{
#if FB_KERNELS_DSP
    return fb_add_s8_dsp(p, a, b, out);
#else
    return fb_add_s8_portable(p, a, b, out);
#endif
}
