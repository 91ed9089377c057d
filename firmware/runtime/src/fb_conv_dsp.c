/* CONV_2D int8 for cores with the DSP extension: the same contract and the same
 * bytes as fb_conv_s8_portable (fb_conv.c), several times fewer instructions.
 *
 * Output pixels are computed four at a time (the last 1 or 2 of a window by
 * tail_outputs, without a quad's copies). Their receptive patches become
 * four int16 columns in scratch, interleaved four taps at a time so that one
 * LDM fetches four taps of two pixels in the order SXTB16 unpacks a filter
 * word, (x0, x2) (x1, x3). The columns hold 2 * (x + input offset): the
 * accumulators come out doubled as the requantization wants them, and taps in
 * the padding are 0. The filter is then read once, row after row (OHWI): each
 * word of four taps is unpacked by SXTB16 (bytes 0, 2) and SXTB16 ROR 8 (bytes
 * 1, 3) and used for the four pixels, 8 SMLAD (16 MACs) per 2 LDM + LDR +
 * 2 SXTB16. (Four pixels of one channel beat a 2x2 block of pixels and
 * channels: that needs more registers than Armv7-M has and spills around its
 * inner loop.)
 *
 * A 1x1 convolution's patch is the input pixel itself; larger kernels first
 * gather the patch as bytes, padding taps set to the input zero point so they
 * expand to 0, except a 3x3 patch over 3 channels (the first layer of most
 * image models) inside the map, expanded straight from its three input rows
 * (expand_column_333). A depth that is not a multiple of 4 takes its last 1-3
 * taps with one word load (expand_column), and for 27 taps the filter rows
 * are unrolled. Requantization is the single-rounding
 * SMMLAR form of fb_dsp.h, from per-channel records in the layer's prepared
 * tables (fb_conv_s8_prepare(), fb_conv.c): in flash when the caller passes
 * them (fb_channel_quant.prepared), else prepared at the start of scratch on
 * every call. The tables also hold the zero-padded last filter row, needed
 * when taps % 4 != 0.
 *
 * Scratch: [the tables when not passed: fb_conv_s8_prepared_size()] | four
 * columns (32 * ceil(taps / 4)) | for kh*kw > 1 the byte patch (taps). Every
 * byte of it is written by a call that takes this code.
 */
#include "fb_arith.h"
#include "fb_dsp.h"

#if FB_KERNELS_DSP

/* gcc's first scheduling pass hoists loads far ahead and spills registers,
 * and its SLP vectorizer packs byte stores into words: both cost instructions. */
#pragma GCC optimize("no-tree-slp-vectorize", "no-schedule-insns")

#define QUAD 4   /* output pixels per block */

/* Column quad: ceil(taps/4) groups of eight words, pixel 0's (x0,x2) (x1,x3),
 * then pixels 1, 2 and 3 alike. Taps past the end of the last group are 0, so
 * every group is a whole filter word. */
