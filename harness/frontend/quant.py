"""TFLite's quantization arithmetic, in Python, exactly as LiteRT's Prepare does it.

Every kernel parameter the C runtime receives is computed here, in the same
precision and order of operations as LiteRT (float32 scales widened to double,
`std::round` = round half away from zero), so the firmware reproduces LiteRT's
reference kernels (BUILTIN_REF) bit for bit. The integer helpers at the end
(`srdhm`, `rounding_divide_by_pot`, `multiply_by_quantized_multiplier`) mirror
the C runtime's `fb_arith.h` and exist for tests and host checks.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from harness.errors import FusebenchError

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

ADD_LEFT_SHIFT = 20            # headroom bits of int8 ADD (LiteRT add.cc)
SOFTMAX_DIFF_INTEGER_BITS = 5  # Q5.26 input of the fixed-point exp (activations.cc)


def round_half_away(x: float) -> int:
    """`std::round`: nearest integer, ties away from zero (Python's round() ties to even)."""
    t = math.trunc(x)
    frac = x - t                      # exact for doubles
    if frac >= 0.5:
        t += 1
    elif frac <= -0.5:
        t -= 1
    return int(t)


def f32(x: float) -> float:
    """The float32 value of x, as a Python float (LiteRT stores scales as float)."""
    return float(np.float32(x))


# -- multipliers ------------------------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31) with the
    multiplier in [2^30, 2^31); shift > 0 means a left shift. Double precision,
    frexp + std::round, the 2^31 carry and the flush of tiny values to zero."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        raise FusebenchError(f"cannot quantize a non-finite multiplier ({real})")
    q, shift = math.frexp(real)          # same contract as std::frexp
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:                      # all bits would shift out
        return 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(real: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: 0 <= real < 1, returns (multiplier, exponent <= 0)."""
    if not 0.0 <= real < 1.0:
        raise FusebenchError(f"multiplier {real} must lie in [0, 1) (LiteRT refuses this model)")
    multiplier, shift = quantize_multiplier(real)
    if shift > 0:
        raise FusebenchError(f"multiplier {real} gives a left shift {shift} (LiteRT refuses this model)")
    return multiplier, shift


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    """QuantizeMultiplierGreaterThanOne: real > 1, returns (multiplier, left_shift >= 0)."""
    if not real > 1.0:
        raise FusebenchError(f"multiplier {real} must exceed 1 (LiteRT refuses this model)")
    multiplier, shift = quantize_multiplier(real)
    if shift < 0:
        raise FusebenchError(f"multiplier {real} gives a right shift (LiteRT refuses this model)")
    return multiplier, shift


# -- activation range and padding ------------------------------------------------

def _quantize_value(value: float, scale: float, zero_point: int) -> int:
    """kernel_util.cc Quantize(): float32 division, roundf, plus the zero point."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tmp = float(np.float32(value) / np.float32(scale))
    if not math.isfinite(tmp) or abs(tmp) > 2**31:
        raise FusebenchError(f"activation bound {value} does not fit output scale {scale}")
    return zero_point + round_half_away(tmp)


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    zero_point = int(zero_point)
    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, _quantize_value(0.0, scale, zero_point)), INT8_MAX
    if activation == "RELU6":
        return (max(INT8_MIN, _quantize_value(0.0, scale, zero_point)),
                min(INT8_MAX, _quantize_value(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(INT8_MIN, _quantize_value(-1.0, scale, zero_point)),
                min(INT8_MAX, _quantize_value(1.0, scale, zero_point)))
    raise FusebenchError(f"unsupported fused activation {activation}")


def effective_filter_size(filter_size: int, dilation: int) -> int:
    return (filter_size - 1) * dilation + 1


def output_size(padding: str, in_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    """TFLite ComputeOutSize."""
    eff = effective_filter_size(filter_size, dilation)
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - eff) // stride
    raise FusebenchError(f"unknown padding {padding!r}")


def compute_padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLite ComputePadding: padding before the first pixel (top or left)."""
    eff = effective_filter_size(filter_size, dilation)
    total = (out_size - 1) * stride + eff - in_size
    return max(total // 2, 0) if total > 0 else 0


# -- per-op parameters (each mirrors one LiteRT Prepare) -----------------------------

def conv_channel_multipliers(input_scale: float, filter_scales: Sequence[float], output_scale: float,
                             channels: int) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: one (multiplier, shift) per output
    channel of input_scale * filter_scale / output_scale; a per-tensor filter
    scale is broadcast to every channel."""
    scales = [float(s) for s in np.asarray(filter_scales, dtype=np.float32).reshape(-1)]
    if len(scales) not in (1, channels):
        raise FusebenchError(f"filter has {len(scales)} scales for {channels} output channels")
    multipliers = np.zeros(channels, dtype=np.int32)
    shifts = np.zeros(channels, dtype=np.int32)
    for c in range(channels):
        s = scales[c] if len(scales) > 1 else scales[0]
        m, sh = quantize_multiplier(float(input_scale) * s / float(output_scale))
        multipliers[c], shifts[c] = m, sh
    return multipliers, shifts


def fc_effective_scales(input_scale: float, filter_scales: Sequence[float], output_scale: float) -> np.ndarray:
    """FULLY_CONNECTED (reference kernel): double(in) * double(filter) / double(out),
    one per filter scale; the kernel scales the accumulator with these doubles."""
    scales = np.asarray(filter_scales, dtype=np.float32).reshape(-1)
    return np.array([float(input_scale) * float(s) / float(output_scale) for s in scales],
                    dtype=np.float64)


def add_params(input1_scale: float, input1_zero_point: int, input2_scale: float, input2_zero_point: int,
               output_scale: float, output_zero_point: int, activation: str) -> dict[str, int]:
    """add.cc Prepare for int8 (the fb_add_params fields)."""
    s1, s2, so = f32(input1_scale), f32(input2_scale), f32(output_scale)
    twice_max_input_scale = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(s1 / twice_max_input_scale)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(s2 / twice_max_input_scale)
    mo, sho = quantize_multiplier_smaller_than_one_exp(
        twice_max_input_scale / (float(1 << ADD_LEFT_SHIFT) * so))
    act_min, act_max = activation_range(activation, so, output_zero_point)
    return dict(input1_offset=-int(input1_zero_point), input1_multiplier=m1, input1_shift=sh1,
                input2_offset=-int(input2_zero_point), input2_multiplier=m2, input2_shift=sh2,
                left_shift=ADD_LEFT_SHIFT, output_offset=int(output_zero_point),
                output_multiplier=mo, output_shift=sho, act_min=act_min, act_max=act_max)


def mean_params(input_scale: float, input_zero_point: int, output_scale: float,
                output_zero_point: int) -> dict[str, int]:
    """reduce.cc PrepareMeanOrSum for int8 (the kernel folds in 1/count itself)."""
    m, sh = quantize_multiplier(f32(input_scale) / f32(output_scale))
    return dict(input_zero_point=int(input_zero_point), output_zero_point=int(output_zero_point),
                multiplier=m, shift=sh)


def requantize_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int, size: int) -> dict[str, int]:
    """quantize.cc Prepare for int8 -> int8."""
    m, sh = quantize_multiplier(f32(input_scale) / f32(output_scale))
    return dict(input_zero_point=int(input_zero_point), output_zero_point=int(output_zero_point),
                multiplier=m, shift=sh, size=int(size))


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """quantization_util.cc CalculateInputRadius (double, floor)."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def softmax_params(input_scale: float, beta: float, outer: int, depth: int) -> dict[str, int]:
    """activations.cc SoftmaxPrepare, reference kernel, int8 input: PreprocessSoftmaxScaling."""
    max_real_multiplier = float((1 << 31) - 1)
    real = min(f32(beta) * f32(input_scale) * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)),
               max_real_multiplier)
    multiplier, left_shift = quantize_multiplier_greater_than_one(real)
    diff_min = int(-1.0 * calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, left_shift))
    return dict(input_multiplier=multiplier, input_left_shift=left_shift, diff_min=diff_min,
                outer=int(outer), depth=int(depth))


# -- model edges (QUANTIZE from float32 / uint8, DEQUANTIZE to float32) ----------------------
#
# QUANTIZE uint8 -> int8 takes requantize_params (quantize.cc computes the same
# double multiplier for every integer input type). QUANTIZE float32 -> int8 and
# DEQUANTIZE have no Prepare arithmetic: their kernels get the int8 side's float32
# scale as it is and do the float arithmetic themselves (fb_runtime.h).

def check_scale(scale: float, what: str) -> float:
    """A quantization scale as LiteRT stores it (float32), finite and > 0."""
    s = f32(scale)
    if not (math.isfinite(s) and s > 0.0):
        raise FusebenchError(f"{what} scale {scale} is not a positive finite float32")
    return s


def quantize_params(output_zero_point: int, size: int) -> dict[str, int]:
    """fb_quantize_params of QUANTIZE float32 -> int8 (the scale travels as a float32 array)."""
    return dict(output_zero_point=int(output_zero_point), size=int(size))


def dequantize_params(input_zero_point: int, size: int) -> dict[str, int]:
    """fb_dequantize_params of DEQUANTIZE int8 -> float32 (the scale travels as a float32 array)."""
    return dict(input_zero_point=int(input_zero_point), size=int(size))


# -- LOGISTIC (activations.cc SigmoidPrepare, reference kernel, int8) ------------------------

LOGISTIC_OUTPUT_SCALE = 1.0 / 256     # the only output scale LiteRT's int8 LOGISTIC takes


def _libm_expf():
    """The C library's expf (ctypes): the function LiteRT's Prepare calls as std::exp(float)."""
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("m") or "libm.so.6"
    try:
        fn = ctypes.CDLL(name).expf
    except (OSError, AttributeError) as exc:
        raise FusebenchError(f"cannot load expf from the C library ({name}): {exc}") from None
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


_EXPF = None


def expf(x: float) -> float:
    """float32 exp(x) by the host C library: LiteRT's LOGISTIC table calls it, so
    its last bit (not numpy's float32 exp, which may differ) decides ties."""
    global _EXPF
    if _EXPF is None:
        _EXPF = _libm_expf()
    return float(_EXPF(x))


def logistic_table(input_scale: float, input_zero_point: int, output_scale: float,
                   output_zero_point: int) -> np.ndarray:
    """The 256-entry int8 table of LiteRT's reference int8 LOGISTIC, entry
    (uint8)x for input x (LUTPopulate<int8_t> in float32 arithmetic): the input
    dequantized as float(scale) * float(x - zero point), 1 / (1 + expf(-v)) in
    float, times 1 / output_scale (float), rounded half away from zero, plus the
    output zero point (in float), converted to int32 and clamped. SigmoidPrepare
    requires output_scale == 1/256 exactly, and no particular zero point."""
    s_in = np.float32(check_scale(input_scale, "LOGISTIC input"))
    if f32(output_scale) != LOGISTIC_OUTPUT_SCALE:
        raise FusebenchError(f"int8 LOGISTIC output scale must be 1/256 (got {output_scale}; "
                             "LiteRT refuses this model)")
    one = np.float32(1.0)
    inverse_scale = one / np.float32(output_scale)
    table = np.zeros(256, dtype=np.int8)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x in range(INT8_MIN, INT8_MAX + 1):
            dequantized = s_in * np.float32(x - int(input_zero_point))
            transformed = one / (one + np.float32(expf(float(-dequantized))))
            rescaled = np.float32(round_half_away(float(transformed * inverse_scale)))
            quantized = int(rescaled + np.float32(output_zero_point))
            table[x & 0xFF] = min(max(quantized, INT8_MIN), INT8_MAX)
    return table


# -- HARD_SWISH (activations.cc HardSwishPrepare, int8) ---------------------------------------

def downscale_int32_to_int16_multiplier(multiplier: int) -> int:
    """DownScaleInt32ToInt16Multiplier: the int32 multiplier's top 16 bits,
    rounded (saturating at 32767 just below 2^31)."""
    rounding = 1 << 15
    if multiplier >= INT32_MAX - rounding:
        return 32767
    return (int(multiplier) + rounding) >> 16


def hard_swish_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int) -> dict[str, int]:
    """HardSwishPrepare for int8: hires_input_scale = input_scale / 128, and the
    output and "relu-ish" multipliers hires / output_scale and hires / (3/32768),
    all in float32 (the divisions are float divisions whose results are then
    widened to double for QuantizeMultiplier), each cut down to an int16
    fixed-point multiplier and an exponent. LiteRT refuses an output exponent
    > 0 (output scale below input_scale / 256)."""
    s_in = np.float32(check_scale(input_scale, "HARD_SWISH input"))
    s_out = np.float32(check_scale(output_scale, "HARD_SWISH output"))
    with np.errstate(over="ignore", under="ignore"):
        hires = np.float32(np.float32(1.0) / np.float32(128.0)) * s_in
        reluish_scale = np.float32(3.0) / np.float32(32768.0)
        output_multiplier = hires / s_out
        reluish_multiplier = hires / reluish_scale
    om, oe = quantize_multiplier(float(output_multiplier))
    if oe > 0:
        raise FusebenchError(f"HARD_SWISH output scale {output_scale} is below input scale {input_scale} / 256 "
                             f"(output multiplier exponent {oe} > 0: LiteRT refuses this model)")
    rm, re_ = quantize_multiplier(float(reluish_multiplier))
    if not -31 <= re_ <= 31:
        raise FusebenchError(f"HARD_SWISH input scale {input_scale} is too large (relu-ish exponent {re_})")
    return dict(input_zero_point=int(input_zero_point), output_zero_point=int(output_zero_point),
                reluish_multiplier=downscale_int32_to_int16_multiplier(rm), reluish_exponent=re_,
                output_multiplier=downscale_int32_to_int16_multiplier(om), output_exponent=oe)


# -- integer arithmetic mirrors of fb_arith.h (for tests and host checks) ---------------

def _wrap32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul (int32)."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    q = abs(n) >> 31                     # C++ division truncates toward zero
    return q if n >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """The double-rounding int32 MultiplyByQuantizedMultiplier."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rounding_divide_by_pot(srdhm(_wrap32(x << left), multiplier), right)


# -- MUL and RESIZE_NEAREST_NEIGHBOR --------------------------------------------------

def mul_params(input1_scale: float, input1_zero_point: int, input2_scale: float, input2_zero_point: int,
               output_scale: float, output_zero_point: int, activation: str) -> dict[str, int]:
    """mul.cc Prepare for int8 (the fb_mul_params fields but rank): the real
    multiplier input1_scale * input2_scale / output_scale is computed in float32
    (the three scales are floats; only the quotient is widened to double)."""
    s1, s2, so = np.float32(input1_scale), np.float32(input2_scale), np.float32(output_scale)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        real = np.float32(np.float32(s1 * s2) / so)
    multiplier, shift = quantize_multiplier(float(real))
    act_min, act_max = activation_range(activation, float(so), output_zero_point)
    return dict(input1_offset=-int(input1_zero_point), input2_offset=-int(input2_zero_point),
                output_offset=int(output_zero_point), output_multiplier=multiplier, output_shift=shift,
                act_min=act_min, act_max=act_max)


def nearest_neighbor_indices(in_size: int, out_size: int, align_corners: bool,
                             half_pixel_centers: bool) -> np.ndarray:
    """reference_ops GetNearestNeighbor for every output coordinate (int32), in
    its float32 arithmetic: scale = in/out (align_corners: (in-1)/(out-1) when
    out > 1), index = floor((i + offset) * scale) or, with align_corners,
    round half away from zero; capped at in-1, and at 0 from below with
    half_pixel_centers (offset 0.5)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    out = np.empty(out_size, dtype=np.int32)
    for i in range(out_size):
        value = float(np.float32(np.float32(i) + offset) * np.float32(scale))
        index = round_half_away(value) if align_corners else math.floor(value)
        index = min(index, in_size - 1)
        if half_pixel_centers:
            index = max(0, index)
        out[i] = index
    return out
