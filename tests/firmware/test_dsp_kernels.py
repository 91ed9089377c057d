"""The optimized (DSP extension) kernels: byte for byte against the portable
kernels and LiteRT, on the host (emulated intrinsics) and on QEMU (both cores).

tests/firmware/test_kernels.py already runs every single-op property test with
both kernel sets; this file adds what is specific to the optimized code: the
single-rounding requantization against TFLite's double rounding over millions
of values, shapes chosen to hit every unrolled path and its leftovers (groups
of four pixels with a short last group, odd channel counts, filter depths that
are not multiples of 4, borders), ADD's specializations on the scale ratios,
quantization parameters that must take the exact fallback, and a whole model
in the emulator on the Cortex-M7 and Cortex-M4 boards (the real instructions
instead of fb_acle_host.h).
"""
from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.backend import hostrt
from harness.backend.lowering import lower_op, receptive_window
from harness.frontend.reference import reference_output, reference_output_of_inputs
from tests.helpers import tflite_builder as tb
from tests.helpers.kernel_cases import add_graph, rand_int8
from harness.frontend.tflite_writer import Q
from harness.frontend.tflite_import import load_model_bytes

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT32_MIN, INT32_MAX = -2**31, 2**31 - 1


# -- requantization -------------------------------------------------------------------------

def tflite_requantize(x: np.ndarray, multiplier: int, shift: int, offset: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (double rounding) + offset, written from
    TFLite's definition in numpy int64 (independent of the C code)."""
    x = x.astype(np.int64)
    left, right = max(shift, 0), max(-shift, 0)
    x = ((x << left) + 2**31) % 2**32 - 2**31                    # int32 wrap-around
    ab = x * multiplier
    v = ab + np.where(ab >= 0, 2**30, 1 - 2**30)
    high = np.where(v >= 0, v >> 31, -((-v) >> 31))            # division truncating toward 0
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold) + offset


LIMIT = 2**30 - 1      # the kernels prove |accumulator| <= LIMIT before taking the fast path


