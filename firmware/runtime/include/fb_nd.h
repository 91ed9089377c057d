/* Internal: walking whole contiguous tensors of up to FB_MAX_DIMS dimensions.
 *
 * A walk is FB_MAX_DIMS (count, step) pairs, outermost first: it visits
 * count[0] x ... x count[5] positions in row-major order, position (i0..i5)
 * at element offset i0*step[0] + ... + i5*step[5] of a base pointer (steps may
 * be 0 or negative). Lower-rank tensors are padded at the front with
 * dimensions of size 1. Only fb_*.c includes this header.
 */
#ifndef FB_ND_H
#define FB_ND_H

#include <stdint.h>
#include <string.h>

#include "fb_runtime.h"

/* A shape of 1..FB_MAX_DIMS dimensions, every one >= 1, as FB_MAX_DIMS
 * dimensions (leading 1s); the element strides of that contiguous tensor.
 * Returns 0 for an unusable shape. */
static inline int fb_nd_shape(int32_t rank, const int32_t *shape, int32_t dims[FB_MAX_DIMS],
                              int32_t strides[FB_MAX_DIMS])
{
    if (shape == NULL || rank < 1 || rank > FB_MAX_DIMS) {
        return 0;
    }
    const int32_t pad = FB_MAX_DIMS - rank;
    for (int32_t d = 0; d < FB_MAX_DIMS; ++d) {
        dims[d] = d < pad ? 1 : shape[d - pad];
        if (dims[d] < 1) {
            return 0;
        }
    }
    int64_t stride = 1;
    for (int32_t d = FB_MAX_DIMS - 1; d >= 0; --d) {
        if (stride > INT32_MAX) {
            return 0;
        }
        strides[d] = (int32_t)stride;
        stride *= dims[d];
    }
    return stride <= INT32_MAX;
}

/* Copies the walk's elements of `in` (from the base pointer) to `out`, in order. */
static inline void fb_nd_gather(const int8_t *in, const int32_t count[FB_MAX_DIMS],
                                const int32_t step[FB_MAX_DIMS], int8_t *out)
{
    const int32_t n = count[5];
    for (int32_t i0 = 0; i0 < count[0]; ++i0) {
        const int8_t *p0 = in + i0 * step[0];
        for (int32_t i1 = 0; i1 < count[1]; ++i1) {
            const int8_t *p1 = p0 + i1 * step[1];
            for (int32_t i2 = 0; i2 < count[2]; ++i2) {
                const int8_t *p2 = p1 + i2 * step[2];
                for (int32_t i3 = 0; i3 < count[3]; ++i3) {
                    const int8_t *p3 = p2 + i3 * step[3];
                    for (int32_t i4 = 0; i4 < count[4]; ++i4) {
                        const int8_t *p4 = p3 + i4 * step[4];
                        if (step[5] == 1) {
                            memcpy(out, p4, (size_t)n);
                        } else {
                            for (int32_t i5 = 0; i5 < n; ++i5) {
                                out[i5] = p4[i5 * step[5]];
                            }
                        }
                        out += n;
                    }
                }
            }
        }
    }
}

#endif /* FB_ND_H */
