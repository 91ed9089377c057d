/* MUL int8 with broadcasting (LiteRT reference_integer_ops::Mul and
 * BroadcastMul6DSlow: the same arithmetic per element). */
#include "fb_arith.h"
#include "fb_dsp.h"
#include "fb_nd.h"

static inline int8_t mul_one(const fb_mul_params *p, int32_t a, int32_t b)
{
    const int32_t prod = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t out = p->output_offset + fb_mbqm(prod, p->output_multiplier, p->output_shift);
    return (int8_t)fb_clamp(out, p->act_min, p->act_max);
}

/* The element steps of an input walked along the output's shape: 0 where it
 * is broadcast. 0 when the shapes do not broadcast. */
static int broadcast_steps(const int32_t dims[FB_MAX_DIMS], const int32_t strides[FB_MAX_DIMS],
                           const int32_t out[FB_MAX_DIMS], int32_t step[FB_MAX_DIMS])
{
    for (int32_t d = 0; d < FB_MAX_DIMS; ++d) {
        if (dims[d] == out[d]) {
            step[d] = dims[d] == 1 ? 0 : strides[d];
        } else if (dims[d] == 1) {
            step[d] = 0;
        } else {
            return 0;
        }
    }
    return 1;
}

fb_status fb_mul_s8(const fb_mul_params *p, const int32_t *shape1, const int32_t *shape2, const int32_t *out_shape,
                    const int8_t *input1, const int8_t *input2, int8_t *output)
{
    int32_t d1[FB_MAX_DIMS], s1[FB_MAX_DIMS], d2[FB_MAX_DIMS], s2[FB_MAX_DIMS], dout[FB_MAX_DIMS],
        sout[FB_MAX_DIMS], step1[FB_MAX_DIMS], step2[FB_MAX_DIMS];
    if (p == NULL || input1 == NULL || input2 == NULL || output == NULL || p->act_min > p->act_max ||
        p->output_shift < -31 || p->output_shift > 30 || !fb_nd_shape(p->rank, shape1, d1, s1) ||
        !fb_nd_shape(p->rank, shape2, d2, s2) || !fb_nd_shape(p->rank, out_shape, dout, sout) ||
        !broadcast_steps(d1, s1, dout, step1) || !broadcast_steps(d2, s2, dout, step2)) {
        return FB_ERR_ARG;
    }
    const int32_t n = dout[5];
#if FB_KERNELS_DSP
    fb_mul_dsp_job job;
    const int fast = fb_mul_dsp_prepare(p, &job);
#endif
    for (int32_t i0 = 0; i0 < dout[0]; ++i0) {
        for (int32_t i1 = 0; i1 < dout[1]; ++i1) {
            for (int32_t i2 = 0; i2 < dout[2]; ++i2) {
                for (int32_t i3 = 0; i3 < dout[3]; ++i3) {
                    for (int32_t i4 = 0; i4 < dout[4]; ++i4) {
                        const int8_t *a = input1 + i0 * step1[0] + i1 * step1[1] + i2 * step1[2] +
                                          i3 * step1[3] + i4 * step1[4];
                        const int8_t *b = input2 + i0 * step2[0] + i1 * step2[1] + i2 * step2[2] +
                                          i3 * step2[3] + i4 * step2[4];
#if FB_KERNELS_DSP
                        if (fast) {
                            fb_mul_dsp_row(&job, a, step1[5], b, step2[5], output, n);
                        } else
#endif
                        if (step1[5] == 1 && step2[5] == 1) {
                            for (int32_t i = 0; i < n; ++i) {
                                output[i] = mul_one(p, a[i], b[i]);
                            }
                        } else {
                            for (int32_t i = 0; i < n; ++i) {
                                output[i] = mul_one(p, a[i * step1[5]], b[i * step2[5]]);
                            }
                        }
                        output += n;
                    }
                }
            }
        }
    }
    return FB_OK;
}
