"""Graph IR op -> a call of one C runtime kernel (`firmware/runtime`).

`lower_op` computes every kernel parameter the way LiteRT's Prepare does
(harness.frontend.quant) and checks what the kernels and LiteRT's reference kernels
require, raising FusebenchError with a one-line reason otherwise. The result is
a KernelCall: the kernel's name and this call's values. How the kernel takes
them (its arguments in C order, by role) is its entry in
harness.backend.kernels.KERNELS, which the code generator and the host runner
(harness.backend.hostrt) both interpret; the structs' layouts are fb_runtime.h's
(harness.backend.cstructs).

A call's values:
  params   the int32 fields of the kernel's params structs by C field name,
           nested structs' fields in place (fb_dw_conv_params: the
           fb_conv_params fields, depth_multiplier; then fb_filter_dims), and
           its scalars (fb_copy_s8: size)
  arrays   the constants by the kernel table's names: filter (int8, OHWI for
           conv, 1 x kh x kw x out_c for depthwise, [out_depth, accum_depth]
           for fully connected), bias (int32, absent when the op has none),
           multiplier and shift (int32 per channel, the fb_channel_quant),
           prepared (the tables below), effective_scale (float64, emitted as
           C99 hex floats: float.hex() round-trips the exact double), scale
           (float32[1]: the int8 side's scale of QUANTIZE from float32 and of
           DEQUANTIZE), table (int8[256]: LOGISTIC's lookup table);
           for the layout, broadcast and reduction kernels int32 shapes and index
           tables (in_shape, perm, start/stop/stride, copy_bytes, rows/cols,
           shape1/shape2/out_shape)
  scratch_bytes
           the most the kernel's fb_*_buffer_size() returns for this call with
           its prepared tables in either build (through the host libraries):
           the optimized Cortex-M4/M7 kernels' needs, which cover the portable
           kernels', so a plan fits whichever kernels a board runs
  alias    RESHAPE (fb_copy_s8): the NHWC bytes do not move, so a planner may
           give the output the input's buffer and the call is skipped

fb_bottleneck_s8 (a whole inverted residual block in one call, one or four expansion channels
at a time; fb_runtime.h) has no op of its own: bottleneck_call() makes its call from the lowered
calls of the block's ops (bottleneck_parts / bottleneck_dims), with fb_bottleneck_params as a
value tree (KernelCall.trees); bottleneck_scratch_bytes() is its fb_bottleneck_s8_buffer_size()
and bottleneck_macs() the MACs it executes with halo rows recomputed per band.

`inputs`/`outputs` are the activation tensor indices (constants travel in
`arrays`), in the kernel's argument order; `input_shapes`/`output_shapes` are
their shapes. View-based kernels (conv, dw_conv, add, avgpool, maxpool, pad, resize, mean input)
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

from harness.backend.cstructs import struct
from harness.backend.kernels import Kernel, Params, kernel
from harness.frontend import quant
from harness.errors import FusebenchError
from harness.frontend.graph import Graph, Op, Tensor


class _Arrays(dict):
    """A KernelCall's constant arrays, "prepared" computed on first use.

    Behaves as a plain dict whose "prepared" entry is present from the start,
    in its place in the order: indexing, get(), items() and values() compute
    it; `in`, len() and iterating over the keys do not."""

    def __init__(self, arrays: dict, prepare=None):
        super().__init__(arrays)
        self._prepare = prepare        # () -> np.ndarray, or None once computed

    def _force(self) -> None:
        if self._prepare is not None:
            dict.__setitem__(self, "prepared", self._prepare())     # keeps its place
            self._prepare = None

    def __getitem__(self, key):
        if key == "prepared":
            self._force()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        if key == "prepared":
            self._force()
        return dict.get(self, key, default)

    def __iter__(self):
        # Overridden (without computing anything) so that dict(arrays) and
        # {**arrays} read the values through __getitem__, not the raw slots.
        return dict.__iter__(self)

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
        if self._prepare is not None:
            shown = {k: ("<not computed yet>" if k == "prepared" else v) for k, v in dict.items(self)}
            return f"{type(self).__name__}({shown!r})"
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def __reduce__(self):
        self._force()
        return (dict, (dict(self),))


@dataclass
class KernelCall:
    """One call of a C kernel: what harness.backend.kernels.KERNELS[kernel]
    says the kernel takes, with this call's values. The code generator and the
    host runner both interpret it through that table entry."""
    kernel: str
    params: dict[str, int]               # the params structs' int32 fields and scalars, by name
    arrays: dict[str, np.ndarray]        # constants (filter, bias, multiplier, shift, prepared, ...)
    inputs: list[int]                    # activation tensors, in the kernel's argument order
    outputs: list[int]
    scratch_bytes: int = 0
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    alias: bool = False          # output may share the input's memory (RESHAPE)
    op_index: int = -1
    # A params struct's value tree when it is not just `params` by field name
    # (fb_bottleneck_params: nested structs, pointers to constants); see struct_values().
    trees: dict[str, dict] = field(default_factory=dict)

    @property
    def spec(self) -> Kernel:
        return kernel(self.kernel)

    def struct_values(self, arg: Params) -> dict:
        """The value tree of one Params argument: per field an int, a nested
        dict, a tuple (a struct given positionally), a constant array (a
        pointer into the weight blob) or None (a null pointer)."""
        if arg.name in self.trees:
            return self.trees[arg.name]
        return _nest(arg.struct, self.params)


def _nest(struct_name: str, flat: dict[str, int]) -> dict:
    """A struct's value tree from flat field values (nested structs' fields in place)."""
    return {f.name: _nest(f.ctype, flat) if f.is_struct else flat[f.name] for f in struct(struct_name).fields}


def map_hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The H x W x C map a tensor of this shape is viewed as: [1, H, W, C] is
    that map; any other shape (a vector, a 5-D channel shuffle, a 4-D tensor
    whose first axis is not a batch of 1) is 1 x 1 x N (the kernels that need
    a real map check [1, H, W, C] when they are lowered)."""
    if len(shape) == 4 and shape[0] == 1:
        return int(shape[1]), int(shape[2]), int(shape[3])
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return 1, 1, n


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


