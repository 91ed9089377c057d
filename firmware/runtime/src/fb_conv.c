/* CONV_2D int8 with per-channel requantization (LiteRT reference ConvPerChannel).
 *
 * acc = sum over taps inside the map of filter * (input + input_offset) + bias.
 * Per output pixel, the receptive patch is gathered once into an int16 column
 * in scratch with the input offset already added and zeros for taps in the
 * padding (a padded tap contributes nothing, exactly as the reference skips it);
 * every output channel is then one dot product of its OHWI filter row with that
 * column. The gather costs 1/out_c of the MACs and a later SIMD version can use
 * the same column (CMSIS-NN's layout). Also here: the scratch sizes and the
 * optimized kernel's prepared tables (fb_conv_dsp.c), prepared in every build. */
#include "fb_arith.h"
#include "fb_dsp.h"

static int fb_conv_dims_ok(const fb_filter_dims *fd)
{
    return fd != NULL && fd->out_c > 0 && fd->kh > 0 && fd->kw > 0 && fd->in_c > 0;
}

/* The optimized kernel's tables (fb_conv_dsp.c, layout in fb_dsp.h): header,
 * per-channel requantization records and, when taps is not a multiple of 4,
 * the zero-padded last filter row. */
int32_t fb_conv_s8_prepared_size(const fb_filter_dims *fd)
{
    if (!fb_conv_dims_ok(fd)) {
        return 0;
    }
    const int32_t taps = fd->kh * fd->kw * fd->in_c;
    const int32_t groups = (taps + 3) / 4;
    return FB_PREPARED_HEADER_BYTES + 16 * fd->out_c + ((taps & 3) ? 4 * groups : 0);
}

/* The portable kernel's scratch: the receptive patch as one int16 column. */
static int32_t portable_scratch_bytes(const fb_filter_dims *fd)
{
    return 2 * fd->kh * fd->kw * fd->in_c;
}

/* The optimized kernel (fb_conv_dsp.c): the tables at the start of scratch
 * unless they are prepared, then four int16 columns of whole 4-tap groups and,
 * for kernels larger than 1x1, a byte patch. That covers the portable code it
 * falls back to (2 * taps <= 32 * groups); tables prepared for the fallback
 * (fast == 0) need only the portable column. */
int32_t fb_conv_s8_buffer_size(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                               const fb_filter_dims *fd, const fb_view *output)
{
    (void)p;
    (void)input;
    (void)output;
    if (q == NULL || !fb_conv_dims_ok(fd)) {
        return 0;
    }
#if FB_KERNELS_DSP
    /* prepared tables that leave the layer to the portable code: its column only */
    const fb_prepared_header *header = (const fb_prepared_header *)q->prepared;
    if (header != NULL && header->tag == FB_PREPARED_CONV && header->fast == 0) {
        return portable_scratch_bytes(fd);
    }
    const int32_t taps = fd->kh * fd->kw * fd->in_c;
    const int32_t groups = (taps + 3) / 4;
    const int32_t tables = q->prepared == NULL ? fb_conv_s8_prepared_size(fd) : 0;
    return tables + 32 * groups + ((fd->kh == 1 && fd->kw == 1) ? 0 : taps);
#else
    return portable_scratch_bytes(fd);
#endif
}

fb_status fb_conv_s8_prepare(const fb_conv_params *p, const fb_channel_quant *q, const fb_filter_dims *fd,
                             const int8_t *filter, const int32_t *bias, void *tables)
{
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || !fb_conv_dims_ok(fd) ||
        filter == NULL || tables == NULL || !fb_aligned4(tables)) {
        return FB_ERR_ARG;
    }
    const int32_t taps = fd->kh * fd->kw * fd->in_c;
    fb_prepared_header *header = (fb_prepared_header *)tables;
    header->tag = FB_PREPARED_CONV;
    header->fast = 0;
    header->out_c = fd->out_c;
    header->taps = taps;
    /* The optimized kernel gathers padding taps as the zero point byte, so it
     * must be an int8; it clamps inside int8 only; a 1x1 kernel reads pixels
     * in place, without padding. */
    if ((fd->kh == 1 && fd->kw == 1 && (p->pad_top != 0 || p->pad_left != 0)) || p->input_offset < -127 ||
        p->input_offset > 128 || !fb_act_range_ok(p->act_min, p->act_max)) {
        return FB_OK;
    }
    fb_requant_rec *table = (fb_requant_rec *)(void *)((int8_t *)tables + FB_PREPARED_HEADER_BYTES);
    if (!fb_requant_table(q, bias, fd->out_c, p->output_offset, fb_max_abs_dot(taps, p->input_offset), table)) {
        return FB_OK;
    }
    if (taps & 3) {
        /* rows do not start on word boundaries: a whole-word read of the last
         * row would run past the filter, so the kernel reads this copy */
        const int32_t padded = 4 * ((taps + 3) / 4);
        int8_t *last_row = (int8_t *)(void *)(table + fd->out_c);
        const int8_t *row = filter + (fd->out_c - 1) * taps;
        for (int32_t i = 0; i < padded; ++i) {
            last_row[i] = i < taps ? row[i] : 0;
        }
    }
    header->fast = 1;
    return FB_OK;
}

