"""The msf search: its cost model against the built tile tables, its answers
against brute force and the other variants, and bit-exactness of what it
chooses (generated C on the host against LiteRT), with streamed input and a
tile-wise global average pool."""
from __future__ import annotations


import numpy as np
import pytest

from harness.backend.codegen import generate_sources
from harness.schedules import make_plan
from harness.schedules.registry import byte_size
from harness.errors import FusebenchError
from harness.schedules.geometry import StageGeometry
from harness.backend.hostmodel import build_host_model, run_host_model
from harness.backend.lowering import map_hwc
from harness.schedules.msf import FusionSpace, plan_msf
from harness.schedules.plan import check_plan, plan_schedule
from harness.schedules.unfused import plan_layer_by_layer
from harness.frontend.reference import reference_outputs
from tests.helpers.tflite_builder import inverted_residual_chain_model
from harness.frontend.tflite_import import load_model, load_model_bytes

# (input hw, in channels, first conv, blocks (expansion, out channels, stride), head)
CHAINS = [
    ((12, 12), 3, 8, [(1, 4, 1), (6, 6, 2), (4, 6, 1)], (24, 5)),
    ((15, 11), 2, None, [(3, 5, 1), (6, 5, 1), (2, 7, 2)], (16, 3)),
    ((10, 13), 4, 6, [(2, 6, 1), (3, 6, 1)], None),
]


def _graph(case: int):
    hw, c, first, blocks, head = CHAINS[case]
    data = inverted_residual_chain_model(np.random.default_rng(100 + case), hw, c, blocks, first, head)
    return data, load_model_bytes(data, f"chain{case}.tflite")


@pytest.mark.parametrize("case", range(len(CHAINS)))
@pytest.mark.parametrize("stream", [True, False])
def test_cost_model_matches_the_built_tile_tables(case, stream):
    """Every priced edge, built for real: same MACs, and the stage's live bytes
    in the plan are the edge's peak."""
    _, graph = _graph(case)
    space = FusionSpace(graph, stream_input=stream, tile_sizes=(1, 2, 3, 5))
    edges = [e for es in space.edges.values() for e in es if e.mode != "layer"]
    assert edges
    rng = np.random.default_rng(case)
    for e in rng.choice(np.array(edges, dtype=object), size=min(60, len(edges)), replace=False):
        st = StageGeometry(graph, list(range(e.start, e.end)), stream_input=stream).schedule(
            e.tile_h, e.tile_w, e.mode)
        assert st.macs == e.macs, e
        assert _work_of_tables(graph, st) == e.work, e
        plan = plan_schedule(graph, [st])
        stage_steps = plan.steps[e.start:e.end]
        assert max(s.live_bytes for s in stage_steps) <= e.peak_bytes, e
        assert max(s.live_bytes for s in stage_steps) >= e.peak_bytes - 16 * 40, e   # alignment slack


def _work_of_tables(graph, st) -> int:
    """MACs the kernels execute for a built stage, tile by tile: the DSP
    convolution computes pixels four at a time, so a tile of n pixels pays
    for its last 1-3 pixels as TAIL_WASTE says."""
    from harness.schedules.msf import TAIL_WASTE
    n_inner, work = len(st.inner), 0
    for k, i in enumerate(st.ops):
        op = graph.ops[i]
        oh, ow, _ = map_hwc(graph.tensors[op.outputs[0]].shape)
        pixel_macs = graph.macs(op) // (oh * ow)
        for r in (row[4 * n_inner + 2 * k + 1] for row in st.row_table):
            for c in (col[2 * n_inner + 2 * k + 1] for col in st.col_table):
                n = r * c
                if n:
                    work += pixel_macs * (n + (TAIL_WASTE[n % 4] if op.kind == "CONV_2D" else 0))
    return work


def test_front_is_exact_against_brute_force_over_all_paths():
    _, graph = _graph(2)
    space = FusionSpace(graph, tile_sizes=(1, 3))
    n = len(graph.ops)
    best = {}                                 # every path: (peak, macs)

    def walk(i, peak, macs):
        if i == n:
            best.setdefault(peak, macs)
            best[peak] = min(best[peak], macs)
            return
        for e in space.edges[i]:
            walk(e.end, max(peak, e.peak_bytes), macs + e.macs)

    walk(0, 0, 0)
    brute = []
    for peak in sorted(best):
        if not brute or best[peak] < brute[-1][1]:
            brute.append((peak, best[peak]))
    assert [(s.peak_bytes, s.macs) for s in space.front()] == brute


