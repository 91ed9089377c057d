"""Layout, broadcast and reduction kernels against LiteRT's reference kernels, byte for byte:
TRANSPOSE, STRIDED_SLICE, CONCATENATION, RESIZE_NEAREST_NEIGHBOR, MAX_POOL_2D, MUL and
MEAN over any axes.

Each property test builds a single-op int8 .tflite (tests.helpers.tflite_builder) over
random shapes (ranks 1 to 5 or 6, odd sizes, every axis and permutation, broadcast
patterns) and random quantization, imports it, lowers it, runs the C kernel on the host
in both builds (portable and DSP) and compares with LiteRT BUILTIN_REF on the same
random inputs. Then: the FlatList argument role in generated C, the field models
(../shared/field-models) when present, and one small model of these ops run on the
emulated STM32H7.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness import paths
from harness.backend import hostrt
from harness.backend.lowering import lower_op
from harness.errors import FusebenchError
from harness.frontend.graph import Graph
from harness.frontend.reference import reference_output, reference_output_of_inputs
from harness.frontend.tflite_import import _Importer, load_model, load_model_bytes
from harness.frontend.tflite_writer import Q, ModelBuilder, fc_options, reducer_options, table_options
from tests.firmware.test_kernels import ACTIVATIONS, PADDINGS, SEEDS, check_model, check_tiles, rand_q
from tests.helpers import tflite_builder as tb
from tests.helpers.kernel_cases import rand_int8

CASES = 250
PROPERTY = settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KERNEL_SETS = hostrt.KERNEL_SETS
FIELD_MODELS = paths.ROOT.parent / "shared" / "field-models"     # ../shared/field-models, when present


def graph_of(data: bytes, name: str = "single-op") -> Graph:
    """The graph IR of a model with any number of inputs (the importer proper takes
    single-input models; this reads tensors and ops the same way)."""
    imp = _Importer(data, name)
    sg = imp.model.Subgraphs(0)
    tensors = [imp.tensor(sg.Tensors(i), i) for i in range(sg.TensorsLength())]
    ops = [imp.op(sg.Operators(i), i, tensors) for i in range(sg.OperatorsLength())]
    return Graph(name, tensors, ops, [int(i) for i in sg.InputsAsNumpy()], [int(i) for i in sg.OutputsAsNumpy()])


def check_multi(data: bytes, seed: int, n_inputs: int = 2) -> Graph:
    """check_model for a single-op model with several inputs: the kernel on the
    host (both builds) == LiteRT on random inputs."""
    rng = np.random.default_rng(seed)
    graph = graph_of(data)
    call = lower_op(graph, graph.ops[0])
    for _ in range(n_inputs):
        xs = [rand_int8(rng, graph.tensors[t].shape) for t in graph.inputs]
        ref = reference_output_of_inputs(data, xs).reshape(-1)
        by_index = dict(zip(graph.inputs, xs))
        for kernels in KERNEL_SETS:
            (ours,) = hostrt.run_op(call, [by_index[t] for t in call.inputs], kernels=kernels)
            mismatch = np.flatnonzero(ours.reshape(-1) != ref)
            assert mismatch.size == 0, (f"{kernels} kernels: {mismatch.size}/{ref.size} bytes differ, first at "
                                        f"{mismatch[0]}; params {call.params}")
    return graph


@st.composite
def shapes(draw, min_rank=1, max_rank=5, max_dim=6, max_size=600):
    rank = draw(st.integers(min_rank, max_rank))
    shape = [draw(st.integers(1, max_dim)) for _ in range(rank)]
    while int(np.prod(shape)) > max_size:
        shape[int(np.argmax(shape))] -= 1
    return shape


# -- TRANSPOSE ------------------------------------------------------------------------------

@PROPERTY
@given(shape=shapes(max_rank=6), data=st.data(), seed=SEEDS)
def test_transpose_matches_litert(shape, data, seed):
    perm = data.draw(st.permutations(range(len(shape))))
    rng = np.random.default_rng(seed)
    check_model(tb.transpose_model(shape, perm, rand_q(rng)), seed)


@pytest.mark.parametrize("shape, perm", [((1, 3, 9, 7), (0, 2, 3, 1)),       # PyTorch NCHW -> NHWC input
                                         ((1, 3, 3, 160), (0, 3, 1, 2))])    # MCUNet before its MEANs
def test_transpose_of_exported_models_matches_litert(shape, perm):
    check_model(tb.transpose_model(shape, perm, Q(0.02, -3)), 5, n_inputs=3)


def test_transpose_refuses_a_perm_that_is_not_a_permutation():
    m = ModelBuilder()
    x = m.tensor([1, 2, 3], q=Q(0.1, 0))
    p = m.tensor([3], "int32", data=np.array([0, 2, 2], np.int32))
    y = m.tensor([1, 3, 3], q=Q(0.1, 0))
    m.op(tb._OP.TRANSPOSE, [x, p], [y], tb._OPT.TransposeOptions, table_options("Transpose"))
    graph = load_model_bytes(m.build([x], [y]))
    with pytest.raises(FusebenchError, match=r"^op 0 \(TRANSPOSE\): perm \[0, 2, 2\] is not a permutation"):
        lower_op(graph, graph.ops[0])


# -- STRIDED_SLICE ------------------------------------------------------------------------------

@st.composite
def slices(draw):
    shape = draw(shapes(max_rank=5, max_dim=7))
    rank = len(shape)
    n = draw(st.integers(1, rank))            # begin/end/strides may cover the leading axes only
    begin, end, strides = [], [], []
    for d in range(n):
        size = shape[d]
        begin.append(draw(st.integers(-size - 2, size + 2)))
        end.append(draw(st.integers(-size - 2, size + 2)))
        strides.append(draw(st.sampled_from([1, 1, 2, 3, -1, -2])))
    mask = st.integers(0, (1 << n) - 1)
    return shape, begin, end, strides, draw(mask), draw(mask), draw(mask)


@PROPERTY
@given(case=slices(), seed=SEEDS)
def test_strided_slice_matches_litert(case, seed):
    from harness.backend.lowering import strided_slice_indices
    shape, begin, end, strides, begin_mask, end_mask, shrink = case
    starts, stops, steps, _ = strided_slice_indices(shape, begin, end, strides, begin_mask, end_mask, shrink)
    # not an empty slice: LiteRT writes nothing then (the lowering refuses it)
    assume(all(len(range(b, e, s)) > 0 for b, e, s in zip(starts, stops, steps)))
    rng = np.random.default_rng(seed)
    check_model(tb.strided_slice_model(shape, begin, end, strides, rand_q(rng), begin_mask, end_mask, shrink), seed)


@pytest.mark.parametrize("half", [0, 1])
def test_channel_split_as_shufflenet_matches_litert(half):
    """ShuffleNet's channel split: the first or second half of the channels."""
    c = 24
    data = tb.strided_slice_model([1, 7, 5, c], [0, 0, 0, half * c // 2], [1, 7, 5, (half + 1) * c // 2],
                                  [1, 1, 1, 1], Q(0.03, 11))
    check_model(data, 3, n_inputs=3)


@pytest.mark.parametrize("mask", ["ellipsis", "new_axis"])
def test_strided_slice_refuses_ellipsis_and_new_axis_masks(mask):
    data = tb.strided_slice_model([1, 4, 4, 2], [0, 1], [1, 3], [1, 1], Q(0.1, 0), output_shape=[1, 2, 4, 2],
                                  **{f"{mask}_mask": 1})
    graph = load_model_bytes(data)
    with pytest.raises(FusebenchError, match=r"^op 0 \(STRIDED_SLICE\): ellipsis and new-axis masks are not "
                                             r"supported$"):
        lower_op(graph, graph.ops[0])


# -- CONCATENATION ---------------------------------------------------------------------------------

@PROPERTY
@given(base=shapes(max_rank=4, max_size=200), n=st.integers(2, 5), data=st.data(), seed=SEEDS)
def test_concatenation_matches_litert(base, n, data, seed):
    rank = len(base)
    axis = data.draw(st.integers(-rank, rank - 1))
    input_shapes = []
    for _ in range(n):
        s = list(base)
        s[axis % rank] = data.draw(st.integers(1, 5))
        input_shapes.append(s)
    rng = np.random.default_rng(seed)
    check_multi(tb.concatenation_model(input_shapes, axis, rand_q(rng)), seed)


def test_concatenation_refuses_inputs_quantized_unlike_the_output_as_litert_does():
    """LiteRT's int8 CONCATENATION has no requantization: its Prepare requires
    every input's scale and zero point to equal the output's (uint8 rescales;
    int8 does not), so there is no reference for such a model and fusebench
    refuses it too, naming the input."""
    data = tb.concatenation_model([[1, 2, 2, 3], [1, 2, 2, 2]], 3, Q(0.07, 1), input_qs=[Q(0.07, 1), Q(0.1, -7)])
    with pytest.raises(FusebenchError, match="LiteRT cannot load"):
        reference_output_of_inputs(data, [np.zeros((1, 2, 2, 3), np.int8), np.zeros((1, 2, 2, 2), np.int8)])
    graph = graph_of(data)
    with pytest.raises(FusebenchError, match=r"^op 0 \(CONCATENATION\): input 1 is quantized .* unlike the output "
                                             r".*LiteRT's int8 CONCATENATION refuses that$"):
        lower_op(graph, graph.ops[0])


# -- RESIZE_NEAREST_NEIGHBOR -----------------------------------------------------------------------

@PROPERTY
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 5), oh=st.integers(1, 19),
       ow=st.integers(1, 19), align_corners=st.booleans(), half_pixel_centers=st.booleans(), seed=SEEDS)
