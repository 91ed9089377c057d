"""Stage kinds: each runs on the host by itself, survives a JSON round trip,
and a tile table that misses part of a tensor is caught."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from harness.backend.hostrt import run_plan
from harness.errors import FusebenchError
from harness.frontend.reference import reference_outputs
from harness.frontend.tflite_import import load_model
from harness.schedules import make_plan, schedule_names
from harness.schedules.plan import Plan
from harness.schedules.stages import ReorderedBlock, TiledStage
from tests.helpers.tflite_builder import patch_tunnel_model


@pytest.fixture(scope="module")
def small(model_paths):
    path = next(p for p in model_paths if p.stem == "mobilenetv2_w035_64")
    return path, load_model(path)


# The searches are the planner tests' business: pinned choices keep this one quick.
PINNED = {"fused": dict(blocks="0-1,2-3", tile="2"), "patch": dict(patches="2x2", patch_end=5)}


@pytest.fixture(scope="module")
def tunnels(tmp_path_factory):
    """Interleaved patch tunnels: a graph `ordered` applies to."""
    path = tmp_path_factory.mktemp("tunnels") / "tunnels.tflite"
    path.write_bytes(patch_tunnel_model(np.random.default_rng(2), (16, 16), patches=3))
    return path, load_model(path)


@pytest.mark.parametrize("variant", schedule_names())
def test_every_schedule_runs_on_the_host_bit_exact(small, tunnels, variant):
    path, graph = tunnels if variant == "ordered" else small
    plan = make_plan(graph, variant, **PINNED.get(variant, {}))
    assert variant == "unfused" or plan.stages or plan.op_order
    rng = np.random.default_rng(7)
    xs = [rng.integers(-128, 128, graph.input.shape, dtype=np.int8) for _ in range(2)]
    for x, ref in zip(xs, reference_outputs(path, xs)):
        np.testing.assert_array_equal(run_plan(graph, plan, x).reshape(-1), ref.reshape(-1))


def test_stage_kinds_survive_the_json_round_trip(small):
    _, graph = small
    for variant, kind in (("msf", TiledStage), ("reordered", ReorderedBlock)):
        plan = make_plan(graph, variant)
        again = Plan.from_json(plan.to_json())
        assert plan.stages and all(isinstance(st, kind) for st in again.stages)
        assert again.stages == plan.stages and again.notes == plan.notes


def test_a_tile_table_that_misses_rows_is_caught(small):
    _, graph = small
    plan = make_plan(graph, "fused", **PINNED["fused"])
    broken = copy.deepcopy(plan)
    broken.stages[0].row_table = broken.stages[0].row_table[:-1]      # the last row band is lost
    x = np.zeros(graph.input.shape, np.int8)
    with pytest.raises(FusebenchError, match="uncomputed|before the tiles computed it"):
        run_plan(graph, broken, x)