def test_layer_by_layer_is_a_path_of_the_space():
    _, graph = _graph(0)
    space = FusionSpace(graph, stream_input=False)
    unfused = plan_layer_by_layer(graph)
    layer_peak = max(e.peak_bytes for i in range(len(graph.ops)) for e in space.edges[i] if e.mode == "layer")
    assert abs(layer_peak - unfused.lower_bound_bytes) <= 16 * 4
    # the front's cheapest end costs no more MACs than layer by layer
    assert min(s.macs for s in space.front()) == space.base_macs


@pytest.mark.parametrize("case", range(len(CHAINS)))
def test_msf_schedules_are_bit_exact_on_the_host(tmp_path, case):
    data, graph = _graph(case)
    path = tmp_path / "chain.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    space = FusionSpace(graph, tile_sizes=(1, 2, 4))
    front = space.front()
    picks = {0, len(front) // 2, len(front) - 1}
    rng = np.random.default_rng(9)
    xs = [rng.integers(-128, 128, graph.input.shape, dtype=np.int8) for _ in range(2)]
    refs = reference_outputs(path, xs)
    for k in sorted(picks):
        plan = space.realize(front[k])
        assert check_plan(plan) == []
        gen = tmp_path / f"gen{k}"
        generate_sources(graph, plan, None, gen)
        ours = run_host_model(build_host_model(gen), xs, graph.output.nbytes)
        for o, r in zip(ours, refs):
            np.testing.assert_array_equal(o, r.reshape(-1), err_msg=f"front point {k}: {front[k].edges}")
    # the least-peak point streams the input and pools tile by tile when the model has a head
    plan = space.realize(front[0])
    if case == 0:
        assert any(st.inplace for k in picks for st in space.realize(front[k]).stages)
    assert plan.input_streamed
    if CHAINS[case][4]:
        assert any(st.acc_bytes for st in plan.stages)


def test_stage_with_mean_and_streamed_input_is_bit_exact(tmp_path):
    """One stage from the streamed input to the pooled vector: no feature map ever exists whole."""
    data, _ = _graph(0)
    path = tmp_path / "chain.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    mean = next(op.index for op in graph.ops if op.kind == "MEAN")
    for tile, mode in (((2, 3), "recompute"), ((1, 2), "linebuffer")):
        st = StageGeometry(graph, list(range(0, mean + 1)), stream_input=True).schedule(*tile, mode)
        plan = plan_schedule(graph, [st], variant="msf")
        assert plan.input_streamed and st.acc_bytes
        spatial = [a for a in plan.allocations if a.tensor is not None and len(graph.tensors[a.tensor].shape) == 4]
        assert spatial == []
        gen = tmp_path / f"gen-{mode}"
        generate_sources(graph, plan, None, gen)
        rng = np.random.default_rng(4)
        xs = [rng.integers(-128, 128, graph.input.shape, dtype=np.int8) for _ in range(3)]
        for o, r in zip(run_host_model(build_host_model(gen), xs, graph.output.nbytes), reference_outputs(path, xs)):
            np.testing.assert_array_equal(o, r.reshape(-1))


def test_budget_and_overhead_answers(model_paths):
    graph = load_model(model_paths[0])
    space = FusionSpace(graph)
    front = space.front()
    for limit in (0.0, 0.05, 0.3):
        plan = plan_msf(graph, max_overhead=limit, space=space)
        assert plan.macs <= space.base_macs * (1 + limit)
        # no schedule within the limit has a smaller predicted peak (up to the packing slack)
        least = min(s.peak_bytes for s in front if s.macs <= space.base_macs * (1 + limit))
        assert plan.lower_bound_bytes <= least * 1.02
    budget = (front[0].peak_bytes + front[-1].peak_bytes) // 2
    plan = plan_msf(graph, ram_budget=budget, space=space)
    assert plan.arena_bytes <= budget
    # no schedule that surely fits (peak within this plan's own live bytes) has fewer MACs
    assert plan.macs <= min(s.macs for s in front if s.peak_bytes <= plan.lower_bound_bytes)
    with pytest.raises(FusebenchError, match=r"smallest possible peak is \d+ B"):
        plan_msf(graph, ram_budget=front[0].peak_bytes // 2, space=space)


@pytest.mark.slow
def test_msf_is_never_worse_than_unfused_or_fused(model_paths):
    for path in model_paths[:2]:
        graph = load_model(path)
        unfused = make_plan(graph, "unfused")
        fused = make_plan(graph, "fused")
        overhead = fused.macs / fused.base_macs - 1
        msf = make_plan(graph, "msf", max_overhead=overhead, stream_input=False)
        assert msf.arena_bytes <= fused.arena_bytes, path.name
        assert make_plan(graph, "msf", max_overhead=0.0).arena_bytes <= unfused.arena_bytes


def test_byte_size():
    assert byte_size("64K", "ram-budget") == byte_size("64KiB", "ram-budget") == byte_size("64kb", "ram-budget") == 65536
    assert byte_size("1.5M", "ram-budget") == 1572864 and byte_size("1000", "ram-budget") == 1000
    for bad in ("", "lots", "-4K", "0"):
        with pytest.raises(FusebenchError, match="ram-budget"):
            byte_size(bad, "ram-budget")


def test_unknown_option_is_a_clear_error(model_paths):
    graph = load_model(model_paths[0])
    with pytest.raises(FusebenchError, match="unknown schedule option"):
        make_plan(graph, "msf", tiles=3)


def test_inplace_offset_keeps_rows_still_to_be_read():
    from harness.schedules.geometry import inplace_footprint, inplace_offset
    # same shape, each band reads only its own rows: the output may start on the input
    bands = np.arange(1, 7)
    assert inplace_offset(bands, bands - 1, 48, 48) == 0
    # a 3x3 halo: the next band reads the row above, so the output must lead by a row
    assert inplace_offset(bands, np.maximum(bands - 2, 0), 48, 48) == 48
    # stride 2, output rows half the bytes and the rows: no lead at all
    assert inplace_offset(np.arange(1, 4), np.array([0, 1, 3]), 48, 48) == 0
    assert inplace_footprint(1000, 600, 64) == 1064 and inplace_footprint(100, 600, 64) == 600


def test_inplace_offsets_of_many_band_sequences_equal_one_at_a_time():
    from harness.schedules.geometry import inplace_offset, inplace_offsets
    rng = np.random.default_rng(7)
    for _ in range(200):
        lengths = rng.integers(1, 9, size=rng.integers(1, 6))
        first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        seg = np.repeat(np.arange(len(lengths)), lengths)
        out_hi = rng.integers(0, 40, size=int(lengths.sum()))
        in_lo = rng.integers(-3, 40, size=int(lengths.sum()))
        got = inplace_offsets(out_hi, in_lo, seg, first, 24, 48)
        bounds = list(first) + [int(lengths.sum())]
        want = [inplace_offset(out_hi[a:b], in_lo[a:b], 24, 48) for a, b in zip(bounds, bounds[1:])]
        assert got.tolist() == want


def test_edge_options_are_the_exact_pareto_set():
    from harness.schedules.msf import _pareto_order
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        pts = rng.integers(0, 6, size=(n, 3))          # small values: many ties
        got = _pareto_order(pts[:, 0], pts[:, 1], pts[:, 2]).tolist()
        want, kept = [], []
        for i in sorted(range(n), key=lambda i: (*pts[i], i)):
            if not any((pts[k] <= pts[i]).all() for k in kept):
                kept.append(i)
                want.append(i)
        assert got == want


def test_w035_144_plans_are_no_worse_than_msf_cnn_at_its_limits(model_paths):
    """The planned msf arena at each of msf-CNN's overhead limits, as a fraction
    of the unfused arena, is no worse than the fraction it publishes (the
    measured watermarks are compared by `invoke pareto --measure`)."""
    from harness.report.pareto import MSF_CNN_W035_144, PUBLISHED_AT_LIMIT
    path = next(p for p in model_paths if p.stem == "mobilenetv2_w035_144")
    graph = load_model(path)
    unfused = make_plan(graph, "unfused").arena_bytes
    space = FusionSpace(graph)
    for limit, (kb, _) in PUBLISHED_AT_LIMIT.items():
        plan = plan_msf(graph, max_overhead=limit, space=space)
        assert check_plan(plan) == []
        assert plan.macs <= space.base_macs * (1 + limit)
        assert plan.arena_bytes / unfused <= kb / MSF_CNN_W035_144["layer_by_layer_kb"], (limit, plan.arena_bytes)
