/* fusebench portable int8 runtime: the kernels the generated code calls.
 *
 * Every kernel reproduces LiteRT's reference kernel (BUILTIN_REF) for the same
 * op bit for bit. The API follows CMSIS-NN's shape: scalar parameters in small
 * structs, per-channel requantization as two arrays (plus, for conv and
 * depthwise, optional tables prepared ahead of time, e.g. in flash), scratch
 * memory passed with its size (fb_scratch, CMSIS-NN's cmsis_nn_context) to
 * the kernels that take it, each with one fb_<kernel>_buffer_size(), and a
 * status code from every call.
 *
 * Feature maps are NHWC int8, batch 1. Kernels read and write *windows* (fb_view)
 * of a feature map so that a fused, tiled schedule can call the same kernels on
 * tiles: a kernel computes exactly the output window it is given, reading its
 * input through the input window, and treats everything outside the whole map
 * [0, full_h) x [0, full_w) as zero padding.
 *
 * Plain C99, no malloc, no libm, no vendor headers.
 */
#ifndef FB_RUNTIME_H
#define FB_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FB_OK = 0, FB_ERR_ARG = -1, FB_ERR_SCRATCH = -2 } fb_status;

/* Scratch memory for one call: `size` bytes at `buf`, 4-byte aligned; its
 * contents need not survive between calls. Every kernel that takes scratch
 * (conv, depthwise conv, bottleneck) has one
 *   int32_t fb_<kernel>_buffer_size(<the kernel's arguments but data pointers and scratch>)
 * that returns the bytes this very call needs in this build (0: none; the
 * scratch pointer may then be NULL). A kernel given fewer bytes, a NULL or a
 * misaligned buffer where it needs some returns FB_ERR_SCRATCH, on the device
 * too, instead of writing past the buffer. The size functions read shapes,
 * parameters and whether q->prepared is NULL, never the data. */
typedef struct {
    int8_t *buf;
    int32_t size;
} fb_scratch;

/* A window on an NHWC int8 feature map (batch 1). `data` points at element
 * (y0, x0, 0) of the window, the window is h x w x c, rows are row_stride
 * elements apart (>= w*c), and full_h/full_w give the size of the whole feature
 * map so a kernel knows where zero padding lies (outside [0,full_h) x [0,full_w)).
 * Non-spatial tensors (e.g. [1, N]) are views with h = w = 1, c = N. */
typedef struct {
    int8_t *data;
    int32_t y0, x0, h, w, c, row_stride, full_h, full_w;
} fb_view;

/* Requantization multiplier in TFLite's form: real = multiplier * 2^(shift - 31),
 * shift > 0 is a left shift. */
typedef struct { int32_t multiplier; int32_t shift; } fb_quant;                        /* per tensor */
/* Per output channel. `prepared` optionally points at the layer's prepared
 * tables (fb_conv_s8_prepare() / fb_dw_conv_s8_prepare(): the optimized
 * kernels' per-channel constants, computed once, e.g. at build time into flash);
 * NULL makes the optimized kernels build them in scratch on every call (their
 * fb_*_buffer_size() counts the tables then). The portable kernels ignore it;
 * multiplier and shift are always required. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
    const void *prepared;   /* may be NULL; 4-byte aligned (8 is best) */
} fb_channel_quant;

/* input_offset = -input zero point, output_offset = output zero point.
 * pad_top/pad_left as TFLite computes them (SAME padding puts the odd pixel at
 * the bottom/right); act_min/act_max is the fused activation's clamp range. */
typedef struct {
    int32_t input_offset, output_offset, stride_h, stride_w, dilation_h, dilation_w,
        pad_top, pad_left, act_min, act_max;
} fb_conv_params;
typedef struct { fb_conv_params conv; int32_t depth_multiplier; } fb_dw_conv_params;
typedef struct { int32_t out_c, kh, kw, in_c; } fb_filter_dims;