static void expand_column(uint32_t *cols, int32_t pixel, const int8_t *src, int32_t taps,
                          int32_t input_offset)
{
    /* 2 * (x + offset): the accumulators come out doubled, as the
     * requantization wants them (fb_requant_apply2) */
    const uint32_t off = (uint32_t)(2 * input_offset) & 0xFFFFu;
    const int32_t offset2 = (int32_t)(off | (off << 16));
    uint32_t *dst = cols + 2 * pixel;
    const int8_t *const end = src + 4 * (taps >> 2);
    /* two groups per turn where there are: one compare per 8 taps */
    for (; src + 8 <= end; src += 8, dst += 4 * QUAD) {
        const uint32_t x = fb_load_u32(src), y = fb_load_u32(src + 4);
        dst[0] = (uint32_t)__sxtab16(__sxtab16(offset2, (int32_t)x), (int32_t)x);
        dst[1] = (uint32_t)fb_sxtab16_ror8(fb_sxtab16_ror8(offset2, x), x);
        dst[2 * QUAD] = (uint32_t)__sxtab16(__sxtab16(offset2, (int32_t)y), (int32_t)y);
        dst[2 * QUAD + 1] = (uint32_t)fb_sxtab16_ror8(fb_sxtab16_ror8(offset2, y), y);
    }
    if (src != end) {
        const uint32_t x = fb_load_u32(src);
        src += 4;
        dst[0] = (uint32_t)__sxtab16(__sxtab16(offset2, (int32_t)x), (int32_t)x);
        dst[1] = (uint32_t)fb_sxtab16_ror8(fb_sxtab16_ror8(offset2, x), x);
        dst += 2 * QUAD;
    }
    if ((taps & 3) && taps > 4) {
        /* the last 1-3 taps: the word ending with them, shifted down, the
         * bytes above filled with the zero point (they expand to 0, as the
         * weights they meet need: other rows' first taps) */
        const int32_t r = taps & 3;
        const uint32_t zp = (uint32_t)(uint8_t)(int8_t)(-input_offset) * 0x01010101u;
        const uint32_t x = (fb_load_u32(src + r - 4) >> (8 * (4 - r))) | (zp << (8 * r));
        dst[0] = (uint32_t)__sxtab16(__sxtab16(offset2, (int32_t)x), (int32_t)x);
        dst[1] = (uint32_t)fb_sxtab16_ror8(fb_sxtab16_ror8(offset2, x), x);
    } else if (taps & 3) {
        int16_t v[4] = { 0, 0, 0, 0 };
        for (int32_t i = 0; i < (taps & 3); ++i) {
            v[i] = (int16_t)(2 * (src[i] + input_offset));
        }
        dst[0] = ((uint32_t)(uint16_t)v[0]) | ((uint32_t)(uint16_t)v[2] << 16);
        dst[1] = ((uint32_t)(uint16_t)v[1]) | ((uint32_t)(uint16_t)v[3] << 16);
    }
}

/* The column of a 3x3 patch over 3 channels (27 taps, 7 groups) that lies
 * inside the map, straight from its three input rows r0, r0 + step, r0 + 2 *
 * step (no patch copy): a row is 9 bytes, so the group words that straddle two
 * rows are pieced together from word loads that stay inside the rows' span
 * (the first layer of most image models). */
static inline __attribute__((always_inline)) void expand_column_333(uint32_t *cols, int32_t pixel,
                                                                    const int8_t *r0, int32_t step,
                                                                    int32_t input_offset)
{
    const uint32_t off = (uint32_t)(2 * input_offset) & 0xFFFFu;
    const int32_t offset2 = (int32_t)(off | (off << 16));
    const uint32_t zp = (uint32_t)(uint8_t)(int8_t)(-input_offset);
    const int8_t *r1 = r0 + step, *r2 = r1 + step;
    uint32_t g[7];
    g[0] = fb_load_u32(r0);
    g[1] = fb_load_u32(r0 + 4);
    g[2] = (fb_load_u32(r1 - 1) & 0xFFFFFF00u) | (uint8_t)r0[8];           /* r0[8] r1[0..2] */
    g[3] = fb_load_u32(r1 + 3);
    g[4] = (fb_load_u32(r2 - 2) & 0xFFFF0000u) | (fb_load_u32(r1 + 5) >> 16); /* r1[7..8] r2[0..1] */
    g[5] = fb_load_u32(r2 + 2);
    g[6] = (fb_load_u32(r2 + 5) >> 8) | (zp << 24);                          /* r2[6..8], pad 0 */
    uint32_t *dst = cols + 2 * pixel;
#pragma GCC unroll 7
    for (int i = 0; i < 7; ++i, dst += 2 * QUAD) {
        const uint32_t x = g[i];
        dst[0] = (uint32_t)__sxtab16(__sxtab16(offset2, (int32_t)x), (int32_t)x);
        dst[1] = (uint32_t)fb_sxtab16_ror8(fb_sxtab16_ror8(offset2, x), x);
    }
}

/* Does output pixel (oy, ox)'s 3x3 patch (columns adjacent) lie inside the map? */
static inline int rgb_inside(const fb_conv_params *p, const fb_view *in, int32_t oy, int32_t ox)
{
    const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    return iy0 >= 0 && ix0 >= 0 && iy0 + 2 * p->dilation_h < in->full_h && ix0 + 2 < in->full_w;
}

static inline void fill_bytes(int8_t *dst, int8_t value, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = value;
    }
}

/* Word-wise copy (unaligned LDR/STR are fine on Armv7-M). */
static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        memcpy(dst, src, 4);
    }
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = src[i];
    }
}

