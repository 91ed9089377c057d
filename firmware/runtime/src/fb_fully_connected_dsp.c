/* FULLY_CONNECTED int8 for cores with the DSP extension: the same contract and
 * bytes as fb_fully_connected_s8_portable.
 *
 * Two output units at a time share each word of input: SXTAB16 adds the input
 * offset to bytes (0, 2) and (1, 3), SXTAB16 likewise adds the filter offset
 * to a filter word, and SMLAD accumulates two products per instruction. The
 * output stage stays LiteRT's double-precision scaling (fb_fc_output): a
 * handful of calls per inference, exact by construction.
 */
#include "fb_arith.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

static inline int32_t pack2(int32_t v)
{
    return (int32_t)(((uint32_t)v & 0xFFFFu) | ((uint32_t)v << 16));
}

/* acc0 += f0 . (x + xo), acc1 += f1 . (x + xo), filter bytes + fo. */
static void dot2(const int8_t *x, const int8_t *f0, const int8_t *f1, int32_t depth, int32_t xo, int32_t fo,
                 int32_t *acc0, int32_t *acc1)
{
    const int32_t xo2 = pack2(xo), fo2 = pack2(fo);
    int32_t a0 = 0, a1 = 0;
    int32_t d = 0;
    for (; d + 4 <= depth; d += 4) {
        const uint32_t xv = fb_load_u32(x + d);
        const int32_t x02 = __sxtab16(xo2, (int32_t)xv), x13 = fb_sxtab16_ror8(xo2, xv);
        uint32_t fv = fb_load_u32(f0 + d);
        a0 = __smlad(x02, __sxtab16(fo2, (int32_t)fv), a0);
        a0 = __smlad(x13, fb_sxtab16_ror8(fo2, fv), a0);
        fv = fb_load_u32(f1 + d);
        a1 = __smlad(x02, __sxtab16(fo2, (int32_t)fv), a1);
        a1 = __smlad(x13, fb_sxtab16_ror8(fo2, fv), a1);
    }
    for (; d < depth; ++d) {
        const int32_t xv = x[d] + xo;
        a0 += (f0[d] + fo) * xv;
        a1 += (f1[d] + fo) * xv;
    }
    *acc0 = a0;
    *acc1 = a1;
}

fb_status fb_fully_connected_s8_dsp(const fb_fc_params *p, const double *effective_scale,
                                    const int8_t *input, const int8_t *filter, const int32_t *bias,
                                    int8_t *output)
{
    if (!fb_fc_args_ok(p, effective_scale, input, filter, output)) {
        return FB_ERR_ARG;
    }
    /* x + offset and filter + offset must stay int16 lanes */
    if (p->input_offset < -32000 || p->input_offset > 32000 || p->filter_offset < -32000 ||
        p->filter_offset > 32000) {
        return fb_fully_connected_s8_portable(p, effective_scale, input, filter, bias, output);
    }
    const int32_t depth = p->accum_depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + b * depth;
        int8_t *out = output + b * p->out_depth;
        for (int32_t oc = 0; oc < p->out_depth; oc += 2) {
            const int8_t *f0 = filter + oc * depth;
            /* an odd last unit pairs with itself */
            const int8_t *f1 = oc + 1 < p->out_depth ? f0 + depth : f0;
            int32_t a0, a1;
            dot2(x, f0, f1, depth, p->input_offset, p->filter_offset, &a0, &a1);
            out[oc] = fb_fc_output(p, effective_scale, bias, oc, a0);
            if (oc + 1 < p->out_depth) {
                out[oc + 1] = fb_fc_output(p, effective_scale, bias, oc + 1, a1);
            }
        }
    }
    return FB_OK;
}

#endif /* FB_KERNELS_DSP */