/* Kernel implementations. Every public kernel below has a portable C99
 * implementation (the reference, *_portable). On cores with the DSP extension
 * (Cortex-M4/M7/M33...) conv, depthwise conv, fully connected, add, the
 * bottleneck and others dispatch to optimized implementations (SMLAD/SXTB16,
 * fb_*_dsp.c) that give the same bytes; they fall back to the portable code
 * for cases they do not cover.
 * fb_runtime_kernels() says which set this build dispatches to. */
const char *fb_runtime_kernels(void);   /* "dsp" or "portable" */

/* Prepared tables. A layer's optimized kernel needs per-channel constants that
 * depend only on the layer (params, multipliers/shifts, filter, bias):
 * requantization records and, for depthwise, offset-folded biases and the
 * filter widened to int16. fb_*_prepare() computes them into `tables` (at
 * least fb_*_prepared_size() bytes, 4-byte aligned); pass the result in
 * fb_channel_quant.prepared and the kernel neither builds them nor needs
 * scratch for them (fb_*_buffer_size() of that call). Every build compiles the
 * prepare functions and they give the same bytes in every build, so a host can
 * prepare a target's tables (harness/lowering.py does). The tables hold int32,
 * int16 and int8 values in the byte order of the machine that prepared them
 * (little-endian on the host and on Cortex-M) and start with this header: */
typedef struct {
    int32_t tag;     /* FB_PREPARED_CONV or FB_PREPARED_DW */
    int32_t fast;    /* 1: the optimized kernel's tables follow the header;
                      * 0: the optimized kernel cannot take this layer and runs
                      * the portable code; nothing after the header is defined
                      * (storing the header alone, FB_PREPARED_HEADER_BYTES, will do) */
    int32_t out_c;   /* fd->out_c the tables were made for */
    int32_t taps;    /* fd->kh * fd->kw * fd->in_c */
} fb_prepared_header;
#define FB_PREPARED_CONV 0x56434246          /* "FBCV" */
#define FB_PREPARED_DW 0x57444246            /* "FBDW" */
#define FB_PREPARED_HEADER_BYTES 16
/* A kernel given tables whose header does not match the call returns
 * FB_ERR_ARG. prepare returns FB_ERR_ARG for invalid arguments, else FB_OK
 * (whether or not the fast path applies: see fast). */

/* CONV_2D. filter is OHWI (out_c x kh x kw x in_c), bias has out_c entries or is
 * NULL. Computes the `output` window; the input window must hold every input
 * pixel inside the map that this output window reads. scratch: at least
 * fb_conv_s8_buffer_size() bytes, which with taps = kh*kw*in_c and
 * g = ceil(taps/4) is
 *   optimized kernels (DSP build)  32*g, plus taps unless the kernel is 1x1 (four
 *                                  int16 columns, a byte patch), plus, when
 *                                  q->prepared is NULL, fb_conv_s8_prepared_size()
 *                                  (the kernel prepares the tables at the start
 *                                  of scratch on every call); this covers the
 *                                  portable code they fall back to
 *   portable kernels               2*taps (one int16 column)
 *   fb_conv_s8_prepared_size()     16 + 16*out_c, plus 4*g when taps is not a
 *                                  multiple of 4 (header, requantization
 *                                  records, the zero-padded last filter row),
 *                                  the same in every build. */
fb_status fb_conv_s8(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                     const fb_filter_dims *fd, const int8_t *filter /* OHWI */,
                     const int32_t *bias /* may be NULL */,
                     fb_view *output /* window of the output map to compute */, const fb_scratch *scratch);
int32_t fb_conv_s8_buffer_size(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                               const fb_filter_dims *fd, const fb_view *output);
int32_t fb_conv_s8_prepared_size(const fb_filter_dims *fd);
fb_status fb_conv_s8_prepare(const fb_conv_params *p, const fb_channel_quant *q, const fb_filter_dims *fd,
                             const int8_t *filter, const int32_t *bias /* may be NULL */, void *tables);
fb_status fb_conv_s8_portable(const fb_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                              const fb_filter_dims *fd, const int8_t *filter, const int32_t *bias,
                              fb_view *output, const fb_scratch *scratch);

