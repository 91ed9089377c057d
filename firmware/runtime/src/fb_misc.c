/* QUANTIZE int8 -> int8 (LiteRT reference Requantize), RESHAPE's byte copy and
 * the exported requantization helper. */
#include <string.h>

#include "fb_arith.h"
#include "fb_dsp.h"

fb_status fb_requantize_s8(const fb_requantize_params *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL || p->size < 0 || p->shift < -31 || p->shift > 30) {
        return FB_ERR_ARG;
    }
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t out =
            fb_mbqm((int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift) +
            p->output_zero_point;
        output[i] = (int8_t)fb_clamp(out, -128, 127);
    }
    return FB_OK;
}

fb_status fb_copy_s8(const int8_t *input, int8_t *output, int32_t size)
{
    if (input == NULL || output == NULL || size < 0) {
        return FB_ERR_ARG;
    }
    if (input != output) {
        memmove(output, input, (size_t)size);
    }
    return FB_OK;
}

int32_t fb_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    return fb_mbqm(x, multiplier, shift);
}

const char *fb_runtime_kernels(void)
{
    return FB_KERNELS_DSP ? "dsp" : "portable";
}