def bottleneck_channel_blocks(block) -> list[int]:
    """The channel blocks fb_bottleneck_s8 takes for a block, smallest first:
    1 (one expansion channel per pass), and 4 when mid_c is a multiple of 4
    (four per pass: what the optimized kernels run fast)."""
    return [1, 4] if _block(block).mid_c % 4 == 0 else [1]


def bottleneck_scratch_bytes(block, band_rows: int, channel_block: int = 1) -> int:
    """fb_bottleneck_s8_buffer_size() for a block (BottleneckDims or its lowered
    calls), from the C function through the host library (fb_runtime.h gives
    the layout: int32 accumulators, channel_block channels' depthwise band and,
    with an expansion, expansion rows; with channel block 4 their widened
    filters)."""
    from harness.backend.hostrt import planned_scratch_bytes     # hostrt imports this module
    d = _block(block)
    bottleneck_bands(d.out_h, band_rows)                     # a clear error for a bad band height
    if channel_block not in bottleneck_channel_blocks(d):
        raise FusebenchError(f"channel_block {channel_block} is not one of {bottleneck_channel_blocks(d)} "
                             f"(mid_c {d.mid_c})")
    size = planned_scratch_bytes(_bottleneck_record(d, band_rows, _bottleneck_shape_tree(d, band_rows,
                                                                                         channel_block)))
    if size <= 0:
        raise FusebenchError(f"fb_bottleneck_s8 refuses the block {d} with bands of {band_rows} rows")
    return size


def _bottleneck_shape_tree(d: BottleneckDims, band_rows: int, channel_block: int = 1) -> dict:
    """The fb_bottleneck_params fields its buffer size reads (the shapes), for
    a block known only by its dims: pointwise stages, the depthwise geometry."""
    pointwise = dict(stride_h=1, stride_w=1, dilation_h=1, dilation_w=1)
    return dict(has_expand=int(d.has_expand), expand=pointwise,
                dw=dict(conv=dict(stride_h=d.stride_h, stride_w=d.stride_w, dilation_h=d.dilation_h,
                                  dilation_w=d.dilation_w, pad_top=d.pad_top, pad_left=d.pad_left),
                        depth_multiplier=1),
                project=pointwise, has_residual=int(d.has_residual), in_c=d.in_c, mid_c=d.mid_c, out_c=d.out_c,
                kh=d.kh, kw=d.kw, band_rows=band_rows, channel_block=channel_block)


def _bottleneck_record(d: BottleneckDims, band_rows: int, tree: dict, inputs=(-1,), outputs=(-1,),
                       scratch_bytes: int = 0) -> KernelCall:
    return KernelCall("fb_bottleneck_s8", {}, {}, list(inputs), list(outputs), scratch_bytes=scratch_bytes,
                      input_shapes=[(1, d.in_h, d.in_w, d.in_c)], output_shapes=[(1, d.out_h, d.out_w, d.out_c)],
                      trees={"prm": tree})