/* DEPTHWISE_CONV_2D. filter is 1 x kh x kw x (C*M) with fd->out_c = C*M and
 * fd->in_c = 1; output channel m + ic*M reads input channel ic. scratch: at
 * least fb_dw_conv_s8_buffer_size() bytes, which is
 *   optimized kernels (DSP build)  0 with prepared tables, else
 *                                  fb_dw_conv_s8_prepared_size() (the tables,
 *                                  prepared in scratch on every call)
 *   portable kernels               0
 *   fb_dw_conv_s8_prepared_size()  16 + (20 + 2*kh*kw) * out_c (header,
 *                                  requantization records, offset-folded
 *                                  biases, the filter widened to int16), the
 *                                  same in every build. */
fb_status fb_dw_conv_s8(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                        const fb_filter_dims *fd, const int8_t *filter /* 1HW(C*M) */,
                        const int32_t *bias /* may be NULL */, fb_view *output, const fb_scratch *scratch);
int32_t fb_dw_conv_s8_buffer_size(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_view *input,
                                  const fb_filter_dims *fd, const fb_view *output);
int32_t fb_dw_conv_s8_prepared_size(const fb_filter_dims *fd);
fb_status fb_dw_conv_s8_prepare(const fb_dw_conv_params *p, const fb_channel_quant *q, const fb_filter_dims *fd,
                                const int8_t *filter, const int32_t *bias /* may be NULL */, void *tables);
fb_status fb_dw_conv_s8_portable(const fb_dw_conv_params *p, const fb_channel_quant *q,
                                 const fb_view *input, const fb_filter_dims *fd, const int8_t *filter,
                                 const int32_t *bias, fb_view *output, const fb_scratch *scratch);

/* ADD (same shapes, no broadcast). Offsets are -zero_point for inputs and
 * +zero_point for the output; input*_shift/output_shift are exponents <= 0. */
typedef struct {
    int32_t input1_offset, input1_multiplier, input1_shift;
    int32_t input2_offset, input2_multiplier, input2_shift;
    int32_t left_shift, output_offset, output_multiplier, output_shift, act_min, act_max;
} fb_add_params;
/* Elementwise over the window; a, b and out must have the same h, w, c. */
fb_status fb_add_s8(const fb_add_params *p, const fb_view *a, const fb_view *b, fb_view *out);
fb_status fb_add_s8_portable(const fb_add_params *p, const fb_view *a, const fb_view *b, fb_view *out);

