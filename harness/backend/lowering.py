"""Graph IR op -> a call of one C runtime kernel (`firmware/runtime`).

`lower_op` computes every kernel parameter the way LiteRT's Prepare does
(harness.frontend.quant) and checks what the kernels and LiteRT's reference kernels
require, raising FusebenchError with a one-line reason otherwise. The code
generator turns a KernelCall into C struct initialisers and one call;
harness.backend.hostrt turns the same KernelCall into ctypes structs.

KernelCall conventions (per kernel; `params` keys are the C struct field names):

  fb_conv_s8        params: fb_conv_params fields + fb_filter_dims fields (out_c, kh, kw, in_c)
                    arrays: filter int8 OHWI, bias int32 (absent when the op has none),
                            multiplier int32 [out_c], shift int32 [out_c] (the fb_channel_quant),
                            prepared int32 words: the layer's prepared tables
                            (fb_channel_quant.prepared; see below)
                    scratch: conv_scratch_bytes_prepared() (fb_conv_s8_buffer_size_prepared()):
                            32 * ceil(taps / 4) (four int16 columns) + taps unless 1x1 (a byte
                            patch), taps = kh * kw * in_c; 4-byte aligned
  fb_dw_conv_s8     params: fb_conv_params fields + depth_multiplier + fb_filter_dims (in_c = 1)
                    arrays: filter int8 1 x kh x kw x out_c, bias, multiplier, shift, prepared
                            as above
                    scratch: 0 (fb_dw_conv_s8_buffer_size_prepared())
                    (Scratch is what the optimized Cortex-M4/M7 kernels need with prepared
                    tables, which covers the portable kernels' needs; the runtime's
                    *_buffer_size_prepared() functions return the same numbers in every
                    build. Without prepared tables the kernels would need
                    conv_scratch_bytes() / dw_conv_scratch_bytes(): the tables too.)
  fb_add_s8         params: fb_add_params fields
  fb_mean_s8        params: fb_mean_params fields
  fb_avgpool_s8     params: fb_pool_params fields
  fb_pad_s8         params: fb_pad_params fields
  fb_fully_connected_s8  params: fb_fc_params fields
                    arrays: filter int8 [out_depth, accum_depth], bias int32 (optional),
                            effective_scale float64 [1 or out_depth] (emit as C99 hex floats:
                            float.hex() round-trips the exact double)
  fb_softmax_s8     params: fb_softmax_params fields
  fb_requantize_s8  params: fb_requantize_params fields
  fb_copy_s8        params: size (bytes). RESHAPE: `alias` is True because the NHWC bytes
                    do not move, so a planner may give the output the input's buffer and
                    skip the call (fb_copy_s8 accepts in == out).

fb_bottleneck_s8 (a whole inverted residual block in one call, one expansion channel at a
time; fb_runtime.h) has no lowering of its own: it takes the lowered calls of the block's
ops (bottleneck_parts / bottleneck_dims); bottleneck_scratch_bytes() is its
fb_bottleneck_s8_buffer_size() and bottleneck_macs() the MACs it executes with halo rows
recomputed per band (harness.backend.hostrt.run_bottleneck runs it on the host).

`inputs`/`outputs` are the activation tensor indices (constants travel in
`arrays`), in the kernel's argument order; `input_shapes`/`output_shapes` are
their shapes. View-based kernels (conv, dw_conv, add, avgpool, pad, mean input)
take NHWC windows: a 4-D [1, H, W, C] tensor is an H x W x C map; any other
shape is viewed as 1 x 1 x N.

Prepared tables: the optimized kernels' per-channel constants (requantization
records, for conv the zero-padded last filter row, for depthwise the
offset-folded biases and the filter widened to int16; fb_runtime.h). They are
computed by the runtime's own fb_conv_s8_prepare() / fb_dw_conv_s8_prepare(),
called through the host library (harness.backend.hostrt.prepare_tables), lazily: the
first read of arrays["prepared"] computes them (once per call object), so the
planners, which lower every op many times, never pay for them. When the
optimized kernel cannot take the layer they are just the 16-byte header
(fast = 0). Stored in flash next to the weights (8-byte aligned).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from harness.frontend import quant
from harness.errors import FusebenchError
from harness.frontend.graph import Graph, Op, Tensor


class _Arrays(dict):
    """A KernelCall's constant arrays, "prepared" computed on first use.

    Behaves as a plain dict whose "prepared" entry is present from the start:
    indexing, get(), `in`, iteration, items() and values() all see it."""

    def __init__(self, *args, prepare=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare = prepare        # () -> np.ndarray, or None once computed

    def _force(self) -> None:
        if self._prepare is not None:
            dict.__setitem__(self, "prepared", self._prepare())
            self._prepare = None

    def __getitem__(self, key):
        if key == "prepared":
            self._force()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        if key == "prepared":
            self._force()
        return dict.get(self, key, default)

    def __contains__(self, key):
        return (key == "prepared" and self._prepare is not None) or dict.__contains__(self, key)

    def __iter__(self):
        self._force()
        return dict.__iter__(self)

    def __len__(self):
        return dict.__len__(self) + (self._prepare is not None)

    def keys(self):
        self._force()
        return dict.keys(self)

    def items(self):
        self._force()
        return dict.items(self)

    def values(self):
        self._force()
        return dict.values(self)

    def copy(self):
        self._force()
        return dict(self)

    def __eq__(self, other):
        self._force()
        return dict.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self):
        return (f"{type(self).__name__}({dict.__repr__(self)}"
                + (", prepared=<not computed yet>)" if self._prepare is not None else ")"))

    def __reduce__(self):
        self._force()
        return (dict, (dict(self),))


@dataclass
class KernelCall:
    kernel: str
    params: dict[str, int]
    arrays: dict[str, np.ndarray]
    inputs: list[int]
    outputs: list[int]
    scratch_bytes: int = 0
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    alias: bool = False          # output may share the input's memory (RESHAPE)
    op_index: int = -1


CONV_PARAM_FIELDS = ("input_offset", "output_offset", "stride_h", "stride_w", "dilation_h",
                     "dilation_w", "pad_top", "pad_left", "act_min", "act_max")
FILTER_DIM_FIELDS = ("out_c", "kh", "kw", "in_c")
ADD_PARAM_FIELDS = ("input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
                    "input2_multiplier", "input2_shift", "left_shift", "output_offset",
                    "output_multiplier", "output_shift", "act_min", "act_max")
MEAN_PARAM_FIELDS = ("input_zero_point", "output_zero_point", "multiplier", "shift")
POOL_PARAM_FIELDS = ("stride_h", "stride_w", "filter_h", "filter_w", "pad_top", "pad_left",
                     "act_min", "act_max")
FC_PARAM_FIELDS = ("input_offset", "filter_offset", "output_offset", "act_min", "act_max",
                   "batches", "accum_depth", "out_depth", "per_channel")
SOFTMAX_PARAM_FIELDS = ("input_multiplier", "input_left_shift", "diff_min", "outer", "depth")
PAD_PARAM_FIELDS = ("pad_top", "pad_left", "pad_value")
REQUANTIZE_PARAM_FIELDS = ("input_zero_point", "output_zero_point", "multiplier", "shift", "size")

# Kernels that take fb_view windows for their (first) input and output.
VIEW_KERNELS = ("fb_conv_s8", "fb_dw_conv_s8", "fb_add_s8", "fb_avgpool_s8", "fb_pad_s8")


def map_hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The H x W x C map a tensor of this shape is viewed as (batch 1)."""
    if len(shape) == 4:
        if shape[0] != 1:
            raise FusebenchError(f"batch size {shape[0]} in shape {list(shape)}: fusebench runs batch 1")
        return int(shape[1]), int(shape[2]), int(shape[3])
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return 1, 1, n


