"""The `reordered` variant: blocks one expansion channel at a time, planned
where it lowers the peak, generated code bit-exact on the host."""
from __future__ import annotations

import numpy as np
import pytest

from harness.schedules import make_plan
from harness.errors import FusebenchError
from harness.schedules.plan import check_plan
from harness.schedules.unfused import plan_layer_by_layer
from harness.schedules.reordered import plan_reordered
from tests.helpers.hostcheck import assert_plan_bit_exact
from tests.helpers.tflite_builder import inverted_residual_chain_model
from harness.frontend.tflite_import import load_model, load_model_bytes
from harness.schedules.stages import ReorderedBlock
from harness.backend.lowering import lower_op


@pytest.mark.parametrize("band_rows", [None, 1, 3])
def test_reordered_chain_is_bit_exact(tmp_path, band_rows):
    data = inverted_residual_chain_model(np.random.default_rng(17), (19, 17), 3,
                                         [(1, 6, 1), (6, 8, 2), (6, 8, 1), (4, 12, 2)], 8, (16, 5))
    path = tmp_path / "chain.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    plan = plan_reordered(graph, band_rows=band_rows)
    assert check_plan(plan) == [] and plan.stages, plan.notes
    assert all(isinstance(st, ReorderedBlock) for st in plan.stages)
    if band_rows:
        assert all(st.band_rows == min(band_rows, graph.tensors[st.output].shape[1]) for st in plan.stages)
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")


def test_reordered_plan_on_a_shipped_model_lowers_each_chosen_block(model_paths):
    graph = load_model(next(p for p in model_paths if p.stem == "mobilenetv2_w035_144"))
    plan = make_plan(graph, "reordered")
    base = plan_layer_by_layer(graph)
    assert plan.arena_bytes < base.arena_bytes
    for st in plan.stages:
        steps = [s for s in plan.steps if s.op in st.ops]
        before = max(s.live_bytes for s in base.steps if s.op in st.ops)
        assert max(s.live_bytes for s in steps) < before
        assert st.macs <= st.base_macs * 1.15 + 1        # band choice within the default limit
    # each reordered block's note has both accumulator figures, whole and banded
    blocks = plan.notes_of("reordered-block")
    assert [n.data["ops"] for n in blocks] == [[st.ops[0], st.ops[-1]] for st in plan.stages]
    for note, st in zip(blocks, plan.stages):
        out_h, out_w, out_c = graph.tensors[st.output].shape[1:]
        assert note.data["whole_output_accumulator_bytes"] == 4 * out_h * out_w * out_c
        assert note.data["accumulator_bytes"] == 4 * st.band_rows * out_w * out_c
        assert note.data["peak_after"] < note.data["peak_before"]
        assert note.data["peak_after"] == max(s.live_bytes for s in plan.steps if s.op in st.ops)
        assert note.data["channel_block"] == st.channel_block
    with pytest.raises(FusebenchError, match="band-rows"):
        plan_reordered(graph, band_rows=0)


def test_blocks_already_below_the_model_s_peak_run_layer_by_layer(model_paths):
    """Reordering a block under the model's peak saves no RAM and costs MACs:
    only the blocks above it run one channel at a time."""
    graph = load_model(next(p for p in model_paths if p.stem == "mobilenetv2_w035_144"))
    plan = make_plan(graph, "reordered")
    (declined,) = plan.notes_of("reordered-declined")
    kept = plan.notes_of("reordered-block")
    assert kept and all(n.data["peak_before"] > plan.arena_bytes for n in kept)
    base = plan_layer_by_layer(graph)
    for first, last in declined.data["blocks"]:
        ops = set(range(first, last + 1))
        assert max(s.live_bytes for s in base.steps if s.op in ops) <= plan.arena_bytes
    assert [[st.ops[0], st.ops[-1]] for st in plan.stages] == [n.data["ops"] for n in kept]


def test_reordered_does_not_apply_when_the_peak_is_outside_every_block():
    from harness.schedules.registry import NotApplicable
    # tiny blocks, then a 1x1 head to 200 channels: the head sets the peak
    data = inverted_residual_chain_model(np.random.default_rng(3), (12, 12), 3, [(2, 4, 1), (2, 4, 1)],
                                         head=(200, 5))
    graph = load_model_bytes(data, "head-heavy")
    with pytest.raises(NotApplicable, match="reordering no block lowers the model's peak"):
        plan_reordered(graph)


def test_blocks_take_four_channels_per_pass_where_the_arena_allows(model_paths):
    """Channel block 4 (the DSP kernels' fast path) wherever mid_c allows it and
    the plan's arena stays that of channel block 1 everywhere."""
    from dataclasses import replace
    from harness.backend.lowering import bottleneck_scratch_bytes
    from harness.schedules.plan import plan_schedule
    graph = load_model(next(p for p in model_paths if p.stem == "mobilenetv2_w035_144"))
    plan = make_plan(graph, "reordered")
    assert plan.stages and all(st.channel_block == 4 for st in plan.stages)
    ones = [replace(st, channel_block=1, scratch_bytes=bottleneck_scratch_bytes(
        [lower_op(graph, graph.ops[i]) for i in st.ops], st.band_rows, 1)) for st in plan.stages]
    assert all(one.scratch_bytes < st.scratch_bytes for one, st in zip(ones, plan.stages))
    assert plan.arena_bytes <= plan_schedule(graph, ones, variant="reordered").arena_bytes
    assert all(n.text.endswith("channel block 4") for n in plan.notes_of("reordered-block"))


def test_channel_block_1_where_4_would_raise_the_arena():
    """A model whose peak is the reordered block itself: four channels' planes
    would raise it, so the block runs one channel at a time."""
    from dataclasses import replace
    from harness.backend.lowering import bottleneck_scratch_bytes
    from harness.schedules.plan import plan_schedule
    data = inverted_residual_chain_model(np.random.default_rng(5), (24, 24), 8, [(6, 8, 1)])
    graph = load_model_bytes(data, "one-block")
    plan = plan_reordered(graph)
    (st,) = plan.stages
    (note,) = plan.notes_of("reordered-block")
    assert st.channel_block == note.data["channel_block"] == 1
    assert note.text.endswith("channel block 1")
    calls = [lower_op(graph, graph.ops[i]) for i in st.ops]
    four = replace(st, channel_block=4, scratch_bytes=bottleneck_scratch_bytes(calls, st.band_rows, 4))
    assert plan_schedule(graph, [four], variant="reordered").arena_bytes > plan.arena_bytes


def test_a_plan_for_the_portable_kernels_keeps_one_channel_per_pass(model_paths):
    """Only the DSP kernels run four channels faster (RISC-V runs the portable ones)."""
    from harness.backend.hostrt import planning_kernels
    from harness.targets.boards import load_board
    graph = load_model(next(p for p in model_paths if p.stem == "mobilenetv2_w035_144"))
    with planning_kernels("portable"):
        plan = plan_reordered(graph)
    assert plan.stages and all(st.channel_block == 1 for st in plan.stages)
    assert all(st.channel_block == 1 for st in make_plan(graph, "reordered", board=load_board("esp32c3")).stages)
    assert all(st.channel_block == 4 for st in make_plan(graph, "reordered", board=load_board("stm32h7")).stages)
