"""ADD and MUL with a one-valued constant operand (MobileNetV3's hard-sigmoid gate:
relu6(x + 3) * 1/6) become 256-entry lookup tables (fb_lut_s8) made by the op's own
kernel on the host: byte for byte LiteRT's reference on random shapes, quantization,
constants, activations and operand order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend.lowering import lower_op
from harness.frontend.tflite_writer import Q
from tests.firmware.test_kernels import check_model
from tests.helpers import tflite_builder as tb

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _q(draw) -> Q:
    return Q(float(np.float32(draw(st.floats(0.002, 0.5)))), draw(st.integers(-128, 127)))


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(["ADD", "MUL"]), const_first=st.booleans(),
       activation=st.sampled_from(["NONE", "RELU", "RELU6"]), value=st.integers(-128, 127),
       shape=st.sampled_from([(1, 1, 1, 16), (1, 5, 7, 3), (1, 40), (2, 3, 4)]),
       const_shape=st.sampled_from([(1,), (), (1, 1, 1, 1)]), seed=st.integers(0, 2**32 - 1))
def test_a_constant_operand_becomes_a_table_bit_exact_with_litert(data, kind, const_first, activation, value,
                                                                  shape, const_shape, seed):
    const_shape = const_shape[:len(shape)]         # a constant of higher rank would widen the output
    in_q, const_q, out_q = _q(data.draw), _q(data.draw), _q(data.draw)
    if kind == "ADD":                      # LiteRT's int8 ADD needs scales within 2^left_shift of each other
        const_q = Q(in_q.scale * float(data.draw(st.floats(0.25, 4.0))), const_q.zero_point)
    model = tb.scalar_constant_model(kind, shape, value, in_q, const_q, out_q, activation, const_first,
                                     const_shape)
    graph = check_model(model, seed)
    call = lower_op(graph, graph.ops[0])
    assert call.kernel == "fb_lut_s8" and call.arrays["table"].shape == (256,)


def test_mobilenet_v3_hard_sigmoid_gate_matches_litert():
    # x + 3 (RELU6 fused), then * 1/6, quantized as the converter does
    x_q, three_q, sum_q, sixth_q, gate_q = Q(0.05, -10), Q(3 / 127, -128), Q(6 / 255, -128), Q(1 / 6 / 127, -128), \
        Q(1 / 255, -128)
    for kind, in_q, c_q, value, out_q, act in (("ADD", x_q, three_q, 127 - 128 + 0, sum_q, "RELU6"),
                                               ("MUL", sum_q, sixth_q, -1, gate_q, "NONE")):
        check_model(tb.scalar_constant_model(kind, (1, 1, 1, 24), value, in_q, c_q, out_q, act), seed=4)


def test_a_constant_of_several_values_is_refused_in_one_line():
    from harness.errors import FusebenchError
    from harness.frontend.tflite_import import load_model_bytes
    m = tb.ModelBuilder()
    x = m.tensor((1, 2, 2, 3), q=Q(0.1, 0), name="input")
    c = m.tensor((1, 1, 1, 3), q=Q(0.1, 0), data=np.array([1, 2, 3], np.int8).reshape(1, 1, 1, 3))
    y = m.tensor((1, 2, 2, 3), q=Q(0.1, 0))
    m.op(tb._OP.MUL, [x, c], [y], tb._OPT.MulOptions, tb.table_options("Mul"))
    graph = load_model_bytes(m.build([x], [y]), "per-channel")
    with pytest.raises(FusebenchError) as err:
        lower_op(graph, graph.ops[0])
    assert "constant" in str(err.value) and "\n" not in str(err.value)
