/* Model edges: QUANTIZE float32 -> int8 and uint8 -> int8, DEQUANTIZE int8 ->
 * float32, as LiteRT's reference kernels compute them (fb_runtime.h).
 *
 * The float arithmetic is the reference's, operation for operation, in the
 * same precision: QUANTIZE divides in single precision, DEQUANTIZE multiplies
 * in double precision and rounds once to float. Both are IEEE-754 operations
 * with one rounding each (round to nearest even), so the host (SSE), the
 * Cortex-M4/M7 FPU and a soft-float build give the same bits. No libm: the
 * rounding of QUANTIZE is written out below. */
#include "fb_arith.h"

fb_status fb_requantize_u8_s8(const fb_requantize_params *p, const uint8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL || p->size < 0 || p->shift < -31 || p->shift > 30) {
        return FB_ERR_ARG;
    }
    /* LiteRT takes a shortcut (x ^ 0x80) when the scales are equal and the zero
     * points differ by 128; the general arithmetic below gives the same bytes
     * then (the multiplier is exactly 1). */
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t out =
            fb_mbqm((int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift) + p->output_zero_point;
        output[i] = (int8_t)fb_clamp(out, -128, 127);
    }
    return FB_OK;
}

/* std::round of a float (half away from zero) followed by the float -> int32
 * conversion of the reference kernel. That conversion has no defined value
 * for NaN or a value outside int32; LiteRT's host build (x86-64, cvttss2si)
 * gives INT32_MIN then, and so does this function, on every target. */
static int32_t round_to_int32(float q)
{
    if (!(q >= -2147483648.0f && q < 2147483648.0f)) {   /* also NaN */
        return FB_INT32_MIN;
    }
    if (q >= 8388608.0f || q <= -8388608.0f) {          /* |q| >= 2^23: already an integer */
        return (int32_t)q;
    }
    int32_t t = (int32_t)q;                             /* truncation toward zero */
    const float frac = q - (float)t;                    /* exact: |q| < 2^23 */
    if (frac >= 0.5f) {
        t += 1;
    } else if (frac <= -0.5f) {
        t -= 1;
    }
    return t;
}

fb_status fb_quantize_f32_s8(const fb_quantize_params *p, const float *scale, const float *input, int8_t *output)
{
    if (p == NULL || scale == NULL || input == NULL || output == NULL || p->size < 0) {
        return FB_ERR_ARG;
    }
    const float s = scale[0];
    for (int32_t i = 0; i < p->size; ++i) {
        /* Single precision, as the reference (val / static_cast<float>(scale)):
         * a double division would round differently near .5. */
        const float q = input[i] / s;
        /* the int32 sum wraps as LiteRT's does (INT32_MIN + a negative zero point) */
        const int32_t out = (int32_t)((uint32_t)round_to_int32(q) + (uint32_t)p->output_zero_point);
        output[i] = (int8_t)fb_clamp(out, -128, 127);
    }
    return FB_OK;
}

fb_status fb_dequantize_s8_f32(const fb_dequantize_params *p, const float *scale, const int8_t *input,
                               float *output)
{
    if (p == NULL || scale == NULL || input == NULL || output == NULL || p->size < 0) {
        return FB_ERR_ARG;
    }
    /* Double precision, as the reference (its scale is a double): the product
     * of a float and an integer below 2^9 is exact in double, so the result
     * is that exact product rounded once to float. */
    const double s = (double)scale[0];
    for (int32_t i = 0; i < p->size; ++i) {
        output[i] = (float)(s * (double)((int32_t)input[i] - p->input_zero_point));
    }
    return FB_OK;
}
