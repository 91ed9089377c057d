/* FULLY_CONNECTED int8. LiteRT's reference kernel (BUILTIN_REF) scales the int32
 * accumulator in double precision and rounds half away from zero, both for
 * per-tensor and per-channel weights; reproduced here without libm. */
#include "fb_arith.h"
#include "fb_dsp.h"

fb_status fb_fully_connected_s8_portable(const fb_fc_params *p, const double *effective_scale,
                                         const int8_t *input, const int8_t *filter, const int32_t *bias,
                                         int8_t *output)
{
    if (!fb_fc_args_ok(p, effective_scale, input, filter, output)) {
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
            output[b * p->out_depth + oc] = fb_fc_output(p, effective_scale, bias, oc, acc);
            f += p->accum_depth;
        }
    }
    return FB_OK;
}

fb_status fb_fully_connected_s8(const fb_fc_params *p, const double *effective_scale, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, int8_t *output)
{
#if FB_KERNELS_DSP
    return fb_fully_connected_s8_dsp(p, effective_scale, input, filter, bias, output);
#else
    return fb_fully_connected_s8_portable(p, effective_scale, input, filter, bias, output);
#endif
}
