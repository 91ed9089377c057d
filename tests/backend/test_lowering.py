"""harness.backend.lowering: IR op -> kernel call conventions and the clear refusals."""
from __future__ import annotations

import numpy as np
import pytest

from harness import paths
from harness.errors import FusebenchError
from harness.backend.cstructs import struct
from harness.backend.lowering import lower_graph, lower_op, receptive_window
from tests.helpers import tflite_builder as tb
from harness.frontend.tflite_writer import Q
from harness.frontend.tflite_import import load_model_bytes

RNG = np.random.default_rng(0)
CONV_PARAM_FIELDS = struct("fb_conv_params").flat_fields()
FILTER_DIM_FIELDS = struct("fb_filter_dims").flat_fields()
FC_PARAM_FIELDS = struct("fb_fc_params").flat_fields()


def only_call(data: bytes):
    graph = load_model_bytes(data, "test")
    return graph, lower_op(graph, graph.ops[0])


def test_conv_call_carries_struct_fields_weights_and_scratch():
    filters = RNG.integers(-127, 128, (6, 3, 3, 4), dtype=np.int8)
    graph, call = only_call(tb.conv2d_model([1, 7, 7, 4], filters, [0.01] * 6, np.arange(6, dtype=np.int32),
                                            Q(0.05, -4), Q(0.1, 2), stride=(2, 2), activation="RELU"))
    assert call.kernel == "fb_conv_s8"
    assert tuple(call.params) == CONV_PARAM_FIELDS + FILTER_DIM_FIELDS
    assert call.params["input_offset"] == 4 and call.params["output_offset"] == 2
    assert (call.params["pad_top"], call.params["pad_left"]) == (1, 1)
    assert (call.params["act_min"], call.params["act_max"]) == (2, 127)
    assert call.arrays["filter"].dtype == np.int8 and call.arrays["filter"].shape == (6, 3, 3, 4)
    assert call.arrays["bias"].dtype == np.int32
    assert call.arrays["multiplier"].dtype == np.int32 and call.arrays["shift"].shape == (6,)
    # with the prepared tables in flash: four int16 columns of 36 taps, a 36-byte patch
    assert call.scratch_bytes == 4 * 2 * 36 + 36
    # the tables: header (tag "FBCV", fast, out_c, taps) + a requantization record per channel
    tables = call.arrays["prepared"]
    assert tables.dtype == np.int32 and tables.nbytes == 16 + 16 * 6
    assert tables[:4].tolist() == [0x56434246, 1, 6, 36]
    records = tables[4:].reshape(6, 4)          # bias2, multiplier, round_offset, right_shift
    assert records[:, 0].tolist() == [2 * b for b in range(6)]
    assert records[:, 1].tolist() == call.arrays["multiplier"].tolist()
    assert records[:, 3].tolist() == (-call.arrays["shift"]).tolist()
    assert call.inputs == [graph.inputs[0]] and call.outputs == graph.outputs
    assert call.input_shapes == [(1, 7, 7, 4)] and call.output_shapes == [(1, 4, 4, 6)]


def test_depthwise_multiplier_comes_from_the_shapes():
    filters = RNG.integers(-127, 128, (1, 3, 3, 6), dtype=np.int8)
    _, call = only_call(tb.depthwise_conv2d_model([1, 5, 5, 3], filters, [0.02], None, Q(0.05, 0), Q(0.1, 0)))
    assert call.kernel == "fb_dw_conv_s8"
    assert call.params["depth_multiplier"] == 2 and call.params["in_c"] == 1 and call.params["out_c"] == 6
    assert "bias" not in call.arrays
    # records, offset-folded biases and the int16-widened filter are prepared tables;
    # with them neither kernel needs scratch
    assert call.scratch_bytes == 0
    # depth multiplier 2: the optimized kernel takes the portable code, the tables are a header
    assert call.arrays["prepared"].tolist() == [0x57444246, 0, 6, 9]