/* The receptive patch of output pixel (oy, ox) as kh*kw*in_c bytes; taps in
 * the padding hold the input zero point (-input_offset) so they expand to 0. */
static const int8_t *gather_patch(const fb_conv_params *p, const fb_filter_dims *fd, const fb_view *in,
                                  int32_t oy, int32_t ox, int8_t *patch)
{
    const int32_t in_c = fd->in_c;
    const int32_t row = fd->kw * in_c;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t ix0 = ox * p->stride_w - p->pad_left;
    int8_t *dst = patch;
    if (p->dilation_w == 1 && iy0 >= 0 && ix0 >= 0 && iy0 + (fd->kh - 1) * p->dilation_h < in->full_h &&
        ix0 + fd->kw - 1 < in->full_w) {
        /* inside the map: kh contiguous runs of kw*in_c bytes */
        const int8_t *src = fb_view_at(in, iy0, ix0);
        const int32_t step = p->dilation_h * in->row_stride;
        for (int32_t ky = 0; ky < fd->kh; ++ky, dst += row, src += step) {
            copy_bytes(dst, src, row);
        }
        return patch;
    }
    const int8_t pad = (int8_t)(-p->input_offset);
    int32_t ky_start, ky_end, kx_start, kx_end;
    fb_valid_taps(iy0, p->dilation_h, fd->kh, in->full_h, &ky_start, &ky_end);
    fb_valid_taps(ix0, p->dilation_w, fd->kw, in->full_w, &kx_start, &kx_end);
    for (int32_t ky = 0; ky < fd->kh; ++ky, dst += row) {
        if (ky < ky_start || ky >= ky_end || kx_start >= kx_end) {
            fill_bytes(dst, pad, row);
            continue;
        }
        const int32_t iy = iy0 + ky * p->dilation_h;
        fill_bytes(dst, pad, kx_start * in_c);
        if (p->dilation_w == 1) {
            copy_bytes(dst + kx_start * in_c, fb_view_at(in, iy, ix0 + kx_start), (kx_end - kx_start) * in_c);
        } else {
            for (int32_t kx = kx_start; kx < kx_end; ++kx) {
                copy_bytes(dst + kx * in_c, fb_view_at(in, iy, ix0 + kx * p->dilation_w), in_c);
            }
        }
        fill_bytes(dst + kx_end * in_c, pad, (fd->kw - kx_end) * in_c);
    }
    return patch;
}

typedef struct {
    const int8_t *filter;            /* OHWI */
    const int8_t *last_row;          /* the last filter row, zero-padded to whole words */
    const fb_requant_rec *table;     /* out_c records */
    int32_t taps, groups, out_c, act_min, act_max;
} conv_job;

/* One 4-tap group for the four pixels, filter word wv; MAC is SMLAD_INTO
 * (ACLE's __smlad: best for the unrolled straight-line code) or FB_SMLAD_ACC
 * (in place: keeps the loops free of spills). */
#define SMLAD_INTO(acc, x, w) ((acc) = __smlad((int32_t)(x), (w), (acc)))

#define GROUP_MACS(wv, MAC)                                                   \
    do {                                                                      \
        const int32_t wa = __sxtb16((int32_t)(wv));                           \
        const int32_t wb = fb_sxtb16_ror8(wv);                                \
        {                                                                     \
            FB_LDM4_REGS(x0a, x0b, x1a, x1b);                                 \
            FB_LDM4_POSTINC(c, x0a, x0b, x1a, x1b);                           \
            MAC(a0, x0a, wa);                                                 \
            MAC(a0, x0b, wb);                                                 \
            MAC(a1, x1a, wa);                                                 \
            MAC(a1, x1b, wb);                                                 \
        }                                                                     \
        {                                                                     \
            FB_LDM4_REGS(x2a, x2b, x3a, x3b);                                 \
            FB_LDM4_POSTINC(c, x2a, x2b, x3a, x3b);                           \
            MAC(a2, x2a, wa);                                                 \
            MAC(a2, x2b, wb);                                                 \
            MAC(a3, x3a, wa);                                                 \
            MAC(a3, x3b, wb);                                                 \
        }                                                                     \
    } while (0)