def test_resize_nearest_neighbor_matches_litert(h, w, c, oh, ow, align_corners, half_pixel_centers, seed):
    rng = np.random.default_rng(seed)
    check_model(tb.resize_nearest_model([1, h, w, c], (oh, ow), rand_q(rng), align_corners, half_pixel_centers),
                seed)


def test_resize_nearest_neighbor_indices_on_awkward_ratios_match_litert():
    """Ratios whose float products land next to integers (e.g. 3/7 * 7)."""
    for (h, oh), flags in zip([(3, 7), (7, 3), (5, 13), (13, 5), (10, 30), (30, 10)],
                              [(False, False), (True, False), (False, True), (True, True)] * 2):
        check_model(tb.resize_nearest_model([1, h, h, 1], (oh, oh), Q(0.1, 0), *flags), h + oh)


# -- MAX_POOL_2D -------------------------------------------------------------------------------------

@PROPERTY
@given(h=st.integers(1, 11), w=st.integers(1, 11), c=st.integers(1, 9),
       filt=st.sampled_from([(2, 2), (3, 3), (1, 1), (3, 2), (5, 5)]), stride=st.sampled_from([1, 2, 3]),
       padding=PADDINGS, activation=ACTIVATIONS, seed=SEEDS)
def test_max_pool_matches_litert_whole_and_in_tiles(h, w, c, filt, stride, padding, activation, seed):
    assume(padding == "SAME" or (h >= filt[0] and w >= filt[1]))
    rng = np.random.default_rng(seed)
    graph = check_model(tb.max_pool_model([1, h, w, c], rand_q(rng), filt, (stride, stride), padding, activation),
                        seed)
    check_tiles(graph, seed)          # windows as AVERAGE_POOL_2D: View(..., "in", 0), window "conv"