/* A whole MobileNetV2 inverted residual block in one call, a block of
 * channel_block expansion channels at a time (bottleneck reordering): optional
 * 1x1 expansion CONV_2D (in_c -> mid_c), DEPTHWISE_CONV_2D kh x kw (mid_c
 * channels, depth multiplier 1), 1x1 projection CONV_2D (mid_c -> out_c),
 * optional residual ADD of the block input.
 * The mid_c-channel expanded and depthwise maps never exist: the output is made
 * in bands of band_rows output rows; per band and block of K = channel_block
 * expansion channels i..i+K-1 the kernel computes the expansion rows the band's
 * depthwise rows read (halo rows are recomputed by the next band), the band's
 * depthwise channels i..i+K-1, and adds (dw_k + project.input_offset) *
 * project_filter[o][k] into int32 accumulators (band_rows x W' x out_c). After
 * the last channel each band is requantized as the projection CONV_2D would,
 * then (has_residual) put through ADD's arithmetic with the block input. The
 * bytes equal those of the four kernels run one after another (integer sums do
 * not depend on order; every requantization is the same arithmetic), for
 * either channel block and in every build. Each stage's fields mean what they
 * mean in its own kernel's call; the `prepared` tables of the fb_channel_quant
 * are ignored.
 *   expand:  1x1, stride 1, no padding; filter [mid_c][in_c]; ignored when has_expand == 0
 *            (expansion ratio 1: the depthwise reads the block input, mid_c == in_c)
 *   dw:      stride, dilation, padding as TFLite; filter [1][kh][kw][mid_c]
 *   project: 1x1, stride 1, no padding; filter [out_c][mid_c]
 *   add:     input 1 (a) is the block input, input 2 (b) the projection output
 *            (swap the input1_* and input2_* fields for a model that adds them the
 *            other way round); needs in_c == out_c and an output the size of the input
 * Biases may be NULL. input and output are whole maps (y0 = x0 = 0, h = full_h,
 * w = full_w; rows may be padded) that must not overlap; output is H' x W' x
 * out_c. band_rows: 1..H' (H' = one band: accumulators for the whole output).
 * channel_block: 1, or 4 when mid_c is a multiple of 4 (the optimized kernels
 * (DSP build) run four channels per pass with SIMD instructions: an input word
 * unpacked once feeds four expansion rows, the depthwise takes four channels
 * per word, the projection two SMLAD per pixel and output channel; with 1, or
 * for parameters they do not cover, they run the portable code).
 * scratch: at least fb_bottleneck_s8_buffer_size() bytes, the same in every
 * build, laid out as (K = channel_block)
 *   int32 accumulators   4 * band_rows * W' * out_c
 *   depthwise band       K * band_rows * W'               (K channels per pixel, int8)
 *   expansion rows       K * R * C (has_expand only; K channels per pixel, int8), where
 *                        C = the input columns the depthwise reads (all W unless
 *                        VALID-style padding leaves some unread) and R = the
 *                        most input rows any band's depthwise reads, i.e. the
 *                        largest count of rows in [b*sh - pad_top,
 *                        (b + n - 1)*sh - pad_top + (kh - 1)*dh] inside [0, H)
 *                        over the bands (b, n) (at most (band_rows-1)*sh + (kh-1)*dh + 1)
 *   widened filters      K = 4 only: 8 * (out_c + kh*kw + (has_expand ? in_c : 0)), the
 *                        pass's four channels of the three filters as int16 pairs
 *                        (written by the optimized kernels only).
 * The buffer size reads only the shapes and parameters (not the pointers, nor
 * the views' data) and is 0 for unusable ones (which the kernel refuses with
 * FB_ERR_ARG). */
typedef struct {
    int32_t has_expand;     /* 0: no expansion op (expansion ratio 1) */
    fb_conv_params expand;
    fb_channel_quant expand_q;
    const int8_t *expand_filter;   /* [mid_c][in_c] */
    const int32_t *expand_bias;    /* [mid_c] or NULL */
    fb_dw_conv_params dw;
    fb_channel_quant dw_q;
    const int8_t *dw_filter;       /* [1][kh][kw][mid_c] */
    const int32_t *dw_bias;        /* [mid_c] or NULL */
    fb_conv_params project;
    fb_channel_quant project_q;
    const int8_t *project_filter;  /* [out_c][mid_c] */
    const int32_t *project_bias;   /* [out_c] or NULL */
    int32_t has_residual;          /* 1: ADD(block input, projection output) */
    fb_add_params add;
    int32_t in_c, mid_c, out_c, kh, kw;   /* channels; the depthwise kernel size */
    int32_t band_rows;                    /* output rows per band, 1..H' */
    int32_t channel_block;                /* expansion channels per pass: 1, or 4 (mid_c % 4 == 0) */
} fb_bottleneck_params;
int32_t fb_bottleneck_s8_buffer_size(const fb_bottleneck_params *p, const fb_view *input, const fb_view *output);
fb_status fb_bottleneck_s8(const fb_bottleneck_params *p, const fb_view *input, fb_view *output,
                           const fb_scratch *scratch);
fb_status fb_bottleneck_s8_portable(const fb_bottleneck_params *p, const fb_view *input, fb_view *output,
                                    const fb_scratch *scratch);

/* MEAN over H and W (TFLite MEAN int8 with axes [1,2], keep_dims either way).
 * multiplier/shift quantize input_scale / output_scale (the kernel folds in
 * 1/(H*W) exactly as LiteRT does). input must be the whole map; output gets c
 * values. */
typedef struct { int32_t input_zero_point, output_zero_point, multiplier, shift; } fb_mean_params;
fb_status fb_mean_s8(const fb_mean_params *p, const fb_view *input, int8_t *output);
/* The same MEAN computed tile by tile, so the map never exists whole: reset an
 * int32 accumulator per channel, add every pixel exactly once (any tiling, any
 * order), then finish with the map's pixel count (H*W). Bit-exact with fb_mean_s8. */
