/* Elementwise int8 activations as LiteRT's reference kernels compute them:
 * LOGISTIC (a 256-entry table prepared on the host) and HARD_SWISH (int16
 * fixed point, HardSwishParams). See fb_runtime.h. */
#include "fb_arith.h"

/* Same-shape windows of an elementwise op: a tile in a fused stage, or the whole
 * map (1 x 1 x N for tensors that are not maps). */
static int elementwise_views_ok(const fb_view *input, const fb_view *output)
{
    return fb_view_valid(input) && fb_view_valid(output) && input->h == output->h && input->w == output->w &&
           input->c == output->c;
}

fb_status fb_lut_s8(const int8_t *table, const fb_view *input, fb_view *output)
{
    if (table == NULL || !elementwise_views_ok(input, output)) {
        return FB_ERR_ARG;
    }
    const int32_t row = output->w * output->c;
    for (int32_t y = 0; y < output->h; ++y) {
        const int8_t *in = input->data + y * input->row_stride;
        int8_t *out = output->data + y * output->row_stride;
        for (int32_t i = 0; i < row; ++i) {
            out[i] = table[(uint8_t)in[i]];
        }
    }
    return FB_OK;
}

/* -- int16 fixed point, with the semantics of gemmlowp's int16 primitives -- */

#define FB_INT16_MIN (-32768)
#define FB_INT16_MAX 32767

/* An int32 value reduced modulo 2^16 (what storing an int into int16_t does). */
static int16_t wrap16(int32_t x)
{
    const uint16_t u = (uint16_t)(uint32_t)x;
    return (int16_t)(u >= 0x8000u ? (int32_t)u - 0x10000 : (int32_t)u);
}

/* round(a * b / 2^15), ties away from zero; -1 * -1 saturates. */
static int16_t srdhm16(int16_t a, int16_t b)
{
    if (a == FB_INT16_MIN && b == FB_INT16_MIN) {
        return FB_INT16_MAX;
    }
    const int32_t ab = (int32_t)a * (int32_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : 1 - (1 << 14);
    return (int16_t)((ab + nudge) / (1 << 15));     /* C division truncates toward zero */
}

/* a * b / 2^15 truncated toward zero; -1 * -1 saturates (SQDMULH). */
static int16_t sdhm16(int16_t a, int16_t b)
{
    if (a == FB_INT16_MIN && b == FB_INT16_MIN) {
        return FB_INT16_MAX;
    }
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* x * 2^amount saturated to int16; 0 <= amount <= 30. */
static int16_t saturating_shift_left16(int16_t x, int32_t amount)
{
    const int64_t v = (int64_t)x * ((int64_t)1 << amount);
    return (int16_t)(v > FB_INT16_MAX ? FB_INT16_MAX : (v < FB_INT16_MIN ? FB_INT16_MIN : v));
}

/* gemmlowp's RoundingDivideByPOT on int16, 0 <= exponent <= 31, including what
 * its int16 arithmetic does for exponents of 16 and more: the mask
 * 2^exponent - 1 keeps its low 16 bits (all ones), so a value >= 0 becomes 1
 * and a negative one -1. */
static int16_t rounding_divide_by_pot16(int16_t x, int32_t exponent)
{
    const int16_t mask = wrap16((int32_t)(((uint32_t)1 << exponent) - 1u));
    const int16_t remainder = (int16_t)(x & mask);
    const int16_t threshold = wrap16((mask >> 1) + (x < 0 ? 1 : 0));
    return wrap16(((int32_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

fb_status fb_hard_swish_s8(const fb_hard_swish_params *p, const fb_view *input, fb_view *output)
{
    if (p == NULL || !elementwise_views_ok(input, output) || p->reluish_exponent < -31 ||
        p->reluish_exponent > 31 || p->output_exponent < -31 || p->output_exponent > 0 ||
        p->reluish_multiplier < 0 || p->reluish_multiplier > FB_INT16_MAX || p->output_multiplier < 0 ||
        p->output_multiplier > FB_INT16_MAX) {
        return FB_ERR_ARG;
    }
    const int16_t reluish_multiplier = (int16_t)p->reluish_multiplier;
    const int16_t output_multiplier = (int16_t)p->output_multiplier;
    const int32_t row = output->w * output->c;
    for (int32_t k = 0; k < output->h * row; ++k) {
        const int32_t y = k / row, i = k % row;
        const int8_t *in = input->data + y * input->row_stride;
        int8_t *out_row = output->data + y * output->row_stride;
        /* |x - zero point| <= 255, so x * 2^7 fits int16 */
        const int16_t hires = (int16_t)(((int32_t)in[i] - p->input_zero_point) * 128);
        /* the input on the output scale, not yet shifted */
        const int16_t preshift = srdhm16(hires, output_multiplier);
        /* the relu-ish value: 3.0 on the input is 2^15 here (saturates at 32767) */
        int16_t reluish = hires;
        if (p->reluish_exponent > 0) {   /* all of the left shift but one bit, then the last bit */
            reluish = saturating_shift_left16(reluish, p->reluish_exponent - 1);
        }
        reluish = srdhm16(reluish, reluish_multiplier);
        if (p->reluish_exponent > 0) {
            reluish = saturating_shift_left16(reluish, 1);
        } else if (p->reluish_exponent < 0) {
            reluish = rounding_divide_by_pot16(reluish, -p->reluish_exponent);
        }
        /* [-1, 1] -> [0, 1] */
        reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
        const int16_t product = sdhm16(reluish, preshift);
        const int16_t shifted = rounding_divide_by_pot16(product, -p->output_exponent);
        const int16_t out = wrap16((int32_t)shifted + p->output_zero_point);
        out_row[i] = (int8_t)(out > 127 ? 127 : (out < -128 ? -128 : out));
    }
    return FB_OK;
}