# -- MUL -----------------------------------------------------------------------------------------------

@st.composite
def broadcast_pairs(draw):
    out = draw(shapes(max_rank=5, max_size=400))
    def operand():
        rank = draw(st.integers(0, len(out)))
        tail = out[len(out) - rank:] if rank else []
        return [d if draw(st.booleans()) else 1 for d in tail] or [1]
    a, b = operand(), operand()
    if draw(st.booleans()):            # one operand has the full output shape
        a = list(out)
    if draw(st.booleans()):
        a, b = b, a
    return a, b


@PROPERTY
@given(pair=broadcast_pairs(), activation=ACTIVATIONS, seed=SEEDS)
def test_mul_with_broadcasting_matches_litert(pair, activation, seed):
    a, b = pair
    rng = np.random.default_rng(seed)
    check_multi(tb.mul_model(a, b, rand_q(rng, 0.005, 0.2), rand_q(rng, 0.005, 0.2), rand_q(rng, 0.0005, 0.05),
                             activation), seed)


@pytest.mark.parametrize("a, b", [((1, 6, 7, 16), (1, 1, 1, 16)),    # squeeze-and-excite gate
                                  ((1, 1, 1, 16), (1, 6, 7, 16)),
                                  ((1, 5, 5, 3), (1,)),              # a scalar
                                  ((1, 5, 5, 3), ()),
                                  ((1, 9, 4, 10), (1, 9, 4, 10))])   # no broadcast