static int32_t dot_s8_s16(const int8_t *f, const int16_t *col, int32_t n)
{
    int32_t acc0 = 0;
    int32_t acc1 = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc0 += (int32_t)f[i] * col[i] + (int32_t)f[i + 1] * col[i + 1];
        acc1 += (int32_t)f[i + 2] * col[i + 2] + (int32_t)f[i + 3] * col[i + 3];
    }
    for (; i < n; ++i) {
        acc0 += (int32_t)f[i] * col[i];
    }
    return acc0 + acc1;
}

static void offset_copy(int16_t *col, const int8_t *x, int32_t n, int32_t input_offset)
{
    for (int32_t i = 0; i < n; ++i) {
        col[i] = (int16_t)((int32_t)x[i] + input_offset);
    }
}

static void zero_fill(int16_t *col, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        col[i] = 0;
    }
}

/* All output channels of one pixel from its gathered column. */
static void output_pixel(const fb_conv_params *p, const fb_channel_quant *q, const fb_filter_dims *fd,
                         const int8_t *filter, const int32_t *bias, const int16_t *col, int8_t *out_px)
{
    const int32_t taps = fd->kh * fd->kw * fd->in_c;
    const int8_t *f = filter;
    for (int32_t oc = 0; oc < fd->out_c; ++oc) {
        int32_t acc = dot_s8_s16(f, col, taps);
        if (bias != NULL) {
            acc += bias[oc];
        }
        const int32_t out = fb_mbqm(acc, q->multiplier[oc], q->shift[oc]) + p->output_offset;
        out_px[oc] = (int8_t)fb_clamp(out, p->act_min, p->act_max);
        f += taps;
    }
}

fb_status fb_conv_s8_portable(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                              const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                              fb_view *output, const fb_scratch *scratch)
{
    const fb_status st = fb_conv_check_args(p, q, input, fd, filter, output);
    if (st != FB_OK) {
        return st;
    }
    if (!fb_scratch_ok(scratch, portable_scratch_bytes(fd))) {
        return FB_ERR_SCRATCH;
    }
    int16_t *col = (int16_t *)(void *)scratch->buf;
    const int32_t in_c = fd->in_c;

    if (fd->kh == 1 && fd->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
        p->pad_left == 0) {
        /* pointwise: the column is the input pixel itself */
        for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
            const int8_t *in_px = fb_view_at(input, oy, output->x0);
            int8_t *out_px = fb_view_at(output, oy, output->x0);
            for (int32_t ox = 0; ox < output->w; ++ox) {
                offset_copy(col, in_px, in_c, p->input_offset);
                output_pixel(p, q, fd, filter, bias, col, out_px);
                in_px += in_c;
                out_px += fd->out_c;
            }
        }
        return FB_OK;
    }

    const int32_t row_taps = fd->kw * in_c;
    for (int32_t oy = output->y0; oy < output->y0 + output->h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t ky_start, ky_end;
        fb_valid_taps(iy0, p->dilation_h, fd->kh, input->full_h, &ky_start, &ky_end);
        int8_t *out_px = fb_view_at(output, oy, output->x0);
        for (int32_t ox = output->x0; ox < output->x0 + output->w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            int32_t kx_start, kx_end;
            fb_valid_taps(ix0, p->dilation_w, fd->kw, input->full_w, &kx_start, &kx_end);
            for (int32_t ky = 0; ky < fd->kh; ++ky) {
                int16_t *col_row = col + ky * row_taps;
                if (ky < ky_start || ky >= ky_end || kx_start >= kx_end) {
                    zero_fill(col_row, row_taps);
                    continue;
                }
                const int32_t iy = iy0 + ky * p->dilation_h;
                zero_fill(col_row, kx_start * in_c);
                if (p->dilation_w == 1) {
                    /* the valid taps of a filter row are contiguous in the input */
                    offset_copy(col_row + kx_start * in_c, fb_view_at(input, iy, ix0 + kx_start),
                                (kx_end - kx_start) * in_c, p->input_offset);
                } else {
                    for (int32_t kx = kx_start; kx < kx_end; ++kx) {
                        offset_copy(col_row + kx * in_c, fb_view_at(input, iy, ix0 + kx * p->dilation_w),
                                    in_c, p->input_offset);
                    }
                }
                zero_fill(col_row + kx_end * in_c, (fd->kw - kx_end) * in_c);
            }
            output_pixel(p, q, fd, filter, bias, col, out_px);
            out_px += fd->out_c;
        }
    }
    return FB_OK;
}

fb_status fb_conv_s8(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                     const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                     fb_view *output, const fb_scratch *scratch)
{
#if FB_KERNELS_DSP
    return fb_conv_s8_dsp(p, q, input, fd, filter, bias, output, scratch);
#else
    return fb_conv_s8_portable(p, q, input, fd, filter, bias, output, scratch);
#endif
}