def tie_accumulators(multiplier: int, shift: int, rng) -> np.ndarray:
    """Accumulators where either rounding step of the reference lands on a tie."""
    e = -shift
    xs = []
    # srdhm tie: x*m = 2^30 (mod 2^31), solvable for the odd part of m
    odd, twos = multiplier, 0
    while odd % 2 == 0:
        odd //= 2
        twos += 1
    if twos <= 30:
        period = 2**31 >> twos
        base = ((1 << (30 - twos)) * pow(odd, -1, period)) % period if period > 1 else 0
        xs += [base + k * period for k in range(-6, 6)]
        xs += [base + int(k) * period for k in rng.integers(-LIMIT // period, LIMIT // period + 1, 32)]
    # RoundingDivideByPOT ties: srdhm result s = k*2^e +- 2^(e-1)
    top = max(1, 2**(29 - e))
    for k in rng.integers(-top, top, 64):
        for s in (int(k) * 2**e + 2**(e - 1), int(k) * 2**e - 2**(e - 1)):
            x = (s * 2**31) // multiplier
            xs += [x - 1, x, x + 1]
    xs = np.array(xs, dtype=np.int64)
    return xs[np.abs(xs) <= LIMIT].astype(np.int32)


def accumulators(multiplier: int, shift: int, rng, n: int = 40_000) -> np.ndarray:
    edges = [-LIMIT, -LIMIT + 1, -2**29 - 1, -2**29, -65536, -2, -1, 0, 1, 2, 65535, 2**29, LIMIT - 1, LIMIT]
    return np.concatenate([
        np.array(edges, dtype=np.int32),
        rng.integers(-LIMIT, LIMIT, n, endpoint=True, dtype=np.int32),
        rng.integers(-2**20, 2**20, n, dtype=np.int32),          # conv accumulators' usual range
        tie_accumulators(multiplier, shift, rng),
    ])


def multipliers(rng) -> list[int]:
    """Multipliers in (2^30, 2^31): extremes, many trailing zeros (exact ties), random."""
    ms = [2**30 + 1, INT32_MAX, 3 * 2**29, 2**30 + 2**29 + 2**28, 1518500250]
    ms += [2**30 + 2**k for k in (0, 7, 15, 22, 29)]
    ms += [int(m) for m in rng.integers(2**30 + 1, 2**31, 6)]
    return ms


def test_single_rounding_requantization_equals_tflite_double_rounding():
    """The optimized kernels' SMMLAR formulation (fb_dsp.h) against TFLite's
    arithmetic: ~3.5 million accumulators up to the +-(2^30 - 1) the kernels
    allow, including values that make either rounding step an exact tie, for
    multipliers with many trailing zeros, right shifts 1..31 and extreme offsets."""
    rng = np.random.default_rng(2024)
    checked = 0
    for multiplier in multipliers(rng):
        for shift in (-1, -2, -3, -5, -8, -11, -16, -22, -27, -31):
            for offset in (-128, 0, 127) if shift >= -21 else (0,):
                acc = accumulators(multiplier, shift, rng, 5_000)
                fast = hostrt.requantize_batch(acc, multiplier, shift, offset, fast=True)
                assert fast is not None, (multiplier, shift, offset)
                want = tflite_requantize(acc, multiplier, shift, offset)
                bad = np.flatnonzero(fast != want)
                assert bad.size == 0, (f"m={multiplier} shift={shift} offset={offset}: acc {acc[bad[0]]} "
                                       f"gives {fast[bad[0]]}, TFLite {want[bad[0]]}")
                # the C reference (portable kernels) agrees with the numpy one
                ref = hostrt.requantize_batch(acc, multiplier, shift, offset)
                assert np.array_equal(ref, want)
                checked += acc.size
    assert checked > 3_000_000


def test_fast_requantization_declines_what_it_cannot_do_exactly():
    acc = np.arange(-1000, 1000, dtype=np.int32)
    assert hostrt.requantize_batch(acc, 2**30, -5, 0, fast=True) is None       # m = 2^30: sign rule fails
    assert hostrt.requantize_batch(acc, 0, -5, 0, fast=True) is None
    assert hostrt.requantize_batch(acc, 2**30 + 5, 0, 0, fast=True) is None    # no rounding shift
    assert hostrt.requantize_batch(acc, 2**30 + 5, 3, 0, fast=True) is None    # left shift
    assert hostrt.requantize_batch(acc, 2**30 + 5, -24, 100, fast=True) is None  # |round offset| > 2^30
    assert hostrt.requantize_batch(acc, 2**30 + 5, -24, 0, fast=True) is not None
    big = np.array([2**30], dtype=np.int32)                                    # 2x would overflow
    assert hostrt.requantize_batch(big, 2**30 + 5, -5, 0, fast=True) is None
    assert hostrt.requantize_batch(big - 1, 2**30 + 5, -5, 0, fast=True) is not None


# -- kernels: shapes that hit every unrolled path and its leftovers ----------------------------



def both_kernel_sets_match_litert(data: bytes, seed: int, n_inputs: int = 2):
    rng = np.random.default_rng(seed)
    graph = load_model_bytes(data, "dsp-test")
    for _ in range(n_inputs):
        x = rand_int8(rng, graph.input.shape)
        ref = reference_output(data, x)
        for kernels in hostrt.KERNEL_SETS:
            ours = hostrt.run_graph(graph, x, kernels=kernels).reshape(-1)
            bad = np.flatnonzero(ours != ref)
            assert bad.size == 0, (f"{kernels}: {bad.size}/{ref.size} bytes differ, first at {bad[0]}: "
                                   f"{ours[bad[0]]} vs LiteRT {ref[bad[0]]}; "
                                   f"{lower_op(graph, graph.ops[0]).params}")
    return graph


def conv_quant(rng, filter_scales, taps: int, in_zp=None, out_zp=None):
    in_q = Q(float(np.float32(rng.uniform(0.005, 0.1))),
             int(rng.integers(-128, 128)) if in_zp is None else in_zp)
    spread = in_q.scale * float(np.mean(filter_scales)) * 70.0 * 60.0 * np.sqrt(taps)
    out_q = Q(float(np.float32(spread / 128 * rng.uniform(0.3, 3.0))),
              int(rng.integers(-128, 128)) if out_zp is None else out_zp)
    return in_q, out_q


@FAST
@given(h=st.integers(1, 9), w=st.integers(1, 9), in_c=st.integers(1, 40), out_c=st.integers(1, 37),
       stride=st.sampled_from([1, 1, 2]), zp=st.sampled_from([None, -128, 127]),
       activation=st.sampled_from(["NONE", "RELU6"]), seed=st.integers(0, 2**32 - 1))
@example(h=5, w=7, in_c=8, out_c=9, stride=1, zp=None, activation="NONE", seed=1)     # unrolled, 2 groups
@example(h=3, w=6, in_c=16, out_c=5, stride=1, zp=127, activation="NONE", seed=2)     # unrolled, 4 groups
@example(h=6, w=3, in_c=24, out_c=3, stride=1, zp=-128, activation="NONE", seed=3)    # two groups per turn
@example(h=4, w=4, in_c=20, out_c=7, stride=2, zp=None, activation="NONE", seed=4)    # one group per turn
@example(h=3, w=5, in_c=27, out_c=6, stride=1, zp=None, activation="NONE", seed=5)    # zero-padded group
def test_pointwise_conv_any_depth_and_channel_count(h, w, in_c, out_c, stride, zp, activation, seed):
    """1x1 conv: pixel counts that are not multiples of 4 (the last group
    repeats a pixel), any channel count, depths with 1-3 leftover taps (the
    zero-padded last group), depths 8 and 16 (the unrolled loops)."""
    rng = np.random.default_rng(seed)
    filters = rand_int8(rng, (out_c, 1, 1, in_c))
    scales = [float(s) for s in rng.uniform(0.002, 0.02, out_c)]
    in_q, out_q = conv_quant(rng, scales, in_c, in_zp=zp)
    bias = rng.integers(-30000, 30000, out_c).astype(np.int32)
    data = tb.conv2d_model([1, h, w, in_c], filters, scales, bias, in_q, out_q, (stride, stride),
                           "SAME", (1, 1), activation)
    both_kernel_sets_match_litert(data, seed)


@FAST
@given(h=st.integers(1, 10), w=st.integers(1, 10), in_c=st.integers(1, 6), out_c=st.integers(1, 20),
       k=st.sampled_from([(3, 3), (3, 3), (2, 3), (5, 5), (1, 3)]), stride=st.sampled_from([1, 2]),
       padding=st.sampled_from(["SAME", "VALID"]), zp=st.sampled_from([None, -128, 127]),
       seed=st.integers(0, 2**32 - 1))
def test_spatial_conv_gathers_patches_with_padding(h, w, in_c, out_c, k, stride, padding, zp, seed):
    """kh x kw conv (the 3x3 stride-2 first layer and friends): patch gathering
    across borders, where padded taps must contribute nothing."""
    kh, kw = k
    if padding == "VALID" and (h < kh or w < kw):
        return
    rng = np.random.default_rng(seed)
    filters = rand_int8(rng, (out_c, kh, kw, in_c))
    scales = [float(s) for s in rng.uniform(0.002, 0.02, out_c)]
    in_q, out_q = conv_quant(rng, scales, kh * kw * in_c, in_zp=zp)
    data = tb.conv2d_model([1, h, w, in_c], filters, scales, rng.integers(-5000, 5000, out_c).astype(np.int32),
                           in_q, out_q, (stride, stride), padding, (1, 1), "RELU")
    both_kernel_sets_match_litert(data, seed)


@FAST
@given(h=st.integers(1, 12), w=st.integers(1, 14), out_c=st.integers(1, 20), stride=st.sampled_from([1, 2]),
       dilation_h=st.sampled_from([1, 1, 2]), padding=st.sampled_from(["SAME", "VALID"]),
       zp=st.sampled_from([None, -128, 127]), seed=st.integers(0, 2**32 - 1))
@example(h=9, w=11, out_c=16, stride=2, dilation_h=1, padding="SAME", zp=None, seed=6)   # MobileNet's first layer
def test_rgb_3x3_conv_reads_its_columns_straight_from_the_rows(h, w, out_c, stride, dilation_h, padding, zp, seed):
    """3x3 conv over 3 channels: the interior pixels' columns are pieced
    together from word loads of the three input rows (including the 27th tap,
    padded with the zero point), border pixels gather; both in one group of
    four pixels, with rows taken dilation_h apart."""
    if padding == "VALID" and (h < 2 * dilation_h + 1 or w < 3):
        return
    rng = np.random.default_rng(seed)
    filters = rand_int8(rng, (out_c, 3, 3, 3))
    scales = [float(s) for s in rng.uniform(0.002, 0.02, out_c)]
    in_q, out_q = conv_quant(rng, scales, 27, in_zp=zp)
    data = tb.conv2d_model([1, h, w, 3], filters, scales, rng.integers(-5000, 5000, out_c).astype(np.int32),
                           in_q, out_q, (stride, stride), padding, (dilation_h, 1), "NONE")
    both_kernel_sets_match_litert(data, seed)


@FAST
@given(h=st.integers(1, 8), w=st.integers(1, 16), groups=st.integers(1, 5), stride=st.sampled_from([1, 2]),
       dilation_h=st.sampled_from([1, 2]), padding=st.sampled_from(["SAME", "VALID"]),
       zp=st.sampled_from([None, -128, 127]), seed=st.integers(0, 2**32 - 1))
@example(h=5, w=16, groups=2, stride=1, dilation_h=1, padding="SAME", zp=None, seed=7)   # 14 = 3 * 4 + 2 in a run
@example(h=6, w=15, groups=3, stride=2, dilation_h=1, padding="SAME", zp=127, seed=8)    # 3-pixel passes, stride 2
@example(h=7, w=9, groups=1, stride=1, dilation_h=2, padding="VALID", zp=-128, seed=9)
def test_depthwise_3x3_passes_take_pixels_three_at_a_time(h, w, groups, stride, dilation_h, padding, zp, seed):
    """3x3 depthwise, one lane at a time: runs of interior pixels three at a
    time with 0-2 left over, the top and bottom rows two at a time with the
    input offset, one-pixel passes at the ends of a run, strides 1 and 2, rows
    taken dilation_h apart (columns stay adjacent)."""
    if padding == "VALID" and (h < 2 * dilation_h + 1 or w < 3):
        return
    rng = np.random.default_rng(seed)
    channels = 4 * groups
    filters = rand_int8(rng, (1, 3, 3, channels))
    scales = [float(s) for s in rng.uniform(0.002, 0.05, channels)]
    in_q, out_q = conv_quant(rng, scales, 9, in_zp=zp)
    bias = rng.integers(-5000, 5000, channels).astype(np.int32)
    data = tb.depthwise_conv2d_model([1, h, w, channels], filters, scales, bias, in_q, out_q,
                                     (stride, stride), padding, (dilation_h, 1), "RELU6")
    both_kernel_sets_match_litert(data, seed)


@FAST
@given(h=st.integers(1, 12), w=st.integers(1, 12), groups=st.integers(1, 12), extra=st.sampled_from([0, 0, 0, 1, 3]),
       k=st.sampled_from([(3, 3), (3, 3), (5, 5), (1, 1), (3, 1)]), stride=st.sampled_from([1, 2]),
       dilation=st.sampled_from([1, 1, 2]), padding=st.sampled_from(["SAME", "VALID"]),
       zp=st.sampled_from([None, -128, 127]), activation=st.sampled_from(["NONE", "RELU6", "RELU"]),
       seed=st.integers(0, 2**32 - 1))
def test_depthwise_conv_borders_strides_and_channel_groups(h, w, groups, extra, k, stride, dilation, padding,
                                                           zp, activation, seed):
    """Depthwise with 4*groups (+extra, which takes the portable path) channels:
    interior pixels with all 3 taps of a row unrolled, border pixels with their
    valid taps only, strides 1 and 2, dilation."""
    kh, kw = k
    if padding == "VALID" and (h < (kh - 1) * dilation + 1 or w < (kw - 1) * dilation + 1):
        return
    rng = np.random.default_rng(seed)
    channels = 4 * groups + extra
    filters = rand_int8(rng, (1, kh, kw, channels))
    scales = [float(s) for s in rng.uniform(0.002, 0.05, channels)]
    in_q, out_q = conv_quant(rng, scales, kh * kw, in_zp=zp)
    bias = rng.integers(-5000, 5000, channels).astype(np.int32)
    data = tb.depthwise_conv2d_model([1, h, w, channels], filters, scales, bias, in_q, out_q,
                                     (stride, stride), padding, (dilation, dilation), activation)
    both_kernel_sets_match_litert(data, seed)






@FAST
@given(scales=st.sampled_from(["distinct", "equal inputs", "output = larger input", "input 2 larger",
                               "all equal", "power of two apart"]),
       activation=st.sampled_from(["NONE", "RELU", "RELU6"]), hw=st.tuples(st.integers(1, 7), st.integers(1, 9)),
       channels=st.integers(1, 19), seed=st.integers(0, 2**32 - 1))
def test_add_every_scale_relationship(scales, activation, hw, channels, seed):
    """ADD's fast path specializes on the multipliers TFLite derives from the
    scales: the larger input's exact 0.5 (a shift), both inputs equal, the
    output multiplier 2^30 when the output scale equals the larger input's."""
    rng = np.random.default_rng(seed)
    s1, s2, so = (float(np.float32(v)) for v in rng.uniform(0.01, 0.2, 3))
    if scales == "equal inputs":
        s2 = s1
    elif scales == "output = larger input":
        so = max(s1, s2)
    elif scales == "input 2 larger":
        s1, s2 = min(s1, s2), max(s1, s2)
    elif scales == "all equal":
        s2 = so = s1
    elif scales == "power of two apart":
        s2, so = s1 / 4, s1 * 2
    qa, qb, qo = (Q(s, int(rng.integers(-128, 128))) for s in (s1, s2, so))
    shape = (1, hw[0], hw[1], channels)
    data = tb.add_model(shape, qa, qb, qo, activation)
    graph = add_graph(shape, qa, qb, qo, activation)
    call = lower_op(graph, graph.ops[0])
    for _ in range(2):
        a, b = rand_int8(rng, shape), rand_int8(rng, shape)
        ref = reference_output_of_inputs(data, [a, b])
        for kernels in hostrt.KERNEL_SETS:
            (ours,) = hostrt.run_op(call, [a, b], kernels=kernels)
            assert np.array_equal(ours, ref), f"{kernels} kernels, {call.params}"


# Scales whose requantization the fast path declines: the kernels take the
# portable code and must still be exact.
FALLBACK_SCALES = {
    "multiplier exactly 2^30": (0.5, 2.0**-5, 1.0),     # in * filter / out = 2^-6
    "no right shift": (0.5, 0.12, 0.1),                 # real multiplier 0.6
    "left shift": (1.0, 0.5, 0.25),                     # real multiplier 2
    "tiny multiplier, large offset": (0.001, 0.0001, 20.0),
}


@pytest.mark.parametrize("case", sorted(FALLBACK_SCALES))
@pytest.mark.parametrize("layer", ["pointwise", "3x3", "depthwise"])
def test_quantization_the_fast_path_declines_stays_exact(case, layer):
    in_scale, filter_scale, out_scale = FALLBACK_SCALES[case]
    rng = np.random.default_rng(len(case) * 7 + len(layer))
    in_q, out_q = Q(in_scale, 3), Q(out_scale, 100 if "offset" in case else -7)
    if layer == "depthwise":
        filters = rand_int8(rng, (1, 3, 3, 8))
        data = tb.depthwise_conv2d_model([1, 6, 7, 8], filters, [filter_scale] * 8,
                                         rng.integers(-50, 50, 8).astype(np.int32), in_q, out_q)
    else:
        k = 1 if layer == "pointwise" else 3
        filters = rand_int8(rng, (5, k, k, 8))
        data = tb.conv2d_model([1, 6, 7, 8], filters, [filter_scale] * 5,
                               rng.integers(-50, 50, 5).astype(np.int32), in_q, out_q, (1, 1), "SAME")
    graph = both_kernel_sets_match_litert(data, 5, n_inputs=3)
    call = lower_op(graph, graph.ops[0])
    m, s = int(call.arrays["multiplier"][0]), int(call.arrays["shift"][0])
    assert hostrt.requantize_batch(np.zeros(1, np.int32), m, s, call.params["output_offset"], fast=True) is None


def test_huge_bias_sends_the_layer_to_the_exact_path():
    """A bias near 2^30 breaks the |accumulator| < 2^30 bound of the fast form."""
    rng = np.random.default_rng(4)
    filters = rand_int8(rng, (6, 1, 1, 8))
    bias = np.array([2**30 - 5, -2**30 + 5, 7, 0, -9, 2**29], dtype=np.int32)
    data = tb.conv2d_model([1, 4, 5, 8], filters, [1e-7] * 6, bias, Q(0.05, 2), Q(0.08, -3))
    both_kernel_sets_match_litert(data, 4, n_inputs=3)


def test_one_slow_channel_sends_the_whole_layer_to_the_exact_path():
    """Per-channel scales where only channel 2 has multiplier 2^30."""
    rng = np.random.default_rng(3)
    scales = [0.011, 0.013, 2.0**-6, 0.017, 0.019]
    filters = rand_int8(rng, (5, 1, 1, 12))
    data = tb.conv2d_model([1, 5, 5, 12], filters, scales, rng.integers(-900, 900, 5).astype(np.int32),
                           Q(0.5, -3), Q(1.0 / 32, 4))
    both_kernel_sets_match_litert(data, 3, n_inputs=3)


SIZE_CASES = [   # (kernel, out_c, kh, kw, in_c): taps multiple of 4 or not, 1x1 or not, C % 4
    ("fb_conv_s8", 16, 3, 3, 3), ("fb_conv_s8", 144, 1, 1, 24), ("fb_conv_s8", 5, 1, 1, 6),
    ("fb_conv_s8", 1280, 1, 1, 320), ("fb_conv_s8", 7, 2, 3, 5),
    ("fb_dw_conv_s8", 12, 3, 3, 1), ("fb_dw_conv_s8", 336, 3, 3, 1), ("fb_dw_conv_s8", 6, 5, 5, 1),
]


def documented_sizes(kernel, out_c, kh, kw, in_c, kernels):
    """fb_runtime.h's formulas in one build: scratch with prepared tables, the
    tables, scratch without them."""
    taps = kh * kw * in_c
    groups = -(-taps // 4)
    if kernel == "fb_conv_s8":
        tables = 16 + 16 * out_c + (4 * groups if taps % 4 else 0)
        if kernels == "portable":
            return dict(with_tables=2 * taps, tables=tables, without_tables=2 * taps)
        scratch = 32 * groups + (0 if kh == kw == 1 else taps)
    else:
        tables = 16 + (20 + 2 * kh * kw) * out_c
        if kernels == "portable":
            return dict(with_tables=0, tables=tables, without_tables=0)
        scratch = 0
    return dict(with_tables=scratch, tables=tables, without_tables=tables + scratch)


def c_sizes(kernel, out_c, kh, kw, in_c, kernels="dsp"):
    """The C size functions of one build (fb_*_buffer_size with and without
    prepared tables, fb_*_prepared_size)."""
    lib = hostrt.library(kernels)
    dims = ctypes.byref(hostrt.FbFilterDims(out_c, kh, kw, in_c))
    params = (hostrt.FbConvParams if kernel == "fb_conv_s8" else hostrt.FbDwConvParams)()
    tables = np.zeros(4, np.int32)      # the size functions look only at whether there are tables
    sizes = {}
    for name, prepared in (("with_tables", tables.ctypes.data), ("without_tables", None)):
        q = hostrt.FbChannelQuant(None, None, prepared)
        sizes[name] = getattr(lib, kernel + "_buffer_size")(ctypes.byref(params), ctypes.byref(q), None, dims, None)
    sizes["tables"] = getattr(lib, kernel + "_prepared_size")(dims)
    return sizes


@pytest.mark.parametrize("kernel, out_c, kh, kw, in_c", SIZE_CASES)
def test_scratch_and_table_sizes_are_the_documented_ones_in_both_builds(kernel, out_c, kh, kw, in_c):
    """The C size functions give fb_runtime.h's numbers in each build, and the
    lowering plans the larger (the DSP kernels'), so a plan fits either build."""
    for kernels in hostrt.KERNEL_SETS:
        assert c_sizes(kernel, out_c, kh, kw, in_c, kernels) == documented_sizes(kernel, out_c, kh, kw, in_c,
                                                                                   kernels), kernels
    portable, dsp = (c_sizes(kernel, out_c, kh, kw, in_c, k)["with_tables"] for k in ("portable", "dsp"))
    assert portable <= dsp


def test_prepared_tables_cut_the_scratch_of_mobilenet_sized_layers():
    """The numbers behind the change: a 1x1 conv to 1280 channels (MobileNetV2's
    last conv) and a 3x3 depthwise over 336 channels, on the DSP kernels."""
    taps = 320
    conv = c_sizes("fb_conv_s8", 1280, 1, 1, 320)
    assert conv["without_tables"] == 16 + 16 * 1280 + 32 * taps // 4     # 23056
    assert conv["with_tables"] == 32 * taps // 4                         # 2560
    dw = c_sizes("fb_dw_conv_s8", 336, 3, 3, 1)
    assert dw["without_tables"] == 16 + (20 + 18) * 336                  # 12784
    assert dw["with_tables"] == 0


def one_layer(kind: str, rng, h=6, w=7, in_c=8, out_c=12, k=3, stride=1, padding="SAME", zp=None,
              scales=None, bias=True, activation="NONE", dilation=1):
    """A single conv ("conv", always with a bias, as LiteRT requires) or
    depthwise ("dw", out_c = in_c * multiplier) layer."""
    if kind == "conv":
        filters = rand_int8(rng, (out_c, k, k, in_c))
        scales = scales or [float(s) for s in rng.uniform(0.002, 0.02, out_c)]
        in_q, out_q = conv_quant(rng, scales, k * k * in_c, in_zp=zp)
        b = rng.integers(-5000, 5000, out_c).astype(np.int32)      # LiteRT's int8 conv needs a bias
        data = tb.conv2d_model([1, h, w, in_c], filters, scales, b, in_q, out_q, (stride, stride), padding,
                               (dilation, dilation), activation)
    else:
        filters = rand_int8(rng, (1, k, k, out_c))
        scales = scales or [float(s) for s in rng.uniform(0.002, 0.05, out_c)]
        in_q, out_q = conv_quant(rng, scales, k * k, in_zp=zp)
        b = rng.integers(-5000, 5000, out_c).astype(np.int32) if bias else None
        data = tb.depthwise_conv2d_model([1, h, w, in_c], filters, scales, b, in_q, out_q, (stride, stride),
                                         padding, (dilation, dilation), activation)
    graph = load_model_bytes(data, kind)
    return data, graph, lower_op(graph, graph.ops[0])


def split_windows(size: int, rng) -> list[tuple[int, int]]:
    cuts = sorted(set(int(c) for c in rng.integers(1, size, size=rng.integers(0, 3)))) if size > 1 else []
    edges = [0] + cuts + [size]
    return list(zip(edges, np.diff(edges).tolist()))


@FAST
@given(kind=st.sampled_from(["conv", "conv", "dw"]), h=st.integers(1, 9), w=st.integers(1, 9),
       in_c=st.integers(1, 24), out_c=st.integers(1, 24), k=st.sampled_from([1, 1, 3, 5]),
       stride=st.sampled_from([1, 2]), dilation=st.sampled_from([1, 1, 2]),
       padding=st.sampled_from(["SAME", "VALID"]), zp=st.sampled_from([None, -128, 127]),
       bias=st.booleans(), activation=st.sampled_from(["NONE", "RELU6"]),
       fallback=st.sampled_from([None, None, None, "multiplier exactly 2^30", "left shift"]),
       seed=st.integers(0, 2**32 - 1))
@example(kind="dw", h=5, w=5, in_c=12, out_c=12, k=3, stride=1, dilation=1, padding="SAME", zp=None, bias=True,
         activation="NONE", fallback=None, seed=1)
@example(kind="conv", h=4, w=5, in_c=6, out_c=5, k=1, stride=1, dilation=1, padding="SAME", zp=None, bias=True,
         activation="RELU6", fallback=None, seed=2)
def test_prepared_and_unprepared_calls_agree_and_use_the_scratch_they_report(
        kind, h, w, in_c, out_c, k, stride, dilation, padding, zp, bias, activation, fallback, seed):
    """Random layers, whole maps and windows: with the lowering's prepared
    tables and with NULL (tables built in scratch per call), both builds give
    the same bytes as LiteRT. The tables are the same whichever build prepares
    them and the same bytes the DSP kernel prepares in scratch itself. With
    tables, the optimized kernel writes exactly the scratch lowering reserved
    (fb_*_buffer_size() with tables); without, exactly fb_*_buffer_size()
    without tables; and never beyond (run_op checks a guard after the scratch)."""
    if padding == "VALID" and min(h, w) < (k - 1) * dilation + 1:
        return
    rng = np.random.default_rng(seed)
    if kind == "dw":            # mostly what the optimized kernel takes: multiplier 1, channels 4k
        if rng.random() < 0.75:
            in_c = 4 * max(1, in_c // 4)
        out_c = in_c * int(rng.choice([1, 1, 1, 1, 2]))
    scales = None
    if fallback is not None:
        in_scale, filter_scale, out_scale = FALLBACK_SCALES[fallback]
        scales = [filter_scale] * out_c
    data, graph, call = one_layer(kind, rng, h, w, in_c, out_c, k, stride, padding, zp, scales, bias,
                                  activation, dilation)
    if fallback is not None:      # rebuild with the scales that defeat the fast requantization
        q_in, q_out = Q(in_scale, 3), Q(out_scale, -7)
        filters = call.arrays["filter"]
        b = call.arrays.get("bias")
        if kind == "conv":
            data = tb.conv2d_model([1, h, w, in_c], filters, scales, b, q_in, q_out, (stride, stride), padding,
                                   (dilation, dilation), activation)
        else:
            data = tb.depthwise_conv2d_model([1, h, w, in_c], filters, scales, b, q_in, q_out, (stride, stride),
                                             padding, (dilation, dilation), activation)
        graph = load_model_bytes(data, kind)
        call = lower_op(graph, graph.ops[0])

    tables = call.arrays["prepared"]
    assert tables.dtype == np.int32
    header = tables[:4].tolist()
    fast = header[1] == 1
    assert header[0] == (0x56434246 if kind == "conv" else 0x57444246)
    assert header[2:] == [call.params["out_c"], call.params["kh"] * call.params["kw"] * call.params["in_c"]]
    if fast:
        size_fn = getattr(hostrt.library(), call.kernel + "_prepared_size")
        dims = hostrt.FbFilterDims(*(call.params[f] for f in ("out_c", "kh", "kw", "in_c")))
        assert tables.nbytes == size_fn(ctypes.byref(dims))
    else:
        assert tables.nbytes == 16
    for kernels in hostrt.KERNEL_SETS:
        assert np.array_equal(hostrt.prepare_tables(call.kernel, call.params, call.arrays, kernels=kernels), tables)

    x = rand_int8(rng, graph.input.shape)
    ref = reference_output(data, x).reshape(call.output_shapes[0])
    for kernels in hostrt.KERNEL_SETS:
        for prepared in (True, False):
            (ours,) = hostrt.run_op(call, [x], kernels=kernels, prepared=prepared)
            assert np.array_equal(ours, ref), (kernels, prepared, call.params)
            out = np.zeros_like(ref)
            oh, ow = ref.shape[1], ref.shape[2]
            for y0, th in split_windows(oh, rng):
                for x0, tw in split_windows(ow, rng):
                    win = (y0, x0, th, tw)
                    hostrt.run_op(call, [x], output_window=win, input_windows=[receptive_window(call, win)],
                                  row_padding=int(rng.integers(0, 4)), out=out, kernels=kernels,
                                  prepared=prepared)
            assert np.array_equal(out, ref), (kernels, prepared, "windows")

    # scratch: what the optimized kernel writes is exactly what it reports
    full = hostrt.buffer_size(call, "dsp", prepared=False)
    top_prepared = hostrt.scratch_high_water(call, [x], kernels="dsp", prepared=True)
    top_null = hostrt.scratch_high_water(call, [x], kernels="dsp", prepared=False)
    if fast:
        assert top_prepared == call.scratch_bytes
        assert top_null == full
        # the tables the kernel prepares in scratch are the lowering's, byte for byte
        _, scratch = hostrt._run_op(call, [x], kernels="dsp", prepared=False)
        assert scratch[:tables.nbytes].tobytes() == tables.tobytes()
    else:
        assert top_prepared <= call.scratch_bytes and top_null <= full
    for kernels in hostrt.KERNEL_SETS:
        assert hostrt.scratch_high_water(call, [x], kernels=kernels) <= call.scratch_bytes


def test_the_lowering_prepares_tables_only_when_they_are_read(monkeypatch):
    """Planners lower every op many times: lower_op must not compute tables."""
    from harness.backend import lowering

    calls = []
    real = hostrt.prepare_tables
    monkeypatch.setattr(hostrt, "prepare_tables", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    rng = np.random.default_rng(5)
    _, graph, call = one_layer("dw", rng, in_c=8, out_c=8, bias=False)
    again = lowering.lower_graph(graph)
    assert calls == [] and "prepared" in call.arrays and len(call.arrays) == 4
    first = call.arrays["prepared"]
    assert calls == ["fb_dw_conv_s8"]
    assert call.arrays["prepared"] is first and call.arrays.get("prepared") is first
    assert calls == ["fb_dw_conv_s8"]
    assert sorted(call.arrays) == ["filter", "multiplier", "prepared", "shift"]
    assert np.array_equal(again[0].arrays["prepared"], first)


@pytest.mark.parametrize("kernels", hostrt.KERNEL_SETS)
@pytest.mark.parametrize("kind, k", [("conv", 3), ("conv", 1), ("dw", 3)])
def test_too_little_scratch_is_refused_with_fb_err_scratch(kind, k, kernels):
    """A kernel given one byte less scratch than its fb_*_buffer_size() for the
    call returns FB_ERR_SCRATCH instead of writing past it, with and without
    prepared tables; exactly that many bytes work."""
    from harness.errors import FusebenchError

    rng = np.random.default_rng(9)
    _, graph, call = one_layer(kind, rng, in_c=8, out_c=8, k=k)
    x = rand_int8(rng, graph.input.shape)
    refused = 0
    for prepared in (True, False):
        need = hostrt.buffer_size(call, kernels, prepared=prepared)
        assert need <= call.scratch_bytes or not prepared
        hostrt.run_op(call, [x], kernels=kernels, prepared=prepared, scratch_bytes=need)
        if need > 0:
            with pytest.raises(FusebenchError, match="FB_ERR_SCRATCH"):
                hostrt.run_op(call, [x], kernels=kernels, prepared=prepared, scratch_bytes=need - 1)
            refused += 1
    # depthwise needs scratch only for tables it builds itself (DSP, none prepared)
    assert refused == {("conv", "portable"): 2, ("conv", "dsp"): 2, ("dw", "portable"): 0, ("dw", "dsp"): 1}[
        (kind, kernels)]


def test_kernels_reject_tables_made_for_another_layer():
    import dataclasses

    from harness.errors import FusebenchError

    rng = np.random.default_rng(6)
    _, graph, conv = one_layer("conv", rng, out_c=8)
    _, _, dw = one_layer("dw", rng, in_c=8, out_c=8)
    _, _, conv12 = one_layer("conv", rng, out_c=12)
    x = rand_int8(rng, graph.input.shape)
    for call, other in ((conv, dw), (dw, conv), (conv, conv12)):
        wrong = dataclasses.replace(call, arrays=dict(call.arrays, prepared=other.arrays["prepared"]))
        with pytest.raises(FusebenchError, match="FB_ERR_ARG"):
            hostrt.run_op(wrong, [x], kernels="dsp")
        (ours,) = hostrt.run_op(wrong, [x], kernels="portable")      # the portable kernels ignore them
        assert np.array_equal(ours, hostrt.run_op(call, [x], kernels="dsp")[0])


def test_both_host_builds_are_warning_free():
    import shutil
    import subprocess

    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("gcc is not on PATH (scripts/setup.sh installs it)")
    for flags in ([], ["-DFB_HOST_DSP=1"]):
        for source in hostrt.runtime_sources():
            cmd = [compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *flags, "-I",
                   str(hostrt.RUNTIME_DIR / "include"), "-c", str(source), "-o", "/dev/null"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            assert result.returncode == 0, f"{source.name} {flags}: {result.stderr}"


def test_build_selects_the_kernels_from_the_core(monkeypatch):
    import dataclasses

    from harness.targets.boards import load_board
    from harness.backend.build import KERNELS_ENV, kernel_defines
    from harness.errors import FusebenchError

    monkeypatch.delenv(KERNELS_ENV, raising=False)
    for name in ("stm32h7", "stm32f4"):
        assert kernel_defines(load_board(name)) == ["-DFB_KERNELS_DSP=1"]
    m3 = dataclasses.replace(load_board("stm32f4"), core="cortex-m3", fpu="none")
    assert kernel_defines(m3) == ["-DFB_KERNELS_DSP=0"]
    monkeypatch.setenv(KERNELS_ENV, "portable")
    assert kernel_defines(load_board("stm32h7")) == ["-DFB_KERNELS_DSP=0"]
    monkeypatch.setenv(KERNELS_ENV, "dsp")
    with pytest.raises(FusebenchError, match="no DSP extension"):
        kernel_defines(m3)
    monkeypatch.setenv(KERNELS_ENV, "fast")
    with pytest.raises(FusebenchError, match="expected dsp or portable"):
        kernel_defines(load_board("stm32h7"))


# -- QEMU: the real instructions on both cores ---------------------------------------------------

@pytest.mark.qemu
def test_dsp_kernels_on_both_cores_match_litert(tmp_path):
    """An inverted-residual chain with awkward channel counts, run by the
    firmware on the Cortex-M7 (stm32h7) and Cortex-M4 (stm32f4) boards: every
    output byte equals LiteRT's, the optimized kernels are the ones built in,
    and the arena watermark equals the plan (the kernels' scratch is counted)."""
    import pandas as pd

    from harness.report.bench import firmware_dir, plan_variant, run_sweep

    rng = np.random.default_rng(11)
    # filter depths 8 and 16 (unrolled loops), 24/48 (two groups per turn), 12/36/100
    # (one group per turn), 27/21/42 (zero-padded last group), odd channel counts,
    # depthwise with 8..100 channels (42: the portable fallback), strides 1 and 2
    blocks = [(1, 8, 1), (2, 12, 2), (3, 12, 1), (4, 20, 2), (5, 21, 1), (2, 10, 1)]
    data = tb.inverted_residual_chain_model(rng, (19, 17), 3, blocks, first_conv=8)
    model = tmp_path / "dsp_chain.tflite"
    model.write_bytes(data)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(3):
        np.save(inputs / f"x{i}.npy", rng.integers(-128, 128, (1, 19, 17, 3), dtype=np.int8))
    (tmp_path / "run").mkdir()
    run_dir = run_sweep(["stm32h7", "stm32f4"], [model], ["unfused"], inputs_dir=str(inputs), jobs=2,
                        run_dir=tmp_path / "run")
    rows = pd.read_csv(run_dir / "bench.csv")
    assert len(rows) == 2 * 3
    assert (rows["status"] == "ok").all(), rows[["board", "status", "detail"]]
    assert rows["outputs_match"].all()
    # the watermark reaches the end of the highest planned buffer (the plan's
    # arena_bytes is that end rounded up to the arena alignment)
    _, graph, plan = plan_variant("stm32h7", str(model), "unfused")
    planned_top = max(a.offset + a.size for a in plan.allocations)
    assert (rows["arena_bytes_peak"] == planned_top).all(), (rows["arena_bytes_peak"], planned_top)
    for board in ("stm32h7", "stm32f4"):
        log = (firmware_dir(board, graph, "unfused") / "build.log").read_text()
        assert re.search(r"-DFB_KERNELS_DSP=1\b", log), f"{board} firmware was not built with the DSP kernels"


@pytest.mark.parametrize("k", [3, 1])
def test_a_conv_left_to_the_portable_code_asks_only_for_its_scratch(k):
    """An effective scale of 1/2 or more in one channel (MCUNet's first layer)
    prepares tables with fast == 0: the DSP build then runs the portable
    code, and its fb_conv_s8_buffer_size() asks for that code's column only, so
    the plan's scratch is what the firmware touches."""
    rng = np.random.default_rng(11)
    filters = rand_int8(rng, (8, k, k, 3))
    scales = [0.01] * 7 + [2.0]
    in_q, out_q = Q(0.01, 3), Q(0.02, -5)     # the last channel's effective scale is 1: no fast record
    bias = rng.integers(-5000, 5000, 8).astype(np.int32)
    data = tb.conv2d_model([1, 5, 6, 3], filters, scales, bias, in_q, out_q, (1, 1), "VALID", (1, 1), "NONE")
    graph = load_model_bytes(data, "conv")
    call = lower_op(graph, graph.ops[0])
    assert call.arrays["prepared"][1] == 0                                    # header.fast
    portable = hostrt.buffer_size(call, "portable")
    assert hostrt.buffer_size(call, "dsp") == portable == call.scratch_bytes == 2 * k * k * 3
    assert hostrt.buffer_size(call, "dsp", prepared=False) > portable          # tables of its own, in scratch
    x = rand_int8(rng, graph.input.shape)
    (ours,) = hostrt.run_op(call, [x], kernels="dsp", scratch_bytes=portable)
    assert np.array_equal(ours.reshape(-1), reference_output(data, x).reshape(-1))


# -- MUL and MEAN: the squeeze-and-excite's hot ops ----------------------------------------------

class _MulParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ("input1_offset", "input2_offset", "output_offset",
                                                    "output_multiplier", "output_shift", "act_min", "act_max",
                                                    "rank")]


def _mul_takes_fast_path(call) -> bool:
    p = call.params
    params = _MulParams(*(int(p[f]) for f, _ in _MulParams._fields_))
    job = (ctypes.c_int32 * 8)()
    return bool(hostrt.library("dsp").fb_mul_dsp_prepare(ctypes.byref(params), job))


@pytest.mark.parametrize("zero_points", [(-128, -128, 0), (127, 127, -128), (0, -128, 127), (-3, 17, 5)])
@pytest.mark.parametrize("activation", ["NONE", "RELU", "RELU6"])
def test_squeeze_excite_gate_mul_takes_the_fast_path_and_stays_exact(zero_points, activation):
    """The SE gate: a map times a per-channel gate in 0..1 (scale ~1/256). Its
    real multiplier is below 1/2, so the single-rounding rows run; extreme zero
    points make the products as large as they get."""
    from tests.firmware.test_layout_kernels import check_multi, graph_of
    rng = np.random.default_rng(abs(sum(zero_points)) + len(activation))
    z1, z2, zo = zero_points
    q1, q2, qo = Q(float(rng.uniform(0.02, 0.1)), z1), Q(float(rng.uniform(0.003, 0.005)), z2), \
        Q(float(rng.uniform(0.02, 0.1)), zo)
    for a, b in (((1, 7, 6, 20), (1, 1, 1, 20)), ((1, 1, 1, 9), (1, 5, 3, 9)), ((1, 4, 4, 5), (1, 4, 4, 5)),
                 ((1, 3, 5, 4), (1,))):
        data = tb.mul_model(a, b, q1, q2, qo, activation)
        call = lower_op(graph_of(data), graph_of(data).ops[0])
        assert _mul_takes_fast_path(call), call.params
        check_multi(data, 3, n_inputs=3)


def test_mul_quantization_the_fast_path_declines_stays_exact():
    """A real multiplier of exactly 1/128 (TFLite's m = 2^30) or above 1/2 (no
    right shift) takes the portable row, with the same bytes."""
    from tests.firmware.test_layout_kernels import check_multi, graph_of
    for scales in ((0.04, 1 / 256, 0.02), (0.1, 0.1, 0.01)):
        data = tb.mul_model((1, 5, 4, 8), (1, 1, 1, 8), Q(scales[0], -5), Q(scales[1], -128), Q(scales[2], 3))
        assert not _mul_takes_fast_path(lower_op(graph_of(data), graph_of(data).ops[0]))
        check_multi(data, 5, n_inputs=3)


@pytest.mark.parametrize("hw, channels", [((16, 16), 8), ((17, 19), 11), ((33, 32), 4), ((1, 1), 7), ((5, 3), 3)])
@pytest.mark.parametrize("fill", [-128, 127, None])
def test_global_mean_sums_lanes_past_256_pixels_exactly(hw, channels, fill):
    """fb_mean_s8's four-channel walk keeps 16-bit lane sums for at most 256
    pixels: maps of 256, 323 and 1056 pixels filled with the extreme values
    (and random ones), channel counts that leave 0-3 channels to the scalar loop."""
    from harness.frontend.tflite_import import load_model_bytes as load
    shape = [1, hw[0], hw[1], channels]
    data = tb.reduce_mean_model(shape, [1, 2], Q(0.02, -7), Q(0.011, 4), True)
    graph = load(data)
    call = lower_op(graph, graph.ops[0])
    rng = np.random.default_rng(channels)
    x = rand_int8(rng, shape) if fill is None else np.full(shape, fill, np.int8)
    ref = reference_output(data, x)
    for kernels in hostrt.KERNEL_SETS:
        (ours,) = hostrt.run_op(call, [x], kernels=kernels)
        assert np.array_equal(ours.reshape(ref.shape), ref), kernels
