/* A MobileNetV2 inverted residual block, a block of K = channel_block
 * expansion channels at a time (bottleneck reordering): expansion 1x1 CONV_2D
 * (optional), DEPTHWISE_CONV_2D, projection 1x1 CONV_2D, residual ADD
 * (optional), without the expanded and depthwise maps (contract and scratch
 * layout in fb_runtime.h).
 *
 * Per band of output rows and per expansion channel i (of the pass's K, whose
 * planes hold K channels per pixel, channel k at byte k):
 *   1. expansion channel i on the input rows (and columns) the band's depthwise
 *      rows read, requantized as fb_conv_s8 does output channel i;
 *   2. depthwise channel i of the band, requantized as fb_dw_conv_s8 does;
 *   3. acc[p][o] += (dw_i(p) + project.input_offset) * project_filter[o][i].
 * Then the band's accumulators (started at the projection bias) are requantized
 * as fb_conv_s8 does and, with a residual, added to the block input as fb_add_s8
 * does. Every value is the same integer the layer-by-layer kernels compute (an
 * int32 sum does not depend on the order of its terms), so the bytes are the same.
 * Plain C99, no DSP code: the portable reference of the reordering; the
 * optimized kernel (fb_bottleneck_dsp.c) uses the same scratch layout. */
#include "fb_arith.h"
#include "fb_bottleneck.h"
#include "fb_dsp.h"

/* A single-channel int8 plane: element (y, x) of the map, in map coordinates,
 * at base + (y - y0) * row + (x - x0) * px. */
typedef struct {
    const int8_t *base;
    int32_t y0, x0, px, row;
} bn_plane;

static inline const int8_t *plane_at(const bn_plane *pl, int32_t y, int32_t x)
{
    return pl->base + (y - pl->y0) * pl->row + (x - pl->x0) * pl->px;
}

static int whole_map_dims(const fb_view *v)
{
    return v != NULL && v->h > 0 && v->w > 0 && v->c > 0 && v->row_stride >= v->w * v->c && v->y0 == 0 &&
           v->x0 == 0 && v->h == v->full_h && v->w == v->full_w;
}

static int quant_ok(const fb_channel_quant *q)
{
    return q->multiplier != NULL && q->shift != NULL;
}

/* A 1x1 convolution that maps pixel (y, x) to pixel (y, x). */
static int pointwise_ok(const fb_conv_params *c)
{
    return c->stride_h == 1 && c->stride_w == 1 && c->dilation_h > 0 && c->dilation_w > 0 && c->pad_top == 0 &&
           c->pad_left == 0 && c->act_min <= c->act_max;
}

/* Everything but the pointers: the buffer size needs only the shapes, so a
 * planner can size a block before it has its weights. */
static fb_status check_params(const fb_bottleneck_params *p, const fb_view *in, const fb_view *out)
{
    if (p == NULL || !whole_map_dims(in) || !whole_map_dims(out)) {
        return FB_ERR_ARG;
    }
    if (p->in_c <= 0 || p->mid_c <= 0 || p->out_c <= 0 || p->kh <= 0 || p->kw <= 0 || in->c != p->in_c ||
        out->c != p->out_c || p->band_rows < 1 || p->band_rows > out->h ||
        (p->has_expand != 0 && p->has_expand != 1) || (p->has_residual != 0 && p->has_residual != 1) ||
        (p->channel_block != 1 && p->channel_block != 4) || p->mid_c % p->channel_block != 0) {
        return FB_ERR_ARG;
    }
    if (p->has_expand) {
        if (!pointwise_ok(&p->expand)) {
            return FB_ERR_ARG;
        }
    } else if (p->mid_c != p->in_c) {
        return FB_ERR_ARG;
    }
    const fb_conv_params *d = &p->dw.conv;
    if (p->dw.depth_multiplier != 1 || d->stride_h <= 0 || d->stride_w <= 0 || d->dilation_h <= 0 ||
        d->dilation_w <= 0 || d->act_min > d->act_max) {
        return FB_ERR_ARG;
    }
    if (!pointwise_ok(&p->project)) {
        return FB_ERR_ARG;
    }
    if (p->has_residual) {
        const fb_add_params *a = &p->add;
        if (p->in_c != p->out_c || in->h != out->h || in->w != out->w || a->act_min > a->act_max ||
            a->left_shift < 0 || a->left_shift > 30 || a->input1_shift > 0 || a->input2_shift > 0 ||
            a->output_shift > 0) {
            return FB_ERR_ARG;
        }
    }
    return FB_OK;
}