def test_mul_of_common_shapes_matches_litert(a, b):
    rng = np.random.default_rng(len(a) + len(b))
    for activation in ("NONE", "RELU6"):
        check_multi(tb.mul_model(a, b, Q(0.04, -128), Q(1 / 256, -128), Q(0.02, 5), activation), 9, n_inputs=3)
        check_multi(tb.mul_model(a, b, rand_q(rng), rand_q(rng), rand_q(rng, 0.0001, 0.002), activation), 9)


# -- MEAN over any axes --------------------------------------------------------------------------------

@PROPERTY
@given(shape=shapes(max_rank=5, max_dim=9, max_size=800), data=st.data(), keep_dims=st.booleans(),
       same_quant=st.booleans(), seed=SEEDS)
def test_mean_over_any_axes_matches_litert(shape, data, keep_dims, same_quant, seed):
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank))
    rng = np.random.default_rng(seed)
    in_q = rand_q(rng, 0.01, 0.2)
    out_q = in_q if same_quant else rand_q(rng, 0.001, 0.1)
    check_model(tb.reduce_mean_model(shape, axes, in_q, out_q, keep_dims), seed)


@pytest.mark.parametrize("shape, axes", [((1, 160, 3, 3), [3]), ((1, 160, 3), [2]),    # MCUNet's two MEANs
                                         ((1, 5, 6, 7), [1, 2]), ((1, 5, 6, 7), [-2, -3]),
                                         ((1, 5, 6, 7), [0, 1, 2, 3]), ((2, 3, 4), [0])])
def test_mean_of_common_axes_matches_litert(shape, axes):
    for keep_dims in (True, False):
        for out_q in (Q(0.02, -4), Q(0.005, 9)):
            check_model(tb.reduce_mean_model(list(shape), axes, Q(0.02, -4), out_q, keep_dims), 4, n_inputs=3)


# -- the FlatList role in the generated C ------------------------------------------------------------