int32_t fb_mean_acc_bytes(int32_t channels);      /* bytes of the int32 accumulator (not scratch) */
void fb_mean_acc_reset(int32_t *acc, int32_t channels);
fb_status fb_mean_acc_s8(const fb_view *tile, int32_t *acc);
fb_status fb_mean_finish_s8(const fb_mean_params *p, int32_t count, int32_t channels, const int32_t *acc,
                            int8_t *output);

/* AVERAGE_POOL_2D int8: averages the taps inside the map only (TFLite's SAME
 * padding rule), rounding half away from zero; in/out quantization are equal. */
typedef struct {
    int32_t stride_h, stride_w, filter_h, filter_w, pad_top, pad_left, act_min, act_max;
} fb_pool_params;
fb_status fb_avgpool_s8(const fb_pool_params *p, const fb_view *input, fb_view *output);

/* FULLY_CONNECTED int8 (input batches x accum_depth, filter out_depth x
 * accum_depth, output batches x out_depth). LiteRT's reference kernel scales the
 * int32 accumulator in double precision: out = round(acc * effective_scale) with
 * effective_scale = in_scale * filter_scale / out_scale (one entry, or out_depth
 * entries when per_channel), rounding half away from zero. */
typedef struct {
    int32_t input_offset, filter_offset, output_offset, act_min, act_max;
    int32_t batches, accum_depth, out_depth, per_channel;
} fb_fc_params;
fb_status fb_fully_connected_s8(const fb_fc_params *p, const double *effective_scale,
                                const int8_t *input, const int8_t *filter,
                                const int32_t *bias /* may be NULL */, int8_t *output);
fb_status fb_fully_connected_s8_portable(const fb_fc_params *p, const double *effective_scale,
                                         const int8_t *input, const int8_t *filter, const int32_t *bias,
                                         int8_t *output);

/* SOFTMAX int8 -> int8 (output zero point -128, scale 1/256) with TFLite's
 * reference fixed-point exp; softmax along the last dimension (depth) of
 * `outer` rows. Parameters from PreprocessSoftmaxScaling (see harness/quant.py). */
typedef struct { int32_t input_multiplier, input_left_shift, diff_min, outer, depth; } fb_softmax_params;
fb_status fb_softmax_s8(const fb_softmax_params *p, const int8_t *input, int8_t *output);

/* Elementwise kernels (LOGISTIC and tables, HARD_SWISH) take same-shape
 * windows: a tile of a fused stage or the whole map (1 x 1 x N for a tensor
 * that is not a map); input and output may be the same bytes (in place).
 *
 * LOGISTIC int8 -> int8 (and any other int8 -> int8 function of one value,
 * e.g. ADD or MUL of a one-valued constant): output = table[(uint8_t)input]. LiteRT's reference LOGISTIC for int8 is
 * such a lookup: its Prepare fills a 256-entry table in float arithmetic
 * (1 / (1 + expf(-x)) of every dequantized input value, rounded half away from
 * zero to the output scale 1/256 plus the output zero point, clamped); the
 * table is a model constant, computed on the host (harness/frontend/quant.py)
 * and stored in flash, indexed by the input byte read as unsigned
 * (entry 0 is input 0, entry 255 is input -1). */
fb_status fb_lut_s8(const int8_t *table /* 256 entries */, const fb_view *input, fb_view *output);

/* HARD_SWISH int8 -> int8 as LiteRT's reference kernel (HardSwishParams): the
 * input minus its zero point, times 2^7, is carried in int16 fixed point; the
 * "relu-ish" factor ((x + 3) / 6 clamped to [0, 1]) comes from it through
 * reluish_multiplier * 2^reluish_exponent (a rounding doubling high multiply,
 * with a saturating left shift or a rounding right shift for either sign of
 * the exponent), the value on the output scale through output_multiplier *
 * 2^output_exponent (output_exponent <= 0); their product (a truncating
 * doubling high multiply), shifted and offset, is clamped to int8. The two
 * multipliers are int16 values (0..32767) in int32 fields, from HardSwishPrepare
 * (harness/frontend/quant.py: hard_swish_params). The harness runs it on the
 * host over all 256 inputs to make HARD_SWISH's fb_lut_s8 table: the firmware
 * looks the values up instead (about 40 instructions per value less). */
