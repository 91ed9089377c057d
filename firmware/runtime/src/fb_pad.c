/* PAD of H and W with a constant (the zero point), window by window. */
#include <string.h>

#include "fb_arith.h"

fb_status fb_pad_s8(const fb_pad_params *p, const fb_view *input, fb_view *output)
{
    if (p == NULL || !fb_view_valid_or_empty(input) || !fb_view_valid(output)) {
        return FB_ERR_ARG;
    }
    if (input->c != output->c || p->pad_top < 0 || p->pad_left < 0 || p->pad_value < -128 ||
        p->pad_value > 127 || input->full_h + p->pad_top > output->full_h ||
        input->full_w + p->pad_left > output->full_w) {
        return FB_ERR_ARG;
    }
    /* map rows/columns of the output window that come from the input */
    int32_t y_lo = output->y0 - p->pad_top;
    int32_t y_hi = output->y0 + output->h - 1 - p->pad_top;
    int32_t x_lo = output->x0 - p->pad_left;
    int32_t x_hi = output->x0 + output->w - 1 - p->pad_left;
    y_lo = y_lo < 0 ? 0 : y_lo;
    x_lo = x_lo < 0 ? 0 : x_lo;
    y_hi = y_hi >= input->full_h ? input->full_h - 1 : y_hi;
    x_hi = x_hi >= input->full_w ? input->full_w - 1 : x_hi;
    if (!fb_view_covers(input, y_lo, y_hi, x_lo, x_hi)) {
        return FB_ERR_ARG;
    }
    const int32_t c = output->c;
    const int32_t row_bytes = output->w * c;
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        int8_t *out_row = fb_view_at(output, oy, output->x0);
        const int32_t iy = oy - p->pad_top;
        if (iy < 0 || iy >= input->full_h || x_lo > x_hi) {
            memset(out_row, p->pad_value, (size_t)row_bytes);
            continue;
        }
        /* [left fill][copy of input columns x_lo..x_hi][right fill] */
        const int32_t left = (x_lo + p->pad_left - output->x0) * c;
        const int32_t middle = (x_hi - x_lo + 1) * c;
        memset(out_row, p->pad_value, (size_t)left);
        memmove(out_row + left, fb_view_at(input, iy, x_lo), (size_t)middle);
        memset(out_row + left + middle, p->pad_value, (size_t)(row_bytes - left - middle));
    }
    return FB_OK;
}