/* Filter rows one 4-tap group per loop turn, or two (taps a multiple of 8):
 * one compare and branch per 32 MACs. (Loading both filter words with one LDRD
 * would save another instruction, but gcc then runs out of registers next to
 * the four the LDM needs.) */
#define ROW_ANY 0
#define ROW_PAIRS 1

/* One output channel of four pixels: w is its filter row (whole words, the
 * padding taps meet zero columns). `fixed_groups`: the number of 4-tap groups
 * when known at compile time (the loop is then unrolled: shallow 1x1 layers
 * spend most of their time outside it), 0 otherwise. Stores channel ch of
 * the four pixels out[]; returns w past the row's groups. */
static inline __attribute__((always_inline)) const int8_t *channel_quad(const uint32_t *cols, const uint32_t *cols_end,
                                                               const int8_t *w, const fb_requant_rec *rec,
                                                               int8_t *const out[QUAD], int32_t ch,
                                                               const int clamp, int32_t lo, int32_t hi,
                                                               const int fixed_groups, const int rows)
{
    int32_t a0 = rec->bias2, a1 = a0, a2 = a0, a3 = a0;
    const uint32_t *c = cols;
    if (fixed_groups) {
#pragma GCC unroll 4
        for (int32_t g = 0; g < fixed_groups; ++g) {
            const uint32_t wv = fb_load_u32(w);
            w += 4;
            GROUP_MACS(wv, SMLAD_INTO);
        }
    } else if (rows == ROW_PAIRS) {
        while (c != cols_end) {
            uint32_t wv = fb_load_u32(w);
            w += 4;
            GROUP_MACS(wv, FB_SMLAD_ACC);
            wv = fb_load_u32(w);
            w += 4;
            GROUP_MACS(wv, FB_SMLAD_ACC);
        }
    } else {
        while (c != cols_end) {
            const uint32_t wv = fb_load_u32(w);
            w += 4;
            GROUP_MACS(wv, FB_SMLAD_ACC);
        }
    }
    /* read the record before storing: int8 stores may alias it */
    const int32_t m = rec->multiplier, r = rec->round_offset, s = rec->right_shift;
    const int8_t v0 = fb_requant_out(a0, m, r, s, clamp, lo, hi);
    const int8_t v1 = fb_requant_out(a1, m, r, s, clamp, lo, hi);
    const int8_t v2 = fb_requant_out(a2, m, r, s, clamp, lo, hi);
    const int8_t v3 = fb_requant_out(a3, m, r, s, clamp, lo, hi);
    /* the pixels' base pointers stay put (indexed by the channel): spilled,
     * they cost a reload each, not a reload and a store */
    out[0][ch] = v0;
    out[1][ch] = v1;
    out[2][ch] = v2;
    out[3][ch] = v3;
    return w;
}

/* All output channels of four pixels from their column quad. `padded`: taps is
 * not a multiple of 4, so rows do not start on word boundaries of the filter
 * and the last row is read from its zero-padded copy (a whole-word read of the
 * last row would run past the filter). */
static inline __attribute__((always_inline)) void quad_outputs(const conv_job *job, const uint32_t *cols,
                                                               int8_t *const out[QUAD], const int clamp,
                                                               const int padded, const int fixed_groups,
                                                               const int rows)
{
    const uint32_t *cols_end = cols + 2 * QUAD * job->groups;
    const int32_t lo = job->act_min, hi = job->act_max;
    const fb_requant_rec *table = job->table;
    const int32_t n = job->out_c - (padded ? 1 : 0);
    const int8_t *w = job->filter;
    int32_t ch = 0;
    for (; ch < n; ++ch) {
        const int8_t *next = channel_quad(cols, cols_end, w, table + ch, out, ch, clamp, lo, hi, fixed_groups, rows);
        /* unpadded rows are whole groups: the row read ends where the next starts */
        w = padded ? w + job->taps : next;
    }
    if (padded) {
        channel_quad(cols, cols_end, job->last_row, table + ch, out, ch, clamp, lo, hi, fixed_groups, ROW_ANY);
    }
}

/* All output channels of the last 1 or 2 pixels of a window (npix): a quad
 * would compute them four times over, which small tiles (a fused stage's 1x1
 * or 1x5 tiles) pay on every call. Two accumulators at most, so the columns
 * are read word by word from the quad layout (pixel k's words at 2k, 2k + 1
 * of each group). */
