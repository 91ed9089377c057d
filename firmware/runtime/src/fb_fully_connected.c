/* FULLY_CONNECTED int8. LiteRT's reference kernel (BUILTIN_REF) scales the int32
 * accumulator in double precision and rounds half away from zero, both for
 * per-tensor and per-channel weights; reproduced here without libm. */
#include "fb_arith.h"

int32_t fb_fully_connected_s8_buffer_size(const fb_fc_params *p)
{
    (void)p;
    return 0;
}

/* round(v) half away from zero, saturated to int32 (std::round, no libm). */
static int32_t round_to_int32(double v)
{
    if (v >= 2147483647.0) {
        return FB_INT32_MAX;
    }
    if (v <= -2147483648.0) {
        return FB_INT32_MIN;
    }
    int64_t i = (int64_t)(int32_t)v;       /* truncation toward zero */
    const double frac = v - (double)i;     /* exact */
    if (frac >= 0.5) {
        i += 1;
    } else if (frac <= -0.5) {
        i -= 1;
    }
    return i > FB_INT32_MAX ? FB_INT32_MAX : (int32_t)i;
}

fb_status fb_fully_connected_s8(const fb_fc_params *p, const double *effective_scale,
                                const int8_t *input, const int8_t *filter, const int32_t *bias,
                                int8_t *output)
{
    if (p == NULL || effective_scale == NULL || input == NULL || filter == NULL || output == NULL ||
        p->batches <= 0 || p->accum_depth <= 0 || p->out_depth <= 0 || p->act_min > p->act_max) {
        return FB_ERR_ARG;
    }
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + b * p->accum_depth;
        const int8_t *f = filter;
        for (int32_t oc = 0; oc < p->out_depth; ++oc) {
            int32_t acc = 0;
            for (int32_t d = 0; d < p->accum_depth; ++d) {
                acc += ((int32_t)f[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
            }
            if (bias != NULL) {
                acc += bias[oc];
            }
            const double scale = effective_scale[p->per_channel ? oc : 0];
            int32_t out = round_to_int32((double)acc * scale);
            /* saturating add keeps a pathological scale from overflowing */
            out = out > FB_INT32_MAX - 128 ? FB_INT32_MAX - 128 : out;
            out += p->output_offset;
            output[b * p->out_depth + oc] = (int8_t)fb_clamp(out, p->act_min, p->act_max);
            f += p->accum_depth;
        }
    }
    return FB_OK;
}
