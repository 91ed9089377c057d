/* Data movement without arithmetic (LiteRT reference kernels): TRANSPOSE,
 * STRIDED_SLICE, CONCATENATION, RESIZE_NEAREST_NEIGHBOR. */
#include <string.h>

#include "fb_arith.h"
#include "fb_nd.h"

fb_status fb_transpose_s8(const fb_transpose_params *p, const int32_t *in_shape, const int32_t *perm,
                          const int8_t *input, int8_t *output)
{
    int32_t dims[FB_MAX_DIMS], strides[FB_MAX_DIMS];
    if (p == NULL || perm == NULL || input == NULL || output == NULL ||
        !fb_nd_shape(p->rank, in_shape, dims, strides)) {
        return FB_ERR_ARG;
    }
    /* Output dimension k walks input dimension perm[k]; the padding
     * dimensions in front stay in place. */
    const int32_t pad = FB_MAX_DIMS - p->rank;
    int32_t count[FB_MAX_DIMS], step[FB_MAX_DIMS];
    uint32_t seen = 0;
    for (int32_t k = 0; k < FB_MAX_DIMS; ++k) {
        int32_t from = k;
        if (k >= pad) {
            const int32_t axis = perm[k - pad];
            if (axis < 0 || axis >= p->rank || (seen & (1u << axis)) != 0) {
                return FB_ERR_ARG;        /* not a permutation */
            }
            seen |= 1u << axis;
            from = axis + pad;
        }
        count[k] = dims[from];
        step[k] = strides[from];
    }
    fb_nd_gather(input, count, step, output);
    return FB_OK;
}

fb_status fb_strided_slice_s8(const fb_strided_slice_params *p, const int32_t *in_shape, const int32_t *start,
                              const int32_t *stop, const int32_t *stride, const int8_t *input,
                              int8_t *output)
{
    int32_t dims[FB_MAX_DIMS], strides[FB_MAX_DIMS];
    if (p == NULL || start == NULL || stop == NULL || stride == NULL || input == NULL || output == NULL ||
        !fb_nd_shape(p->rank, in_shape, dims, strides)) {
        return FB_ERR_ARG;
    }
    const int32_t pad = FB_MAX_DIMS - p->rank;
    int32_t count[FB_MAX_DIMS], step[FB_MAX_DIMS];
    int32_t base = 0;
    for (int32_t d = 0; d < FB_MAX_DIMS; ++d) {
        if (d < pad) {
            count[d] = 1;
            step[d] = 0;
            continue;
        }
        const int32_t b = start[d - pad], e = stop[d - pad], s = stride[d - pad];
        if (s == 0 || s < -FB_INT32_MAX) {
            return FB_ERR_ARG;
        }
        /* iterations of: for (i = b; s > 0 ? i < e : i > e; i += s) */
        int64_t n = 0;
        if (s > 0 && e > b) {
            n = ((int64_t)e - b + s - 1) / s;
        } else if (s < 0 && e < b) {
            n = ((int64_t)b - e - s - 1) / -s;
        }
        if (n > 0) {
            const int64_t last = (int64_t)b + (n - 1) * s;
            if (b < 0 || b >= dims[d] || last < 0 || last >= dims[d]) {
                return FB_ERR_ARG;    /* an index outside the axis */
            }
        }
        count[d] = (int32_t)n;
        step[d] = s * strides[d];
        base += n > 0 ? b * strides[d] : 0;
    }
    fb_nd_gather(input + base, count, step, output);
    return FB_OK;
}

fb_status fb_concatenation_s8(const fb_concat_params *p, const int32_t *copy_bytes, const int8_t *const *inputs,
                              int8_t *output)
{
    if (p == NULL || copy_bytes == NULL || inputs == NULL || output == NULL || p->num_inputs < 1 ||
        p->outer < 0) {
        return FB_ERR_ARG;
    }
    for (int32_t i = 0; i < p->num_inputs; ++i) {
        if (inputs[i] == NULL || copy_bytes[i] < 0) {
            return FB_ERR_ARG;
        }
    }
    /* Per outer step: each input's slab in turn. */
    for (int32_t o = 0; o < p->outer; ++o) {
        for (int32_t i = 0; i < p->num_inputs; ++i) {
            const int32_t n = copy_bytes[i];
            memcpy(output, inputs[i] + o * n, (size_t)n);
            output += n;
        }
    }
    return FB_OK;
}

fb_status fb_resize_nearest_s8(const int32_t *rows, const int32_t *cols, const fb_view *input, fb_view *output)
{
    if (rows == NULL || cols == NULL || !fb_view_valid(input) || !fb_view_valid(output) ||
        input->c != output->c) {
        return FB_ERR_ARG;
    }
    /* whole maps: the tables index the whole input */
    if (input->y0 != 0 || input->x0 != 0 || input->h != input->full_h || input->w != input->full_w ||
        output->y0 != 0 || output->x0 != 0 || output->h != output->full_h || output->w != output->full_w) {
        return FB_ERR_ARG;
    }
    for (int32_t y = 0; y < output->h; ++y) {
        if (rows[y] < 0 || rows[y] >= input->h) {
            return FB_ERR_ARG;
        }
    }
    for (int32_t x = 0; x < output->w; ++x) {
        if (cols[x] < 0 || cols[x] >= input->w) {
            return FB_ERR_ARG;
        }
    }
    const int32_t c = output->c;
    for (int32_t y = 0; y < output->h; ++y) {
        const int8_t *in_row = input->data + rows[y] * input->row_stride;
        int8_t *out_px = output->data + y * output->row_stride;
        for (int32_t x = 0; x < output->w; ++x) {
            memcpy(out_px, in_row + cols[x] * c, (size_t)c);
            out_px += c;
        }
    }
    return FB_OK;
}
