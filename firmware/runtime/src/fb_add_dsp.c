/* ADD int8 for cores with the DSP extension: the same contract and bytes as
 * fb_add_s8_portable (fb_add.c).
 *
 * LiteRT rescales both inputs to twice the larger input scale: v = x + offset
 * is shifted left by 20, then MultiplyByQuantizedMultiplierSmallerThanOneExp.
 * The input with the larger scale has the real multiplier 0.5 exactly, which
 * TFLite encodes as m = 2^30, shift 0, and then srdhm(v * 2^20, 2^30) is just
 * v * 2^19. The other input and the output use the single-rounding SMMLAR form
 * of fb_dsp.h; its sign rule holds for the inputs whenever m * 2^20 > 2^30,
 * because v * 2^20 * m < -2^30 exactly when v < 0. The output multiplier is
 * often 2^30 too (output scale = the larger input scale), and then
 * srdhm(x, 2^30) = (x + 1) >> 1 exactly, with the rounding's sign that of
 * x + 1. 12-16 instructions per element instead of three double-rounding
 * requantizations (~110).
 * Anything else (another left shift, an output multiplier of 2^30, ...) takes
 * the portable code.
 */
#include "fb_arith.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

#define ADD_LEFT_SHIFT 20

typedef struct {
    int32_t offset_a;      /* the input with multiplier 2^30, shift 0: v << 19 */
    int32_t offset_b;      /* the other input */
    int32_t m_b, round_b, shift_b;   /* its single-rounding form (shift_b >= 1) */
    int32_t m_out, round_out, shift_out;
    int32_t act_min, act_max;
} add_job;

/* v * 2^20 rescaled by (m, e >= 1): (SMMLAR(v * 2^21, m, k) - [v < 0]) >> e */
static inline int32_t rescale_input(int32_t v, int32_t m, int32_t k, int32_t e)
{
    const int32_t twice = (int32_t)((uint32_t)v << (ADD_LEFT_SHIFT + 1));
    const int32_t t = fb_smmlar(twice, m, k);
    return (int32_t)((uint32_t)t - ((uint32_t)twice >> 31)) >> e;
}

/* b_is_shift: input b also has multiplier 2^30, shift 0. out_half: the output
 * multiplier is 2^30, where srdhm(x, 2^30) = (x + 1) >> 1 needs no multiply and
 * the rounding's sign is that of x + 1. */
static inline __attribute__((always_inline)) void add_row(const add_job *job, const int8_t *a, const int8_t *b,
                                                          int8_t *out, int32_t n, const int b_is_shift,
                                                          const int out_half, const int clamp)
{
    for (int32_t i = 0; i < n; ++i) {
        const int32_t ra = (int32_t)((uint32_t)(a[i] + job->offset_a) << (ADD_LEFT_SHIFT - 1));
        const int32_t vb = b[i] + job->offset_b;
        const int32_t rb = b_is_shift ? (int32_t)((uint32_t)vb << (ADD_LEFT_SHIFT - 1))
                                      : rescale_input(vb, job->m_b, job->round_b, job->shift_b);
        const int32_t sum = ra + rb;
        int32_t v;
        if (out_half) {
            const int32_t x1 = sum + 1;
            v = (int32_t)((uint32_t)((x1 >> 1) + job->round_out) - ((uint32_t)x1 >> 31)) >> job->shift_out;
        } else {
            v = fb_requant_apply(sum, job->m_out, job->round_out, job->shift_out);
        }
        if (clamp == FB_CLAMP_RANGE) {
            v = v < job->act_min ? job->act_min : v;
            v = v > job->act_max ? job->act_max : v;
        } else {
            v = __ssat(v, 8);
        }
        out[i] = (int8_t)v;
    }
}

static inline __attribute__((always_inline)) void add_rows(const add_job *job, const fb_view *a, const fb_view *b,
                                                           fb_view *out, const int b_is_shift, const int out_half,
                                                           const int clamp)
{
    const int32_t n = out->w * out->c;
    for (int32_t y = 0; y < out->h; ++y) {
        add_row(job, a->data + y * a->row_stride, b->data + y * b->row_stride, out->data + y * out->row_stride, n,
                b_is_shift, out_half, clamp);
    }
}