def bottleneck_call(calls, band_rows: int, channel_block: int = 1) -> KernelCall:
    """The fb_bottleneck_s8 call that runs a whole block (its lowered calls:
    [expand,] depthwise, project[, add]; see bottleneck_parts) in bands of
    band_rows output rows, channel_block expansion channels per pass
    (bottleneck_channel_blocks): fb_bottleneck_params with every stage's fields as
    in its own kernel's call. An ADD that adds (projection, block input) gets
    its input fields swapped: the kernel's input 1 is the block input."""
    calls = list(calls)
    expand, dw, project, add = bottleneck_parts(calls)
    d = bottleneck_dims(calls)
    tree: dict = {"has_expand": int(expand is not None)}

    def stage(name: str, call: KernelCall, params: dict) -> None:
        a = call.arrays
        # inserted in the order the constants go into the weight blob (bias,
        # quantization, filter); the kernel ignores prepared tables: a null pointer
        tree.update({f"{name}_bias": a.get("bias"), f"{name}_q": (a["multiplier"], a["shift"], 0),
                     f"{name}_filter": a["filter"], name: params})

    if expand is not None:
        stage("expand", expand, _nest("fb_conv_params", expand.params))
    stage("dw", dw, _nest("fb_dw_conv_params", dw.params))
    stage("project", project, _nest("fb_conv_params", project.params))
    tree["has_residual"] = int(add is not None)
    if add is not None:
        a = dict(add.params)
        if add.inputs[0] != (expand or dw).inputs[0]:          # ADD(projection, block input)
            for f in ("offset", "multiplier", "shift"):
                a["input1_" + f], a["input2_" + f] = a["input2_" + f], a["input1_" + f]
        tree["add"] = _nest("fb_add_params", a)
    tree.update(in_c=d.in_c, mid_c=d.mid_c, out_c=d.out_c, kh=d.kh, kw=d.kw, band_rows=band_rows,
                channel_block=channel_block)
    call = _bottleneck_record(d, band_rows, tree, [(expand or dw).inputs[0]], [(add or project).outputs[0]])
    # 0 when the kernel refuses the arguments (it then returns FB_ERR_ARG)
    from harness.backend.hostrt import planned_scratch_bytes     # hostrt imports this module
    call.scratch_bytes = planned_scratch_bytes(call)
    return call


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
    """`arrays` with its "prepared" entry (None: to be computed) computed when
    first read by the runtime's fb_*_prepare() on the host (harness.backend.hostrt)."""
    assert "prepared" in arrays and arrays["prepared"] is None, f"{kernel}: no place for the prepared tables"

    def prepare() -> np.ndarray:
        from harness.backend.hostrt import prepare_tables      # hostrt imports this module
        return prepare_tables(kernel, params, arrays)
    return _Arrays(arrays, prepare=prepare)


def lower_op(graph: Graph, op: Op) -> KernelCall:
    """The kernel call that computes `op` exactly as LiteRT's reference kernel."""
    lower = LOWERINGS.get(op.kind)
    if lower is None:
        raise FusebenchError(f"op {op.index} is {op.kind}, which the fusebench runtime does not implement")
    call = lower(graph, op)
    call.op_index = op.index
    call.input_shapes = [tuple(graph.tensor(t).shape) for t in call.inputs]
    call.output_shapes = [tuple(graph.tensor(t).shape) for t in call.outputs]
    if call.spec.buffer_size is not None:
        from harness.backend.hostrt import planned_scratch_bytes      # hostrt imports this module
        call.scratch_bytes = planned_scratch_bytes(call)
    return call


def lower_graph(graph: Graph) -> list[KernelCall]:
    return [lower_op(graph, op) for op in graph.ops]