/* Bytes a view's elements span. */
static uintptr_t view_span(const fb_view *v)
{
    return (uintptr_t)((v->h - 1) * v->row_stride + v->w * v->c);
}

static fb_status check_args(const fb_bottleneck_params *p, const fb_view *in, const fb_view *out)
{
    const fb_status st = check_params(p, in, out);
    if (st != FB_OK) {
        return st;
    }
    if (in->data == NULL || out->data == NULL || (p->has_expand && (!quant_ok(&p->expand_q) ||
        p->expand_filter == NULL)) || !quant_ok(&p->dw_q) || p->dw_filter == NULL ||
        !quant_ok(&p->project_q) || p->project_filter == NULL) {
        return FB_ERR_ARG;
    }
    /* the output must not overwrite input rows a later band still reads */
    const uintptr_t a = (uintptr_t)in->data;
    const uintptr_t b = (uintptr_t)out->data;
    if (a < b + view_span(out) && b < a + view_span(in)) {
        return FB_ERR_ARG;
    }
    return FB_OK;
}

/* The most input rows any band's depthwise rows read. */
static int32_t max_band_input_rows(const fb_bottleneck_params *p, int32_t in_h, int32_t out_h)
{
    const fb_conv_params *d = &p->dw.conv;
    int32_t most = 0;
    for (int32_t b0 = 0; b0 < out_h; b0 += p->band_rows) {
        const int32_t nb = out_h - b0 < p->band_rows ? out_h - b0 : p->band_rows;
        int32_t lo, n;
        fb_bottleneck_read_range(b0, nb, d->stride_h, d->pad_top, p->kh, d->dilation_h, in_h, &lo, &n);
        most = n > most ? n : most;
    }
    return most;
}

int32_t fb_bottleneck_s8_buffer_size(const fb_bottleneck_params *p, const fb_view *input, const fb_view *output)
{
    if (check_params(p, input, output) != FB_OK) {
        return 0;
    }
    const fb_conv_params *d = &p->dw.conv;
    const int32_t k = p->channel_block;
    const int32_t acc_bytes = 4 * p->band_rows * output->w * p->out_c;
    const int32_t dw_bytes = k * p->band_rows * output->w;
    int32_t exp_bytes = 0;
    if (p->has_expand) {
        int32_t col_lo, cols;
        fb_bottleneck_read_range(0, output->w, d->stride_w, d->pad_left, p->kw, d->dilation_w, input->w, &col_lo,
                                 &cols);
        exp_bytes = k * max_band_input_rows(p, input->h, output->h) * cols;
    }
    /* four channels' filters widened to int16 (the optimized kernels'; counted
     * in every build so that the size is the same in every build) */
    const int32_t widened_bytes = k == 4 ? 8 * (p->out_c + p->kh * p->kw + (p->has_expand ? p->in_c : 0)) : 0;
    return acc_bytes + dw_bytes + exp_bytes + widened_bytes;
}

fb_status fb_bottleneck_begin(const fb_bottleneck_params *p, const fb_view *input, const fb_view *output,
                              const fb_scratch *scratch, fb_bottleneck_layout *layout)
{
    const fb_status st = check_args(p, input, output);
    if (st != FB_OK) {
        return st;
    }
    const int32_t size = fb_bottleneck_s8_buffer_size(p, input, output);
    if (!fb_scratch_ok(scratch, size)) {
        return FB_ERR_SCRATCH;
    }
    const fb_conv_params *d = &p->dw.conv;
    const int32_t k = p->channel_block;
    fb_bottleneck_read_range(0, output->w, d->stride_w, d->pad_left, p->kw, d->dilation_w, input->w, &layout->col_lo,
               &layout->cols);
    layout->acc = (int32_t *)(void *)scratch->buf;
    layout->dw = scratch->buf + 4 * p->band_rows * output->w * p->out_c;
    layout->expanded = layout->dw + k * p->band_rows * output->w;
    const int32_t exp_bytes = p->has_expand ? k * max_band_input_rows(p, input->h, output->h) * layout->cols : 0;
    /* 4-byte aligned: every part before it is a multiple of 4 bytes when K = 4 */
    layout->widened = k == 4 ? (uint32_t *)(void *)(layout->expanded + exp_bytes) : NULL;
    return FB_OK;
}