def test_concatenation_inputs_reach_the_generated_c_as_a_table_of_pointers(tmp_path):
    """FlatList: the emitter writes the inputs' arena addresses as one constant
    table and passes it; the generated C compiles warning-free; the host runner
    passes the same inputs (checked against LiteRT above)."""
    from harness.backend.codegen import generate_sources
    from harness.backend.kernels import FlatList, kernel
    from harness.schedules.unfused import plan_layer_by_layer
    m = ModelBuilder()
    q = Q(0.05, 2)
    x = m.tensor([1, 4, 4, 3], q=q, name="input")
    a = m.tensor([1, 4, 4, 1], q=q)
    ends = [m.tensor([4], "int32", data=np.array(v, np.int32)) for v in ([0, 0, 0, 0], [1, 4, 4, 1], [1, 1, 1, 1])]
    m.op(tb._OP.STRIDED_SLICE, [x, *ends], [a], tb._OPT.StridedSliceOptions, table_options("StridedSlice"))
    y = m.tensor([1, 4, 4, 7], q=q, name="output")
    m.op(tb._OP.CONCATENATION, [a, x, x], [y], tb._OPT.ConcatenationOptions, table_options("Concatenation", Axis=3))
    data = m.build([x], [y])
    graph = load_model_bytes(data, "concat")
    assert kernel("fb_concatenation_s8").of_role(FlatList) == [FlatList(0)]
    plan = plan_layer_by_layer(graph)
    generate_sources(graph, plan, out_dir=tmp_path)
    source = (tmp_path / "fb_model.c").read_text()
    offsets = [plan.allocation_of(t).offset for t in (a, x, x)]
    table = "static const int8_t *const inputs0_on[] = { " + ", ".join(f"(fb_arena + {o})" for o in offsets) + " };"
    assert table in source
    assert "st = fb_concatenation_s8(&prm, " in source and ", inputs0_on, " in source
    result = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "-I",
                             str(hostrt.RUNTIME_DIR / "include"), str(tmp_path / "fb_model.c"), "-o", "/dev/null"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    xs = rand_int8(np.random.default_rng(0), (1, 4, 4, 3))
    for kernels in KERNEL_SETS:
        assert np.array_equal(hostrt.run_graph(graph, xs, kernels=kernels).reshape(-1), reference_output(data, xs))


# -- field models ---------------------------------------------------------------------------------------

def field_model(name: str) -> Path:
    if not FIELD_MODELS.is_dir():
        pytest.skip(f"{FIELD_MODELS} is absent (the field models are not part of the repository)")
    path = FIELD_MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def test_mobilenet_v2_from_pytorch_with_its_nchw_transpose_matches_litert():
    """MobileNetV2 1.0 @224 converted from PyTorch: TRANSPOSE of the NCHW input first."""
    path = field_model("mobilenet_v2_quantized_1x3x224x224.tflite")
    graph = load_model(path)
    assert graph.ops[0].kind == "TRANSPOSE"
    rng = np.random.default_rng(1)
    for _ in range(2):
        x = rand_int8(rng, graph.input.shape)
        ref = reference_output(path, x)
        for kernels in KERNEL_SETS:
            assert np.array_equal(hostrt.run_graph(graph, x, kernels=kernels).reshape(-1), ref), kernels


def _cut_model(graph: Graph, first: int, last: int) -> bytes:
    """Ops first..last of an imported graph as a model of their own, with the
    same tensors (shapes, quantization, constants) and options: the input is
    the first op's input, the output the last op's."""
    m = ModelBuilder()
    index: dict[int, int] = {}

    def tensor(t: int) -> int:
        if t not in index:
            src = graph.tensors[t]
            kwargs = {}
            if src.quant is not None:
                kwargs = dict(scales=[float(s) for s in src.quant.scale],
                              zero_points=[int(z) for z in src.quant.zero_point], axis=src.quant.axis)
            index[t] = m.tensor(src.shape, src.dtype, data=src.data, name=src.name, **kwargs)
        return index[t]

    for op in graph.ops[first:last + 1]:
        if op.kind == "TRANSPOSE":
            options = (tb._OPT.TransposeOptions, table_options("Transpose"))
        elif op.kind == "MEAN":
            options = (tb._OPT.ReducerOptions, reducer_options(op.options["keep_dims"]))
        elif op.kind == "FULLY_CONNECTED":
            options = (tb._OPT.FullyConnectedOptions, fc_options(op.options["activation"], op.options["keep_num_dims"]))
        else:
            raise AssertionError(f"cutting {op.kind} is not implemented")
        m.op(getattr(tb._OP, op.kind), [tensor(t) if t >= 0 else -1 for t in op.inputs],
             [tensor(t) for t in op.outputs], *options)
    return m.build([index[graph.ops[first].inputs[0]]], [index[graph.ops[last].outputs[0]]])