typedef struct {
    int32_t input_zero_point, output_zero_point;
    int32_t reluish_multiplier, reluish_exponent;   /* exponent: -31..31 */
    int32_t output_multiplier, output_exponent;     /* exponent: -31..0 */
} fb_hard_swish_params;
fb_status fb_hard_swish_s8(const fb_hard_swish_params *p, const fb_view *input, fb_view *output);

/* PAD of H and W with pad_value (the zero point). output is a window of the
 * padded map; input is a window of the unpadded map with the same channels. */
typedef struct { int32_t pad_top, pad_left, pad_value; } fb_pad_params;
fb_status fb_pad_s8(const fb_pad_params *p, const fb_view *input, fb_view *output);

/* QUANTIZE int8 -> int8 (requantize `size` values). */
typedef struct { int32_t input_zero_point, output_zero_point, multiplier, shift, size; } fb_requantize_params;
fb_status fb_requantize_s8(const fb_requantize_params *p, const int8_t *input, int8_t *output);

/* Model edges: a model's float32 or uint8 input and float32 output. `size`
 * values; the float tensors are 4-byte aligned. `scale` points at the int8
 * side's scale, the float32 of the model file.
 *
 * QUANTIZE uint8 -> int8 (LiteRT reference Requantize): as fb_requantize_s8
 * with uint8 input values. */
fb_status fb_requantize_u8_s8(const fb_requantize_params *p, const uint8_t *input, int8_t *output);

/* QUANTIZE float32 -> int8 (LiteRT reference AffineQuantize): q = x / scale
 * in float (single precision), rounded half away from zero, converted to
 * int32, plus output_zero_point, clamped to int8. Where the conversion has no
 * int32 value (NaN, |q| >= 2^31, infinities) the result is what LiteRT gives
 * on its x86-64 host: INT32_MIN, to which the zero point is added modulo 2^32
 * (so -128 for a zero point >= 0, 127 for a negative one). */
typedef struct { int32_t output_zero_point, size; } fb_quantize_params;
fb_status fb_quantize_f32_s8(const fb_quantize_params *p, const float *scale /* 1 value */,
                             const float *input, int8_t *output);

/* DEQUANTIZE int8 -> float32 (LiteRT reference Dequantize): the float of
 * (double)scale * (x - input_zero_point), computed in double precision. */
typedef struct { int32_t input_zero_point, size; } fb_dequantize_params;
fb_status fb_dequantize_s8_f32(const fb_dequantize_params *p, const float *scale /* 1 value */,
                               const int8_t *input, float *output);

/* RESHAPE: a byte copy (NHWC bytes do not move); in == out is allowed. */
fb_status fb_copy_s8(const int8_t *input, int8_t *output, int32_t size);

/* ---- Layout, broadcast and reduction kernels (TRANSPOSE, STRIDED_SLICE,
 * CONCATENATION, RESIZE_NEAREST_NEIGHBOR, MAX_POOL_2D, MUL, MEAN over any axes).
 * Tensors of up to FB_MAX_DIMS dimensions are whole and contiguous (row-major,
 * the last dimension fastest); their shapes and index tables are constant
 * int32 arrays (in flash next to the weights). Quantization passes through the
 * pure data movements unchanged, as in LiteRT's reference kernels. */
#define FB_MAX_DIMS 6

/* TRANSPOSE: output dimension k is input dimension perm[k] (a permutation of
 * 0..rank-1); in_shape has rank entries, 1 <= rank <= FB_MAX_DIMS. input and
 * output must not overlap. */
typedef struct { int32_t rank; } fb_transpose_params;
fb_status fb_transpose_s8(const fb_transpose_params *p, const int32_t *in_shape, const int32_t *perm,
                          const int8_t *input, int8_t *output);

