/* MEAN int8 over any axes (LiteRT reference QuantizedMeanOrSum). */
#include "fb_arith.h"
#include "fb_nd.h"

fb_status fb_reduce_mean_s8(const fb_reduce_mean_params *p, const int32_t *in_shape, const int8_t *input,
                            int8_t *output)
{
    int32_t dims[FB_MAX_DIMS], strides[FB_MAX_DIMS];
    if (p == NULL || input == NULL || output == NULL || !fb_nd_shape(p->rank, in_shape, dims, strides) ||
        (p->reduced_mask & ~((1 << p->rank) - 1)) != 0) {
        return FB_ERR_ARG;
    }
    /* Split the walk: the kept axes (outer, one output each, in order) and the
     * reduced axes (inner, summed); both keep their order and steps. */
    const int32_t pad = FB_MAX_DIMS - p->rank;
    int32_t kept[FB_MAX_DIMS], kept_step[FB_MAX_DIMS], red[FB_MAX_DIMS], red_step[FB_MAX_DIMS];
    int32_t nk = 0, nr = 0, count = 1;
    for (int32_t d = 0; d < FB_MAX_DIMS; ++d) {
        const int reduced = d >= pad && (p->reduced_mask >> (d - pad) & 1);
        if (reduced) {
            red[nr] = dims[d];
            red_step[nr++] = strides[d];
            count *= dims[d];
        } else {
            kept[nk] = dims[d];
            kept_step[nk++] = strides[d];
        }
    }
    for (; nk < FB_MAX_DIMS; ++nk) {       /* pad both walks with dimensions of 1 */
        kept[nk] = 1;
        kept_step[nk] = 0;
    }
    for (; nr < FB_MAX_DIMS; ++nr) {
        red[nr] = 1;
        red_step[nr] = 0;
    }
    int32_t k[FB_MAX_DIMS] = {0};
    for (;;) {
        const int8_t *base = input;
        for (int32_t d = 0; d < FB_MAX_DIMS; ++d) {
            base += k[d] * kept_step[d];
        }
        int32_t sum = 0;
        for (int32_t r0 = 0; r0 < red[0]; ++r0) {
            for (int32_t r1 = 0; r1 < red[1]; ++r1) {
                for (int32_t r2 = 0; r2 < red[2]; ++r2) {
                    for (int32_t r3 = 0; r3 < red[3]; ++r3) {
                        for (int32_t r4 = 0; r4 < red[4]; ++r4) {
                            const int8_t *x = base + r0 * red_step[0] + r1 * red_step[1] + r2 * red_step[2] +
                                              r3 * red_step[3] + r4 * red_step[4];
                            for (int32_t r5 = 0; r5 < red[5]; ++r5) {
                                sum += x[r5 * red_step[5]];
                            }
                        }
                    }
                }
            }
        }
        const fb_mean_params q = { p->input_zero_point, p->output_zero_point, p->multiplier, p->shift };
        const fb_status st = fb_mean_finish_s8(&q, count, 1, &sum, output++);
        if (st != FB_OK) {
            return st;
        }
        /* next output: odometer over the kept axes */
        int32_t d = FB_MAX_DIMS - 1;
        while (d >= 0 && ++k[d] == kept[d]) {
            k[d--] = 0;
        }
        if (d < 0) {
            break;
        }
    }
    return FB_OK;
}