def receptive_window(call: KernelCall, output_window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The window (y0, x0, h, w) of the first input map that the kernel reads to
    compute `output_window` of the output map (clipped to the map; zero padding
    is not read; a window made only of padding reads an empty window, h or w
    0). For fused tiling and for window tests."""
    y0, x0, h, w = output_window
    in_h, in_w, _ = map_hwc(call.input_shapes[0])
    p = call.params
    window = call.spec.window
    if window == "conv":
        kh, kw = (p["kh"], p["kw"]) if "kh" in p else (p["filter_h"], p["filter_w"])
        dh, dw = p.get("dilation_h", 1), p.get("dilation_w", 1)
        lo_y = y0 * p["stride_h"] - p["pad_top"]
        hi_y = (y0 + h - 1) * p["stride_h"] - p["pad_top"] + (kh - 1) * dh
        lo_x = x0 * p["stride_w"] - p["pad_left"]
        hi_x = (x0 + w - 1) * p["stride_w"] - p["pad_left"] + (kw - 1) * dw
    elif window == "pad":
        lo_y, hi_y = y0 - p["pad_top"], y0 + h - 1 - p["pad_top"]
        lo_x, hi_x = x0 - p["pad_left"], x0 + w - 1 - p["pad_left"]
    elif window == "elementwise":
        return output_window
    else:
        return 0, 0, in_h, in_w
    lo_y, lo_x = max(lo_y, 0), max(lo_x, 0)
    hi_y, hi_x = min(hi_y, in_h - 1), min(hi_x, in_w - 1)
    return min(lo_y, in_h), min(lo_x, in_w), max(hi_y - lo_y + 1, 0), max(hi_x - lo_x + 1, 0)


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

def _conv_arrays(multiplier: np.ndarray, shift: np.ndarray, bias: Optional[np.ndarray], w: Tensor) -> dict:
    """A conv or depthwise call's constants, in the order they go into the
    weight blob (the generated code's layout): the prepared tables (computed
    when first read), the channel quantization, the bias, the filter."""
    arrays = dict(prepared=None, multiplier=multiplier, shift=shift)
    if bias is not None:
        arrays["bias"] = bias
    arrays["filter"] = np.ascontiguousarray(w.data, dtype=np.int8)
    return arrays


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
    arrays = _conv_arrays(multiplier, shift, _bias(graph, op, out_c), w)
    return _call("fb_conv_s8", params, arrays, [x], [y])


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
    arrays = _conv_arrays(multiplier, shift, _bias(graph, op, out_c), w)
    return _call("fb_dw_conv_s8", params, arrays, [x], [y])


def _scalar_constant(graph: Graph, op: Op) -> Optional[tuple[int, int]]:
    """(position, int8 value) of a binary op's constant operand when it holds
    one value, broadcast over an activation of the output's shape (MobileNetV3's
    hard-sigmoid: x + 3, then * 1/6); None otherwise."""
    if len(op.inputs) != 2:
        return None
    for position in (0, 1):
        c = graph.tensor(op.inputs[position])
        x = graph.tensor(op.inputs[1 - position])
        y = graph.tensor(op.outputs[0])
        if c.data is None or x.data is not None or c.dtype != "int8" or c.quant is None or c.quant.per_channel:
            continue
        values = np.unique(np.asarray(c.data).reshape(-1))
        if values.size == 1 and tuple(x.shape) == tuple(y.shape) and len(c.shape) <= max(len(y.shape), 1):
            return position, int(values[0])
    return None


def kernel_table(name: str, params: dict, arrays: dict, const: Optional[tuple[int, int]] = None) -> np.ndarray:
    """A 256-entry lookup table (as fb_lut_s8 reads it) of a kernel run on the
    host over every int8 input value: for an elementwise op that is a function
    of one int8 value (HARD_SWISH; ADD or MUL with a one-valued constant, given
    as `const` = (its operand position, its value)), so the op's arithmetic is
    written once, in its kernel, and the firmware only looks values up."""
    from harness.backend.hostrt import run_op      # hostrt imports this module
    values = np.arange(-128, 128, dtype=np.int8)
    operands = [values]
    if const is not None:
        position, value = const
        operands.insert(position, np.full(256, value, np.int8))
    n = len(operands)
    call = KernelCall(name, dict(params), arrays, list(range(n)), [n], input_shapes=[(256,)] * n,
                      output_shapes=[(256,)])
    (out,) = run_op(call, operands)
    table = np.empty(256, np.int8)
    table[values.view(np.uint8)] = out.reshape(-1)
    return table


def _as_table(graph: Graph, op: Op, name: str, params: dict, arrays: dict, position: int, value: int
              ) -> KernelCall:
    """ADD or MUL of one int8 activation and a one-valued constant: fb_lut_s8 (in place)."""
    x = graph.tensor(op.inputs[1 - position])
    table = kernel_table(name, params, arrays, (position, value))
    return _call("fb_lut_s8", {}, dict(table=table), [x], [graph.tensor(op.outputs[0])])


def _add(graph: Graph, op: Op) -> KernelCall:
    scalar = _scalar_constant(graph, op)
    if scalar is not None:
        a, b, y = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
        _int8_activation(graph, op, op.outputs[0], "output")
        params = quant.add_params(a.scale, a.zero_point, b.scale, b.zero_point, y.scale, y.zero_point,
                                  op.options.get("activation", "NONE"))
        return _as_table(graph, op, "fb_add_s8", params, {}, *scalar)
    a = _int8_activation(graph, op, op.inputs[0], "first input")
    b = _int8_activation(graph, op, op.inputs[1], "second input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if tuple(a.shape) != tuple(b.shape) or tuple(a.shape) != tuple(y.shape):
        raise FusebenchError(f"{_where(op)}: broadcasting ADD ({list(a.shape)} + {list(b.shape)}) "
                             "is not supported")
    params = quant.add_params(a.scale, a.zero_point, b.scale, b.zero_point, y.scale, y.zero_point,
                              op.options.get("activation", "NONE"))
    return _call("fb_add_s8", params, {}, [a, b], [y])


def _mean(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    axes = op.options.get("axes")
    if axes is None and len(op.inputs) > 1 and graph.tensor(op.inputs[1]).data is not None:
        axes = [int(a) for a in graph.tensor(op.inputs[1]).data.reshape(-1)]
    rank = len(x.shape)
    axes = sorted({int(a) % rank for a in (axes or [])}) if rank else []
    if rank != 4 or axes != [1, 2] or x.shape[0] != 1:
        return _reduce_mean(graph, op, x, y, axes)       # any other axes: fb_reduce_mean_s8
    if int(np.prod(y.shape)) != x.shape[3]:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} is not the {x.shape[3]} channel means")
    params = quant.mean_params(x.scale, x.zero_point, y.scale, y.zero_point)
    return _call("fb_mean_s8", params, {}, [x], [y])


def _maps_of_equal_channels(graph: Graph, op: Op) -> tuple[Tensor, Tensor]:
    """The input and output of a pooling or resize op: [1, H, W, C] maps with the same C."""
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    _require_4d(op, x, "input")
    _require_4d(op, y, "output")
    if x.shape[3] != y.shape[3]:
        raise FusebenchError(f"{_where(op)}: input and output channels differ")
    return x, y


def _avgpool(graph: Graph, op: Op) -> KernelCall:
    x, y = _maps_of_equal_channels(graph, op)
    fh, fw = int(op.options["filter_h"]), int(op.options["filter_w"])
    spatial = _spatial(graph, op, x, y, fh, fw)
    if spatial["dilation_h"] != 1 or spatial["dilation_w"] != 1:
        raise FusebenchError(f"{_where(op)}: dilated pooling is not supported")
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), y.scale, y.zero_point)
    params = dict(stride_h=spatial["stride_h"], stride_w=spatial["stride_w"], filter_h=fh, filter_w=fw,
                  pad_top=spatial["pad_top"], pad_left=spatial["pad_left"], act_min=act_min, act_max=act_max)
    return _call("fb_avgpool_s8", params, {}, [x], [y])


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
    # in the order they go into the weight blob: bias, scales, filter
    bias = _bias(graph, op, out_depth)
    arrays = {} if bias is None else dict(bias=bias)
    arrays.update(effective_scale=quant.fc_effective_scales(x.scale, w.quant.scale, y.scale),
                  filter=np.ascontiguousarray(w.data, dtype=np.int8))
    return _call("fb_fully_connected_s8", params, arrays, [x], [y])


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
    return _call("fb_softmax_s8", params, {}, [x], [y])


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
    return _call("fb_pad_s8", params, {}, [x], [y])


# -- model edges: QUANTIZE from float32 / uint8 / int8 to int8, DEQUANTIZE int8 to float32 --

EDGE_SUPPORT = ("fusebench runs QUANTIZE from float32, uint8 or int8 to int8 and DEQUANTIZE from int8 to "
                "float32 (the model's edges); other types: convert with inference_input_type / "
                "inference_output_type = tf.int8, tf.uint8 or tf.float32")


def _edge_refused(graph: Graph, op: Op) -> FusebenchError:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    return FusebenchError(f"{_where(op)}: {x.dtype} -> {y.dtype} {op.kind} is not supported; {EDGE_SUPPORT}")


def _edge_tensor(graph: Graph, op: Op, index: int, role: str, dtypes: tuple[str, ...]) -> Tensor:
    """The float32 / uint8 side of a QUANTIZE or DEQUANTIZE: an activation of
    one of `dtypes` (uint8 with a per-tensor quantization)."""
    t = graph.tensor(index)
    if t.dtype not in dtypes:
        raise _edge_refused(graph, op)
    if t.is_const:
        raise FusebenchError(f"{_where(op)}: constant {role} tensor '{t.name}' is not supported")
    if t.dtype == "uint8" and (t.quant is None or t.quant.per_channel):
        raise FusebenchError(f"{_where(op)}: {role} tensor '{t.name}' needs per-tensor quantization")
    return t


def _flat_size(t: Tensor) -> int:
    return int(np.prod(t.shape, dtype=np.int64))


def _quantize(graph: Graph, op: Op) -> KernelCall:
    """QUANTIZE to int8: requantize (int8 or uint8 input, quantize.cc's double
    multiplier) or quantize a float32 input (the kernel divides by the output's
    float32 scale)."""
    if graph.tensor(op.outputs[0]).dtype != "int8":
        raise _edge_refused(graph, op)
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if graph.tensor(op.inputs[0]).dtype == "int8":
        x = _int8_activation(graph, op, op.inputs[0], "input")
        params = quant.requantize_params(x.scale, x.zero_point, y.scale, y.zero_point, _flat_size(x))
        return _call("fb_requantize_s8", params, {}, [x], [y])
    x = _edge_tensor(graph, op, op.inputs[0], "input", ("float32", "uint8"))
    if tuple(x.shape) != tuple(y.shape):
        raise FusebenchError(f"{_where(op)}: input shape {list(x.shape)} != output shape {list(y.shape)}")
    if x.dtype == "uint8":
        params = quant.requantize_params(x.scale, x.zero_point, y.scale, y.zero_point, _flat_size(x))
        return _call("fb_requantize_u8_s8", params, {}, [x], [y])
    scale = np.array([quant.check_scale(y.scale, "QUANTIZE output")], dtype=np.float32)
    return _call("fb_quantize_f32_s8", quant.quantize_params(y.zero_point, _flat_size(x)), dict(scale=scale),
                 [x], [y])


def _dequantize(graph: Graph, op: Op) -> KernelCall:
    """DEQUANTIZE int8 -> float32 (the kernel multiplies by the input's scale in double)."""
    if graph.tensor(op.inputs[0]).dtype != "int8":
        raise _edge_refused(graph, op)
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _edge_tensor(graph, op, op.outputs[0], "output", ("float32",))
    if tuple(x.shape) != tuple(y.shape):
        raise FusebenchError(f"{_where(op)}: input shape {list(x.shape)} != output shape {list(y.shape)}")
    scale = np.array([quant.check_scale(x.scale, "DEQUANTIZE input")], dtype=np.float32)
    return _call("fb_dequantize_s8_f32", quant.dequantize_params(x.zero_point, _flat_size(x)),
                 dict(scale=scale), [x], [y])


# -- elementwise activations: LOGISTIC, HARD_SWISH ------------------------------------------

def _same_shape_activation(graph: Graph, op: Op) -> tuple[Tensor, Tensor]:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if tuple(x.shape) != tuple(y.shape):
        raise FusebenchError(f"{_where(op)}: input shape {list(x.shape)} != output shape {list(y.shape)}")
    return x, y


def _logistic(graph: Graph, op: Op) -> KernelCall:
    """LOGISTIC int8: LiteRT's reference kernel looks every input up in a table
    its Prepare computes in float (quant.logistic_table)."""
    x, y = _same_shape_activation(graph, op)
    try:
        table = quant.logistic_table(x.scale, x.zero_point, y.scale, y.zero_point)
    except FusebenchError as exc:
        raise FusebenchError(f"{_where(op)}: {exc}") from None
    return _call("fb_lut_s8", {}, dict(table=table), [x], [y])


def _hard_swish(graph: Graph, op: Op) -> KernelCall:
    """HARD_SWISH int8, a function of one int8 value: fb_hard_swish_s8 (LiteRT's
    int16 fixed point, HardSwishParams as HardSwishPrepare computes them) run
    on the host over all 256 inputs gives a table the firmware looks up
    (MobileNetV3-Small spent 42 % of its instructions in the arithmetic)."""
    x, y = _same_shape_activation(graph, op)
    table = kernel_table("fb_hard_swish_s8", hard_swish_call(graph, op).params, {})
    return _call("fb_lut_s8", {}, dict(table=table), [x], [y])


def hard_swish_call(graph: Graph, op: Op) -> KernelCall:
    """The fb_hard_swish_s8 call that computes a HARD_SWISH op arithmetically
    (what its table is made from; tests check its parameters)."""
    x, y = _same_shape_activation(graph, op)
    try:
        params = quant.hard_swish_params(x.scale, x.zero_point, y.scale, y.zero_point)
    except FusebenchError as exc:
        raise FusebenchError(f"{_where(op)}: {exc}") from None
    call = _call("fb_hard_swish_s8", params, {}, [x], [y])
    call.input_shapes, call.output_shapes = [tuple(x.shape)], [tuple(y.shape)]
    return call


def _reshape(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    if x.nbytes != y.nbytes:
        raise FusebenchError(f"{_where(op)}: reshape of {list(x.shape)} to {list(y.shape)} changes the size")
    call = _call("fb_copy_s8", dict(size=x.nbytes), {}, [x], [y])
    call.alias = True
    return call


def _call(name: str, params: dict, arrays: dict, inputs: list[Tensor], outputs: list[Tensor]) -> KernelCall:
    """The call of kernel `name`: params in its structs' field order (checked
    against the kernel table), conv/depthwise arrays with their lazily
    prepared tables."""
    spec = kernel(name)
    fields = spec.param_fields
    missing, extra = set(fields) - set(params), set(params) - set(fields)
    assert not missing and not extra, f"{name}: lowering forgot {missing} or has extra {extra}"
    params = {f: int(params[f]) for f in fields}
    if spec.prepared:
        arrays = _with_prepared(name, params, arrays)
    return KernelCall(name, params, arrays, [t.index for t in inputs], [t.index for t in outputs])


# Ops whose kernel may write its output over its own input (kernels.Kernel
# in_place: each output element is written after its input element is read,
# and is no wider): the planner lets the output share a dying input's bytes.
IN_PLACE_OPS = {"QUANTIZE", "LOGISTIC", "HARD_SWISH"}


# -- layout, broadcast and reduction ops: TRANSPOSE, STRIDED_SLICE, CONCATENATION,
# RESIZE_NEAREST_NEIGHBOR, MAX_POOL_2D, MUL, MEAN over any axes (fb_runtime.h) -----------

MAX_DIMS = 6                    # FB_MAX_DIMS


def _const_ints(graph: Graph, op: Op, position: int, what: str) -> list[int]:
    """The values of constant int32 input `position` of the op."""
    if len(op.inputs) <= position or op.inputs[position] < 0:
        raise FusebenchError(f"{_where(op)}: missing {what} tensor")
    t = graph.tensor(op.inputs[position])
    if t.data is None:
        raise FusebenchError(f"{_where(op)}: {what} must be constant")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _rank_of(op: Op, t: Tensor, role: str) -> int:
    rank = len(t.shape)
    if not 1 <= rank <= MAX_DIMS:
        raise FusebenchError(f"{_where(op)}: {role} '{t.name}' has rank {rank}; the runtime takes 1 to "
                             f"{MAX_DIMS} dimensions")
    return rank


def _shape_array(shape) -> np.ndarray:
    return np.asarray([int(d) for d in shape], dtype=np.int32)


def _transpose(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    rank = _rank_of(op, x, "input")
    perm = _const_ints(graph, op, 1, "perm")
    # transpose.cc Prepare: exactly rank entries, each in [0, rank)
    if sorted(perm) != list(range(rank)):
        raise FusebenchError(f"{_where(op)}: perm {perm} is not a permutation of the {rank} input dimensions")
    expected = tuple(int(x.shape[a]) for a in perm)
    if tuple(y.shape) != expected:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} != transposed {list(expected)}")
    arrays = dict(in_shape=_shape_array(x.shape), perm=np.asarray(perm, dtype=np.int32))
    return _call("fb_transpose_s8", dict(rank=rank), arrays, [x], [y])


def strided_slice_indices(shape, begin, end, strides, begin_mask: int, end_mask: int, shrink_axis_mask: int,
                          offset: bool = False) -> tuple[list[int], list[int], list[int], list[int]]:
    """LiteRT's STRIDED_SLICE index resolution (strided_slice.cc
    BuildStridedSliceParams without ellipsis and new axes; reference
    StartForAxis / EndForAxis): per input axis the first index, the stop (one
    past the last, in the direction of the stride), the stride, and the output
    shape (shrunk axes left out)."""
    rank = len(shape)
    starts, stops, steps, out_shape = [], [], [], []
    for d in range(rank):
        size = int(shape[d])
        if d < len(begin):
            b, e, s = int(begin[d]), int(end[d]), int(strides[d])
            bm, em, shrink = begin_mask >> d & 1, end_mask >> d & 1, shrink_axis_mask >> d & 1
        else:                                   # axes past the given indices: whole
            b, e, s, bm, em, shrink = 0, 0, 1, 1, 1, 0
        if s == 0:
            raise FusebenchError(f"strided slice with stride 0 on axis {d}")
        # start
        start = b + size if b < 0 else b
        start = min(max(start, 0), size) if s > 0 else min(max(start, -1), size - 1)
        if bm:
            start = 0 if s > 0 else size - 1
        # stop
        if shrink:
            stop = start if start >= size else start + 1
        else:
            stop = e + start if offset else e
            stop = stop + size if stop < 0 else stop
            stop = min(max(stop, 0), size) if s > 0 else min(max(stop, -1), size - 1)
            if em:
                stop = size if s > 0 else -1
        count = len(range(start, stop, s))
        starts.append(start)
        stops.append(stop)
        steps.append(s)
        if not shrink:
            out_shape.append(count)
    return starts, stops, steps, out_shape


def _strided_slice(graph: Graph, op: Op) -> KernelCall:
    x = _int8_activation(graph, op, op.inputs[0], "input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    rank = _rank_of(op, x, "input")
    o = op.options
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0):
        raise FusebenchError(f"{_where(op)}: ellipsis and new-axis masks are not supported")
    begin = _const_ints(graph, op, 1, "begin")
    end = _const_ints(graph, op, 2, "end")
    strides = _const_ints(graph, op, 3, "strides")
    if not len(begin) == len(end) == len(strides) or len(begin) > rank:
        raise FusebenchError(f"{_where(op)}: begin, end and strides have {len(begin)}, {len(end)} and "
                             f"{len(strides)} entries for {rank} dimensions")
    if 0 in strides:
        raise FusebenchError(f"{_where(op)}: stride value has to be non-zero")
    starts, stops, steps, out_shape = strided_slice_indices(
        x.shape, begin, end, strides, int(o.get("begin_mask", 0)), int(o.get("end_mask", 0)),
        int(o.get("shrink_axis_mask", 0)), bool(o.get("offset", False)))
    if any(len(range(b, e, st)) == 0 for b, e, st in zip(starts, stops, steps)):
        # LiteRT writes nothing then (a shrunk axis may be empty too: stride < 0)
        raise FusebenchError(f"{_where(op)}: the slice is empty")
    if int(np.prod(out_shape, dtype=np.int64)) != y.nbytes or \
            [int(d) for d in y.shape if d != 1] != [d for d in out_shape if d != 1]:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} != sliced {out_shape}")
    arrays = dict(in_shape=_shape_array(x.shape), start=np.asarray(starts, np.int32),
                  stop=np.asarray(stops, np.int32), stride=np.asarray(steps, np.int32))
    return _call("fb_strided_slice_s8", dict(rank=rank), arrays, [x], [y])


def _concatenation(graph: Graph, op: Op) -> KernelCall:
    y = _int8_activation(graph, op, op.outputs[0], "output")
    xs = [_int8_activation(graph, op, t, f"input {i}") for i, t in enumerate(op.inputs)]
    if not xs:
        raise FusebenchError(f"{_where(op)}: no inputs")
    if op.options.get("activation", "NONE") != "NONE":
        raise FusebenchError(f"{_where(op)}: fused activation {op.options['activation']} (LiteRT refuses it)")
    rank = len(y.shape)
    axis = int(op.options.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise FusebenchError(f"{_where(op)}: axis {op.options.get('axis')} of a rank-{rank} output")
    for i, x in enumerate(xs):
        # concatenation.cc Prepare: no rescaling in the int8 kernel
        if np.float32(x.scale) != np.float32(y.scale) or x.zero_point != y.zero_point:
            raise FusebenchError(f"{_where(op)}: input {i} is quantized ({x.scale:g}, {x.zero_point}) unlike the "
                                 f"output ({y.scale:g}, {y.zero_point}); LiteRT's int8 CONCATENATION refuses that")
        if len(x.shape) != rank or any(int(x.shape[d]) != int(y.shape[d]) for d in range(rank) if d != axis):
            raise FusebenchError(f"{_where(op)}: input {i} of shape {list(x.shape)} does not concatenate into "
                                 f"{list(y.shape)} along axis {axis}")
    if sum(int(x.shape[axis]) for x in xs) != int(y.shape[axis]):
        raise FusebenchError(f"{_where(op)}: inputs along axis {axis} do not add up to the output's "
                             f"{y.shape[axis]}")
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64))
    copy_bytes = np.asarray([int(x.shape[axis]) * inner for x in xs], dtype=np.int32)
    return _call("fb_concatenation_s8", dict(num_inputs=len(xs), outer=outer), dict(copy_bytes=copy_bytes),
                 xs, [y])