def conv_sizes(out_c, kh, kw, in_c):
    """(scratch with prepared tables, the tables, scratch without them) of the
    optimized kernels, from the C runtime."""
    import ctypes

    from harness.backend import hostrt
    lib = hostrt.library("dsp")
    dims = ctypes.byref(hostrt.FbFilterDims(out_c, kh, kw, in_c))
    params = ctypes.byref(hostrt.FbConvParams())
    tables = np.zeros(4, np.int32)

    def scratch(prepared):
        q = hostrt.FbChannelQuant(None, None, prepared)
        return lib.fb_conv_s8_buffer_size(params, ctypes.byref(q), None, dims, None)
    return scratch(tables.ctypes.data), lib.fb_conv_s8_prepared_size(dims), scratch(None)


def test_conv_scratch_covers_the_optimized_kernels_layouts():
    # 1x1, depth a multiple of 4: four int16 columns; the tables hold header + records
    assert conv_sizes(48, 1, 1, 8)[:2] == (4 * 2 * 8, 16 + 16 * 48)
    # 1x1, depth 6: columns of two whole 4-tap groups; the zero-padded last filter row is a table
    assert conv_sizes(5, 1, 1, 6)[:2] == (4 * 2 * 8, 16 + 16 * 5 + 8)
    # the 3x3 RGB first layer: 27 taps -> 7 groups, 27-byte patch; padded row in the tables
    assert conv_sizes(16, 3, 3, 3)[:2] == (4 * 2 * 28 + 27, 16 + 16 * 16 + 28)
    # without prepared tables the kernel builds them at the start of scratch
    for dims in ((48, 1, 1, 8), (5, 1, 1, 6), (16, 3, 3, 3)):
        scratch, tables, unprepared = conv_sizes(*dims)
        assert unprepared == tables + scratch


def test_fully_connected_call_has_double_scales():
    w = RNG.integers(-127, 128, (4, 10), dtype=np.int8)
    _, call = only_call(tb.fully_connected_model([1, 10], w, [0.01, 0.02, 0.03, 0.04], None, Q(0.5, 1), Q(0.25, 0)))
    assert tuple(call.params) == FC_PARAM_FIELDS and call.params["per_channel"] == 1
    scale = call.arrays["effective_scale"]
    assert scale.dtype == np.float64 and scale.shape == (4,)
    assert scale[0] == float(np.float32(0.5)) * float(np.float32(0.01)) / float(np.float32(0.25))
    assert "bias" not in call.arrays


def test_reshape_is_an_aliasable_copy():
    _, call = only_call(tb.reshape_model([1, 1, 1, 12], [1, 12], Q(0.1, 0)))
    assert call.kernel == "fb_copy_s8" and call.alias and call.params == {"size": 12}


def test_float_and_uint8_edges_lower_to_their_kernels():
    _, call = only_call(tb.quantize_model([1, 4], None, Q(0.1, -3), input_dtype="float32"))
    assert call.kernel == "fb_quantize_f32_s8" and call.params == {"output_zero_point": -3, "size": 4}
    assert call.arrays["scale"].dtype == np.float32 and call.arrays["scale"].tolist() == [np.float32(0.1)]
    assert call.spec.dtype_of(0) == "float32" and call.spec.dtype_of(None) == "int8"
    _, call = only_call(tb.quantize_model([2, 3], Q(0.02, 128), Q(0.02, 0), input_dtype="uint8"))
    assert call.kernel == "fb_requantize_u8_s8" and call.spec.dtype_of(0) == "uint8"
    assert (call.params["multiplier"], call.params["shift"]) == (1 << 30, 1)      # the same scale
    assert (call.params["input_zero_point"], call.params["output_zero_point"]) == (128, 0)
    graph, call = only_call(tb.dequantize_model([1, 4], Q(0.1, 5)))
    assert call.kernel == "fb_dequantize_s8_f32" and call.params == {"input_zero_point": 5, "size": 4}
    assert call.spec.dtype_of(None) == "float32" and [c.kernel for c in lower_graph(graph)] == [call.kernel]