static inline __attribute__((always_inline)) void tail_outputs(const conv_job *job, const uint32_t *cols,
                                                               int8_t *const out[QUAD], const int npix,
                                                               const int clamp, const int padded)
{
    const int32_t lo = job->act_min, hi = job->act_max;
    const int32_t last = job->out_c - 1;
    const int8_t *w = job->filter;
    for (int32_t ch = 0; ch <= last; ++ch, w += job->taps) {
        const fb_requant_rec *rec = job->table + ch;
        const int8_t *row = padded && ch == last ? job->last_row : w;
        int32_t a0 = rec->bias2, a1 = a0;
        const uint32_t *c = cols;
        for (int32_t g = 0; g < job->groups; ++g, c += 2 * QUAD, row += 4) {
            const uint32_t wv = fb_load_u32(row);
            const int32_t wa = __sxtb16((int32_t)wv);
            const int32_t wb = fb_sxtb16_ror8(wv);
            a0 = __smlad((int32_t)c[0], wa, a0);
            a0 = __smlad((int32_t)c[1], wb, a0);
            if (npix == 2) {
                a1 = __smlad((int32_t)c[2], wa, a1);
                a1 = __smlad((int32_t)c[3], wb, a1);
            }
        }
        const int32_t m = rec->multiplier, r = rec->round_offset, s = rec->right_shift;
        const int8_t v0 = fb_requant_out(a0, m, r, s, clamp, lo, hi);
        if (npix == 2) {
            const int8_t v1 = fb_requant_out(a1, m, r, s, clamp, lo, hi);
            out[0][ch] = v0;
            out[1][ch] = v1;
        } else {
            out[0][ch] = v0;
        }
    }
}