PREPARED_HEADER_BYTES = 16     # fb_prepared_header


def conv_prepared_bytes(out_c: int, kh: int, kw: int, in_c: int) -> int:
    """fb_conv_s8_prepared_size(): header, per-channel requantization records
    and the zero-padded last filter row when the taps are not a multiple of 4."""
    taps = kh * kw * in_c
    return PREPARED_HEADER_BYTES + 16 * out_c + (4 * -(-taps // 4) if taps % 4 else 0)


def conv_scratch_bytes_prepared(out_c: int, kh: int, kw: int, in_c: int) -> int:
    """fb_conv_s8_buffer_size_prepared(): four int16 columns of whole 4-tap
    groups and for kernels larger than 1x1 a byte patch."""
    taps = kh * kw * in_c
    return 32 * -(-taps // 4) + (0 if kh == kw == 1 else taps)


def conv_scratch_bytes(out_c: int, kh: int, kw: int, in_c: int) -> int:
    """fb_conv_s8_buffer_size(), without prepared tables: the tables are prepared
    at the start of scratch."""
    return conv_prepared_bytes(out_c, kh, kw, in_c) + conv_scratch_bytes_prepared(out_c, kh, kw, in_c)


def dw_conv_prepared_bytes(out_c: int, kh: int, kw: int) -> int:
    """fb_dw_conv_s8_prepared_size(): header, per-channel requantization
    records, offset-folded biases and the filter widened to int16."""
    return PREPARED_HEADER_BYTES + (20 + 2 * kh * kw) * out_c


def dw_conv_scratch_bytes_prepared(out_c: int, kh: int, kw: int) -> int:
    """fb_dw_conv_s8_buffer_size_prepared(): neither kernel needs scratch."""
    return 0


def dw_conv_scratch_bytes(out_c: int, kh: int, kw: int) -> int:
    """fb_dw_conv_s8_buffer_size(), without prepared tables (they go in scratch)."""
    return dw_conv_prepared_bytes(out_c, kh, kw) + dw_conv_scratch_bytes_prepared(out_c, kh, kw)


# -- inverted residual blocks run by fb_bottleneck_s8 ---------------------------------------

@dataclass(frozen=True)
class BottleneckDims:
    """The shapes of an inverted residual block as fb_bottleneck_s8 runs it:
    H x W x in_c input, mid_c expansion channels, kh x kw depthwise (stride,
    dilation, TFLite padding), out_h x out_w x out_c output."""
    in_h: int
    in_w: int
    in_c: int
    mid_c: int
    out_c: int
    out_h: int
    out_w: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    has_expand: bool
    has_residual: bool


def bottleneck_parts(calls) -> tuple[Optional[KernelCall], KernelCall, KernelCall, Optional[KernelCall]]:
    """(expand or None, depthwise, project, add or None) from the lowered calls
    of one inverted residual block, in graph order: [expand,] depthwise,
    project[, add]. Checks that they chain and have the shapes fb_bottleneck_s8
    takes (1x1 stride-1 unpadded expansion and projection, depth multiplier 1,
    the ADD of the block input and the projection)."""
    calls = list(calls)
    kinds = [c.kernel for c in calls]
    expand = calls.pop(0) if kinds[:2] == ["fb_conv_s8", "fb_dw_conv_s8"] else None
    if len(calls) not in (2, 3) or calls[0].kernel != "fb_dw_conv_s8" or calls[1].kernel != "fb_conv_s8" or \
            (len(calls) == 3 and calls[2].kernel != "fb_add_s8"):
        raise FusebenchError(f"kernels {kinds} are not an inverted residual block "
                             "([conv 1x1,] depthwise, conv 1x1[, add])")
    dw, project = calls[0], calls[1]
    add = calls[2] if len(calls) == 3 else None

    def pointwise(call: KernelCall, role: str) -> None:
        p = call.params
        if (p["kh"], p["kw"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"]) != (1, 1, 1, 1, 0, 0):
            raise FusebenchError(f"op {call.op_index}: the {role} of a bottleneck must be a 1x1 stride-1 "
                                 "convolution without padding")

    if expand is not None:
        pointwise(expand, "expansion")
        if expand.outputs[0] != dw.inputs[0]:
            raise FusebenchError(f"op {dw.op_index}: the depthwise does not read the expansion's output")
    if dw.params["depth_multiplier"] != 1:
        raise FusebenchError(f"op {dw.op_index}: a bottleneck depthwise needs depth multiplier 1")
    pointwise(project, "projection")
    if dw.outputs[0] != project.inputs[0]:
        raise FusebenchError(f"op {project.op_index}: the projection does not read the depthwise's output")
    if add is not None:
        block_in = (expand or dw).inputs[0]
        if sorted(add.inputs) != sorted([block_in, project.outputs[0]]) or block_in == project.outputs[0]:
            raise FusebenchError(f"op {add.op_index}: the residual ADD must add the block input and the "
                                 "projection's output")
    return expand, dw, project, add


def bottleneck_dims(calls) -> BottleneckDims:
    """The BottleneckDims of a block's lowered calls (see bottleneck_parts)."""
    expand, dw, project, add = bottleneck_parts(calls)
    in_h, in_w, in_c = map_hwc((expand or dw).input_shapes[0])
    out_h, out_w, out_c = map_hwc(project.output_shapes[0])
    p = dw.params
    return BottleneckDims(in_h, in_w, in_c, p["out_c"], out_c, out_h, out_w, p["kh"], p["kw"], p["stride_h"],
                          p["stride_w"], p["dilation_h"], p["dilation_w"], p["pad_top"], p["pad_left"],
                          expand is not None, add is not None)


def _read_range(out_lo: int, out_n: int, stride: int, pad: int, k: int, d: int, size: int) -> int:
    """How many input coordinates inside [0, size) outputs out_lo .. out_lo + out_n - 1
    read (fb_bottleneck.c: read_range)."""
    lo = max(out_lo * stride - pad, 0)
    hi = min((out_lo + out_n - 1) * stride - pad + (k - 1) * d, size - 1)
    return max(hi - lo + 1, 0)


def bottleneck_bands(out_h: int, band_rows: int) -> list[tuple[int, int]]:
    """The (first row, rows) bands fb_bottleneck_s8 computes the output in."""
    if not 1 <= band_rows <= out_h:
        raise FusebenchError(f"band_rows {band_rows} is not in 1..{out_h} (the block's output rows)")
    return [(b0, min(band_rows, out_h - b0)) for b0 in range(0, out_h, band_rows)]


def _block(block) -> BottleneckDims:
    return block if isinstance(block, BottleneckDims) else bottleneck_dims(block)


def _band_input_rows(d: BottleneckDims, band_rows: int) -> list[int]:
    return [_read_range(b0, nb, d.stride_h, d.pad_top, d.kh, d.dilation_h, d.in_h)
            for b0, nb in bottleneck_bands(d.out_h, band_rows)]


def _input_cols(d: BottleneckDims) -> int:
    return _read_range(0, d.out_w, d.stride_w, d.pad_left, d.kw, d.dilation_w, d.in_w)


def bottleneck_scratch_bytes(block, band_rows: int) -> int:
    """fb_bottleneck_s8_buffer_size() for a block (BottleneckDims or its lowered
    calls): int32 accumulators 4 * band_rows * W' * out_c, the depthwise band
    of one channel band_rows * W', and with an expansion the expansion rows of
    one channel: the most input rows a band reads times the input columns the
    depthwise reads. 4-byte aligned (the accumulators come first)."""
    d = _block(block)
    acc = 4 * band_rows * d.out_w * d.out_c
    dw = band_rows * d.out_w
    expanded = max(_band_input_rows(d, band_rows)) * _input_cols(d) if d.has_expand else 0
    return acc + dw + expanded


def bottleneck_macs(block, band_rows: int) -> int:
    """MACs fb_bottleneck_s8 executes for a block (BottleneckDims or its
    lowered calls) in bands of band_rows: the expansion of every input pixel a
    band reads, per band (halo rows are recomputed by each band that reads
    them), plus the depthwise and projection counted as Graph.macs counts them
    (every tap). With one band (band_rows = H') and TFLite SAME padding this
    is bottleneck_base_macs()."""
    d = _block(block)
    expand = sum(_band_input_rows(d, band_rows)) * _input_cols(d) * d.in_c * d.mid_c if d.has_expand else 0
    return expand + d.out_h * d.out_w * d.mid_c * (d.kh * d.kw + d.out_c)


def bottleneck_base_macs(block) -> int:
    """MACs of the same block run layer by layer (Graph.macs of its ops)."""
    d = _block(block)
    expand = d.in_h * d.in_w * d.in_c * d.mid_c if d.has_expand else 0
    return expand + d.out_h * d.out_w * d.mid_c * (d.kh * d.kw + d.out_c)


def _with_prepared(kernel: str, params: dict[str, int], arrays: dict[str, np.ndarray]) -> _Arrays:
    """`arrays` plus "prepared", computed when first read by the runtime's
    fb_*_prepare() on the host (harness.backend.hostrt)."""
    def prepare() -> np.ndarray:
        from harness.backend.hostrt import prepare_tables      # hostrt imports this module
        return prepare_tables(kernel, params, arrays)
    return _Arrays(arrays, prepare=prepare)


def lower_op(graph: Graph, op: Op) -> KernelCall:
    """The kernel call that computes `op` exactly as LiteRT's reference kernel."""
    lower = _LOWERINGS.get(op.kind)
    if lower is None:
        raise FusebenchError(f"op {op.index} is {op.kind}, which the fusebench runtime does not implement")
    call = lower(graph, op)
    call.op_index = op.index
    call.input_shapes = [tuple(graph.tensor(t).shape) for t in call.inputs]
    call.output_shapes = [tuple(graph.tensor(t).shape) for t in call.outputs]
    return call


def lower_graph(graph: Graph) -> list[KernelCall]:
    return [lower_op(graph, op) for op in graph.ops]


def receptive_window(call: KernelCall, output_window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The window (y0, x0, h, w) of the first input map that the kernel reads to
    compute `output_window` of the output map (clipped to the map; zero padding
    is not read). For fused tiling and for window tests."""
    y0, x0, h, w = output_window
    in_h, in_w, _ = map_hwc(call.input_shapes[0])
    p = call.params
    if call.kernel in ("fb_conv_s8", "fb_dw_conv_s8", "fb_avgpool_s8"):
        kh, kw = (p["kh"], p["kw"]) if "kh" in p else (p["filter_h"], p["filter_w"])
        dh, dw = p.get("dilation_h", 1), p.get("dilation_w", 1)
        lo_y = y0 * p["stride_h"] - p["pad_top"]
        hi_y = (y0 + h - 1) * p["stride_h"] - p["pad_top"] + (kh - 1) * dh
        lo_x = x0 * p["stride_w"] - p["pad_left"]
        hi_x = (x0 + w - 1) * p["stride_w"] - p["pad_left"] + (kw - 1) * dw
    elif call.kernel == "fb_pad_s8":
        lo_y, hi_y = y0 - p["pad_top"], y0 + h - 1 - p["pad_top"]
        lo_x, hi_x = x0 - p["pad_left"], x0 + w - 1 - p["pad_left"]
    elif call.kernel == "fb_add_s8":
        return output_window
    else:
        return 0, 0, in_h, in_w
    lo_y, lo_x = max(lo_y, 0), max(lo_x, 0)
    hi_y, hi_x = min(hi_y, in_h - 1), min(hi_x, in_w - 1)
    if lo_y > hi_y or lo_x > hi_x:       # all padding: any 1-pixel window will do
        return 0, 0, 1, 1
    return lo_y, lo_x, hi_y - lo_y + 1, hi_x - lo_x + 1


# -- helpers -----------------------------------------------------------------------------

def _where(op: Op) -> str:
    return f"op {op.index} ({op.kind})"


def _int8_activation(graph: Graph, op: Op, index: int, role: str) -> Tensor:
    if index < 0:
        raise FusebenchError(f"{_where(op)}: missing {role} tensor")
    t = graph.tensor(index)
    if t.dtype != "int8":
        raise FusebenchError(f"{_where(op)}: {role} tensor '{t.name}' is {t.dtype}; the model needs "
                             "int8 activations (full-integer quantization)")
    if t.is_const:
        raise FusebenchError(f"{_where(op)}: constant {role} tensor '{t.name}' is not supported")
    if t.quant is None or t.quant.per_channel:
        raise FusebenchError(f"{_where(op)}: {role} tensor '{t.name}' needs per-tensor quantization")
    return t


def _weights(graph: Graph, op: Op) -> Tensor:
    w = graph.tensor(op.inputs[1])
    if w.dtype != "int8" or w.data is None or w.quant is None:
        raise FusebenchError(f"{_where(op)}: weights must be constant int8 with quantization "
                             f"(got {w.dtype}{'' if w.is_const else ', not constant'})")
    return w


def _bias(graph: Graph, op: Op, channels: int) -> Optional[np.ndarray]:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    b = graph.tensor(op.inputs[2])
    if b.dtype != "int32" or b.data is None:
        raise FusebenchError(f"{_where(op)}: bias must be constant int32 (got {b.dtype})")
    bias = np.ascontiguousarray(b.data.reshape(-1), dtype=np.int32)
    if bias.size != channels:
        raise FusebenchError(f"{_where(op)}: bias has {bias.size} values for {channels} channels")
    return bias


def _symmetric_weights(op: Op, w: Tensor) -> None:
    if np.any(w.quant.zero_point != 0):
        raise FusebenchError(f"{_where(op)}: weights '{w.name}' have non-zero zero points "
                             "(int8 convolutions need symmetric weights)")


def _spatial(graph: Graph, op: Op, in_t: Tensor, out_t: Tensor, kh: int, kw: int) -> dict[str, int]:
    """Strides, dilations and TFLite's padding, checked against the output shape."""
    o = op.options
    sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    dh, dw = int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))
    if min(sh, sw, dh, dw) < 1:
        raise FusebenchError(f"{_where(op)}: strides and dilations must be >= 1")
    padding = o.get("padding", "VALID")
    in_h, in_w, _ = map_hwc(in_t.shape)
    out_h, out_w, _ = map_hwc(out_t.shape)
    exp_h = quant.output_size(padding, in_h, kh, sh, dh)
    exp_w = quant.output_size(padding, in_w, kw, sw, dw)
    if (exp_h, exp_w) != (out_h, out_w):
        raise FusebenchError(f"{_where(op)}: output is {out_h}x{out_w} but {padding} padding gives "
                             f"{exp_h}x{exp_w}")
    return dict(stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
                pad_top=quant.compute_padding(sh, dh, in_h, kh, out_h),
                pad_left=quant.compute_padding(sw, dw, in_w, kw, out_w))


def _require_4d(op: Op, t: Tensor, role: str) -> None:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise FusebenchError(f"{_where(op)}: {role} '{t.name}' has shape {list(t.shape)}; "
                             "expected [1, H, W, C]")


# -- lowerings ---------------------------------------------------------------------------

def _conv(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    w = _weights(graph, op)
    _require_4d(op, x, "input")
    _require_4d(op, y, "output")
    if len(w.shape) != 4:
        raise FusebenchError(f"{_where(op)}: filter shape {list(w.shape)} is not OHWI")
    out_c, kh, kw, in_c = (int(d) for d in w.shape)
    if in_c != x.shape[3]:
        raise FusebenchError(f"{_where(op)}: grouped convolution ({x.shape[3]} input channels, "
                             f"filter depth {in_c}) is not supported")
    if y.shape[3] != out_c:
        raise FusebenchError(f"{_where(op)}: output has {y.shape[3]} channels, filter {out_c}")
    _symmetric_weights(op, w)
    multiplier, shift = quant.conv_channel_multipliers(x.scale, w.quant.scale, y.scale, out_c)
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), y.scale, y.zero_point)
    params = dict(input_offset=-x.zero_point, output_offset=y.zero_point,
                  **_spatial(graph, op, x, y, kh, kw), act_min=act_min, act_max=act_max,
                  out_c=out_c, kh=kh, kw=kw, in_c=in_c)
    arrays = dict(filter=np.ascontiguousarray(w.data, dtype=np.int8), multiplier=multiplier, shift=shift)
    bias = _bias(graph, op, out_c)
    if bias is not None:
        arrays["bias"] = bias
    params = _ordered(params, CONV_PARAM_FIELDS + FILTER_DIM_FIELDS)
    return KernelCall("fb_conv_s8", params, _with_prepared("fb_conv_s8", params, arrays),
                      [x.index], [y.index], scratch_bytes=conv_scratch_bytes_prepared(out_c, kh, kw, in_c))


def _depthwise(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    w = _weights(graph, op)
    _require_4d(op, x, "input")
    _require_4d(op, y, "output")
    if len(w.shape) != 4 or w.shape[0] != 1:
        raise FusebenchError(f"{_where(op)}: filter shape {list(w.shape)} is not [1, H, W, C*M]")
    _, kh, kw, out_c = (int(d) for d in w.shape)
    channels = int(x.shape[3])
    # LiteRT derives the multiplier from the shapes, not from the options
    if out_c % channels != 0 or y.shape[3] != out_c:
        raise FusebenchError(f"{_where(op)}: filter has {out_c} channels for {channels} input "
                             f"and {y.shape[3]} output channels")
    _symmetric_weights(op, w)
    multiplier, shift = quant.conv_channel_multipliers(x.scale, w.quant.scale, y.scale, out_c)
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), y.scale, y.zero_point)
    params = dict(input_offset=-x.zero_point, output_offset=y.zero_point,
                  **_spatial(graph, op, x, y, kh, kw), act_min=act_min, act_max=act_max,
                  depth_multiplier=out_c // channels, out_c=out_c, kh=kh, kw=kw, in_c=1)
    arrays = dict(filter=np.ascontiguousarray(w.data, dtype=np.int8), multiplier=multiplier, shift=shift)
    bias = _bias(graph, op, out_c)
    if bias is not None:
        arrays["bias"] = bias
    params = _ordered(params, CONV_PARAM_FIELDS + ("depth_multiplier",) + FILTER_DIM_FIELDS)
    return KernelCall("fb_dw_conv_s8", params, _with_prepared("fb_dw_conv_s8", params, arrays),
                      [x.index], [y.index], scratch_bytes=dw_conv_scratch_bytes_prepared(out_c, kh, kw))


def _add(graph: Graph, op: Op) -> KernelCall:
    a = _int8_activation(graph, op, op.inputs[0], "first input")
    b = _int8_activation(graph, op, op.inputs[1], "second input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if tuple(a.shape) != tuple(b.shape) or tuple(a.shape) != tuple(y.shape):
        raise FusebenchError(f"{_where(op)}: broadcasting ADD ({list(a.shape)} + {list(b.shape)}) "
                             "is not supported")
    params = quant.add_params(a.scale, a.zero_point, b.scale, b.zero_point, y.scale, y.zero_point,
                              op.options.get("activation", "NONE"))
    return KernelCall("fb_add_s8", _ordered(params, ADD_PARAM_FIELDS), {}, [a.index, b.index], [y.index])


def _mean(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    axes = op.options.get("axes")
    if axes is None and len(op.inputs) > 1 and graph.tensor(op.inputs[1]).data is not None:
        axes = [int(a) for a in graph.tensor(op.inputs[1]).data.reshape(-1)]
    rank = len(x.shape)
    axes = sorted({int(a) % rank for a in (axes or [])}) if rank else []
    if rank != 4 or axes != [1, 2]:
        raise FusebenchError(f"{_where(op)}: only the global mean over H and W of a 4-D tensor "
                             f"(axes [1, 2]) is supported, got axes {axes} of {list(x.shape)}")
    if int(np.prod(y.shape)) != x.shape[3]:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} is not the {x.shape[3]} channel means")
    params = quant.mean_params(x.scale, x.zero_point, y.scale, y.zero_point)
    return KernelCall("fb_mean_s8", _ordered(params, MEAN_PARAM_FIELDS), {}, [x.index], [y.index])


def _avgpool(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    _require_4d(op, x, "input")
    _require_4d(op, y, "output")
    if x.shape[3] != y.shape[3]:
        raise FusebenchError(f"{_where(op)}: input and output channels differ")
    fh, fw = int(op.options["filter_h"]), int(op.options["filter_w"])
    spatial = _spatial(graph, op, x, y, fh, fw)
    if spatial["dilation_h"] != 1 or spatial["dilation_w"] != 1:
        raise FusebenchError(f"{_where(op)}: dilated pooling is not supported")
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), y.scale, y.zero_point)
    params = dict(stride_h=spatial["stride_h"], stride_w=spatial["stride_w"], filter_h=fh, filter_w=fw,
                  pad_top=spatial["pad_top"], pad_left=spatial["pad_left"], act_min=act_min, act_max=act_max)
    return KernelCall("fb_avgpool_s8", _ordered(params, POOL_PARAM_FIELDS), {}, [x.index], [y.index])


def _fully_connected(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    w = _weights(graph, op)
    if len(w.shape) != 2:
        raise FusebenchError(f"{_where(op)}: weights shape {list(w.shape)} is not [units, depth]")
    out_depth, accum_depth = int(w.shape[0]), int(w.shape[1])
    size = int(np.prod(x.shape, dtype=np.int64))
    if accum_depth == 0 or size % accum_depth != 0:
        raise FusebenchError(f"{_where(op)}: input of {size} values is not a multiple of depth {accum_depth}")
    batches = size // accum_depth
    if int(np.prod(y.shape, dtype=np.int64)) != batches * out_depth:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} != {batches} x {out_depth}")
    per_channel = w.quant.per_channel
    if per_channel and w.quant.scale.size != out_depth:
        raise FusebenchError(f"{_where(op)}: {w.quant.scale.size} weight scales for {out_depth} units")
    if per_channel and np.any(w.quant.zero_point != 0):
        raise FusebenchError(f"{_where(op)}: per-channel weights need zero zero points")
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), y.scale, y.zero_point)
    params = dict(input_offset=-x.zero_point, filter_offset=0 if per_channel else -w.zero_point,
                  output_offset=y.zero_point, act_min=act_min, act_max=act_max, batches=batches,
                  accum_depth=accum_depth, out_depth=out_depth, per_channel=int(per_channel))
    arrays = dict(filter=np.ascontiguousarray(w.data, dtype=np.int8),
                  effective_scale=quant.fc_effective_scales(x.scale, w.quant.scale, y.scale))
    bias = _bias(graph, op, out_depth)
    if bias is not None:
        arrays["bias"] = bias
    return KernelCall("fb_fully_connected_s8", _ordered(params, FC_PARAM_FIELDS), arrays,
                      [x.index], [y.index])


def _softmax(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if y.zero_point != -128 or abs(y.scale - 1.0 / 256) > 0.001 / 256:
        raise FusebenchError(f"{_where(op)}: int8 softmax output must have zero point -128 and scale "
                             f"1/256 (got {y.zero_point}, {y.scale})")
    if not x.shape:
        raise FusebenchError(f"{_where(op)}: softmax of a scalar")
    depth = int(x.shape[-1])
    outer = int(np.prod(x.shape, dtype=np.int64)) // max(depth, 1)
    params = quant.softmax_params(x.scale, op.options.get("beta", 1.0), outer, depth)
    return KernelCall("fb_softmax_s8", _ordered(params, SOFTMAX_PARAM_FIELDS), {}, [x.index], [y.index])


def _pad(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    _require_4d(op, x, "input")
    _require_4d(op, y, "output")
    paddings = op.options.get("paddings")
    if paddings is None and len(op.inputs) > 1 and graph.tensor(op.inputs[1]).data is not None:
        paddings = graph.tensor(op.inputs[1]).data.reshape(-1, 2).tolist()
    paddings = [tuple(int(v) for v in row) for row in (paddings or [])]
    if len(paddings) == 2:                  # (H, W) only
        paddings = [(0, 0), paddings[0], paddings[1], (0, 0)]
    if len(paddings) != 4 or paddings[0] != (0, 0) or paddings[3] != (0, 0):
        raise FusebenchError(f"{_where(op)}: only padding of H and W is supported (got {paddings})")
    if min(v for row in paddings for v in row) < 0:
        raise FusebenchError(f"{_where(op)}: negative padding")
    expected = (1, x.shape[1] + sum(paddings[1]), x.shape[2] + sum(paddings[2]), x.shape[3])
    if tuple(y.shape) != expected:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} != padded {list(expected)}")
    params = dict(pad_top=paddings[1][0], pad_left=paddings[2][0], pad_value=y.zero_point)
    return KernelCall("fb_pad_s8", _ordered(params, PAD_PARAM_FIELDS), {}, [x.index], [y.index])


def _quantize(graph: Graph, op: Op) -> KernelCall:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x.dtype != "int8" or y.dtype != "int8":
        raise FusebenchError(f"{_where(op)}: {x.dtype} -> {y.dtype} QUANTIZE at the model edge; "
                             "fusebench needs a model with int8 input and output "
                             "(convert with inference_input_type/inference_output_type = tf.int8)")
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    params = quant.requantize_params(x.scale, x.zero_point, y.scale, y.zero_point,
                                     int(np.prod(x.shape, dtype=np.int64)))
    return KernelCall("fb_requantize_s8", _ordered(params, REQUANTIZE_PARAM_FIELDS), {},
                      [x.index], [y.index])


def _dequantize(graph: Graph, op: Op) -> KernelCall:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    raise FusebenchError(f"{_where(op)}: {x.dtype} -> {y.dtype} DEQUANTIZE at the model edge; "
                         "fusebench needs a model with int8 input and output "
                         "(convert with inference_input_type/inference_output_type = tf.int8)")


def _reshape(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if x.nbytes != y.nbytes:
        raise FusebenchError(f"{_where(op)}: reshape of {list(x.shape)} to {list(y.shape)} changes the size")
    return KernelCall("fb_copy_s8", dict(size=x.nbytes), {}, [x.index], [y.index], alias=True)


def _ordered(params: dict, fields: tuple[str, ...]) -> dict[str, int]:
    missing = set(fields) - set(params)
    assert not missing, f"lowering forgot {missing}"
    return {name: int(params[name]) for name in fields}


_LOWERINGS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "ADD": _add,
    "MEAN": _mean,
    "AVERAGE_POOL_2D": _avgpool,
    "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax,
    "PAD": _pad,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "RESHAPE": _reshape,
}