static inline int8_t requant(const fb_conv_params *c, const fb_channel_quant *q, int32_t ch, int32_t acc)
{
    const int32_t out = fb_mbqm(acc, q->multiplier[ch], q->shift[ch]) + c->output_offset;
    return (int8_t)fb_clamp(out, c->act_min, c->act_max);
}

static inline int32_t dot_s8(const int8_t *w, const int8_t *x, int32_t n)
{
    int32_t acc0 = 0;
    int32_t acc1 = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc0 += (int32_t)w[i] * x[i] + (int32_t)w[i + 1] * x[i + 1];
        acc1 += (int32_t)w[i + 2] * x[i + 2] + (int32_t)w[i + 3] * x[i + 3];
    }
    for (; i < n; ++i) {
        acc0 += (int32_t)w[i] * x[i];
    }
    return acc0 + acc1;
}

/* Expansion channel i on input rows [row_lo, row_lo + rows) and columns
 * [col_lo, col_lo + cols) into dst (rows x cols pixels, `step` bytes apart).
 * bias + sum w * (x + offset) is computed as (bias + offset * sum w) + sum w * x:
 * the same integer. */
static void expand_channel(const fb_bottleneck_params *p, const fb_view *input, int32_t i, int32_t row_lo,
                           int32_t rows, int32_t col_lo, int32_t cols, int8_t *dst, int32_t step)
{
    const int32_t in_c = p->in_c;
    const int8_t *w = p->expand_filter + i * in_c;
    int32_t sum_w = 0;
    for (int32_t c = 0; c < in_c; ++c) {
        sum_w += w[c];
    }
    const int32_t base = (p->expand_bias != NULL ? p->expand_bias[i] : 0) + p->expand.input_offset * sum_w;
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *px = input->data + (row_lo + r) * input->row_stride + col_lo * in_c;
        int8_t *out = dst + r * cols * step;
        for (int32_t x = 0; x < cols; ++x, px += in_c, out += step) {
            *out = requant(&p->expand, &p->expand_q, i, base + dot_s8(w, px, in_c));
        }
    }
}

/* Depthwise channel i of output rows [b0, b0 + nb), all columns, into dst
 * (nb x out_w pixels, `step` bytes apart), reading the channel's plane of the
 * in_h x in_w map. */
static void dw_channel(const fb_bottleneck_params *p, const bn_plane *pl, int32_t i, int32_t in_h, int32_t in_w,
                       int32_t b0, int32_t nb, int32_t out_w, int8_t *dst, int32_t step)
{
    const fb_conv_params *c = &p->dw.conv;
    const int32_t mid_c = p->mid_c;
    const int32_t kw = p->kw;
    const int32_t offset = c->input_offset;
    const int32_t bias = p->dw_bias != NULL ? p->dw_bias[i] : 0;
    const int32_t x_step = c->dilation_w * pl->px;
    const int8_t *filter = p->dw_filter + i;
    for (int32_t oy = b0; oy < b0 + nb; ++oy) {
        const int32_t iy0 = oy * c->stride_h - c->pad_top;
        int32_t ky_start, ky_end;
        fb_valid_taps(iy0, c->dilation_h, p->kh, in_h, &ky_start, &ky_end);
        for (int32_t ox = 0; ox < out_w; ++ox) {
            const int32_t ix0 = ox * c->stride_w - c->pad_left;
            int32_t kx_start, kx_end;
            fb_valid_taps(ix0, c->dilation_w, kw, in_w, &kx_start, &kx_end);
            int32_t acc = bias;
            if (kx_start < kx_end) {
                for (int32_t ky = ky_start; ky < ky_end; ++ky) {
                    const int8_t *x = plane_at(pl, iy0 + ky * c->dilation_h, ix0 + kx_start * c->dilation_w);
                    const int8_t *f = filter + (ky * kw + kx_start) * mid_c;
                    for (int32_t kx = kx_start; kx < kx_end; ++kx, x += x_step, f += mid_c) {
                        acc += (int32_t)*f * ((int32_t)*x + offset);
                    }
                }
            }
            *dst = requant(c, &p->dw_q, i, acc);
            dst += step;
        }
    }
}

/* acc[px][o] += (dw[px] + offset) * project_filter[o][i] over the band's
 * pixels (dw: `step` bytes apart). */
