"""The model-edge kernels (QUANTIZE float32 -> int8 and uint8 -> int8, DEQUANTIZE
int8 -> float32) and the elementwise activations (LOGISTIC, HARD_SWISH) against
LiteRT's reference kernels, byte for byte, in both host builds; then whole
models with float32 / uint8 inputs and float32 outputs through the host runner,
the generated C and (qemu) the emulated STM32H7.

Every property test builds a single-op model of a random shape (rank 1..4, odd
sizes) with random quantization (extreme scales, zero points at both ends) and
also runs a second model of the same op on every input value (all 256 int8 /
uint8 values, or a few thousand chosen floats), so each example checks the
whole function, clamps included.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import hostrt
from harness.backend.codegen import generate_sources
from harness.backend.hostmodel import build_host_model, run_host_model
from harness.backend.lowering import hard_swish_call, lower_op
from harness.errors import FusebenchError
from harness.frontend.reference import reference_output, reference_outputs
from harness.frontend.tflite_import import load_model_bytes
from harness.frontend.tflite_writer import Q
from harness.schedules import make_plan
from tests.helpers import tflite_builder as tb

EXAMPLES = 400
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KERNEL_SETS = hostrt.KERNEL_SETS
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = st.lists(st.integers(1, 7), min_size=1, max_size=4)          # rank 1..4, odd sizes included
ZERO_POINTS = st.one_of(st.sampled_from([-128, 127, 0, -1]), st.integers(-128, 127))
UINT8_ZERO_POINTS = st.one_of(st.sampled_from([0, 255, 128]), st.integers(0, 255))
ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
ALL_UINT8 = np.arange(256, dtype=np.uint8)


def f32(x: float) -> float:
    return float(np.float32(x))


def log_scale(lo: float, hi: float):
    """float32 scales spread evenly over decades lo..hi (exponents of 10)."""
    return st.floats(lo, hi).map(lambda e: f32(10.0 ** e))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_against_litert(data: bytes, x: np.ndarray, what: str) -> np.ndarray:
    """Import the model, run it with both kernel builds and compare the output
    bytes with LiteRT's reference kernels; returns the reference output."""
    graph = load_model_bytes(data, what)
    ref = reference_output(data, x)
    for kernels in KERNEL_SETS:
        ours = hostrt.run_graph(graph, x, kernels=kernels)
        if not same_bits(ours, ref):
            ours = ours.reshape(-1)
            bad = np.flatnonzero(ours.view(np.uint8) != ref.view(np.uint8)) // ref.itemsize
            i = int(bad[0])
            pytest.fail(f"{what} ({kernels} kernels): {len(set(bad))} of {ref.size} values differ; first at {i}: "
                        f"input {x.reshape(-1)[i]!r}, ours {ours[i]!r}, LiteRT {ref[i]!r}; "
                        f"params {lower_op(graph, graph.ops[0]).params}")
    return ref


# -- QUANTIZE float32 -> int8 -------------------------------------------------------------------

SPECIAL_FLOATS = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 3e9, -3e9, 2.0**31, -2.0**31,
                           2147483520.0, -2147483520.0, 2.0**23 + 1, -(2.0**23) - 1, 1e38, -1e38,
                           3.4028235e38, -3.4028235e38, 1e-45, -1e-45, 1.1754944e-38, 0.49999997, -0.49999997,
                           0.5, -0.5, 1.5, -1.5, 2.5, -2.5], dtype=np.float32)
NAN_PAYLOADS = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FBFFFFF], np.uint32).view(np.float32)

FLOAT_SCALES = st.one_of(log_scale(-6, 4),
                         st.integers(-24, 12).map(lambda e: 2.0 ** e),     # exact .5 ties
                         st.sampled_from([1e-45, 1e-40, 1.1754944e-38, 1e-30, 1e30, 3.4028235e38]).map(f32))


