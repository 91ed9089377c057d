/* Internal: what the portable bottleneck kernel (fb_bottleneck.c: argument
 * checks, scratch layout) shares with the optimized one (fb_bottleneck_dsp.c).
 * Only fb_bottleneck*.c include this header. */
#ifndef FB_BOTTLENECK_H
#define FB_BOTTLENECK_H

#include <stdint.h>

#include "fb_runtime.h"

/* The scratch of one call, as fb_runtime.h lays it out (K = channel_block). */
typedef struct {
    int32_t *acc;          /* band_rows x W' x out_c */
    int8_t *dw;            /* band_rows x W' pixels of K channels */
    int8_t *expanded;      /* R x C pixels of K channels (has_expand) */
    uint32_t *widened;     /* K = 4: the pass's filters as int16 pairs (optimized kernels only) */
    int32_t col_lo, cols;  /* the input columns the depthwise reads */
} fb_bottleneck_layout;

/* Checks the arguments (FB_ERR_ARG) and the scratch (FB_ERR_SCRATCH), then
 * fills the layout. */
fb_status fb_bottleneck_begin(const fb_bottleneck_params *p, const fb_view *input, const fb_view *output,
                              const fb_scratch *scratch, fb_bottleneck_layout *layout);

/* The input coordinates [*lo, *lo + *n) inside [0, size) that outputs
 * out_lo .. out_lo + out_n - 1 of a (k, stride, dilation, pad) convolution
 * read; *n = 0 when they read only padding. */
static inline void fb_bottleneck_read_range(int32_t out_lo, int32_t out_n, int32_t stride, int32_t pad, int32_t k,
                                            int32_t d, int32_t size, int32_t *lo, int32_t *n)
{
    int32_t a = out_lo * stride - pad;
    int32_t b = (out_lo + out_n - 1) * stride - pad + (k - 1) * d;
    a = a < 0 ? 0 : a;
    b = b > size - 1 ? size - 1 : b;
    *lo = a;
    *n = b >= a ? b - a + 1 : 0;
}

/* A band's accumulators (pixels x out_c) start at the projection's bias. */
static inline void fb_bottleneck_band_start(const fb_bottleneck_params *p, int32_t *acc, int32_t pixels)
{
    /* locals: the int32 stores may alias *p, which would be read again each time */
    const int32_t out_c = p->out_c;
    const int32_t *bias = p->project_bias;
    for (int32_t e = 0, o = 0; e < pixels * out_c; ++e) {
        acc[e] = bias != NULL ? bias[o] : 0;
        o = o + 1 == out_c ? 0 : o + 1;
    }
}

/* The optimized kernel (same contract as fb_bottleneck_s8). */
fb_status fb_bottleneck_s8_dsp(const fb_bottleneck_params *p, const fb_view *input, fb_view *output,
                               const fb_scratch *scratch);

#endif /* FB_BOTTLENECK_H */
