"""The C runtime's kernels against LiteRT's reference kernels, byte for byte.

Each property test builds a single-op int8 .tflite model (tests.helpers.
tflite_builder), imports it (harness.frontend.tflite_import), lowers it
(harness.backend.lowering), runs the C kernel on the host (harness.backend.hostrt) and compares
with LiteRT BUILTIN_REF on the same bytes. Window tests check that computing an
output map tile by tile, each tile reading only its receptive window from a
separate buffer, gives the same bytes as computing it whole.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import hostrt
from harness.paths import MODELS_DIR
from harness.errors import FusebenchError
from harness.frontend.graph import Graph
from harness.backend.lowering import lower_op, receptive_window
from harness.frontend.inputs import load_default_inputs
from harness.frontend.reference import first_mismatch, reference_output, reference_output_of_inputs, reference_outputs
from tests.helpers import tflite_builder as tb
from tests.helpers.kernel_cases import add_graph, rand_int8
from harness.frontend.tflite_writer import Q
from harness.frontend.tflite_import import load_model, load_model_bytes

PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
PADDINGS = st.sampled_from(["SAME", "VALID"])
SEEDS = st.integers(0, 2**32 - 1)


# -- helpers ------------------------------------------------------------------------------

def rand_q(rng: np.random.Generator, lo: float = 0.005, hi: float = 0.1) -> Q:
    return Q(float(np.float32(rng.uniform(lo, hi))), int(rng.integers(-128, 128)))




def output_q_for(rng, in_q: Q, filter_scale: float, taps: int) -> Q:
    """An output scale near the accumulator's spread: some outputs saturate, most do not."""
    spread = in_q.scale * filter_scale * 70.0 * 60.0 * np.sqrt(taps)
    return Q(float(np.float32(spread / 128 * rng.uniform(0.3, 3.0))), int(rng.integers(-128, 128)))


KERNEL_SETS = hostrt.KERNEL_SETS      # the portable reference and the optimized (DSP) kernels


def check_model(data: bytes, seed: int, n_inputs: int = 2):
    """Import, run on the host with both kernel sets and compare with LiteRT for
    a few random inputs. Returns the graph for further checks."""
    rng = np.random.default_rng(seed)
    graph = load_model_bytes(data, "single-op")
    for _ in range(n_inputs):
        x = rand_int8(rng, graph.input.shape)
        ref = reference_output(data, x)
        for kernels in KERNEL_SETS:
            ours = hostrt.run_graph(graph, x, kernels=kernels).reshape(-1)
            mismatch = np.flatnonzero(ours != ref)
            assert mismatch.size == 0, (
                f"{kernels} kernels: {mismatch.size}/{ref.size} bytes differ, first at {mismatch[0]}: "
                f"ours {ours[mismatch[0]]} LiteRT {ref[mismatch[0]]}; "
                f"params {lower_op(graph, graph.ops[0]).params}")
    return graph


def split(size: int, rng: np.random.Generator, one_pixel: bool) -> list[tuple[int, int]]:
    """Uneven consecutive (start, length) pieces covering [0, size)."""
    if one_pixel:
        return [(i, 1) for i in range(size)]
    cuts = sorted(set(int(c) for c in rng.integers(1, size, size=rng.integers(0, 4)))) if size > 1 else []
    edges = [0] + cuts + [size]
    return [(a, b - a) for a, b in zip(edges, edges[1:])]


def tiled(call, inputs: list[np.ndarray], rng, one_pixel: bool, row_padding: int,
          kernels: str = hostrt.DEFAULT_KERNELS, prepared: bool = True) -> np.ndarray:
    """The output computed tile by tile, each tile reading a copy of just its
    receptive input window (rows row_padding bytes apart); conv and depthwise
    with their prepared tables, or (prepared=False) building them in scratch."""
    out = np.zeros(call.output_shapes[0], dtype=np.int8)
    h, w = call.output_shapes[0][1], call.output_shapes[0][2]
    for y0, th in split(h, rng, one_pixel):
        for x0, tw in split(w, rng, one_pixel):
            window = (y0, x0, th, tw)
            in_window = receptive_window(call, window)
            hostrt.run_op(call, inputs, output_window=window, input_windows=[in_window] * len(inputs),
                          row_padding=row_padding, out=out, kernels=kernels, prepared=prepared)
    return out


