/* Per-channel records for the single-rounding requantization of the optimized
 * kernels (see fb_dsp.h for the derivation), and batch hooks for tests. The
 * records are computed in every build (fb_*_prepare() prepares an optimized
 * kernel's tables anywhere, e.g. on the host for a Cortex-M target); applying
 * them takes the DSP extension. */
#include "fb_arith.h"
#include "fb_dsp.h"

int fb_requant_record(int32_t multiplier, int32_t shift, int32_t output_offset, int32_t bias,
                      int32_t max_abs_dot, fb_requant_rec *rec)
{
    /* m > 2^30 makes [x*m < -2^30] the sign of x; e >= 1 is a real rounding
     * shift; |x| < 2^30 lets SMMLAR take 2x. */
    if (multiplier <= ((int32_t)1 << 30) || shift > -1 || shift < -31 || max_abs_dot < 0) {
        return 0;
    }
    const int64_t max_abs_acc = (bias < 0 ? -(int64_t)bias : (int64_t)bias) + max_abs_dot;
    const int32_t e = -shift;
    const int64_t round_offset = (2 * (int64_t)output_offset + 1) * ((int64_t)1 << (e - 1));
    /* |srdhm| <= 2^30 - 1, so SMMLAR's k + srdhm - 1 stays in int32 while |k| <= 2^30 */
    if (max_abs_acc >= ((int64_t)1 << 30) || round_offset > ((int64_t)1 << 30) ||
        round_offset < -((int64_t)1 << 30)) {
        return 0;
    }
    rec->bias2 = 2 * bias;
    rec->multiplier = multiplier;
    rec->round_offset = (int32_t)round_offset;
    rec->right_shift = e;
    return 1;
}

int fb_requant_table(const fb_channel_quant *q, const int32_t *bias, int32_t n, int32_t output_offset,
                     int32_t max_abs_dot, fb_requant_rec *table)
{
    int ok = 1;
    for (int32_t c = 0; c < n; ++c) {
        ok &= fb_requant_record(q->multiplier[c], q->shift[c], output_offset, bias != NULL ? bias[c] : 0,
                                max_abs_dot, &table[c]);
    }
    return ok;
}

#if FB_KERNELS_DSP

/* Test hook: out[i] = the fast formula's int32 result for acc[i] (offset added,
 * not clamped). Returns 0 when the fast formula does not apply to (m, shift,
 * offset) for accumulators up to max_abs_acc. */
int32_t fb_requant_fast_batch(int32_t multiplier, int32_t shift, int32_t output_offset, int32_t max_abs_acc,
                              const int32_t *acc, int32_t n, int32_t *out)
{
    fb_requant_rec rec;
    if (!fb_requant_record(multiplier, shift, output_offset, 0, max_abs_acc, &rec)) {
        return 0;
    }
    for (int32_t i = 0; i < n; ++i) {
        out[i] = fb_requant_apply(acc[i], rec.multiplier, rec.round_offset, rec.right_shift);
    }
    return 1;
}

#endif /* FB_KERNELS_DSP */

/* Test hook, in every build: the reference arithmetic on a batch (offset added,
 * not clamped), so tests need not cross ctypes once per value. */
void fb_requant_reference_batch(int32_t multiplier, int32_t shift, int32_t output_offset,
                                const int32_t *acc, int32_t n, int32_t *out)
{
    for (int32_t i = 0; i < n; ++i) {
        out[i] = (int32_t)((uint32_t)fb_mbqm(acc[i], multiplier, shift) + (uint32_t)output_offset);
    }
}