/* STRIDED_SLICE with the indices already resolved as LiteRT's StartForAxis /
 * EndForAxis do (masks, negative indices, clamping, shrink-axis): along axis d
 * the kernel reads start[d], start[d] + stride[d], ... while the index is
 * < stop[d] (stride > 0) or > stop[d] (stride < 0), and writes the picked
 * elements in order. 0 <= start[d] < in_shape[d] unless the axis is empty;
 * stride[d] != 0. input and output must not overlap. */
typedef struct { int32_t rank; } fb_strided_slice_params;
fb_status fb_strided_slice_s8(const fb_strided_slice_params *p, const int32_t *in_shape, const int32_t *start,
                              const int32_t *stop, const int32_t *stride, const int8_t *input,
                              int8_t *output);

/* CONCATENATION of num_inputs tensors along one axis (LiteRT's int8 kernel
 * requires every input's scale and zero point to equal the output's: a byte
 * copy). outer = the product of the dimensions before the axis; input i
 * contributes copy_bytes[i] = (its size along the axis) * (the product of the
 * dimensions after it) bytes per outer step. inputs holds num_inputs pointers. */
typedef struct { int32_t num_inputs, outer; } fb_concat_params;
fb_status fb_concatenation_s8(const fb_concat_params *p, const int32_t *copy_bytes, const int8_t *const *inputs,
                              int8_t *output);

/* RESIZE_NEAREST_NEIGHBOR of whole maps: output pixel (y, x) is input pixel
 * (rows[y], cols[x]), all channels. rows has output->h entries in [0, input->h),
 * cols output->w entries in [0, input->w): LiteRT's float index arithmetic
 * (align_corners, half_pixel_centers) is done once when the model is built. */
fb_status fb_resize_nearest_s8(const int32_t *rows, const int32_t *cols, const fb_view *input, fb_view *output);

/* MAX_POOL_2D int8 (fb_pool_params as AVERAGE_POOL_2D): the largest tap inside
 * the map (padding is never a tap; -128 when a window holds none), then clamped
 * to [act_min, act_max]. Computes the output window from an input window that
 * holds its receptive field, like fb_avgpool_s8. */
fb_status fb_maxpool_s8(const fb_pool_params *p, const fb_view *input, fb_view *output);

/* MUL int8 with broadcasting (LiteRT reference integer Mul): out =
 * clamp(output_offset + MultiplyByQuantizedMultiplier((a + input1_offset) *
 * (b + input2_offset), output_multiplier, output_shift), act_min, act_max).
 * Offsets are -zero_point for the inputs, +zero_point for the output;
 * output_multiplier/shift quantize input1_scale * input2_scale / output_scale.
 * shape1, shape2 and out_shape have rank entries (inputs padded with leading
 * 1s to the output's rank); an input dimension of 1 where the output's is
 * larger is broadcast. */
typedef struct {
    int32_t input1_offset, input2_offset, output_offset, output_multiplier, output_shift, act_min, act_max;
    int32_t rank;
} fb_mul_params;
fb_status fb_mul_s8(const fb_mul_params *p, const int32_t *shape1, const int32_t *shape2, const int32_t *out_shape,
                    const int8_t *input1, const int8_t *input2, int8_t *output);

/* MEAN int8 over any axes (LiteRT's reference QuantizedMeanOrSum): per output
 * element the int32 sum of its count input values, minus input_zero_point *
 * count, requantized by multiplier/shift (input_scale / output_scale) with
 * 1/count folded in exactly as fb_mean_finish_s8 does, plus output_zero_point,
 * clamped to int8. Bit `d` of reduced_mask set: axis d is reduced. Outputs come
 * in input order with the reduced axes left out (keep_dims does not change the
 * bytes). in_shape has rank entries. */
typedef struct {
    int32_t input_zero_point, output_zero_point, multiplier, shift, rank, reduced_mask;
} fb_reduce_mean_params;
fb_status fb_reduce_mean_s8(const fb_reduce_mean_params *p, const int32_t *in_shape, const int8_t *input,
                            int8_t *output);

/* TFLite's double-rounding MultiplyByQuantizedMultiplier, exported for tests. */
int32_t fb_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

#ifdef __cplusplus
}
#endif

#endif /* FB_RUNTIME_H */
