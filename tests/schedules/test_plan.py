"""Planner invariants: on every shipped model and on random chains of layers."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings, strategies as st

from harness.frontend.graph import Graph, Op, Quant, Tensor
from harness.schedules.plan import ARENA_ALIGNMENT, Plan, check_plan, no_scratch
from harness.schedules.unfused import plan_layer_by_layer
from harness.frontend.tflite_import import load_model


def _q():
    return Quant(scale=np.array([0.1], np.float32), zero_point=np.array([0]))


def random_chain(sizes: list[int], skips: list[int], scratch: list[int]) -> tuple[Graph, dict]:
    """A chain of elementwise-like ops; `skips[i] > 0` adds a residual ADD that
    reads the output of the op `skips[i]` steps back (it stays live until then)."""
    tensors = [Tensor(0, "in", (1, sizes[0]), "int8", _q())]
    ops: list[Op] = []
    for i, size in enumerate(sizes[1:]):
        src = len(tensors) - 1
        tensors.append(Tensor(len(tensors), f"t{i}", (1, size), "int8", _q()))
        back = skips[i] if i < len(skips) else 0
        inputs = [src]
        if back and len(ops) >= back:
            inputs.append(ops[-back].outputs[0])
        ops.append(Op(len(ops), "ADD" if len(inputs) == 2 else "SOFTMAX", inputs, [len(tensors) - 1]))
    graph = Graph("chain", tensors, ops, [0], [len(tensors) - 1])
    scratch_by_op = {op.index: (scratch[op.index] if op.index < len(scratch) else 0) for op in ops}
    return graph, scratch_by_op


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 5000), min_size=2, max_size=30),
       skips=st.lists(st.integers(0, 4), max_size=30),
       scratch=st.lists(st.sampled_from([0, 0, 0, 7, 64, 1000]), max_size=30))
def test_random_chains_never_overlap_and_are_aligned(sizes, skips, scratch):
    graph, scratch_by_op = random_chain(sizes, skips, scratch)
    plan = plan_layer_by_layer(graph, scratch=lambda g, op: scratch_by_op[op.index])
    assert check_plan(plan) == []
    assert all(a.offset % ARENA_ALIGNMENT == 0 for a in plan.allocations)
    # The arena can never be smaller than what is live at once.
    assert plan.arena_bytes >= plan.lower_bound_bytes
    # Every live buffer at every step really is inside the arena.
    for step in plan.steps:
        live = [a for a in plan.allocations if a.first_step <= step.index <= a.last_step]
        assert sum(a.size for a in live) == step.live_bytes


def test_residual_input_stays_live_until_the_add():
    graph, _ = random_chain([100, 200, 300, 400], skips=[0, 0, 2], scratch=[])
    plan = plan_layer_by_layer(graph, scratch=no_scratch)
    # op 2 adds the output of op 0 (t0, tensor 1): it must live through step 2.
    a = plan.allocation_of(1)
    assert (a.first_step, a.last_step) == (0, 2)
    assert plan.steps[1].live_bytes == 100 + 200 + 300 - 100  # input dead after step 0


def test_peak_equals_lower_bound_on_a_simple_chain():
    graph, _ = random_chain([64, 128, 32, 256, 16], skips=[], scratch=[])
    plan = plan_layer_by_layer(graph, scratch=no_scratch)
    # live per step: 64+128, 128+32, 32+256, 256+16 -> the peak is 288 at step 2
    assert [s.live_bytes for s in plan.steps] == [192, 160, 288, 272]
    assert plan.arena_bytes == plan.lower_bound_bytes == 288


def test_plan_json_round_trip(tmp_path):
    graph, _ = random_chain([10, 20, 30], skips=[], scratch=[])
    plan = plan_layer_by_layer(graph, scratch=no_scratch)
    path = tmp_path / "plan.json"
    plan.save(path)
    again = Plan.from_json(path.read_text())
    assert again == plan
    assert json.loads(path.read_text())["arena_bytes"] == plan.arena_bytes


def test_shipped_models_plan_is_sound(model_paths):
    for path in model_paths:
        graph = load_model(path)
        plan = plan_layer_by_layer(graph)
        assert check_plan(plan) == [], path.name
        assert plan.arena_bytes >= plan.lower_bound_bytes
        # For these chains the greedy planner reaches the bound up to alignment slack.
        assert plan.arena_bytes <= plan.lower_bound_bytes + 4 * ARENA_ALIGNMENT, path.name
        assert len(plan.steps) == len(graph.ops)


def test_the_pruned_search_finds_the_exhaustive_searchs_plan():
    """least_arena_plan places candidates in the order of their lower bound and
    stops at the first bound above the best arena: the same answer as placing
    every candidate, and no placed arena is ever below its bound."""
    from harness.backend.lowering import lower_op
    from harness.paths import MODELS_DIR
    from harness.schedules.geometry import first_tileable_op
    from harness.schedules.patch import patch_stage
    from harness.schedules.plan import layout_schedule, least_arena_plan

    graph = load_model(MODELS_DIR / "mobilenetv2_w035_64.tflite")
    calls = {op.index: lower_op(graph, op) for op in graph.ops if op.kind != "RESHAPE"}
    start = first_tileable_op(graph, calls)
    candidates = [[stage] for end in range(start + 1, len(graph.ops)) for grid in (2, 3)
                  if (stage := patch_stage(graph, end, grid, calls, start)) is not None]
    assert len(candidates) > 50
    keys = []
    for k, stages in enumerate(candidates):
        layout = layout_schedule(graph, stages, variant="patch")
        plan = layout.place()
        assert layout.lower_bound_bytes <= plan.arena_bytes
        keys.append((plan.arena_bytes, plan.macs, k))
    key, plan, index = least_arena_plan(graph, candidates, tiebreak=lambda p, _: (p.macs,), variant="patch")
    assert key == min(keys) and index == min(keys)[2] and plan.arena_bytes == key[0]
    assert least_arena_plan(graph, []) is None