def _edge_op_model(in_dtype: str, out_dtype: str, code) -> bytes:
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], in_dtype, q=None if in_dtype == "float32" else Q(0.1, 0), name="x")
    y = m.tensor([1, 4], out_dtype, q=None if out_dtype == "float32" else Q(0.1, 0), name="y")
    m.op(code, [x], [y])
    return m.build([x], [y])


@pytest.mark.parametrize("in_dtype,out_dtype,code", [
    ("int8", "uint8", tb._OP.QUANTIZE), ("float32", "uint8", tb._OP.QUANTIZE),
    ("uint8", "float32", tb._OP.DEQUANTIZE), ("int8", "int8", tb._OP.DEQUANTIZE)])
def test_other_edges_are_refused_with_a_clear_message(in_dtype, out_dtype, code):
    with pytest.raises(FusebenchError, match=f"from {in_dtype} to {out_dtype} is not supported"):
        load_model_bytes(_edge_op_model(in_dtype, out_dtype, code), "edge")


def test_logistic_and_hard_swish_calls():
    _, call = only_call(tb.logistic_model([2, 5], Q(0.05, 3)))
    assert call.kernel == "fb_lut_s8" and call.params == {}
    table = call.arrays["table"]
    assert table.dtype == np.int8 and table.shape == (256,)
    assert table[3] == 0 and table[127] == 127 and table[128] == -128     # x = zp: 1/2; x = -128: ~0
    _, call = only_call(tb.hard_swish_model([1, 3, 3, 2], Q(0.05, 3), Q(0.03, -100)))
    assert call.kernel == "fb_lut_s8"          # the table of fb_hard_swish_s8 over all 256 inputs
    from harness.frontend import quant
    params = quant.hard_swish_params(0.05, 3, 0.03, -100)
    assert tuple(params) == struct("fb_hard_swish_params").flat_fields()
    assert 1 << 14 <= params["output_multiplier"] <= 1 << 15 and params["output_exponent"] <= 0
    assert call.arrays["table"][3] == -100                 # hard_swish(0) = 0: the output zero point


def test_logistic_and_hard_swish_refuse_what_litert_refuses():
    from harness.frontend.reference import reference_output
    for data, reason in ((tb.logistic_model([4], Q(0.05, 0), out_scale=1.0 / 255), "1/256"),
                         (tb.hard_swish_model([4], Q(0.5, 0), Q(0.001, 0)), "> 0: LiteRT refuses")):
        graph = load_model_bytes(data, "refused")
        with pytest.raises(FusebenchError, match=reason):
            lower_op(graph, graph.ops[0])
        with pytest.raises(FusebenchError, match="LiteRT cannot load"):
            reference_output(data, np.zeros(4, np.int8))


def test_mean_over_other_axes_is_refused():
    graph = load_model_bytes(tb.mean_model([1, 4, 4, 3], Q(0.1, 0), Q(0.1, 0), False, axes=(3,)), "m")
    with pytest.raises(FusebenchError, match="axes"):
        lower_op(graph, graph.ops[0])


def test_channel_padding_is_refused():
    graph = load_model_bytes(tb.pad_model([1, 4, 4, 3], [(0, 0), (1, 1), (1, 1), (0, 2)], Q(0.1, 0)), "p")
    with pytest.raises(FusebenchError, match="H and W"):
        lower_op(graph, graph.ops[0])


def test_grouped_convolution_is_refused():
    filters = RNG.integers(-127, 128, (4, 1, 1, 2), dtype=np.int8)
    m = tb.ModelBuilder()
    x = m.tensor([1, 3, 3, 4], q=Q(0.1, 0))
    f = m.tensor([4, 1, 1, 2], scales=[0.01], data=filters)
    b = m.tensor([4], "int32", data=np.zeros(4, np.int32))
    y = m.tensor([1, 3, 3, 4], q=Q(0.1, 0))
    m.op(tb._OP.CONV_2D, [x, f, b], [y], tb._OPT.Conv2DOptions, tb.conv_options((1, 1), "SAME", (1, 1), "NONE"))
    graph = load_model_bytes(m.build([x], [y]), "grouped")
    with pytest.raises(FusebenchError, match="grouped"):
        lower_op(graph, graph.ops[0])