/* Is (m, shift) TFLite's encoding of exactly 0.5? */
static inline int is_half(int32_t m, int32_t shift)
{
    return m == ((int32_t)1 << 30) && shift == 0;
}

fb_status fb_add_s8_dsp(const fb_add_params *p, const fb_view *a, const fb_view *b, fb_view *out)
{
    const fb_status st = fb_add_check_args(p, a, b, out);
    if (st != FB_OK) {
        return st;
    }
    /* |v| <= 255 + 128 keeps v * 2^21 in int32 for offsets within int8 */
    const int offsets_ok = p->input1_offset >= -128 && p->input1_offset <= 128 && p->input2_offset >= -128 &&
                           p->input2_offset <= 128;
    const int swap = !is_half(p->input1_multiplier, p->input1_shift);
    const int32_t m_b = swap ? p->input1_multiplier : p->input2_multiplier;
    const int32_t shift_b = swap ? p->input1_shift : p->input2_shift;
    add_job job;
    job.offset_a = swap ? p->input2_offset : p->input1_offset;
    job.offset_b = swap ? p->input1_offset : p->input2_offset;
    job.act_min = p->act_min;
    job.act_max = p->act_max;
    const int b_is_shift = is_half(m_b, shift_b);
    /* input b's sign rule needs m * 2^20 > 2^30 and a rounding shift */
    const int b_ok = b_is_shift || (m_b > ((int32_t)1 << 10) && shift_b <= -1 && shift_b >= -31);
    /* the output: m = 2^30 (srdhm is a shift) or the SMMLAR form's conditions,
     * with |sum| < 2^29 (each rescaled input is below 2^28) */
    const int out_half = p->output_multiplier == ((int32_t)1 << 30);
    fb_requant_rec out_rec;
    const int out_ok = fb_requant_record(out_half ? ((int32_t)1 << 30) + 1 : p->output_multiplier,
                                         p->output_shift, p->output_offset, 0, 1 << 29, &out_rec);
    if (p->left_shift != ADD_LEFT_SHIFT || !offsets_ok || !b_ok || !out_ok ||
        (swap && !is_half(p->input2_multiplier, p->input2_shift)) || !fb_act_range_ok(p->act_min, p->act_max)) {
        return fb_add_s8_portable(p, a, b, out);
    }
    job.m_b = b_is_shift ? 0 : m_b;
    job.round_b = b_is_shift ? 0 : (int32_t)1 << (-shift_b - 1);
    job.shift_b = b_is_shift ? 0 : -shift_b;
    job.m_out = p->output_multiplier;
    job.round_out = out_rec.round_offset;
    job.shift_out = out_rec.right_shift;
    const fb_view *va = swap ? b : a;
    const fb_view *vb = swap ? a : b;
    const int clamp = (p->act_min == -128 && p->act_max == 127) ? FB_CLAMP_SSAT : FB_CLAMP_RANGE;
    /* the eight combinations, each compiled with its constants folded */
    if (clamp == FB_CLAMP_SSAT) {
        if (b_is_shift) {
            if (out_half) add_rows(&job, va, vb, out, 1, 1, FB_CLAMP_SSAT);
            else add_rows(&job, va, vb, out, 1, 0, FB_CLAMP_SSAT);
        } else {
            if (out_half) add_rows(&job, va, vb, out, 0, 1, FB_CLAMP_SSAT);
            else add_rows(&job, va, vb, out, 0, 0, FB_CLAMP_SSAT);
        }
    } else {
        if (b_is_shift) {
            if (out_half) add_rows(&job, va, vb, out, 1, 1, FB_CLAMP_RANGE);
            else add_rows(&job, va, vb, out, 1, 0, FB_CLAMP_RANGE);
        } else {
            if (out_half) add_rows(&job, va, vb, out, 0, 1, FB_CLAMP_RANGE);
            else add_rows(&job, va, vb, out, 0, 0, FB_CLAMP_RANGE);
        }
    }
    return FB_OK;
}

#endif /* FB_KERNELS_DSP */
