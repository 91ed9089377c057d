/* MUL int8 for cores with the DSP extension: the rows of fb_mul_s8 (fb_mul.c)
 * with the single-rounding requantization of fb_dsp.h.
 *
 * The product of two offset int8 values is at most 256 * 256 in magnitude,
 * far inside the |x| < 2^30 the SMMLAR form needs, so the fast path applies
 * whenever TFLite's multiplier is above 2^30 with a right shift (real
 * multiplier below 1/2, as in a squeeze-and-excite gate, whose gate scale is
 * about 1/256). About 9 instructions per element instead of the reference's
 * 64-bit double rounding (~30). Anything else runs the portable row.
 */
#include "fb_arith.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

int fb_mul_dsp_prepare(const fb_mul_params *p, fb_mul_dsp_job *job)
{
    const int32_t o1 = p->input1_offset < 0 ? -p->input1_offset : p->input1_offset;
    const int32_t o2 = p->input2_offset < 0 ? -p->input2_offset : p->input2_offset;
    if (o1 > 128 || o2 > 128 || !fb_act_range_ok(p->act_min, p->act_max)) {
        return 0;
    }
    fb_requant_rec rec;
    if (!fb_requant_record(p->output_multiplier, p->output_shift, p->output_offset, 0, (128 + o1) * (128 + o2),
                           &rec)) {
        return 0;
    }
    job->offset1 = p->input1_offset;
    job->offset2 = p->input2_offset;
    job->multiplier = rec.multiplier;
    job->round_offset = rec.round_offset;
    job->right_shift = rec.right_shift;
    job->act_min = p->act_min;
    job->act_max = p->act_max;
    job->full_range = p->act_min == -128 && p->act_max == 127;
    return 1;
}

static inline __attribute__((always_inline)) void mul_row(const fb_mul_dsp_job *job, const int8_t *a,
                                                          int32_t step_a, const int8_t *b, int32_t step_b,
                                                          int8_t *out, int32_t n, const int clamp)
{
    for (int32_t i = 0; i < n; ++i) {
        /* twice the product: fb_requant_out takes 2x */
        const int32_t prod2 = (*a + job->offset1) * ((*b + job->offset2) * 2);
        out[i] = fb_requant_out(prod2, job->multiplier, job->round_offset, job->right_shift, clamp, job->act_min,
                                job->act_max);
        a += step_a;
        b += step_b;
    }
}

void fb_mul_dsp_row(const fb_mul_dsp_job *job, const int8_t *a, int32_t step_a, const int8_t *b, int32_t step_b,
                    int8_t *out, int32_t n)
{
    /* the common steps as constants, so the loads need no multiply */
    if (step_a == 1 && step_b == 1) {
        if (job->full_range) {
            mul_row(job, a, 1, b, 1, out, n, FB_CLAMP_SSAT);
        } else {
            mul_row(job, a, 1, b, 1, out, n, FB_CLAMP_RANGE);
        }
    } else if (job->full_range) {
        mul_row(job, a, step_a, b, step_b, out, n, FB_CLAMP_SSAT);
    } else {
        mul_row(job, a, step_a, b, step_b, out, n, FB_CLAMP_RANGE);
    }
}

#endif /* FB_KERNELS_DSP */