def test_add_of_a_constant_of_several_values_is_refused():
    # (a one-valued constant becomes a table: tests/firmware/test_elementwise_tables.py)
    m = tb.ModelBuilder()
    x = m.tensor([1, 2, 2, 3], q=Q(0.1, 0))
    c = m.tensor([1, 2, 2, 3], q=Q(0.1, 0), data=np.arange(12, dtype=np.int8))
    y = m.tensor([1, 2, 2, 3], q=Q(0.1, 0))
    m.op(tb._OP.ADD, [x, c], [y], tb._OPT.AddOptions, tb.add_options("NONE"))
    graph = load_model_bytes(m.build([x], [y]), "addc")
    with pytest.raises(FusebenchError, match="constant"):
        lower_op(graph, graph.ops[0])


def test_softmax_output_quantization_is_checked():
    m = tb.ModelBuilder()
    x = m.tensor([1, 5], q=Q(0.1, 0))
    y = m.tensor([1, 5], q=Q(0.1, 0))
    m.op(tb._OP.SOFTMAX, [x], [y], tb._OPT.SoftmaxOptions, tb.softmax_options(1.0))
    graph = load_model_bytes(m.build([x], [y]), "sm")
    with pytest.raises(FusebenchError, match="-128"):
        lower_op(graph, graph.ops[0])


def test_receptive_windows():
    filters = RNG.integers(-127, 128, (2, 3, 3, 2), dtype=np.int8)
    _, conv = only_call(tb.conv2d_model([1, 9, 9, 2], filters, [0.01], np.zeros(2, np.int32),
                                        Q(0.1, 0), Q(0.1, 0), stride=(2, 2)))     # SAME: pad 1
    assert receptive_window(conv, (0, 0, 1, 1)) == (0, 0, 2, 2)       # top-left tap is padding
    assert receptive_window(conv, (2, 1, 2, 3)) == (3, 1, 5, 7)
    assert receptive_window(conv, (4, 4, 1, 1)) == (7, 7, 2, 2)       # bottom-right clipped
    graph, pad = only_call(tb.pad_model([1, 4, 4, 1], [(0, 0), (2, 0), (1, 1), (0, 0)], Q(0.1, 0)))
    assert receptive_window(pad, (0, 0, 2, 6))[2] == 0                 # only padding: reads nothing
    assert receptive_window(pad, (1, 0, 3, 6)) == (0, 0, 2, 4)


def test_planning_without_a_host_compiler_fails_with_one_line(monkeypatch):
    """Scratch sizes come from the C runtime built for the host: without a
    compiler, lowering says so in one line."""
    from harness.backend import hostrt
    filters = RNG.integers(-127, 128, (4, 3, 3, 2), dtype=np.int8)
    graph = load_model_bytes(tb.conv2d_model([1, 5, 5, 2], filters, [0.01], np.zeros(4, np.int32),
                                             Q(0.1, 0), Q(0.1, 0)), "conv")
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setattr(hostrt, "_LIBS", {})
    monkeypatch.setattr(hostrt, "_SIZES", {})
    with pytest.raises(FusebenchError, match="host C compiler 'no-such-cc' not found") as error:
        lower_op(graph, graph.ops[0])
    assert "\n" not in str(error.value) and "apt-get install gcc" in str(error.value)


def test_the_rank_limit_is_the_runtimes():
    import re
    from harness.backend import lowering
    header = (paths.FIRMWARE_DIR / "runtime" / "include" / "fb_runtime.h").read_text()
    assert int(re.search(r"#define FB_MAX_DIMS (\d+)", header).group(1)) == lowering.MAX_DIMS