def check_tiles(graph: Graph, seed: int) -> None:
    """Tile by tile == whole map, for both kernel sets (and both give the same
    bytes), with prepared tables (as the firmware) and without (NULL: the
    kernel prepares them in scratch on every call)."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    call = lower_op(graph, graph.ops[0])
    inputs = [rand_int8(rng, s) for s in call.input_shapes]
    (whole,) = hostrt.run_op(call, inputs)
    for kernels in KERNEL_SETS:
        for prepared in (True, False):
            (whole_k,) = hostrt.run_op(call, inputs, kernels=kernels, prepared=prepared)
            assert np.array_equal(whole_k, whole), \
                f"{kernels} kernels (prepared={prepared}) != portable on the whole map"
            for one_pixel in (False, True):
                part = tiled(call, inputs, rng, one_pixel, row_padding=int(rng.integers(0, 5)), kernels=kernels,
                             prepared=prepared)
                assert np.array_equal(part, whole), \
                    f"{kernels} kernels (prepared={prepared}): tiled ({'1-pixel' if one_pixel else 'uneven'}) != whole"


# -- convolutions ----------------------------------------------------------------------------

@PROPERTY
@given(h=st.integers(1, 12), w=st.integers(1, 12), in_c=st.integers(1, 9), out_c=st.integers(1, 9),
       k=st.sampled_from([(1, 1), (3, 3), (1, 3), (2, 3), (5, 5)]), stride=st.sampled_from([1, 2]),
       dilation=st.sampled_from([1, 1, 2]), padding=PADDINGS, activation=ACTIVATIONS,
       per_channel=st.booleans(), seed=SEEDS)
def test_conv2d_matches_litert(h, w, in_c, out_c, k, stride, dilation, padding, activation,
                               per_channel, seed):
    kh, kw = k
    if padding == "VALID" and (h < (kh - 1) * dilation + 1 or w < (kw - 1) * dilation + 1):
        return
    rng = np.random.default_rng(seed)
    filters = rand_int8(rng, (out_c, kh, kw, in_c))
    filters[filters == -128] = -127
    scales = [float(s) for s in rng.uniform(0.002, 0.02, out_c if per_channel else 1)]
    in_q = rand_q(rng)
    out_q = output_q_for(rng, in_q, float(np.mean(scales)), kh * kw * in_c)
    bias = rng.integers(-20000, 20000, out_c).astype(np.int32)
    data = tb.conv2d_model([1, h, w, in_c], filters, scales, bias, in_q, out_q, (stride, stride),
                           padding, (dilation, dilation), activation)
    graph = check_model(data, seed)
    check_tiles(graph, seed)


@PROPERTY
@given(h=st.integers(1, 12), w=st.integers(1, 12), channels=st.integers(1, 10),
       multiplier=st.sampled_from([1, 1, 2, 3]), k=st.sampled_from([(3, 3), (1, 1), (5, 5), (3, 2)]),
       stride=st.sampled_from([1, 2]), dilation=st.sampled_from([1, 1, 2]), padding=PADDINGS,
       activation=ACTIVATIONS, per_channel=st.booleans(), with_bias=st.booleans(), seed=SEEDS)
def test_depthwise_conv2d_matches_litert(h, w, channels, multiplier, k, stride, dilation, padding,
                                         activation, per_channel, with_bias, seed):
    kh, kw = k
    if padding == "VALID" and (h < (kh - 1) * dilation + 1 or w < (kw - 1) * dilation + 1):
        return
    rng = np.random.default_rng(seed)
    out_c = channels * multiplier
    filters = rand_int8(rng, (1, kh, kw, out_c))
    filters[filters == -128] = -127
    scales = [float(s) for s in rng.uniform(0.002, 0.05, out_c if per_channel else 1)]
    in_q = rand_q(rng)
    out_q = output_q_for(rng, in_q, float(np.mean(scales)), kh * kw)
    bias = rng.integers(-5000, 5000, out_c).astype(np.int32) if with_bias else None
    data = tb.depthwise_conv2d_model([1, h, w, channels], filters, scales, bias, in_q, out_q,
                                     (stride, stride), padding, (dilation, dilation), activation)
    graph = check_model(data, seed)
    check_tiles(graph, seed)


def test_pointwise_fast_path_matches_litert_on_a_mobilenet_sized_layer():
    """The 1x1 stride-1 path with many channels (accumulators far from zero)."""
    rng = np.random.default_rng(7)
    filters = rand_int8(rng, (48, 1, 1, 96))
    scales = [float(s) for s in rng.uniform(0.002, 0.01, 48)]
    in_q = Q(0.02, -128)                      # post-ReLU6 style input offset of 128
    data = tb.conv2d_model([1, 6, 5, 96], filters, scales, rng.integers(-30000, 30000, 48).astype(np.int32),
                           in_q, output_q_for(rng, in_q, 0.006, 96), activation="RELU6")
    check_model(data, 7, n_inputs=3)


# -- elementwise and pooling ---------------------------------------------------------------





@PROPERTY
@given(shape=st.sampled_from([(1, 5, 7, 3), (1, 1, 1, 17), (1, 9, 4, 10), (1, 33), (1, 2, 3, 1)]),
       activation=ACTIVATIONS, same_scales=st.booleans(), seed=SEEDS)
def test_add_matches_litert(shape, activation, same_scales, seed):
    rng = np.random.default_rng(seed)
    qa = rand_q(rng, 0.01, 0.2)
    qb = Q(qa.scale, int(rng.integers(-128, 128))) if same_scales else rand_q(rng, 0.005, 0.3)
    qo = rand_q(rng, 0.01, 0.4)
    data = tb.add_model(shape, qa, qb, qo, activation)
    graph = add_graph(shape, qa, qb, qo, activation)
    call = lower_op(graph, graph.ops[0])
    for _ in range(2):
        a, b = rand_int8(rng, shape), rand_int8(rng, shape)
        ref = reference_output_of_inputs(data, [a, b])
        for kernels in KERNEL_SETS:
            (ours,) = hostrt.run_op(call, [a, b], kernels=kernels)
            assert np.array_equal(ours, ref), f"{kernels} kernels"
    if len(shape) == 4:
        check_tiles(graph, seed)


def test_residual_add_after_conv_matches_litert_through_the_importer():
    """conv -> add(input, conv) as in an inverted residual block, single-input model."""
    rng = np.random.default_rng(11)
    m = tb.ModelBuilder()
    qx, qc, qo = Q(0.05, -3), Q(0.04, 9), Q(0.07, 1)
    x = m.tensor([1, 6, 7, 8], q=qx)
    f = m.tensor([8, 1, 1, 8], scales=[0.01] * 8, zero_points=[0] * 8, data=rand_int8(rng, (8, 1, 1, 8)))
    bias = m.tensor([8], "int32", data=rng.integers(-900, 900, 8).astype(np.int32))
    c = m.tensor([1, 6, 7, 8], q=qc)
    y = m.tensor([1, 6, 7, 8], q=qo)
    m.op(tb._OP.CONV_2D, [x, f, bias], [c], tb._OPT.Conv2DOptions,
         tb.conv_options((1, 1), "SAME", (1, 1), "NONE"))
    m.op(tb._OP.ADD, [x, c], [y], tb._OPT.AddOptions, tb.add_options("NONE"))
    check_model(m.build([x], [y]), 11, n_inputs=3)


@PROPERTY
@given(h=st.integers(1, 11), w=st.integers(1, 11), c=st.integers(1, 9),
       filt=st.sampled_from([(2, 2), (3, 3), (1, 1), (3, 2), (7, 7)]), stride=st.sampled_from([1, 2]),
       padding=PADDINGS, activation=ACTIVATIONS, seed=SEEDS)
def test_average_pool_matches_litert(h, w, c, filt, stride, padding, activation, seed):
    if padding == "VALID" and (h < filt[0] or w < filt[1]):
        return
    rng = np.random.default_rng(seed)
    data = tb.average_pool_model([1, h, w, c], rand_q(rng), filt, (stride, stride), padding, activation)
    graph = check_model(data, seed)
    check_tiles(graph, seed)


@PROPERTY
@given(h=st.integers(1, 14), w=st.integers(1, 14), c=st.integers(1, 20), keep_dims=st.booleans(),
       same_quant=st.booleans(), axes=st.sampled_from([(1, 2), (2, 1), (-3, -2)]), seed=SEEDS)
def test_mean_matches_litert(h, w, c, keep_dims, same_quant, axes, seed):
    rng = np.random.default_rng(seed)
    in_q = rand_q(rng, 0.01, 0.2)
    out_q = in_q if same_quant else rand_q(rng, 0.001, 0.1)
    check_model(tb.mean_model([1, h, w, c], in_q, out_q, keep_dims, axes), seed)


@PROPERTY
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 7),
       pads=st.tuples(*[st.integers(0, 3)] * 4), seed=SEEDS)
def test_pad_matches_litert(h, w, c, pads, seed):
    rng = np.random.default_rng(seed)
    paddings = [(0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)]
    graph = check_model(tb.pad_model([1, h, w, c], paddings, rand_q(rng)), seed)
    check_tiles(graph, seed)


# -- dense tail: fully connected and softmax ----------------------------------------------------

@PROPERTY
@given(batches=st.integers(1, 3), depth=st.integers(1, 70), units=st.integers(1, 20),
       with_bias=st.booleans(), per_channel=st.booleans(), activation=ACTIVATIONS,
       four_d_input=st.booleans(), seed=SEEDS)
def test_fully_connected_matches_litert(batches, depth, units, with_bias, per_channel, activation,
                                        four_d_input, seed):
    rng = np.random.default_rng(seed)
    weights = rand_int8(rng, (units, depth))
    weights[weights == -128] = -127
    scales = [float(s) for s in rng.uniform(0.002, 0.02, units if per_channel else 1)]
    in_q = rand_q(rng)
    out_q = output_q_for(rng, in_q, float(np.mean(scales)), depth)
    bias = rng.integers(-20000, 20000, units).astype(np.int32) if with_bias else None
    shape = [batches, 1, 1, depth] if four_d_input else [batches, depth]
    check_model(tb.fully_connected_model(shape, weights, scales, bias, in_q, out_q, activation), seed)


@PROPERTY
@given(depth=st.integers(1, 300), rows=st.integers(1, 3), scale=st.floats(0.001, 0.5),
       beta=st.sampled_from([1.0, 1.0, 0.5, 2.0]), seed=SEEDS)
def test_softmax_matches_litert(depth, rows, scale, beta, seed):
    rng = np.random.default_rng(seed)
    in_q = Q(float(np.float32(scale)), int(rng.integers(-128, 128)))
    shape = [1, depth] if rows == 1 else [1, rows, depth]
    check_model(tb.softmax_model(shape, in_q, beta), seed, n_inputs=3)


def test_softmax_matches_litert_when_logits_are_far_apart():
    """Differences below diff_min give -128; large scales saturate exp()."""
    x = np.array([[127, -128, 100, 0, 126, -5, 127, 90, -100, 3]], dtype=np.int8)
    for scale in (0.8, 100.0):      # 100: the multiplier saturates at 2^31 - 1, diff_min = 0
        data = tb.softmax_model([1, 10], Q(scale, 0), 1.0)
        graph = load_model_bytes(data, "softmax")
        assert np.array_equal(hostrt.run_graph(graph, x).reshape(-1), reference_output(data, x))


# -- requantize and reshape -------------------------------------------------------------------

@PROPERTY
@given(shape=st.sampled_from([(1, 4, 5, 3), (1, 17), (1, 1, 1, 7)]), same_scale=st.booleans(), seed=SEEDS)
def test_requantize_matches_litert(shape, same_scale, seed):
    rng = np.random.default_rng(seed)
    in_q = rand_q(rng, 0.01, 0.3)
    out_q = Q(in_q.scale, int(rng.integers(-128, 128))) if same_scale else rand_q(rng, 0.003, 0.5)
    check_model(tb.quantize_model(shape, in_q, out_q), seed)


def test_reshape_is_a_byte_copy_like_litert():
    data = tb.reshape_model([1, 1, 1, 30], [1, 30], Q(0.1, 7))
    graph = check_model(data, 3)
    assert lower_op(graph, graph.ops[0]).alias


# -- argument checking and build hygiene ----------------------------------------------------------

def test_kernel_rejects_an_input_window_missing_part_of_the_receptive_field():
    rng = np.random.default_rng(2)
    filters = rand_int8(rng, (4, 3, 3, 4))
    data = tb.conv2d_model([1, 8, 8, 4], filters, [0.01], np.zeros(4, np.int32), Q(0.05, 0), Q(0.1, 0))
    graph = load_model_bytes(data, "conv")
    call = lower_op(graph, graph.ops[0])
    x = rand_int8(rng, (1, 8, 8, 4))
    needed = receptive_window(call, (2, 2, 2, 2))
    too_small = (needed[0] + 1, needed[1], needed[2] - 1, needed[3])
    with pytest.raises(FusebenchError, match="FB_ERR_ARG"):
        hostrt.run_op(call, [x], output_window=(2, 2, 2, 2), input_windows=[too_small])


def test_runtime_compiles_warning_free_for_cortex_m():
    compiler = shutil.which("arm-none-eabi-gcc")
    if compiler is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    runtime = Path(hostrt.RUNTIME_DIR)
    for cpu in (["-mcpu=cortex-m7", "-mthumb"],
                ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
                ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
                ["-mcpu=cortex-m4", "-mthumb", "-DFB_KERNELS_DSP=0"],      # portable on a DSP core
                ["-mcpu=cortex-m3", "-mthumb"]):                           # no DSP extension
        for source in hostrt.runtime_sources():
            cmd = [compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *cpu, "-I",
                   str(runtime / "include"), "-c", str(source), "-o", "/dev/null"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            assert result.returncode == 0, f"{source.name} ({cpu[0]}): {result.stderr}"


def test_runtime_uses_no_libm_or_malloc():
    import re
    pattern = re.compile(r"\b(malloc|calloc|realloc|free|round|floor|ceil|exp|expf|log|pow|sqrt|fabs)\s*\(")
    for source in hostrt.runtime_sources():
        code = re.sub(r"/\*.*?\*/", "", source.read_text(), flags=re.S)
        found = pattern.findall(code)
        assert not found, f"{source.name} calls {found}"


# -- shipped models -------------------------------------------------------------------------------

SHIPPED = sorted(MODELS_DIR.glob("*.tflite"))


def model_inputs(graph: Graph, count: int = 2) -> list[np.ndarray]:
    """Shipped default images when available, plus one random input."""
    _, h, w, _ = graph.input.shape
    try:
        samples = [s.data for s in load_default_inputs(h, w, graph.input.scale, graph.input.zero_point)[:count]]
    except FusebenchError:
        samples = []
    return samples + [rand_int8(np.random.default_rng(0), graph.input.shape)]


def test_models_are_shipped():
    assert SHIPPED, f"no .tflite models in {MODELS_DIR}"


@pytest.mark.parametrize("model_path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_host_runtime_matches_litert_on_shipped_model(model_path):
    graph = load_model(model_path)
    xs = model_inputs(graph)
    for x, ref in zip(xs, reference_outputs(model_path, xs)):
        for kernels in KERNEL_SETS:
            ours = hostrt.run_graph_tensors(graph, x, kernels=kernels)
            if not np.array_equal(ours[graph.outputs[0]].reshape(-1), ref):
                pytest.fail(f"{model_path.name} ({kernels} kernels): {first_mismatch(graph, model_path, x, ours)}")
