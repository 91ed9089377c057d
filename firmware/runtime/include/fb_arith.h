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

/* A window that may be empty (h or w 0): the input of a tile made only of
 * padding (an explicit PAD's first rows in a fused stage) reads nothing, and its
 * tile buffer holds no rows yet. Its data pointer is then never read. */
static inline int fb_view_valid_or_empty(const fb_view *v)
{
    if (v != NULL && (v->h == 0 || v->w == 0)) {
        return v->c > 0 && v->h >= 0 && v->w >= 0 && v->y0 >= 0 && v->x0 >= 0 &&
               v->y0 + v->h <= v->full_h && v->x0 + v->w <= v->full_w;
    }
    return fb_view_valid(v);
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

/* Scratch of at least `need` bytes: a 4-byte aligned buffer, unless nothing is needed. */
static inline int fb_scratch_ok(const fb_scratch *s, int32_t need)
{
    return need <= 0 || (s != NULL && s->buf != NULL && fb_aligned4(s->buf) && s->size >= need);
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

/* Does the input window hold every in-map pixel that the output window of a
 * (kh x kw, strided, dilated, padded) convolution reads? Shared by conv and
 * depthwise, portable and optimized. */
static inline int fb_conv_input_covers(const fb_conv_params *p, int32_t kh, int32_t kw, const fb_view *input,
                                       const fb_view *output)
{
    const int32_t y_lo = output->y0 * p->stride_h - p->pad_top;
    const int32_t y_hi = (output->y0 + output->h - 1) * p->stride_h - p->pad_top + (kh - 1) * p->dilation_h;
    const int32_t x_lo = output->x0 * p->stride_w - p->pad_left;
    const int32_t x_hi = (output->x0 + output->w - 1) * p->stride_w - p->pad_left + (kw - 1) * p->dilation_w;
    return fb_view_covers(input, y_lo < 0 ? 0 : y_lo, y_hi >= input->full_h ? input->full_h - 1 : y_hi,
                          x_lo < 0 ? 0 : x_lo, x_hi >= input->full_w ? input->full_w - 1 : x_hi);
}

/* Argument checks of CONV_2D (FB_OK or FB_ERR_ARG), shared by both implementations. */
static inline fb_status fb_conv_check_args(const fb_conv_params *p, const fb_channel_quant *q,
                                           const fb_view *input, const fb_filter_dims *fd,
                                           const int8_t *filter, const fb_view *output)
{
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || fd == NULL ||
        filter == NULL || !fb_view_valid(input) || !fb_view_valid(output)) {
        return FB_ERR_ARG;
    }
    if (fd->out_c <= 0 || fd->kh <= 0 || fd->kw <= 0 || fd->in_c <= 0 ||
        input->c != fd->in_c || output->c != fd->out_c || p->stride_h <= 0 || p->stride_w <= 0 ||
        p->dilation_h <= 0 || p->dilation_w <= 0 || p->act_min > p->act_max) {
        return FB_ERR_ARG;
    }
    return fb_conv_input_covers(p, fd->kh, fd->kw, input, output) ? FB_OK : FB_ERR_ARG;
}

/* Argument checks of DEPTHWISE_CONV_2D. */
static inline fb_status fb_dw_conv_check_args(const fb_dw_conv_params *p, const fb_channel_quant *q,
                                              const fb_view *input, const fb_filter_dims *fd,
                                              const int8_t *filter, const fb_view *output)
{
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || fd == NULL ||
        filter == NULL || !fb_view_valid(input) || !fb_view_valid(output)) {
        return FB_ERR_ARG;
    }
    const fb_conv_params *cp = &p->conv;
    const int32_t mult = p->depth_multiplier;
    if (mult <= 0 || fd->out_c <= 0 || fd->kh <= 0 || fd->kw <= 0 || fd->in_c != 1 ||
        input->c * mult != fd->out_c || output->c != fd->out_c || cp->stride_h <= 0 ||
        cp->stride_w <= 0 || cp->dilation_h <= 0 || cp->dilation_w <= 0 || cp->act_min > cp->act_max) {
        return FB_ERR_ARG;
    }
    return fb_conv_input_covers(cp, fd->kh, fd->kw, input, output) ? FB_OK : FB_ERR_ARG;
}

