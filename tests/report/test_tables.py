"""`invoke plan`'s printout and the plan table, for every schedule."""
from __future__ import annotations

import numpy as np
import pytest

from harness.frontend.tflite_import import load_model
from harness.report.tables import format_plan, plan_table
from harness.schedules import make_plan, schedule_names
from tests.helpers.tflite_builder import patch_tunnel_model

PINNED = {"fused": dict(blocks="0-1"), "patch": dict(patches="2x2", patch_end=5)}


@pytest.mark.parametrize("variant", schedule_names())
def test_every_plan_prints_its_stages_and_buffers(model_paths, variant, tmp_path):
    if variant == "ordered":                  # a graph with branches: interleaved patch tunnels
        path = tmp_path / "tunnels.tflite"
        path.write_bytes(patch_tunnel_model(np.random.default_rng(2), (16, 16), patches=3))
    else:
        path = next(p for p in model_paths if p.stem == "mobilenetv2_w035_64")
    graph = load_model(path)
    plan = make_plan(graph, variant, **PINNED.get(variant, {}))
    text = format_plan(graph, plan, None, "skipped", make_plan(graph, "unfused"))
    for k, st in enumerate(plan.stages):
        assert f"stage s{k}: {st.describe(graph)}" in text
        for suffix, size in st.arena_buffers():
            assert f"s{k}.{suffix} " in text and f"{size} B" in text
    assert f"predicted peak arena ({variant}): {plan.arena_bytes} bytes" in text
    assert len(plan_table(graph, plan)) == len(plan.steps)
