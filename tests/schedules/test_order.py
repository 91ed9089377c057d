"""Memory-aware operator ordering (harness.schedules.order), the `ordered`
schedule, streamed window reads of a segmented input, and every schedule on
graphs with parallel branches."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from harness.frontend.graph import Graph, Op, Tensor
from harness.frontend.tflite_import import load_model
from harness.schedules import NotApplicable, make_plan, schedule_names
from harness.schedules.order import (best_order, candidate_orders, executed_graph, in_order, live_peak,
                                     order_key, stages_run_whole)
from harness.schedules.plan import check_plan, no_scratch
from harness.schedules.stages import ReorderedBlock, TiledStage, WindowRead, window_reads
from tests.helpers.hostcheck import assert_plan_bit_exact
from tests.helpers.tflite_builder import inverted_residual_chain_model, patch_tunnel_model, strided_slice_model
from harness.frontend.tflite_writer import Q


# -- the search, on random graphs against every topological order ------------------------------

def random_dag(draw_sizes, edges) -> Graph:
    """Ops 0..n-1, op i makes tensor i+1 (tensor 0 is the graph input); `edges`
    lists, per op, the earlier tensors it reads."""
    tensors = [Tensor(index=t, name=f"t{t}", shape=(size,), dtype="int8") for t, size in enumerate(draw_sizes)]
    ops = [Op(index=i, kind="ADD", inputs=list(reads), outputs=[i + 1]) for i, reads in enumerate(edges)]
    readers = {t for reads in edges for t in reads}
    outputs = [t for t in range(1, len(tensors)) if t not in readers] or [len(tensors) - 1]
    return Graph(name="dag", tensors=tensors, ops=ops, inputs=[0], outputs=outputs)


@st.composite
def dags(draw):
    n = draw(st.integers(2, 8))
    sizes = [draw(st.integers(1, 64)) * 16 for _ in range(n + 1)]
    edges = []
    for i in range(n):
        choices = list(range(i + 1))            # tensors 0..i exist before op i
        reads = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True))
        edges.append(reads)
    return random_dag(sizes, edges)


def topological_orders(graph: Graph):
    producer = {t: op.index for op in graph.ops for t in op.outputs}
    preds = [{producer[t] for t in op.inputs if t in producer} for op in graph.ops]
    for order in itertools.permutations(range(len(graph.ops))):
        seen = set()
        ok = True
        for o in order:
            if not preds[o] <= seen:
                ok = False
                break
            seen.add(o)
        if ok:
            yield order


def is_topological(graph: Graph, order) -> bool:
    producer = {t: op.index for op in graph.ops for t in op.outputs}
    position = {o: k for k, o in enumerate(order)}
    return sorted(order) == list(range(len(graph.ops))) and all(
        position[producer[t]] < position[op.index] for op in graph.ops for t in op.inputs if t in producer)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_exact_search_finds_the_lowest_peak_of_all_orders(graph):
    choice = best_order(graph, no_scratch)
    lowest = min(live_peak(graph, o, no_scratch) for o in topological_orders(graph))
    assert choice.exact and is_topological(graph, choice.order)
    assert choice.peak_bytes == lowest == live_peak(graph, choice.order, no_scratch)
    assert choice.file_peak_bytes == live_peak(graph, range(len(graph.ops)), no_scratch)


@settings(max_examples=30, deadline=None)
@given(dags())
def test_a_narrow_beam_still_gives_a_valid_order_no_worse_than_the_file(graph):
    choice = best_order(graph, no_scratch, beam=1)
    assert is_topological(graph, choice.order)
    assert choice.peak_bytes <= choice.file_peak_bytes
    assert choice.peak_bytes == live_peak(graph, choice.order, no_scratch)


def test_a_chain_has_only_its_file_order():
    graph = random_dag([16] * 6, [[0], [1], [2], [3], [4]])
    choice = best_order(graph, no_scratch)
    assert choice.is_file_order and choice.exact
    assert candidate_orders(graph, no_scratch) == [("file", tuple(range(5)))]


def test_one_branch_at_a_time_keeps_only_the_running_sum():
    """Two wide branches from one input, summed: in file order (interleaved) both
    wide maps are live together; the best order runs one branch to its end first."""
    # t1 = a(t0), t2 = b(t0) wide; t3 = narrow(t1), t4 = narrow(t2); t5 = t3 + t4
    graph = random_dag([16, 1024, 1024, 16, 16, 16], [[0], [0], [1], [2], [3, 4]])
    choice = best_order(graph, no_scratch)
    assert choice.file_peak_bytes == 16 + 1024 + 1024
    assert choice.peak_bytes == 16 + 1024 + 16         # the input, one wide map, one narrow result
    assert choice.order == (0, 2, 1, 3, 4) and choice.exact


def test_in_order_renumbers_and_the_plan_names_its_order():
    graph = random_dag([16, 1024, 1024, 16, 16, 16], [[0], [0], [1], [2], [3, 4]])
    moved = in_order(graph, (0, 2, 1, 3, 4))
    assert [op.index for op in moved.ops] == list(range(5))
    assert [op.file_index for op in moved.ops] == [0, 2, 1, 3, 4]
    assert [op.outputs[0] for op in moved.ops] == [1, 3, 2, 4, 5]

    class Ordered:
        variant, op_order = "ordered", order_key(moved)

    assert [op.outputs[0] for op in executed_graph(graph, Ordered).ops] == [1, 3, 2, 4, 5]
    assert executed_graph(moved, Ordered) is moved            # idempotent
    with pytest.raises(ValueError):
        in_order(graph, (0, 1, 1, 3, 4))


# -- the ordered schedule and window reads on tunnel models ------------------------------------

def tunnel_model(tmp_path, interleave=True, **kwargs):
    data = patch_tunnel_model(np.random.default_rng(kwargs.pop("seed", 1)), interleave=interleave, **kwargs)
    path = tmp_path / f"tunnels_{'interleaved' if interleave else 'grouped'}.tflite"
    path.write_bytes(data)
    return path, load_model(path)


def test_ordered_beats_the_file_order_of_interleaved_tunnels(tmp_path):
    _, graph = tunnel_model(tmp_path, input_hw=(24, 24), patches=4)
    unfused = make_plan(graph, "unfused")
    whole = make_plan(graph, "ordered", stream_input=False)
    streamed = make_plan(graph, "ordered")
    assert not whole.input_streamed and streamed.input_streamed
    assert streamed.arena_bytes < whole.arena_bytes < unfused.arena_bytes
    for plan in (whole, streamed):
        assert check_plan(plan) == []
        (note,) = plan.notes_of("op-order")
        assert note.data["file_order_arena_bytes"] == unfused.arena_bytes
        assert note.data["arena_bytes"] == plan.arena_bytes and note.data["exact"]
    assert streamed.notes_of("op-order")[0].data["windows"] == 4
    # the image is not in the arena: only patches, read as windows
    assert all(a.tensor != graph.inputs[0] for a in streamed.allocations)


def test_ordered_is_not_applicable_to_a_chain(tmp_path):
    path = tmp_path / "chain.tflite"
    path.write_bytes(inverted_residual_chain_model(np.random.default_rng(0), (12, 12), 4, [(4, 8, 1), (4, 8, 1)]))
    with pytest.raises(NotApplicable, match="no other op order"):
        make_plan(load_model(path), "ordered")


@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize("variant,options", [("unfused", {}), ("ordered", {}), ("ordered", {"stream_input": False}),
                                             ("msf", {}), ("msf", {"stream_input": False}), ("patch", {})])
def test_every_schedule_on_tunnels_is_bit_exact(tmp_path, interleave, variant, options):
    path, graph = tunnel_model(tmp_path, interleave=interleave, input_hw=(20, 18), patches=3, margin=3)
    plan = make_plan(graph, variant, **options)        # every one of these applies to tunnels
    assert check_plan(plan) == []
    assert stages_run_whole(executed_graph(graph, plan), plan)
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen", n_inputs=2)


def test_msf_streams_the_patches_and_runs_each_tunnel_as_a_chain(tmp_path):
    _, graph = tunnel_model(tmp_path, input_hw=(24, 24), patches=4)
    plan = make_plan(graph, "msf")
    assert plan.input_streamed and sum(isinstance(s, WindowRead) for s in plan.stages) == 4
    assert plan.arena_bytes < make_plan(graph, "msf", stream_input=False).arena_bytes
    assert plan.notes_of("op-order"), "msf plans interleaved tunnels branch by branch"


@pytest.fixture(scope="module")
def bottleneck_tunnels(tmp_path_factory):
    """Three interleaved tunnels of two inverted residual blocks each."""
    path = tmp_path_factory.mktemp("bottleneck_tunnels") / "bottleneck_tunnels.tflite"
    path.write_bytes(patch_tunnel_model(np.random.default_rng(1), (32, 32), patches=3, depth=1, blocks=2,
                                        expansion=6))
    return path, load_model(path)


def test_fused_and_reordered_run_inside_every_tunnel(bottleneck_tunnels):
    """The paper's combination: patches streamed, each tunnel run to its end,
    its blocks fused (or reordered); every tunnel gets its own stages."""
    _, graph = bottleneck_tunnels
    layer_by_layer = make_plan(graph, "ordered").arena_bytes
    for variant, kind in (("fused", TiledStage), ("reordered", ReorderedBlock)):
        plan = make_plan(graph, variant)
        executed = executed_graph(graph, plan)
        tunnels = {next(t for t in range(3) if f"tunnel{t}_" in executed.tensors[executed.ops[st.ops[0]].outputs[0]].name)
                   for st in plan.stages if isinstance(st, kind)}
        assert tunnels == {0, 1, 2}, variant
        assert plan.input_streamed and plan.arena_bytes < 0.5 * layer_by_layer
        assert plan.notes_of("op-order")[0].data["order"] == "branch by branch"


@pytest.mark.parametrize("variant", ["unfused", "ordered", "fused", "msf", "reordered"])
def test_every_schedule_on_bottleneck_tunnels_is_bit_exact(tmp_path, bottleneck_tunnels, variant):
    path, graph = bottleneck_tunnels
    plan = make_plan(graph, variant)
    assert check_plan(plan) == []
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen", n_inputs=2)


@pytest.mark.parametrize("begin,end,strides", [
    ([0, 2, 1, 0], [1, 9, 8, 3], [1, 1, 1, 1]),        # rows of whole pixels
    ([0, 0, 0, 1], [1, 10, 10, 3], [1, 1, 1, 1]),      # some channels: pixel by pixel
    ([0, 1, 0, 0], [1, 10, 9, 3], [1, 2, 3, 1]),       # strided rows and columns
])
def test_window_reads_of_any_window_are_bit_exact(tmp_path, begin, end, strides):
    path = tmp_path / "slice.tflite"
    path.write_bytes(strided_slice_model([1, 10, 10, 3], begin, end, strides, Q(0.05, 3)))
    graph = load_model(path)
    (read,) = window_reads(graph)
    assert read.reads == len(range(begin[1], end[1], strides[1])) * (
        1 if strides[2] == 1 and (begin[3], end[3]) == (0, 3) else len(range(begin[2], end[2], strides[2])))
    plan = make_plan(graph, "ordered")
    assert plan.input_streamed and plan.arena_bytes < make_plan(graph, "unfused").arena_bytes
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen", n_inputs=2)


def test_an_input_that_another_op_reads_is_not_streamed(tmp_path):
    path = tmp_path / "slice.tflite"
    path.write_bytes(inverted_residual_chain_model(np.random.default_rng(0), (8, 8), 4, [(4, 4, 1)]))
    assert window_reads(load_model(path)) == []


# -- on the emulator ---------------------------------------------------------------------------

@pytest.mark.qemu
def test_ordered_and_msf_tunnels_run_bit_exact_on_qemu(tmp_path):
    """The streamed windows over the UART protocol and the chosen order, built
    and run; the measured arena equals the plan's."""
    from harness.report.bench import run_sweep
    path, _ = tunnel_model(tmp_path, input_hw=(24, 24), patches=4)
    blocks = tmp_path / "bottleneck_tunnels.tflite"
    blocks.write_bytes(patch_tunnel_model(np.random.default_rng(1), (32, 32), patches=3, depth=1, blocks=2))
    run_dir = run_sweep(["stm32f4"], [path, blocks], ["unfused", "ordered", "fused", "msf", "reordered"],
                        max_inputs=2, jobs=2, run_dir=tmp_path / "run")
    rows = pd.read_csv(run_dir / "bench.csv")
    rows = rows[rows["status"] != "not-applicable"]           # fused and reordered: no blocks in the first
    assert len(rows) == 2 * (3 + 5)
    assert (rows["status"] == "ok").all() and rows["outputs_match"].all(), rows[["variant", "status", "detail"]]
    assert (rows["arena_bytes_peak"] == rows["arena_bytes_planned"]).all()
    arena = rows.groupby(["model", "variant"])["arena_bytes_peak"].max()
    for model in set(rows["model"]):
        assert all(arena[model, v] < arena[model, "unfused"] for v in ("ordered", "msf"))
    assert rows[rows["variant"] != "unfused"]["input_streamed"].all()


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 4), st.integers(0, 3), st.integers(10, 20), st.integers(9, 19), st.integers(1, 2),
       st.integers(0, 1), st.booleans(), st.integers(0, 2**16))
def test_random_tunnel_graphs_are_bit_exact_in_every_schedule(patches, margin, h, w, depth, blocks, interleave,
                                                              seed):
    """Random shapes: patch count, margins (overlapping windows), odd sizes,
    with and without blocks, interleaved or grouped in the file."""
    import tempfile
    from pathlib import Path

    from harness.backend.hostrt import run_plan
    from harness.frontend.reference import reference_outputs
    data = patch_tunnel_model(np.random.default_rng(seed), (h, w), patches=patches, margin=margin, depth=depth,
                              blocks=blocks, channels=4, expansion=3, interleave=interleave)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tunnels.tflite"
        path.write_bytes(data)
        graph = load_model(path)
        x = np.random.default_rng(seed + 1).integers(-128, 128, graph.input.shape, dtype=np.int8)
        (ref,) = reference_outputs(path, [x])
        for variant in schedule_names():
            try:
                plan = make_plan(graph, variant)
            except NotApplicable:
                continue
            assert check_plan(plan) == [], variant
            np.testing.assert_array_equal(run_plan(graph, plan, x).reshape(-1), ref.reshape(-1), err_msg=variant)
