/* Internal: TFLite's integer requantization arithmetic (gemmlowp semantics).
 *
 * LiteRT's default build uses the "double rounding" MultiplyByQuantizedMultiplier
 * (TFLITE_SINGLE_ROUNDING off): a saturating rounding doubling high multiply,
 * then a rounding (half away from zero) right shift. Reproduced exactly here,
 * including truncating 64-bit division and wrap-around of the left shift.
 * Only fb_*.c includes this header.
 */
#ifndef FB_ARITH_H
#define FB_ARITH_H

#include <stddef.h>
#include <stdint.h>

#include "fb_runtime.h"

#define FB_INT32_MIN ((int32_t)(-2147483647 - 1))
#define FB_INT32_MAX ((int32_t)2147483647)

/* round(a * b / 2^31), ties away from zero; -1 * -1 saturates (VQRDMULH). */
static inline int32_t fb_srdhm(int32_t a, int32_t b)
{
    if (a == FB_INT32_MIN && b == FB_INT32_MIN) {
        return FB_INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* C division truncates toward zero, as gemmlowp's does. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero; 0 <= exponent <= 31. */
static inline int32_t fb_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* Arithmetic right shift of negative values (what every target compiler does). */
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^left_shift modulo 2^32 (LiteRT's int32 multiply wraps the same way). */
static inline int32_t fb_shift_left_wrap(int32_t x, int32_t left_shift)
{
    return (int32_t)((uint32_t)x << left_shift);
}

/* MultiplyByQuantizedMultiplier(int32): real multiplier = m * 2^(shift-31). */
static inline int32_t fb_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    return fb_rounding_divide_by_pot(fb_srdhm(fb_shift_left_wrap(x, left_shift), multiplier),
                                     right_shift);
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp: shift is an exponent <= 0. */
static inline int32_t fb_mbqm_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift)
{
    return fb_rounding_divide_by_pot(fb_srdhm(x, multiplier), -shift);
}

/* MultiplyByQuantizedMultiplierGreaterThanOne: left_shift >= 0. */
static inline int32_t fb_mbqm_greater_than_one(int32_t x, int32_t multiplier, int32_t left_shift)
{
    return fb_srdhm(fb_shift_left_wrap(x, left_shift), multiplier);
}

static inline int32_t fb_clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Shared argument checks: a usable window lying inside its map. */
static inline int fb_view_valid(const fb_view *v)
{
    return v != NULL && v->data != NULL && v->h > 0 && v->w > 0 && v->c > 0 &&
           v->row_stride >= v->w * v->c && v->y0 >= 0 && v->x0 >= 0 &&
           v->y0 + v->h <= v->full_h && v->x0 + v->w <= v->full_w;
}

/* Does window v hold every row in [y_lo, y_hi] and column in [x_lo, x_hi]?
 * An empty range (lo > hi) needs nothing. */
static inline int fb_view_covers(const fb_view *v, int32_t y_lo, int32_t y_hi, int32_t x_lo,
                                 int32_t x_hi)
{
    if (y_lo > y_hi || x_lo > x_hi) {
        return 1;
    }
    return y_lo >= v->y0 && y_hi < v->y0 + v->h && x_lo >= v->x0 && x_hi < v->x0 + v->w;
}

/* Pointer to element (y, x, 0) of the map, given in map coordinates. */
static inline int8_t *fb_view_at(const fb_view *v, int32_t y, int32_t x)
{
    return v->data + (y - v->y0) * v->row_stride + (x - v->x0) * v->c;
}

static inline int fb_aligned4(const void *ptr)
{
    return ((uintptr_t)ptr & 3u) == 0;
}

/* Taps k in [start, end) of a filter of size k_size (dilation d) whose input
 * coordinate origin + k*d lies inside [0, size). */
static inline void fb_valid_taps(int32_t origin, int32_t d, int32_t k_size, int32_t size,
                                 int32_t *start, int32_t *end)
{
    int32_t s = 0;
    int32_t e = k_size;
    if (origin < 0) {
        s = (-origin + d - 1) / d;
    }
    if (origin + (k_size - 1) * d > size - 1) {
        e = size - 1 - origin < 0 ? 0 : (size - 1 - origin) / d + 1;
    }
    *start = s;
    *end = e < s ? s : e;
}

#endif /* FB_ARITH_H */