/* Argument checks of ADD. */
static inline fb_status fb_add_check_args(const fb_add_params *p, const fb_view *a, const fb_view *b,
                                          const fb_view *out)
{
    if (p == NULL || !fb_view_valid(a) || !fb_view_valid(b) || !fb_view_valid(out)) {
        return FB_ERR_ARG;
    }
    if (a->h != out->h || a->w != out->w || a->c != out->c || b->h != out->h || b->w != out->w ||
        b->c != out->c || p->act_min > p->act_max || p->left_shift < 0 || p->left_shift > 30 ||
        p->input1_shift > 0 || p->input2_shift > 0 || p->output_shift > 0) {
        return FB_ERR_ARG;
    }
    return FB_OK;
}

/* Argument checks of the pooling kernels (AVERAGE_POOL_2D, MAX_POOL_2D): the
 * input window holds the output window's receptive field inside the map. */
static inline fb_status fb_pool_check_args(const fb_pool_params *p, const fb_view *input, const fb_view *output)
{
    if (p == NULL || !fb_view_valid(input) || !fb_view_valid(output)) {
        return FB_ERR_ARG;
    }
    if (input->c != output->c || p->stride_h <= 0 || p->stride_w <= 0 || p->filter_h <= 0 ||
        p->filter_w <= 0 || p->act_min > p->act_max) {
        return FB_ERR_ARG;
    }
    const int32_t y_lo = output->y0 * p->stride_h - p->pad_top;
    const int32_t y_hi = (output->y0 + output->h - 1) * p->stride_h - p->pad_top + p->filter_h - 1;
    const int32_t x_lo = output->x0 * p->stride_w - p->pad_left;
    const int32_t x_hi = (output->x0 + output->w - 1) * p->stride_w - p->pad_left + p->filter_w - 1;
    if (!fb_view_covers(input, y_lo < 0 ? 0 : y_lo, y_hi >= input->full_h ? input->full_h - 1 : y_hi,
                        x_lo < 0 ? 0 : x_lo, x_hi >= input->full_w ? input->full_w - 1 : x_hi)) {
        return FB_ERR_ARG;
    }
    return FB_OK;
}

/* -- FULLY_CONNECTED output stage (double precision, as LiteRT's reference) -- */

/* round(v) half away from zero, saturated to int32 (std::round, no libm). */
static inline int32_t fb_round_to_int32(double v)
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

static inline int fb_fc_args_ok(const fb_fc_params *p, const double *effective_scale, const int8_t *input,
                                const int8_t *filter, const int8_t *output)
{
    return p != NULL && effective_scale != NULL && input != NULL && filter != NULL && output != NULL &&
           p->batches > 0 && p->accum_depth > 0 && p->out_depth > 0 && p->act_min <= p->act_max;
}

/* Output unit oc from its accumulator (bias not yet added). */
static inline int8_t fb_fc_output(const fb_fc_params *p, const double *effective_scale, const int32_t *bias,
                                  int32_t oc, int32_t acc)
{
    if (bias != NULL) {
        acc += bias[oc];
    }
    const double scale = effective_scale[p->per_channel ? oc : 0];
    int32_t out = fb_round_to_int32((double)acc * scale);
    /* saturating add keeps a pathological scale from overflowing */
    out = out > FB_INT32_MAX - 128 ? FB_INT32_MAX - 128 : out;
    out += p->output_offset;
    return (int8_t)fb_clamp(out, p->act_min, p->act_max);
}

/* ADD int8 for one element (LiteRT's AddFunc): shared by fb_add_s8 and the
 * residual of fb_bottleneck_s8 so both give the same bytes. */
static inline int8_t fb_add_one(const fb_add_params *p, int32_t x, int32_t y)
{
    const int32_t a = fb_shift_left_wrap(p->input1_offset + x, p->left_shift);
    const int32_t b = fb_shift_left_wrap(p->input2_offset + y, p->left_shift);
    const int32_t sum = fb_mbqm_smaller_than_one(a, p->input1_multiplier, p->input1_shift) +
                        fb_mbqm_smaller_than_one(b, p->input2_multiplier, p->input2_shift);
    const int32_t out =
        fb_mbqm_smaller_than_one(sum, p->output_multiplier, p->output_shift) + p->output_offset;
    return (int8_t)fb_clamp(out, p->act_min, p->act_max);
}

#endif /* FB_ARITH_H */