fb_status fb_conv_s8_dsp(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                         const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                         fb_view *output, const fb_scratch *scratch)
{
    const fb_status st = fb_conv_check_args(p, q, input, fd, filter, output);
    if (st != FB_OK) {
        return st;
    }
    if (!fb_scratch_ok(scratch, fb_conv_s8_buffer_size(p, q, input, fd, output))) {
        return FB_ERR_SCRATCH;
    }
    const void *tables = q->prepared;
    int8_t *work = scratch->buf;
    if (tables == NULL) {
        /* prepare the tables at the start of scratch (whether or not the fast path applies) */
        const fb_status prep = fb_conv_s8_prepare(p, q, fd, filter, bias, scratch->buf);
        if (prep != FB_OK) {
            return prep;
        }
        tables = scratch->buf;
        work = scratch->buf + fb_conv_s8_prepared_size(fd);
    }
    const fb_prepared_header *header = fb_prepared_check(tables, FB_PREPARED_CONV, fd);
    if (header == NULL) {
        return FB_ERR_ARG;
    }
    if (!header->fast) {
        return fb_conv_s8_portable(p, q, input, fd, filter, bias, output, scratch);
    }
    const int one_by_one = fd->kh == 1 && fd->kw == 1;
    const fb_requant_rec *table = fb_prepared_records(tables);
    const int32_t taps = fd->kh * fd->kw * fd->in_c;
    const int32_t groups = (taps + 3) / 4;
    const int padded = (taps & 3) != 0;
    const int8_t *last_row = (const int8_t *)(const void *)(table + fd->out_c);
    uint32_t *cols = (uint32_t *)(void *)work;
    int8_t *patch = (int8_t *)(void *)(cols + 2 * QUAD * groups);
    const conv_job job = { filter, last_row, table, taps, groups, fd->out_c, p->act_min, p->act_max };
    const int ssat_only = p->act_min <= -128 && p->act_max >= 127;
    const int row_pairs = (taps & 7) == 0;
    const int rgb = fd->kh == 3 && fd->kw == 3 && fd->in_c == 3 && p->dilation_w == 1;
    if (rgb) {
        /* interior pixels do not use the patch: write it once all the same,
         * so that the call writes all the scratch it asks for, as documented */
        fill_bytes(patch, (int8_t)(-p->input_offset), taps);
    }

    /* Output pixels in raster order, four at a time; a last group of 3
     * repeats its last pixel (same column again, same bytes written again),
     * one of 1 or 2 pixels takes tail_outputs. */
    const int32_t y_end = output->y0 + output->h;
    const int32_t x_end = output->x0 + output->w;
    int32_t oy = output->y0, ox = output->x0;
    while (oy < y_end) {
        int8_t *out[QUAD];
        const int8_t *src = NULL;
        const int32_t left = (y_end - oy - 1) * output->w + (x_end - ox);
        const int32_t tail = left < 3 ? left : 0;
        for (int32_t k = 0; k < QUAD; ++k) {
            if (tail && k == tail) {
                break;
            }
            if (oy < y_end) {
                if (one_by_one) {
                    src = fb_view_at(input, oy * p->stride_h, ox * p->stride_w);
                } else if (rgb && rgb_inside(p, input, oy, ox)) {
                    src = NULL;
                    expand_column_333(cols, k, fb_view_at(input, oy * p->stride_h - p->pad_top,
                                                          ox * p->stride_w - p->pad_left),
                                      p->dilation_h * input->row_stride, p->input_offset);
                } else {
                    src = gather_patch(p, fd, input, oy, ox, patch);
                }
                out[k] = fb_view_at(output, oy, ox);
                if (++ox == x_end) {
                    ox = output->x0;
                    ++oy;
                }
            } else {
                out[k] = out[k - 1];
                if (src == NULL) {          /* repeat pixel k - 1's column, built in place */
                    for (int32_t g = 0; g < groups; ++g) {
                        cols[g * 2 * QUAD + 2 * k] = cols[g * 2 * QUAD + 2 * k - 2];
                        cols[g * 2 * QUAD + 2 * k + 1] = cols[g * 2 * QUAD + 2 * k - 1];
                    }
                }
            }
            if (src != NULL) {
                expand_column(cols, k, src, taps, p->input_offset);
            }
        }
        if (tail && left == output->h * output->w) {
            /* a window of 1 or 2 pixels: the other pixels' column words too,
             * so that every call writes all the scratch it asks for */
            for (int32_t g = 0; g < groups; ++g) {
                for (int32_t k = 2 * tail; k < 2 * QUAD; ++k) {
                    cols[g * 2 * QUAD + k] = 0;
                }
            }
        }
        if (tail == 1) {
            if (ssat_only) {
                tail_outputs(&job, cols, out, 1, FB_CLAMP_SSAT, padded);
            } else {
                tail_outputs(&job, cols, out, 1, FB_CLAMP_RANGE, padded);
            }
        } else if (tail == 2) {
            if (ssat_only) {
                tail_outputs(&job, cols, out, 2, FB_CLAMP_SSAT, padded);
            } else {
                tail_outputs(&job, cols, out, 2, FB_CLAMP_RANGE, padded);
            }
        } else if (padded) {                      /* rows start anywhere; the last one is copied */
            if (ssat_only && groups == 7) {  /* 3x3x3: the first layer of most image models */
                quad_outputs(&job, cols, out, FB_CLAMP_SSAT, 1, 7, ROW_ANY);
            } else if (ssat_only) {
                quad_outputs(&job, cols, out, FB_CLAMP_SSAT, 1, 0, ROW_ANY);
            } else {
                quad_outputs(&job, cols, out, FB_CLAMP_RANGE, 1, 0, ROW_ANY);
            }
        } else if (!ssat_only) {
            quad_outputs(&job, cols, out, FB_CLAMP_RANGE, 0, 0, ROW_ANY);
        } else if (groups == 2) {          /* 8 input channels: MobileNetV2 w0.35's busiest layers */
            quad_outputs(&job, cols, out, FB_CLAMP_SSAT, 0, 2, ROW_ANY);
        } else if (groups == 4) {
            quad_outputs(&job, cols, out, FB_CLAMP_SSAT, 0, 4, ROW_ANY);
        } else if (row_pairs) {
            quad_outputs(&job, cols, out, FB_CLAMP_SSAT, 0, 0, ROW_PAIRS);
        } else {
            quad_outputs(&job, cols, out, FB_CLAMP_SSAT, 0, 0, ROW_ANY);
        }
    }
    return FB_OK;
}

#endif /* FB_KERNELS_DSP */