def float_inputs(rng: np.random.Generator, n: int, scale: float, zero_point: int) -> np.ndarray:
    """Float32 inputs for a QUANTIZE to (scale, zero point): values inside and
    around the int8 range (the clamps), exact and near .5 ties on the scale's
    grid, the special values, NaN payloads and random bit patterns."""
    s = np.float32(scale)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        grid = rng.integers(-200, 200, n) - zero_point
        ties = (grid + rng.choice([0.5, -0.5, 0.0, 0.25], n)).astype(np.float32) * s
        near = np.nextafter(ties, rng.choice([np.float32(-np.inf), np.float32(np.inf)], n).astype(np.float32))
        spread = rng.uniform(-1, 1, n).astype(np.float32) * np.float32(300) * s
        bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([SPECIAL_FLOATS, NAN_PAYLOADS, ties, near, spread, bits]).astype(np.float32)


@PROPERTY
@given(shape=SHAPES, scale=FLOAT_SCALES, zero_point=ZERO_POINTS, seed=SEEDS)
def test_quantize_float32_matches_litert(shape, scale, zero_point, seed):
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    pool = float_inputs(rng, 64, scale, zero_point)
    x = rng.choice(pool, size).astype(np.float32).reshape(shape)
    check_against_litert(tb.quantize_model(shape, None, Q(scale, zero_point), input_dtype="float32"), x,
                         "QUANTIZE float32")
    every = float_inputs(rng, 1000, scale, zero_point)
    check_against_litert(tb.quantize_model([every.size], None, Q(scale, zero_point), input_dtype="float32"), every,
                         "QUANTIZE float32 (all kinds of values)")


def test_quantize_float32_out_of_range_follows_litert_on_its_host():
    """NaN, infinities and |x / scale| >= 2^31 have no int32 value: LiteRT's x86-64
    build gives INT32_MIN, then adds the zero point (wrapping): -128 for zero
    points >= 0, 127 for negative ones. The kernel does the same everywhere."""
    x = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 2.0**31, 2147483520.0], np.float32)
    for zero_point, expected in ((0, [-128] * 6 + [127]), (5, [-128] * 6 + [127]), (-5, [127] * 7),
                                 (-128, [127] * 7), (127, [-128] * 6 + [127])):
        ref = check_against_litert(tb.quantize_model([x.size], None, Q(1.0, zero_point), input_dtype="float32"),
                                   x, "QUANTIZE float32")
        assert ref.tolist() == expected, (zero_point, ref.tolist())


def test_quantize_float32_ties_round_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5, 0.49999997], np.float32)
    ref = check_against_litert(tb.quantize_model([x.size], None, Q(1.0, 0), input_dtype="float32"), x, "ties")
    assert ref.tolist() == [1, 2, 3, -1, -2, -3, 127, -128, 0]


def test_quantize_float32_divides_in_single_precision():
    """x / scale is a float division: here it rounds to exactly -50.5 (-> -51)
    where the double quotient is just above it (-> -50)."""
    scale, x = f32(0.09491629898548126), np.float32(-4.793272972106934)
    assert float(x / np.float32(scale)) == -50.5 and float(x) / scale > -50.5
    ref = check_against_litert(tb.quantize_model([1], None, Q(scale, 0), input_dtype="float32"), np.array([x]),
                               "QUANTIZE float32")
    assert ref.tolist() == [-51]


# -- QUANTIZE uint8 -> int8 ---------------------------------------------------------------------

@PROPERTY
@given(shape=SHAPES, in_scale=log_scale(-4, 1), in_zero_point=UINT8_ZERO_POINTS,
       kind=st.sampled_from(["xor", "same_scale", "other_scale", "extreme_ratio"]),
       out_zero_point=ZERO_POINTS, ratio=st.floats(-1.5, 1.5), seed=SEEDS)
def test_quantize_uint8_matches_litert(shape, in_scale, in_zero_point, kind, out_zero_point, ratio, seed):
    rng = np.random.default_rng(seed)
    if kind == "xor":                      # LiteRT's x ^ 0x80 shortcut
        out_q = Q(in_scale, int(np.clip(in_zero_point - 128, -128, 127)))
    elif kind == "same_scale":
        out_q = Q(in_scale, out_zero_point)
    elif kind == "other_scale":
        out_q = Q(f32(in_scale * 10.0 ** ratio), out_zero_point)
    else:
        out_q = Q(f32(in_scale * 10.0 ** (3 * np.sign(ratio) + ratio)), out_zero_point)   # 1e-4.5 .. 1e4.5
    in_q = Q(in_scale, in_zero_point)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    check_against_litert(tb.quantize_model(shape, in_q, out_q, input_dtype="uint8"), x, "QUANTIZE uint8")
    check_against_litert(tb.quantize_model([256], in_q, out_q, input_dtype="uint8"), ALL_UINT8,
                         "QUANTIZE uint8 (every value)")


