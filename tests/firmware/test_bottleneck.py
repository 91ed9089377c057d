"""fb_bottleneck_s8: a whole inverted residual block, one or four expansion
channels at a time, in bands of output rows, against LiteRT's reference kernels
byte for byte.

Each test builds a one-block int8 .tflite model ([1x1 expansion,] depthwise,
1x1 projection[, residual ADD]), imports and lowers it, runs the block with the
kernel for several band heights, every channel block the block takes (1, and
4 when mid_c is a multiple of 4) and both builds (portable, and the optimized
DSP kernels on the host emulation, FB_HOST_DSP=1), and compares with LiteRT
BUILTIN_REF on the same input. The kernel gets exactly
fb_bottleneck_s8_buffer_size() bytes of scratch (hostrt fails on a write past
them), which is the same in both builds; the portable kernel must write all of
them but the widened filters only the optimized kernel uses (the size is
tight), the optimized one all of them where it takes the block;
harness.backend.lowering.bottleneck_scratch_bytes must agree with the C function.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import hostrt
from harness.frontend import quant
from harness.errors import FusebenchError
from harness.backend.lowering import (BottleneckDims, bottleneck_base_macs, bottleneck_call, bottleneck_channel_blocks,
                                     bottleneck_dims, bottleneck_macs, bottleneck_scratch_bytes, lower_graph)
from harness.frontend.reference import reference_outputs
from tests.helpers import tflite_builder as tb
from harness.frontend.tflite_writer import Q
from harness.frontend.tflite_import import load_model_bytes

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


def band_heights(out_h: int) -> list[int]:
    return sorted({b for b in (1, 2, 3, out_h) if b <= out_h})


def widened_bytes(d: BottleneckDims, channel_block: int) -> int:
    """The widened filters at the end of scratch (channel block 4): only the
    optimized kernels write them."""
    return 8 * (d.out_c + d.kh * d.kw + (d.in_c if d.has_expand else 0)) if channel_block == 4 else 0


def dsp_takes(calls, channel_block: int) -> bool:
    """Whether the optimized kernel runs the block itself (else it runs the
    portable code): channel block 4, an expansion of whole input words and
    fast requantization records for every channel (fb_bottleneck_dsp.c: fast_ok)."""
    d = bottleneck_dims(calls)
    if channel_block != 4 or (d.has_expand and d.in_c % 4):
        return False
    stages = [c for c in calls if c.kernel != "fb_add_s8"]
    return all(c.arrays["prepared"][1] == 1 for c in stages[:-1] if c.kernel == "fb_dw_conv_s8") and \
        all(call_fast(c) for c in stages)


def call_fast(call) -> bool:
    """Every channel of one stage has a fast requantization record for its
    accumulators (the bound fb_requant_record takes), with a clamp inside int8."""
    p = call.params
    if not (-128 <= p["act_min"] <= p["act_max"] <= 127):
        return False
    taps = p["kh"] * p["kw"] * (p["in_c"] if call.kernel == "fb_conv_s8" else 1)
    dot = min(taps * 128 * (128 + abs(p["input_offset"])), 2**31 - 1)
    bias = call.arrays.get("bias")
    for c, (m, shift) in enumerate(zip(call.arrays["multiplier"], call.arrays["shift"])):
        b = abs(int(bias[c])) if bias is not None else 0
        e = -int(shift)
        if m <= 2**30 or not 1 <= e <= 31 or b + dot >= 2**30 or \
                abs((2 * p["output_offset"] + 1) * 2 ** (e - 1)) > 2**30:
            return False
    return True


def check_block(data: bytes, seed: int, has_expand: bool, has_residual: bool, n_inputs: int = 2) -> list:
    """The kernel == LiteRT for every band height in {1, 2, 3, H'}, every
    channel block and both builds, with scratch exactly the C buffer size (the
    same in both builds), which Python computes too and which the kernel fills
    completely (the portable one but for the widened filters). Returns the
    lowered calls."""
    rng = np.random.default_rng(seed)
    graph = load_model_bytes(data, "bottleneck")
    calls = lower_graph(graph)
    dims = bottleneck_dims(calls)
    assert (dims.has_expand, dims.has_residual) == (has_expand, has_residual), [c.kernel for c in calls]
    xs = [rng.integers(-128, 128, graph.input.shape, dtype=np.int8) for _ in range(n_inputs)]
    refs = reference_outputs(data, xs)
    for band_rows in band_heights(dims.out_h):
        for block in bottleneck_channel_blocks(dims):
            size = hostrt.bottleneck_buffer_size(calls, band_rows, channel_block=block)
            assert size == bottleneck_scratch_bytes(calls, band_rows, block) == \
                bottleneck_scratch_bytes(dims, band_rows, block)
            for kernels in hostrt.KERNEL_SETS:
                assert hostrt.bottleneck_buffer_size(calls, band_rows, kernels, channel_block=block) == size
                for i, (x, ref) in enumerate(zip(xs, refs)):
                    out = hostrt.run_bottleneck(calls, x, band_rows, row_padding=(band_rows + i) % 3,
                                                kernels=kernels, channel_block=block)
                    mismatch = np.flatnonzero(out.reshape(-1) != ref)
                    assert mismatch.size == 0, (
                        f"{kernels} band_rows {band_rows} channel block {block}: {mismatch.size}/{ref.size} bytes "
                        f"differ, first at {mismatch[0]}: ours {out.reshape(-1)[mismatch[0]]} LiteRT "
                        f"{ref[mismatch[0]]}; {dims}")
                high = hostrt.bottleneck_scratch_high_water(calls, xs[0], band_rows, kernels=kernels,
                                                            channel_block=block)
                whole = kernels == "dsp" and dsp_takes(calls, block)
                assert high == (size if whole else size - widened_bytes(dims, block)), (kernels, block)
    return calls


# -- MobileNetV2 blocks (tflite_builder.inverted_residual_chain_model) -------------------------

def mobilenet_block(seed: int, hw: tuple[int, int], in_c: int, expansion: int, out_c: int, stride: int) -> bytes:
    return tb.inverted_residual_chain_model(np.random.default_rng(seed), hw, in_c, [(expansion, out_c, stride)])


@SETTINGS
@given(h=st.integers(1, 14), w=st.integers(1, 14), in_c=st.integers(1, 8),
       expansion=st.sampled_from([1, 1, 2, 4, 6]), residual=st.booleans(), out_c=st.integers(1, 8),
       stride=st.sampled_from([1, 2]), seed=SEEDS)
def test_mobilenet_block_matches_litert(h, w, in_c, expansion, residual, out_c, stride, seed):
    if residual:
        out_c, stride = in_c, 1
    data = mobilenet_block(seed, (h, w), in_c, expansion, out_c, stride)
    check_block(data, seed, expansion != 1, stride == 1 and out_c == in_c)


@pytest.mark.parametrize("hw, in_c, expansion, out_c, stride", [
    ((7, 9), 8, 6, 8, 1),        # expansion, residual, odd sizes
    ((9, 7), 8, 6, 12, 2),       # stride 2, odd sizes: SAME puts the odd pixel at the bottom/right
    ((8, 6), 4, 6, 8, 2),        # stride 2, even sizes
    ((7, 5), 5, 1, 5, 1),        # expansion 1 (no expansion op), residual
    ((7, 5), 5, 1, 3, 2),        # expansion 1, stride 2
    ((5, 5), 3, 1, 4, 1),        # expansion 1, no residual
    ((1, 1), 4, 6, 4, 1),        # one pixel
    ((12, 10), 16, 6, 16, 1),    # MobileNetV2-like channel counts
    ((9, 8), 8, 6, 8, 2),        # MobileNetV2 w0.35's second block, small: the optimized kernel's in_c == 8 path
    ((6, 7), 6, 2, 6, 1),        # in_c not a multiple of 4: channel block 4 takes the portable code
    ((6, 5), 12, 1, 12, 1),      # no expansion, channel block 4 from the block input's words
    ((5, 6), 24, 4, 20, 2),      # in_c 24 (the general expansion loop), odd rows
    ((6, 6), 8, 3, 7, 1),        # odd out_c (the projection's last single channel)
])
def test_chosen_blocks_match_litert(hw, in_c, expansion, out_c, stride):
    seed = hash((hw, in_c, expansion, out_c, stride)) % 2**32
    data = mobilenet_block(seed, hw, in_c, expansion, out_c, stride)
    check_block(data, seed, expansion != 1, stride == 1 and out_c == in_c, n_inputs=3)


# -- general blocks: other kernels, VALID padding, dilation, activations, no biases ---------------

def block_model(rng: np.random.Generator, h: int, w: int, in_c: int, mid_c: int, out_c: int,
                k: tuple[int, int], stride: int, dilation: int, padding: str, acts: tuple[str, str, str],
                has_expand: bool, residual: bool, swap_add: bool, with_bias: bool, per_channel: bool) -> bytes:
    m = tb.ModelBuilder()

    def act_q() -> Q:
        return Q(float(np.float32(rng.uniform(0.02, 0.08))), int(rng.integers(-40, 40)))

    def layer(x: int, xq: Q, c_in: int, c_out: int, kh: int, kw: int, depthwise: bool, act: str,
              hw: tuple[int, int]) -> tuple[int, Q, tuple[int, int]]:
        s, d, pad = (stride, dilation, padding) if depthwise else (1, 1, "SAME")
        oh = quant.output_size(pad, hw[0], kh, s, d)
        ow = quant.output_size(pad, hw[1], kw, s, d)
        wshape = (1, kh, kw, c_out) if depthwise else (c_out, kh, kw, c_in)
        scales = rng.uniform(0.002, 0.03, c_out if per_channel else 1)
        f = m.tensor(wshape, scales=scales, zero_points=[0] * scales.size, axis=3 if depthwise else 0,
                     data=rng.integers(-127, 128, wshape, dtype=np.int8))
        inputs = [x, f]
        if with_bias or not depthwise:          # LiteRT's int8 CONV_2D requires a bias
            inputs.append(m.tensor([c_out], "int32", scales=[xq.scale * s_ for s_ in np.resize(scales, c_out)],
                                   zero_points=[0] * c_out,
                                   data=rng.integers(-3000, 3000, c_out).astype(np.int32)))
        fan_in = kh * kw * (1 if depthwise else c_in)
        yq = Q(float(np.float32(xq.scale * scales.mean() * 127 * np.sqrt(fan_in) / 8 * rng.uniform(0.5, 2))),
               int(rng.integers(-20, 20)))
        y = m.tensor([1, oh, ow, c_out], q=yq)
        if depthwise:
            m.op(tb._OP.DEPTHWISE_CONV_2D, inputs, [y], tb._OPT.DepthwiseConv2DOptions,
                 tb.depthwise_options((s, s), pad, (d, d), 1, act))
        else:
            m.op(tb._OP.CONV_2D, inputs, [y], tb._OPT.Conv2DOptions, tb.conv_options((1, 1), pad, (1, 1), act))
        return y, yq, (oh, ow)

    xq = act_q()
    inp = m.tensor([1, h, w, in_c], q=xq, name="input")
    x, q, hw = inp, xq, (h, w)
    if has_expand:
        x, q, hw = layer(x, q, in_c, mid_c, 1, 1, False, acts[0], hw)
    x, q, hw = layer(x, q, mid_c, mid_c, k[0], k[1], True, acts[1], hw)
    x, q, hw = layer(x, q, mid_c, out_c, 1, 1, False, acts[2], hw)
    if residual:
        y = m.tensor([1, h, w, out_c], q=act_q())
        m.op(tb._OP.ADD, [x, inp] if swap_add else [inp, x], [y], tb._OPT.AddOptions, tb.add_options("NONE"))
        x = y
    return m.build([inp], [x])


ACTIVATIONS = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])


@SETTINGS
@given(h=st.integers(1, 10), w=st.integers(1, 10), in_c=st.integers(1, 5), mid_c=st.integers(1, 9),
       out_c=st.integers(1, 5), k=st.sampled_from([(3, 3), (5, 5), (1, 1), (3, 5), (2, 2)]),
       stride=st.sampled_from([1, 2, 3]), dilation=st.sampled_from([1, 1, 2]),
       padding=st.sampled_from(["SAME", "VALID"]), acts=st.tuples(ACTIVATIONS, ACTIVATIONS, ACTIVATIONS),
       has_expand=st.booleans(), residual=st.booleans(), swap_add=st.booleans(), with_bias=st.booleans(),
       per_channel=st.booleans(), seed=SEEDS)
def test_general_block_matches_litert(h, w, in_c, mid_c, out_c, k, stride, dilation, padding, acts, has_expand,
                                      residual, swap_add, with_bias, per_channel, seed):
    if not has_expand:
        mid_c = in_c
    if residual:                  # the ADD needs the block input's shape
        out_c, stride, padding = in_c, 1, "SAME"
    if padding == "VALID" and (h < (k[0] - 1) * dilation + 1 or w < (k[1] - 1) * dilation + 1):
        return
    rng = np.random.default_rng(seed)
    data = block_model(rng, h, w, in_c, mid_c, out_c, k, stride, dilation, padding, acts, has_expand, residual,
                       swap_add, with_bias, per_channel)
    check_block(data, seed, has_expand, residual)


def layer_by_layer(calls, x: np.ndarray) -> np.ndarray:
    """The block through the existing kernels one op after another."""
    tensors = {calls[0].inputs[0]: x}
    for call in calls:
        (tensors[call.outputs[0]],) = hostrt.run_op(call, [tensors[t] for t in call.inputs], prepared=False)
    return tensors[calls[-1].outputs[0]]


def without_biases(calls):
    """The calls with every bias dropped (NULL in C; LiteRT's CONV_2D cannot load such a
    model, so the layer-by-layer kernels are the reference)."""
    from dataclasses import replace
    return [replace(c, arrays={k: v for k, v in dict.items(c.arrays) if k not in ("bias", "prepared")})
            for c in calls]


@pytest.mark.parametrize("expansion, out_c, stride", [(6, 4, 1), (1, 4, 1), (4, 5, 2)])
def test_null_biases_match_the_layer_by_layer_kernels(expansion, out_c, stride):
    data = mobilenet_block(21, (7, 6), 4, expansion, out_c, stride)
    graph = load_model_bytes(data, "bottleneck")
    calls = without_biases(lower_graph(graph))
    x = np.random.default_rng(21).integers(-128, 128, graph.input.shape, dtype=np.int8)
    expected = layer_by_layer(calls, x)
    assert not np.array_equal(expected.reshape(-1), reference_outputs(data, [x])[0])   # the biases mattered
    for band_rows in band_heights(bottleneck_dims(calls).out_h):
        for block in bottleneck_channel_blocks(calls):
            for kernels in hostrt.KERNEL_SETS:
                assert np.array_equal(hostrt.run_bottleneck(calls, x, band_rows, kernels=kernels,
                                                            channel_block=block), expected), (block, kernels)


# -- scratch and MACs --------------------------------------------------------------------------

def dims(**kw) -> BottleneckDims:
    base = dict(in_h=8, in_w=8, in_c=4, mid_c=24, out_c=4, out_h=8, out_w=8, kh=3, kw=3, stride_h=1, stride_w=1,
                dilation_h=1, dilation_w=1, pad_top=1, pad_left=1, has_expand=True, has_residual=True)
    base.update(kw)
    return BottleneckDims(**base)


def test_scratch_formula():
    d = dims()
    # accumulators 4 * rows * 8 * 4, depthwise band rows * 8, expansion (rows + 2) * 8 input rows of 8
    assert bottleneck_scratch_bytes(d, 1) == 4 * 1 * 8 * 4 + 8 + 3 * 8
    assert bottleneck_scratch_bytes(d, 2) == 4 * 2 * 8 * 4 + 16 + 4 * 8
    assert bottleneck_scratch_bytes(d, 8) == 4 * 8 * 8 * 4 + 64 + 8 * 8       # rows clipped to the map
    # bands of 3 on 8 rows: 0-2 reads rows 0..3, 3-5 reads 2..6 (5 rows), 6-7 reads 5..7
    assert bottleneck_scratch_bytes(d, 3) == 4 * 3 * 8 * 4 + 24 + 5 * 8
    assert bottleneck_scratch_bytes(dims(has_expand=False, mid_c=4), 2) == 4 * 2 * 8 * 4 + 16
    # stride 2, 9x9 -> 5x5 SAME (pad 1): band 1 reads 3 rows; VALID 10 -> 4 reads rows and columns 0..8 only
    s2 = dims(in_h=9, in_w=9, out_h=5, out_w=5, stride_h=2, stride_w=2, has_residual=False)
    assert bottleneck_scratch_bytes(s2, 1) == 4 * 5 * 4 + 5 + 3 * 9
    valid = dims(in_h=10, in_w=10, out_h=4, out_w=4, stride_h=2, stride_w=2, pad_top=0, pad_left=0,
                 has_residual=False)
    assert bottleneck_scratch_bytes(valid, 4) == 4 * 4 * 4 * 4 + 16 + 9 * 9
    assert bottleneck_macs(valid, 4) == bottleneck_base_macs(valid) - (100 - 81) * 4 * 24
    # channel block 4: 4x the depthwise band and expansion rows, and the widened
    # filters (8 bytes per projection output channel, depthwise tap, expansion input channel)
    assert bottleneck_scratch_bytes(d, 1, 4) == 4 * 1 * 8 * 4 + 4 * 8 + 4 * 3 * 8 + 8 * (4 + 9 + 4)
    assert bottleneck_scratch_bytes(d, 3, 4) == 4 * 3 * 8 * 4 + 4 * 24 + 4 * 5 * 8 + 8 * (4 + 9 + 4)
    assert bottleneck_scratch_bytes(dims(has_expand=False, mid_c=4), 2, 4) == 4 * 2 * 8 * 4 + 4 * 16 + 8 * (4 + 9)
    assert bottleneck_channel_blocks(d) == [1, 4] and bottleneck_channel_blocks(dims(mid_c=6)) == [1]
    with pytest.raises(FusebenchError, match="channel_block"):
        bottleneck_scratch_bytes(dims(mid_c=6), 1, 4)
    with pytest.raises(FusebenchError, match="channel_block"):
        bottleneck_scratch_bytes(d, 1, 2)
    with pytest.raises(FusebenchError, match="band_rows"):
        bottleneck_scratch_bytes(d, 0)
    with pytest.raises(FusebenchError, match="band_rows"):
        bottleneck_scratch_bytes(d, 9)


def test_macs_count_recomputed_halo_rows():
    d = dims()
    base = 8 * 8 * 4 * 24 + 8 * 8 * 24 * (9 + 4)
    assert bottleneck_base_macs(d) == base
    assert bottleneck_macs(d, 8) == base
    # one row per band: the expansion computes 2 + 6 * 3 + 2 = 22 rows instead of 8
    assert bottleneck_macs(d, 1) == base + (22 - 8) * 8 * 4 * 24
    assert bottleneck_macs(d, 4) == base + (10 - 8) * 8 * 4 * 24    # rows 0..4 and 3..7
    assert bottleneck_macs(dims(has_expand=False, mid_c=4), 1) == bottleneck_base_macs(dims(has_expand=False,
                                                                                            mid_c=4))
    assert all(bottleneck_macs(d, b) >= bottleneck_macs(d, b + 1) for b in range(1, 8))


def test_macs_match_the_graph_for_one_band():
    data = mobilenet_block(3, (9, 7), 8, 6, 12, 2)
    graph = load_model_bytes(data, "bottleneck")
    calls = lower_graph(graph)
    assert bottleneck_base_macs(calls) == sum(graph.macs(op) for op in graph.ops)
    assert bottleneck_macs(calls, bottleneck_dims(calls).out_h) == bottleneck_base_macs(calls)


# -- argument checking ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def block():
    data = mobilenet_block(5, (7, 6), 4, 6, 4, 1)
    graph = load_model_bytes(data, "bottleneck")
    x = np.random.default_rng(5).integers(-128, 128, graph.input.shape, dtype=np.int8)
    return lower_graph(graph), x


def call_kernel(calls, x, band_rows, patch=None, scratch="ok", out_map=None, kernels="portable", channel_block=1):
    """Status of fb_bottleneck_s8 on whole maps; patch(params) may alter the struct."""
    lib = hostrt.library(kernels)
    params, keep = hostrt.bottleneck_struct(calls, band_rows, channel_block)
    if patch:
        patch(params)
    in_map = np.ascontiguousarray(x.reshape(x.shape[1:]))
    out_map = np.zeros(calls[-1].output_shapes[0][1:], np.int8) if out_map is None else out_map
    in_view, out_view = hostrt._map_view(in_map), hostrt._map_view(out_map)
    size = lib.fb_bottleneck_s8_buffer_size(ctypes.byref(params), ctypes.byref(in_view), ctypes.byref(out_view))
    buf = np.zeros(1 << 16, np.uint8)
    given = {"ok": hostrt.FbScratch(hostrt._ptr(buf), buf.size), "null": None,
             "null buffer": hostrt.FbScratch(None, buf.size),
             "misaligned": hostrt.FbScratch(hostrt._ptr(buf, offset_bytes=2), buf.size - 2),
             "one byte short": hostrt.FbScratch(hostrt._ptr(buf), size - 1)}[scratch]
    status = lib.fb_bottleneck_s8(ctypes.byref(params), ctypes.byref(in_view), ctypes.byref(out_view),
                                  None if given is None else ctypes.byref(given))
    del keep
    return status, size


def test_kernel_accepts_the_block(block):
    calls, x = block
    assert call_kernel(calls, x, 3)[0] == 0


@pytest.mark.parametrize("band_rows", [0, -1, 8])
def test_bad_band_rows(block, band_rows):
    calls, x = block
    assert call_kernel(calls, x, band_rows) == (-1, 0)
    with pytest.raises(FusebenchError):
        hostrt.run_bottleneck(calls, x, band_rows)


@pytest.mark.parametrize("kernels", hostrt.KERNEL_SETS)
@pytest.mark.parametrize("channel_block", [1, 4])
@pytest.mark.parametrize("scratch", ["null", "null buffer", "misaligned", "one byte short"])
def test_bad_scratch(block, scratch, channel_block, kernels):
    calls, x = block
    assert call_kernel(calls, x, 2, scratch=scratch, kernels=kernels, channel_block=channel_block)[0] == -2


def _set(path: str, value: int):
    def patch(params):
        obj = params
        *parents, name = path.split(".")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, name, value)
    return patch


@pytest.mark.parametrize("path, value", [
    ("dw.depth_multiplier", 2),
    ("in_c", 3),                   # the maps' channels disagree with the params
    ("out_c", 5),
    ("has_expand", 0),             # then mid_c must equal in_c
    ("has_expand", 2),
    ("expand.stride_h", 2),        # expansion and projection are 1x1 stride 1, unpadded
    ("project.pad_top", 1),
    ("dw.conv.stride_w", 0),
    ("dw.conv.dilation_h", 0),
    ("add.left_shift", 31),
    ("project.act_min", 1000),
    ("channel_block", 0),          # 1 or 4 only
    ("channel_block", 2),
    ("channel_block", 8),
])
@pytest.mark.parametrize("kernels", hostrt.KERNEL_SETS)
def test_bad_params(block, path, value, kernels):
    calls, x = block
    assert call_kernel(calls, x, 2, patch=_set(path, value), kernels=kernels) == (-1, 0)


@pytest.mark.parametrize("kernels", hostrt.KERNEL_SETS)
def test_channel_block_4_needs_whole_quads_of_channels(kernels):
    data = mobilenet_block(8, (6, 6), 3, 2, 4, 1)          # mid_c 6
    graph = load_model_bytes(data, "bottleneck")
    calls = lower_graph(graph)
    x = np.random.default_rng(8).integers(-128, 128, graph.input.shape, dtype=np.int8)
    assert call_kernel(calls, x, 2, kernels=kernels)[0] == 0
    assert call_kernel(calls, x, 2, patch=_set("channel_block", 4), kernels=kernels) == (-1, 0)


@pytest.mark.parametrize("channel_block", [1, 4])
@pytest.mark.parametrize("kernels", hostrt.KERNEL_SETS)
def test_too_little_scratch_is_refused_in_both_builds(block, kernels, channel_block):
    calls, x = block
    call = bottleneck_call(calls, 2, channel_block)
    need = hostrt.buffer_size(call, kernels)
    assert need == call.scratch_bytes > 0
    hostrt.run_op(call, [x], kernels=kernels, scratch_bytes=need)
    with pytest.raises(FusebenchError, match="FB_ERR_SCRATCH"):
        hostrt.run_op(call, [x], kernels=kernels, scratch_bytes=need - 1)


def test_null_filter_and_overlapping_output(block):
    calls, x = block

    def no_filter(params):
        params.project_filter = None
    assert call_kernel(calls, x, 2, patch=no_filter)[0] == -1
    # output written over the input: later bands would read overwritten rows
    lib = hostrt.library()
    params, keep = hostrt.bottleneck_struct(calls, 2)
    in_map = np.ascontiguousarray(x.reshape(x.shape[1:]))
    view = hostrt._map_view(in_map)
    scratch = np.zeros(1 << 16, np.uint8)
    assert lib.fb_bottleneck_s8(ctypes.byref(params), ctypes.byref(view), ctypes.byref(view),
                                ctypes.byref(hostrt.FbScratch(hostrt._ptr(scratch), scratch.size))) == -1


def test_residual_needs_matching_shapes():
    data = mobilenet_block(9, (7, 7), 4, 6, 6, 1)          # 4 -> 6 channels: no ADD
    graph = load_model_bytes(data, "bottleneck")
    calls = lower_graph(graph)
    x = np.random.default_rng(9).integers(-128, 128, graph.input.shape, dtype=np.int8)
    assert call_kernel(calls, x, 2, patch=_set("has_residual", 1)) == (-1, 0)


def test_parts_must_chain():
    data = mobilenet_block(4, (5, 5), 4, 6, 4, 1)
    calls = lower_graph(load_model_bytes(data, "bottleneck"))
    with pytest.raises(FusebenchError, match="not an inverted residual block"):
        bottleneck_dims(calls[1:2])
    with pytest.raises(FusebenchError, match="not an inverted residual block"):
        bottleneck_dims(calls + calls[-1:])
    chain = lower_graph(load_model_bytes(tb.inverted_residual_chain_model(
        np.random.default_rng(4), (5, 5), 4, [(6, 4, 1), (6, 4, 1)]), "two"))
    with pytest.raises(FusebenchError, match="residual ADD"):
        bottleneck_dims(chain[:3] + [chain[-1]])