def test_mcunet_tail_transpose_and_two_means_matches_litert():
    """MCUNet's head cut out of the field model with its own tensors: TRANSPOSE
    [0, 3, 1, 2], MEAN over axis 3, MEAN over axis 2, FULLY_CONNECTED (the whole
    model has float QUANTIZE/DEQUANTIZE edges: see the next test)."""
    graph = load_model(field_model("mcunet_vww.tflite"))
    kinds = [op.kind for op in graph.ops]
    first = kinds.index("TRANSPOSE")
    last = kinds.index("FULLY_CONNECTED", first)
    assert kinds[first:last + 1] == ["TRANSPOSE", "MEAN", "MEAN", "FULLY_CONNECTED"], kinds[first:]
    means = [graph.ops[i] for i in (first + 1, first + 2)]
    assert [op.options["axes"] for op in means] == [[3], [2]], [op.options for op in means]
    data = _cut_model(graph, first, last)
    part = check_model(data, 2, n_inputs=4)
    assert [lower_op(part, op).kernel for op in part.ops] == \
        ["fb_transpose_s8", "fb_reduce_mean_s8", "fb_reduce_mean_s8", "fb_fully_connected_s8"]


def test_mcunet_whole_model_matches_litert():
    path = field_model("mcunet_vww.tflite")
    graph = load_model(path)
    assert (graph.input.dtype, graph.output.dtype) == ("float32", "float32")    # QUANTIZE / DEQUANTIZE edges
    rng = np.random.default_rng(3)
    detail = graph.input
    for _ in range(2):
        x = rng.uniform(-1, 1, detail.shape).astype(detail.dtype)
        ref = reference_output(path, x)
        for kernels in KERNEL_SETS:
            ours = np.asarray(hostrt.run_graph(graph, x, kernels=kernels)).reshape(-1)
            assert ours.tobytes() == ref.tobytes(), kernels


# -- on the emulated board --------------------------------------------------------------------------------

def layout_ops_model() -> bytes:
    """A small single-input model of these ops: TRANSPOSE, MAX_POOL_2D,
    RESIZE_NEAREST_NEIGHBOR, a STRIDED_SLICE channel split, a global MEAN gate,
    a broadcast MUL, CONCATENATION and a MEAN over the channels."""
    m = ModelBuilder()
    q, qo = Q(0.04, -3), Q(0.02, 7)
    x = m.tensor([1, 8, 6, 4], q=q, name="input")
    t = m.tensor([1, 6, 8, 4], q=q)
    m.op(tb._OP.TRANSPOSE, [x, tb._int32_const(m, [0, 2, 1, 3], "perm")], [t], tb._OPT.TransposeOptions,
         table_options("Transpose"))
    p = m.tensor([1, 3, 4, 4], q=q)
    m.op(tb._OP.MAX_POOL_2D, [t], [p], tb._OPT.Pool2DOptions, tb.pool_options((2, 2), (2, 2), "VALID", "NONE"))
    r = m.tensor([1, 6, 8, 4], q=q)
    m.op(tb._OP.RESIZE_NEAREST_NEIGHBOR, [p, tb._int32_const(m, [6, 8], "size")], [r],
         tb._OPT.ResizeNearestNeighborOptions, table_options("ResizeNearestNeighbor", HalfPixelCenters=True))
    halves = []
    for h in range(2):
        s = m.tensor([1, 6, 8, 2], q=q)
        m.op(tb._OP.STRIDED_SLICE, [r, tb._int32_const(m, [0, 0, 0, 2 * h], "begin"),
                                    tb._int32_const(m, [1, 6, 8, 2 * h + 2], "end"),
                                    tb._int32_const(m, [1, 1, 1, 1], "strides")], [s],
             tb._OPT.StridedSliceOptions, table_options("StridedSlice"))
        halves.append(s)
    gate = m.tensor([1, 1, 1, 2], q=Q(0.03, -10))
    m.op(tb._OP.MEAN, [halves[1], tb._int32_const(m, [1, 2], "axes")], [gate], tb._OPT.ReducerOptions,
         reducer_options(True))
    g = m.tensor([1, 6, 8, 2], q=q)
    m.op(tb._OP.MUL, [halves[0], gate], [g], tb._OPT.MulOptions, table_options("Mul"))
    c = m.tensor([1, 6, 8, 4], q=q)
    m.op(tb._OP.CONCATENATION, [g, halves[1]], [c], tb._OPT.ConcatenationOptions,
         table_options("Concatenation", Axis=-1))
    y = m.tensor([1, 6, 8], q=qo, name="output")
    m.op(tb._OP.MEAN, [c, tb._int32_const(m, [3], "axes")], [y], tb._OPT.ReducerOptions, reducer_options(False))
    return m.build([x], [y])


