"""harness.frontend.quant: TFLite's quantization arithmetic in Python."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backend import hostrt
from harness.frontend import quant
from harness.errors import FusebenchError


def test_round_half_away_from_zero_like_std_round():
    assert [quant.round_half_away(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, -1.2)] \
        == [1, 2, 3, -1, -3, 0, -1]


@pytest.mark.parametrize("real, expected", [
    (0.5, (1 << 30, 0)),            # frexp(0.5) = 0.5 * 2^0
    (1.0, (1 << 30, 1)),
    (0.75, (3 << 29, 0)),
    (0.0, (0, 0)),
    (2.0 ** -40, (0, 0)),           # shift < -31 flushes to zero
    (1.0 - 2.0 ** -40, (1 << 30, 1)),  # rounds to 2^31: carried into the shift
])
def test_quantize_multiplier_known_values(real, expected):
    assert quant.quantize_multiplier(real) == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-9, max_value=1e3, allow_nan=False))
def test_quantize_multiplier_represents_the_real_value(real):
    m, shift = quant.quantize_multiplier(real)
    if m == 0:
        assert real < 2.0 ** -31
        return
    assert (1 << 30) <= m < (1 << 31)
    approx = m * 2.0 ** (shift - 31)
    assert math.isclose(approx, real, rel_tol=2.0 ** -30)


@settings(max_examples=500, deadline=None)
@given(x=st.integers(-(1 << 31), (1 << 31) - 1), m=st.integers(1 << 30, (1 << 31) - 1),
       shift=st.integers(-31, 8))
def test_python_requantization_matches_the_c_runtime(x, m, shift):
    assert quant.multiply_by_quantized_multiplier(x, m, shift) == \
        hostrt.multiply_by_quantized_multiplier(x, m, shift)


def test_requantization_rounds_like_gemmlowp():
    # the doubling high multiply rounds ties up (VQRDMULH): 1.5 -> 2, -1.5 -> -1 ...
    assert quant.multiply_by_quantized_multiplier(3, 1 << 30, 0) == 2
    assert quant.multiply_by_quantized_multiplier(-3, 1 << 30, 0) == -1
    assert quant.srdhm(-(1 << 31), -(1 << 31)) == (1 << 31) - 1
    # ... the rounding right shift rounds ties away from zero
    assert [quant.rounding_divide_by_pot(x, e) for x, e in [(3, 1), (-3, 1), (-5, 2), (-6, 2), (6, 2)]] \
        == [2, -2, -1, -2, 2]


def test_activation_ranges_quantize_the_bounds_in_float32():
    assert quant.activation_range("NONE", 0.1, 5) == (-128, 127)
    assert quant.activation_range("RELU", 0.1, 5) == (5, 127)
    assert quant.activation_range("RELU6", 0.1, -128) == (-128, -68)
    assert quant.activation_range("RELU6", 0.01, 0) == (0, 127)
    assert quant.activation_range("RELU_N1_TO_1", 0.5, 0) == (-2, 2)
    with pytest.raises(FusebenchError):
        quant.activation_range("TANH", 0.1, 0)


@pytest.mark.parametrize("padding, size, k, stride, out, pad", [
    ("SAME", 7, 3, 2, 4, 1), ("SAME", 8, 3, 2, 4, 0), ("SAME", 5, 1, 1, 5, 0),
    ("VALID", 7, 3, 2, 3, 0), ("SAME", 6, 5, 1, 6, 2),
])
def test_output_size_and_padding_like_tflite(padding, size, k, stride, out, pad):
    assert quant.output_size(padding, size, k, stride) == out
    assert quant.compute_padding(stride, 1, size, k, out) == pad


def test_conv_multipliers_broadcast_a_per_tensor_scale():
    m, s = quant.conv_channel_multipliers(0.5, [0.25], 0.125, 3)
    assert list(m) == [1 << 30] * 3 and list(s) == [1] * 3
    with pytest.raises(FusebenchError):
        quant.conv_channel_multipliers(0.5, [0.1, 0.2], 0.1, 3)


def test_add_params_use_twenty_bits_of_headroom():
    p = quant.add_params(0.1, 3, 0.05, -2, 0.2, 1, "NONE")
    assert p["left_shift"] == 20 and p["input1_offset"] == -3 and p["input2_offset"] == 2
    # 0.5 and 0.25 of twice the larger input scale: multiplier 2^30 with exponents 0 and -1
    assert (p["input1_multiplier"], p["input1_shift"]) == (1 << 30, 0)
    assert (p["input2_multiplier"], p["input2_shift"]) == (1 << 30, -1)
    assert p["output_shift"] <= 0
    with pytest.raises(FusebenchError):      # output scale too small for the headroom: LiteRT refuses
        quant.add_params(0.5, 0, 0.5, 0, 1e-7, 0, "NONE")


def test_softmax_params_follow_preprocess_softmax_scaling():
    p = quant.softmax_params(0.1, 1.0, 1, 10)
    m, shift = quant.quantize_multiplier(float(np.float32(0.1)) * 2 ** 26)    # beta * scale * 2^26
    assert (p["input_multiplier"], p["input_left_shift"]) == (m, shift)
    assert p["diff_min"] == -math.floor(31 * 2 ** 26 / 2 ** shift)
    big = quant.softmax_params(1e6, 1.0, 1, 10)       # capped at 2^31 - 1
    assert (big["input_multiplier"], big["input_left_shift"]) == quant.quantize_multiplier(2.0 ** 31 - 1)
    with pytest.raises(FusebenchError):      # scale * beta below 2^-26: LiteRT refuses
        quant.softmax_params(1e-9, 1.0, 1, 10)