static void project_accumulate(const fb_bottleneck_params *p, int32_t i, const int8_t *dw, int32_t pixels,
                               int32_t step, int32_t *acc)
{
    const int32_t out_c = p->out_c;
    const int32_t mid_c = p->mid_c;
    const int32_t offset = p->project.input_offset;
    const int8_t *w = p->project_filter + i;
    for (int32_t px = 0; px < pixels; ++px, acc += out_c) {
        const int32_t v = (int32_t)dw[px * step] + offset;
        if (v == 0) {
            continue;       /* adds nothing (common: the activation's zero) */
        }
        const int8_t *wo = w;
        for (int32_t o = 0; o < out_c; ++o, wo += mid_c) {
            acc[o] += v * (int32_t)*wo;
        }
    }
}

/* Requantize output rows [b0, b0 + nb) from their accumulators (bias included). */
static void write_band(const fb_bottleneck_params *p, const fb_view *input, fb_view *output, int32_t b0,
                       int32_t nb, const int32_t *acc)
{
    const int32_t row = output->w * p->out_c;
    for (int32_t r = 0; r < nb; ++r) {
        int8_t *out = output->data + (b0 + r) * output->row_stride;
        const int32_t *a = acc + r * row;
        if (p->has_residual) {
            const int8_t *x = input->data + (b0 + r) * input->row_stride;
            for (int32_t e = 0, o = 0; e < row; ++e) {
                const int8_t y = requant(&p->project, &p->project_q, o, a[e]);
                out[e] = fb_add_one(&p->add, x[e], y);
                o = o + 1 == p->out_c ? 0 : o + 1;
            }
        } else {
            for (int32_t e = 0, o = 0; e < row; ++e) {
                out[e] = requant(&p->project, &p->project_q, o, a[e]);
                o = o + 1 == p->out_c ? 0 : o + 1;
            }
        }
    }
}

fb_status fb_bottleneck_s8_portable(const fb_bottleneck_params *p, const fb_view *input, fb_view *output,
                                    const fb_scratch *scratch)
{
    fb_bottleneck_layout lay;
    const fb_status st = fb_bottleneck_begin(p, input, output, scratch, &lay);
    if (st != FB_OK) {
        return st;
    }
    const fb_conv_params *d = &p->dw.conv;
    const int32_t in_h = input->h, in_w = input->w, out_h = output->h, out_w = output->w;
    const int32_t k_block = p->channel_block;
    int32_t *acc = lay.acc;
    const int32_t col_lo = lay.col_lo, cols = lay.cols;

    for (int32_t b0 = 0; b0 < out_h; b0 += p->band_rows) {
        const int32_t nb = out_h - b0 < p->band_rows ? out_h - b0 : p->band_rows;
        const int32_t pixels = nb * out_w;
        fb_bottleneck_band_start(p, acc, pixels);
        int32_t row_lo, rows;
        fb_bottleneck_read_range(b0, nb, d->stride_h, d->pad_top, p->kh, d->dilation_h, in_h, &row_lo, &rows);
        for (int32_t i0 = 0; i0 < p->mid_c; i0 += k_block) {
            /* the pass's expansion channels first (the planes hold K channels
             * per pixel, as the optimized kernel lays them out), then each
             * channel's depthwise and projection */
            if (p->has_expand && rows > 0 && cols > 0) {
                for (int32_t k = 0; k < k_block; ++k) {
                    expand_channel(p, input, i0 + k, row_lo, rows, col_lo, cols, lay.expanded + k, k_block);
                }
            }
            for (int32_t k = 0; k < k_block; ++k) {
                const int32_t i = i0 + k;
                bn_plane pl;
                if (p->has_expand) {
                    pl.base = lay.expanded + k;
                    pl.y0 = row_lo;
                    pl.x0 = col_lo;
                    pl.px = k_block;
                    pl.row = cols * k_block;
                } else {
                    pl.base = input->data + i;
                    pl.y0 = 0;
                    pl.x0 = 0;
                    pl.px = input->c;
                    pl.row = input->row_stride;
                }
                dw_channel(p, &pl, i, in_h, in_w, b0, nb, out_w, lay.dw + k, k_block);
                project_accumulate(p, i, lay.dw + k, pixels, k_block, acc);
            }
        }
        write_band(p, input, output, b0, nb, acc);
    }
    return FB_OK;
}

fb_status fb_bottleneck_s8(const fb_bottleneck_params *p, const fb_view *input, fb_view *output,
                           const fb_scratch *scratch)
{
#if FB_KERNELS_DSP
    return fb_bottleneck_s8_dsp(p, input, output, scratch);
#else
    return fb_bottleneck_s8_portable(p, input, output, scratch);
#endif
}
