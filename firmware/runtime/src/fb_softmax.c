/* SOFTMAX int8 -> int8 as LiteRT's reference kernel computes it (BUILTIN_REF
 * uses the fixed-point path, not the float lookup table of the optimized
 * kernel): input differences to the row maximum are scaled to Q5.26, exp() is
 * gemmlowp's fixed-point exp_on_negative_values, the sum is kept in Q12.19 and
 * inverted with a Newton-Raphson reciprocal. */
#include "fb_arith.h"

#define SCALED_DIFF_INTEGER_BITS 5   /* exp() input format Q5.26 */
#define ACCUMULATION_INTEGER_BITS 12 /* sum of exps format Q12.19 */

static int32_t count_leading_zeros_u32(uint32_t x)
{
#if defined(__GNUC__)
    return x == 0 ? 32 : __builtin_clz(x);
#else
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
#endif
}

/* Saturating multiply by 2^exponent (exponent > 0) of a raw fixed-point value. */
static int32_t saturating_shift_left(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return FB_INT32_MAX;
    }
    if (x < -threshold) {
        return FB_INT32_MIN;
    }
    return fb_shift_left_wrap(x, exponent);
}

/* exp(a) for a in [-1/4, 0), both Q0.31: Taylor expansion around -1/8. */
static int32_t exp_on_interval_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;   /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28);            /* a + 1/8 */
    const int32_t x2 = fb_srdhm(x, x);
    const int32_t x3 = fb_srdhm(x2, x);
    const int32_t x4 = fb_srdhm(x2, x2);
    const int32_t x4_over_4 = fb_rounding_divide_by_pot(x4, 2);
    const int32_t poly =
        fb_rounding_divide_by_pot(fb_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + fb_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0, a in Q5.26, result in Q0.31. */
static int32_t exp_on_negative_values(int32_t a)
{
    const int32_t fractional_bits = 31 - SCALED_DIFF_INTEGER_BITS;
    const int32_t one_quarter = 1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    /* Rescale Q5.26 -> Q0.31: saturating shift by 5 */
    int32_t result = exp_on_interval_quarter(
        saturating_shift_left(a_mod_quarter_minus_one_quarter, SCALED_DIFF_INTEGER_BITS));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;

    /* exp(-2^k) for k = -2 .. 4, in Q0.31 */
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                           39332535,   720401,     242};
    for (int32_t k = -2; k <= 4; ++k) {
        if (remainder & (1 << (fractional_bits + k))) {
            result = fb_srdhm(result, multipliers[k + 2]);
        }
    }
    return a == 0 ? FB_INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out: Newton-Raphson division. */
static int32_t one_over_one_plus_x(int32_t a)
{
    /* half_denominator = (a + 1) / 2, rounded (gemmlowp RoundingHalfSum) */
    const int64_t sum = (int64_t)a + FB_INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;    /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t one_q2 = 1 << 29;
    int32_t x = constant_48_over_17 + fb_srdhm(half_denominator, constant_neg_32_over_17);
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = fb_srdhm(half_denominator, x);
        const int32_t one_minus = one_q2 - half_denominator_times_x;
        x = x + saturating_shift_left(fb_srdhm(x, one_minus), 2);   /* Q4 -> Q2 */
    }
    return saturating_shift_left(x, 1);   /* x / 2 as Q1 -> Q0 */
}

fb_status fb_softmax_s8(const fb_softmax_params *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL || p->outer <= 0 || p->depth <= 0 ||
        p->input_left_shift < 0 || p->input_left_shift > 31) {
        return FB_ERR_ARG;
    }
    for (int32_t row = 0; row < p->outer; ++row) {
        const int8_t *x = input + row * p->depth;
        int8_t *y = output + row * p->depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < p->depth; ++c) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }

        int32_t sum_of_exps = 0;   /* Q12.19 */
        for (int32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled =
                    fb_mbqm_greater_than_one(diff, p->input_multiplier, p->input_left_shift);
                sum_of_exps += fb_rounding_divide_by_pot(exp_on_negative_values(scaled),
                                                         ACCUMULATION_INTEGER_BITS);
            }
        }

        /* reciprocal of the sum: 1/(1+s') with s' the sum normalised to [1, 2) */
        const int32_t headroom_plus_one = count_leading_zeros_u32((uint32_t)sum_of_exps);
        const int32_t num_bits_over_unit = ACCUMULATION_INTEGER_BITS - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
        const int32_t exponent = num_bits_over_unit + 31 - 8;
        if (exponent < 0 || exponent > 31) {
            return FB_ERR_ARG;
        }

        for (int32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled =
                    fb_mbqm_greater_than_one(diff, p->input_multiplier, p->input_left_shift);
                const int32_t e = exp_on_negative_values(scaled);
                const int32_t unsat = fb_rounding_divide_by_pot(fb_srdhm(shifted_scale, e), exponent);
                y[c] = (int8_t)fb_clamp(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
    return FB_OK;
}