def test_layout_ops_model_matches_litert_on_the_host():
    data = layout_ops_model()
    graph = check_model(data, 8, n_inputs=3)
    assert {lower_op(graph, op).kernel for op in graph.ops} == {
        "fb_transpose_s8", "fb_maxpool_s8", "fb_resize_nearest_s8", "fb_strided_slice_s8", "fb_mean_s8",
        "fb_mul_s8", "fb_concatenation_s8", "fb_reduce_mean_s8"}


@pytest.mark.qemu
def test_layout_ops_model_runs_bit_exact_on_the_emulated_stm32h7(tmp_path):
    import pandas as pd
    from harness.report.bench import run_sweep
    model = tmp_path / "layout_ops.tflite"
    model.write_bytes(layout_ops_model())
    run_dir = run_sweep(["stm32h7"], [model], ["unfused"], max_inputs=2, jobs=1, run_dir=tmp_path / "run")
    rows = pd.read_csv(run_dir / "bench.csv")
    assert len(rows) >= 1
    assert (rows["status"] == "ok").all(), rows[["board", "variant", "status", "detail"]]
    assert rows["outputs_match"].all()


# -- SPLIT / SPLIT_V: rewritten at import into one STRIDED_SLICE per output --------------------

@pytest.mark.parametrize("kind, shape, axis, sizes", [
    ("SPLIT", (1, 4, 5, 6), 3, [3, 3]), ("SPLIT", (1, 6, 5, 4), -3, [2, 2, 2]),
    ("SPLIT_V", (1, 4, 5, 6), 3, [2, 4]), ("SPLIT_V", (2, 9), 1, [1, 5, 3])])
def test_split_matches_litert(kind, shape, axis, sizes):
    """The parts come back concatenated in reverse order, so the output depends on each."""
    import tflite
    m = ModelBuilder()
    q = Q(0.05, 3)
    x = m.tensor(shape, q=q, name="input")
    a = axis % len(shape)
    parts = [m.tensor([s if d == a else shape[d] for d in range(len(shape))], q=q) for s in sizes]
    ax = m.tensor([], "int32", data=np.asarray(axis, np.int32), name="axis")
    if kind == "SPLIT":
        m.op(tflite.BuiltinOperator.SPLIT, [ax, x], parts, tflite.BuiltinOptions.SplitOptions,
             table_options("Split", NumSplits=len(sizes)))
    else:
        sz = m.tensor([len(sizes)], "int32", data=np.asarray(sizes, np.int32), name="sizes")
        m.op(tflite.BuiltinOperator.SPLIT_V, [x, sz, ax], parts, tflite.BuiltinOptions.SplitVOptions,
             table_options("SplitV", NumSplits=len(sizes)))
    y = m.tensor(shape, q=q, name="output")
    m.op(tflite.BuiltinOperator.CONCATENATION, parts[::-1], [y], tflite.BuiltinOptions.ConcatenationOptions,
         table_options("Concatenation", Axis=axis))
    data = m.build([x], [y])
    graph = load_model_bytes(data, kind.lower())
    assert [op.kind for op in graph.ops] == ["STRIDED_SLICE"] * len(sizes) + ["CONCATENATION"]
    rng = np.random.default_rng(len(sizes))
    for _ in range(2):
        xs = rng.integers(-128, 128, shape, dtype=np.int8)
        np.testing.assert_array_equal(hostrt.run_graph(graph, xs).reshape(-1), reference_output(data, xs))