def _resize_nearest(graph: Graph, op: Op) -> KernelCall:
    x, y = _maps_of_equal_channels(graph, op)
    size = _const_ints(graph, op, 1, "size")
    if size != [int(y.shape[1]), int(y.shape[2])]:
        raise FusebenchError(f"{_where(op)}: size {size} != output {list(y.shape[1:3])}")
    align, half = bool(op.options.get("align_corners")), bool(op.options.get("half_pixel_centers"))
    arrays = dict(rows=quant.nearest_neighbor_indices(int(x.shape[1]), int(y.shape[1]), align, half),
                  cols=quant.nearest_neighbor_indices(int(x.shape[2]), int(y.shape[2]), align, half))
    return _call("fb_resize_nearest_s8", {}, arrays, [x], [y])


def _maxpool(graph: Graph, op: Op) -> KernelCall:
    # the same fb_pool_params as AVERAGE_POOL_2D, computed and checked the same way
    call = _avgpool(graph, op)
    call.kernel = "fb_maxpool_s8"
    return call


def _mul(graph: Graph, op: Op) -> KernelCall:
    scalar = _scalar_constant(graph, op)
    if scalar is not None:
        a, b, y = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
        _int8_activation(graph, op, op.outputs[0], "output")
        params = dict(quant.mul_params(a.scale, a.zero_point, b.scale, b.zero_point, y.scale, y.zero_point,
                                       op.options.get("activation", "NONE")), rank=1)
        arrays = {k: np.asarray([256], np.int32) for k in ("shape1", "shape2", "out_shape")}
        return _as_table(graph, op, "fb_mul_s8", params, arrays, *scalar)
    a = _int8_activation(graph, op, op.inputs[0], "first input")
    b = _int8_activation(graph, op, op.inputs[1], "second input")
    y = _int8_activation(graph, op, op.outputs[0], "output")
    rank = max(len(a.shape), len(b.shape), len(y.shape), 1)
    if rank > MAX_DIMS:
        raise FusebenchError(f"{_where(op)}: rank {rank}; the runtime takes up to {MAX_DIMS} dimensions")

    def extended(shape):
        return [1] * (rank - len(shape)) + [int(d) for d in shape]
    sa, sb = extended(a.shape), extended(b.shape)
    out = []
    for da, db in zip(sa, sb):
        if da != db and 1 not in (da, db):
            raise FusebenchError(f"{_where(op)}: shapes {list(a.shape)} and {list(b.shape)} do not broadcast")
        out.append(max(da, db))
    if extended(y.shape) != out:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} != broadcast {out}")
    params = quant.mul_params(a.scale, a.zero_point, b.scale, b.zero_point, y.scale, y.zero_point,
                              op.options.get("activation", "NONE"))
    params["rank"] = rank
    arrays = dict(shape1=_shape_array(sa), shape2=_shape_array(sb), out_shape=_shape_array(out))
    return _call("fb_mul_s8", params, arrays, [a, b], [y])


