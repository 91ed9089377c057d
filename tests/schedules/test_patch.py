"""The `patch` variant (MCUNetV2): the first stage patch by patch, bit-exact,
with the input counted and an honest note when it does not help."""
from __future__ import annotations

import numpy as np
import pytest

from harness.schedules import make_plan
from harness.errors import FusebenchError
from harness.schedules.patch import parse_grid, plan_patch
from harness.schedules.plan import check_plan
from harness.schedules.unfused import plan_layer_by_layer
from tests.helpers.hostcheck import assert_plan_bit_exact
from tests.helpers.tflite_builder import inverted_residual_chain_model, resnet_shortcut_model
from harness.frontend.tflite_import import load_model


@pytest.mark.parametrize("grid", ["2x2", "3x3", "4x4"])
def test_patch_stage_is_bit_exact(tmp_path, grid):
    data = inverted_residual_chain_model(np.random.default_rng(41), (23, 21), 3, [(1, 6, 1), (6, 8, 2), (4, 8, 1)], 8,
                                         (16, 4))
    path = tmp_path / "chain.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    plan = plan_patch(graph, patches=grid)
    assert check_plan(plan) == [] and len(plan.stages) == 1 and plan.stages[0].mode == "recompute"
    n = parse_grid(grid)
    st = plan.stages[0]
    # patches of ceil(H/n) x ceil(W/n): n per side, fewer when the map is small
    assert 1 < len(st.row_table) <= n and 1 < len(st.col_table) <= n
    assert plan.macs >= plan.base_macs           # the halo is recomputed
    assert graph.inputs[0] in [a.tensor for a in plan.allocations]    # the input is in the arena
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")


@pytest.mark.slow
def test_patch_on_the_shipped_models_and_the_user_choices(model_paths):
    graph = load_model(next(p for p in model_paths if p.stem == "mobilenetv2_w035_144"))
    plan = make_plan(graph, "patch")
    assert plan.arena_bytes < plan_layer_by_layer(graph).arena_bytes
    (note,) = plan.notes_of("patch-stage")
    st = plan.stages[0]
    assert note.data["end"] == st.ops[-1] and note.data["patches"] == [len(st.row_table), len(st.col_table)]
    assert note.data["input_bytes"] == graph.input.nbytes
    assert abs(note.data["extra_macs_percent"] - 100 * (plan.macs / plan.base_macs - 1)) < 1e-3
    assert not plan.notes_of("patch-no-gain")
    pinned = make_plan(graph, "patch", patches="2x2", patch_end=2)
    assert pinned.stages[0].ops == [0, 1, 2] and len(pinned.stages[0].row_table) == 2
    with pytest.raises(FusebenchError, match="patches"):
        make_plan(graph, "patch", patches="2x3")
    with pytest.raises(FusebenchError, match="patch-end"):
        make_plan(graph, "patch", patch_end=999)


def test_patch_that_does_not_help_says_so(tmp_path):
    """A network whose largest tensors are late: patches of the early part cannot lower the peak."""
    data = inverted_residual_chain_model(np.random.default_rng(3), (8, 8), 4, [(1, 4, 1), (8, 64, 1)], None)
    path = tmp_path / "late.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    plan = plan_patch(graph, patches="2x2", patch_end=2)
    assert plan.arena_bytes >= plan_layer_by_layer(graph).arena_bytes
    (note,) = plan.notes_of("patch-no-gain")
    assert note.data == dict(arena_bytes=plan.arena_bytes,
                             unfused_arena_bytes=plan_layer_by_layer(graph).arena_bytes)
    assert "does not help" in note.text


def test_the_patch_search_skips_stage_ends_inside_a_residual_branch(tmp_path):
    """A stage end whose tiles would leave a tensor used after the stage half
    computed is not one the search may take (ResNet-8 from MLPerf Tiny had one)."""
    path = tmp_path / "res.tflite"
    path.write_bytes(resnet_shortcut_model(np.random.default_rng(5)))
    graph = load_model(path)
    with pytest.raises(FusebenchError, match="cannot run patch by patch"):
        plan_patch(graph, patch_end=2)               # ends at the shortcut: t2 would be left half done
    plan = plan_patch(graph)
    assert check_plan(plan) == [] and len(plan.stages) == 1 and plan.stages[0].ops[-1] != 2
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")
