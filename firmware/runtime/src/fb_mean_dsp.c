/* The global MEAN of fb_mean_s8 (fb_pool.c) for cores with the DSP extension:
 * one 32-bit load takes four neighbouring channels of a pixel, and SXTAB16
 * adds them into two registers of 16-bit lanes (channels c, c+2 and c+1, c+3).
 * A lane holds the sum of up to 256 int8 values exactly (-32768 .. 32512), so
 * the lanes move into int32 sums every 256 pixels. About 5 instructions per
 * four values instead of 5 per value; the sums, and so the bytes, are those of
 * the portable walk.
 */
#include "fb_arith.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

#define LANE_PIXELS 256

/* Move the lanes (channels c, c+2 in even; c+1, c+3 in odd) into the int32 sums. */
static inline void flush_lanes(int32_t sums[4], int32_t even, int32_t odd)
{
    sums[0] += (int16_t)(even & 0xFFFF);
    sums[1] += (int16_t)(odd & 0xFFFF);
    sums[2] += even >> 16;
    sums[3] += odd >> 16;
}

fb_status fb_mean_s8_groups_dsp(const fb_mean_params *p, const fb_view *input, int8_t *output)
{
    const int32_t channels = input->c, w = input->w;
    for (int32_t c = 0; c + 4 <= channels; c += 4) {
        int32_t sums[4] = {0, 0, 0, 0};
        int32_t even = 0, odd = 0, in_lanes = 0;
        for (int32_t y = 0; y < input->h; ++y) {
            const int8_t *x = input->data + y * input->row_stride + c;
            for (int32_t i = 0; i < w; ++i) {
                const uint32_t four = fb_load_u32(x);
                even = __sxtab16(even, (int32_t)four);
                odd = fb_sxtab16_ror8(odd, four);
                x += channels;
                if (++in_lanes == LANE_PIXELS) {
                    flush_lanes(sums, even, odd);
                    even = odd = in_lanes = 0;
                }
            }
        }
        flush_lanes(sums, even, odd);
        const fb_status st = fb_mean_finish_s8(p, input->h * w, 4, sums, output + c);
        if (st != FB_OK) {
            return st;
        }
    }
    return FB_OK;
}

#endif /* FB_KERNELS_DSP */