def _reduce_mean(graph: Graph, op: Op, x: Tensor, y: Tensor, axes: list[int]) -> KernelCall:
    """MEAN over any (resolved, distinct) axes: fb_reduce_mean_s8."""
    rank = _rank_of(op, x, "input")
    kept = [int(x.shape[d]) for d in range(rank) if d not in axes]
    if int(np.prod(kept, dtype=np.int64)) != y.nbytes:
        raise FusebenchError(f"{_where(op)}: output shape {list(y.shape)} is not the mean of "
                             f"{list(x.shape)} over axes {axes}")
    params = dict(quant.mean_params(x.scale, x.zero_point, y.scale, y.zero_point), rank=rank,
                  reduced_mask=sum(1 << d for d in axes))
    return _call("fb_reduce_mean_s8", params, dict(in_shape=_shape_array(x.shape)), [x], [y])


# Every op the runtime implements, and its lowering (the importer refuses the others).
LOWERINGS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "ADD": _add,
    "MEAN": _mean,
    "AVERAGE_POOL_2D": _avgpool,
    "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax,
    "LOGISTIC": _logistic,
    "HARD_SWISH": _hard_swish,
    "PAD": _pad,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "RESHAPE": _reshape,
    "TRANSPOSE": _transpose,
    "STRIDED_SLICE": _strided_slice,
    "CONCATENATION": _concatenation,
    "RESIZE_NEAREST_NEIGHBOR": _resize_nearest,
    "MAX_POOL_2D": _maxpool,
    "MUL": _mul,
}