# -- DEQUANTIZE int8 -> float32 -----------------------------------------------------------------

DEQUANTIZE_SCALES = st.one_of(log_scale(-8, 4),
                              st.sampled_from([1e-45, 1e-40, 1.1754944e-38, 1e36, 1e37, 3.4028235e38]).map(f32))


@PROPERTY
@given(shape=SHAPES, scale=DEQUANTIZE_SCALES, zero_point=ZERO_POINTS, seed=SEEDS)
def test_dequantize_matches_litert(shape, scale, zero_point, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    check_against_litert(tb.dequantize_model(shape, Q(scale, zero_point)), x, "DEQUANTIZE")
    check_against_litert(tb.dequantize_model([256], Q(scale, zero_point)), ALL_INT8, "DEQUANTIZE (every value)")


def test_dequantize_rounds_the_exact_product_once():
    """scale * (x - zp) in double, rounded once to float: for a scale with a
    full 24-bit mantissa most products are not floats; infinities where the
    product overflows float (3.4e38 * 255)."""
    ref = check_against_litert(tb.dequantize_model([256], Q(f32(0.1), 3)), ALL_INT8, "DEQUANTIZE")
    exact = np.float64(np.float32(0.1)) * (ALL_INT8.astype(np.float64) - 3)
    assert same_bits(ref, exact.astype(np.float32))
    ref = check_against_litert(tb.dequantize_model([256], Q(f32(3.4028235e38), 0)), ALL_INT8, "DEQUANTIZE")
    assert np.isinf(ref[0]) and ref[128] == 0 and np.isinf(ref[-1])


# -- LOGISTIC -----------------------------------------------------------------------------------

@PROPERTY
@given(shape=SHAPES, scale=st.one_of(log_scale(-4, 1.7), st.sampled_from([1e-30, 1e-8, 1e3, 1e10]).map(f32)),
       zero_point=ZERO_POINTS, out_zero_point=st.one_of(st.just(-128), ZERO_POINTS), seed=SEEDS)
def test_logistic_matches_litert(shape, scale, zero_point, out_zero_point, seed):
    """LiteRT's reference LOGISTIC for int8 is a table its Prepare computes in
    float with expf; each example checks all 256 entries."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    check_against_litert(tb.logistic_model(shape, Q(scale, zero_point), out_zero_point), x, "LOGISTIC")
    check_against_litert(tb.logistic_model([256], Q(scale, zero_point), out_zero_point), ALL_INT8,
                         "LOGISTIC (every value)")


@pytest.mark.parametrize("scale,zero_point,entry", [(0.0013024063082411885, 25, 67), (0.0010201905388385057, -12, 129)])
def test_logistic_table_takes_the_c_library_expf(scale, zero_point, entry):
    """numpy's float32 exp differs from the C library's expf in the last bit for
    many arguments; at these scales that moves one table entry across a
    rounding tie. LiteRT's Prepare calls expf: so does quant.logistic_table."""
    from harness.frontend import quant
    table = quant.logistic_table(scale, zero_point, 1.0 / 256, -128)
    x = entry if entry < 128 else entry - 256                           # the entry's input value
    v = np.float32(scale) * np.float32(x - zero_point)
    with np.errstate(over="ignore"):
        with_numpy = np.float32(1) / (np.float32(1) + np.exp(-v))
    assert quant.round_half_away(float(with_numpy * np.float32(256))) - 128 != table[entry]
    ref = check_against_litert(tb.logistic_model([256], Q(scale, zero_point)), ALL_INT8, "LOGISTIC")
    assert ref[x + 128] == table[entry]                                 # ALL_INT8 runs -128..127


# -- HARD_SWISH ---------------------------------------------------------------------------------

def _hard_swish_or_refusal(in_q: Q, out_q: Q, shape, x: np.ndarray) -> bool:
    """Compare with LiteRT, or check that both refuse the model; True if it ran."""
    data = tb.hard_swish_model(shape, in_q, out_q)
    graph = load_model_bytes(data, "HARD_SWISH")
    try:
        reference_output(data, x)
    except FusebenchError:
        with pytest.raises(FusebenchError, match="LiteRT refuses"):
            lower_op(graph, graph.ops[0])
        return False
    check_against_litert(data, x, "HARD_SWISH")
    return True


@PROPERTY
@given(shape=SHAPES, in_scale=log_scale(-7, 2.5), ratio=st.floats(-2.5, 6), zero_point=ZERO_POINTS,
       out_zero_point=ZERO_POINTS, seed=SEEDS)
def test_hard_swish_matches_litert(shape, in_scale, ratio, zero_point, out_zero_point, seed):
    """Input scales from 1e-7 to 300 (relu-ish exponents of both signs), output
    scales from 1/300 of the input's (LiteRT refuses below 1/256) to 1e6 times
    it (output exponents below -16, where gemmlowp's int16 rounding shift has its
    own answers)."""
    rng = np.random.default_rng(seed)
    in_q, out_q = Q(in_scale, zero_point), Q(f32(in_scale * 10.0 ** ratio), out_zero_point)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    if _hard_swish_or_refusal(in_q, out_q, shape, x):
        assert _hard_swish_or_refusal(in_q, out_q, [256], ALL_INT8)


@pytest.mark.parametrize("in_scale,out_scale,branch", [
    (0.05, 0.03, lambda p: p["reluish_exponent"] > 1),                  # left shift in two steps
    (200.0, 100.0, lambda p: p["reluish_exponent"] >= 14),              # large inputs: saturation
    (1e-6, 1e-6, lambda p: p["reluish_exponent"] < 0),                  # rounding right shift
    (0.02, 0.02 / 100, lambda p: p["output_exponent"] == 0),           # the largest output multipliers
    (0.001, 30.0, lambda p: p["output_exponent"] <= -16),               # int16 shift of 16 bits and more
    (1e-30, 1.0, lambda p: p["output_multiplier"] == 0),               # multiplier flushed to zero
])
def test_hard_swish_reaches_every_branch_of_litert_arithmetic(in_scale, out_scale, branch):
    for zero_point, out_zero_point in ((0, 0), (-128, 127), (127, -128), (5, -100)):
        in_q, out_q = Q(f32(in_scale), zero_point), Q(f32(out_scale), out_zero_point)
        graph = load_model_bytes(tb.hard_swish_model([256], in_q, out_q), "HARD_SWISH")
        assert branch(hard_swish_call(graph, graph.ops[0]).params)
        assert _hard_swish_or_refusal(in_q, out_q, [256], ALL_INT8)


@pytest.mark.parametrize("in_scale,out_scale,zero_points,float_multiplier", [
    (0.012215854600071907, 0.0021840783301740885, (-128, -128), 22910),
    (0.5314786434173584, 1.171320915222168, (0, 0), 29737)])
def test_hard_swish_multipliers_are_float32_divisions(in_scale, out_scale, zero_points, float_multiplier):
    """HardSwishPrepare divides in float32; the same division in double gives an
    int16 multiplier one lower at these scales, and one output byte that is not
    LiteRT's."""
    data = tb.hard_swish_model([256], Q(in_scale, zero_points[0]), Q(out_scale, zero_points[1]))
    graph = load_model_bytes(data, "HARD_SWISH")
    call = hard_swish_call(graph, graph.ops[0])
    assert call.params["output_multiplier"] == float_multiplier
    ref = check_against_litert(data, ALL_INT8, "HARD_SWISH")
    call.params["output_multiplier"] = float_multiplier - 1          # what a double division gives
    assert np.sum(hostrt.run_op(call, [ALL_INT8])[0] != ref) == 1


# -- whole models with float32 / uint8 inputs and a float32 output ---------------------------------

def edge_inputs(graph, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    shape, dtype = graph.input.shape, graph.input.dtype
    if dtype == "uint8":
        return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
    xs = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(n)]
    special = rng.uniform(-1.5, 1.5, shape).astype(np.float32).reshape(-1)     # some clamp
    special[:SPECIAL_FLOATS.size] = SPECIAL_FLOATS[:special.size]
    return xs + [special.reshape(shape)]


@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_model_matches_litert_on_the_host_runner(input_dtype, seed):
    rng = np.random.default_rng(seed)
    data = tb.edge_model(rng, input_dtype)
    graph = load_model_bytes(data, f"edge_{input_dtype}")
    assert (graph.input.dtype, graph.output.dtype) == (input_dtype, "float32")
    kinds = [lower_op(graph, op).kernel for op in graph.ops]
    assert kinds[0] == ("fb_quantize_f32_s8" if input_dtype == "float32" else "fb_requantize_u8_s8")
    assert kinds[-1] == "fb_dequantize_s8_f32" and "fb_lut_s8" in kinds      # hard-swish, a table
    for x in edge_inputs(graph, rng, 3):
        check_against_litert(data, x, f"edge model ({input_dtype})")


@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_edge_model_generated_c_matches_litert(input_dtype, tmp_path):
    """The generated C (float and uint8 pointers into the arena, the header's
    byte counts) built for the host, layer by layer and as msf schedules it."""
    rng = np.random.default_rng(7)
    data = tb.edge_model(rng, input_dtype)
    path = tmp_path / f"edge_{input_dtype}.tflite"
    path.write_bytes(data)
    graph = load_model_bytes(data, path.stem)
    xs = edge_inputs(graph, rng, 2)
    refs = reference_outputs(path, xs)
    for variant in ("unfused", "msf"):
        plan = make_plan(graph, variant)
        gen = tmp_path / variant
        generate_sources(graph, plan, None, gen)
        header = (gen / "fb_model.h").read_text()
        assert f"#define FB_INPUT_BYTES  {graph.input.nbytes}" in header
        assert f"#define FB_OUTPUT_BYTES {graph.output.nbytes}" in header
        assert graph.output.nbytes == 4 * graph.output.shape[-1]
        ours = run_host_model(build_host_model(gen), xs, graph.output.nbytes, output_dtype="float32")
        for k, (o, r) in enumerate(zip(ours, refs)):
            assert same_bits(o, r), f"{variant}, input {k}: {o} != {r}"


@pytest.mark.qemu
def test_edge_models_run_bit_exact_on_qemu(tmp_path):
    """float32-in and uint8-in models with a float32 output, built and run on the
    emulated STM32H7 layer by layer and as msf schedules them: every row ok."""
    from harness.report.bench import run_sweep
    models = []
    for input_dtype, seed in (("float32", 11), ("uint8", 12)):
        path = tmp_path / f"edge_{input_dtype}.tflite"
        path.write_bytes(tb.edge_model(np.random.default_rng(seed), input_dtype, input_hw=(16, 14)))
        models.append(path)
    run_dir = run_sweep(["stm32h7"], models, ["unfused", "msf"], max_inputs=2, jobs=2, run_dir=tmp_path / "run")
    rows = pd.read_csv(run_dir / "bench.csv")
    assert len(rows) == 2 * 2 * 2, rows[["model", "variant", "input", "status", "detail"]]
    assert (rows["status"] == "ok").all(), rows[["model", "variant", "input", "status", "detail"]]
    assert rows["outputs_match"].all()


# -- elementwise kernels on windows: they run tile by tile inside fused stages --------------

@pytest.mark.parametrize("kind", ["hard_swish", "logistic", "table"])
@pytest.mark.parametrize("shape", [(1, 7, 5, 3), (1, 1, 9, 16), (1, 6, 1, 1)])
def test_elementwise_kernels_tile_by_tile_equal_the_whole_map(kind, shape):
    from tests.firmware.test_kernels import check_tiles
    q = Q(0.05, 3)
    if kind == "hard_swish":
        data = tb.hard_swish_model(shape, q, Q(0.04, -7))
    elif kind == "logistic":
        data = tb.logistic_model(shape, q)
    else:                                           # ADD of a one-valued constant: a table
        data = tb.scalar_constant_model("ADD", shape, 50, q, Q(0.06, -20), Q(0.07, 4), "RELU6")
    graph = load_model_bytes(data, kind)
    assert lower_op(graph, graph.ops[0]).spec.window == "elementwise"
    check_tiles(graph, seed=sum(shape))
