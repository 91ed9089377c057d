"""The peer figure: TFLite Micro's arena for every shipped model."""
from __future__ import annotations

import importlib.util

import pytest

from harness.schedules.unfused import plan_layer_by_layer
from harness.report.tables import plan_table
from harness.frontend.tflite_import import load_model
from harness.frontend.tflm import TflmUnavailable, tflm_arena_bytes

needs_tflm = pytest.mark.skipif(importlib.util.find_spec("tflite_micro") is None,
                                reason="the tflite-micro package is not installed for this Python")


@needs_tflm
def test_tflm_arena_is_read_for_every_shipped_model(model_paths):
    for path in model_paths:
        graph = load_model(path)
        plan = plan_layer_by_layer(graph)
        tflm = tflm_arena_bytes(path)
        # TFLM holds at least the same live activations, plus its own bookkeeping.
        assert tflm > plan.lower_bound_bytes, (path.name, tflm, plan.lower_bound_bytes)
        table = plan_table(graph, plan, tflm)
        assert (table["tflm_arena_bytes"] == tflm).all()


@needs_tflm
def test_tflm_failure_is_reported_not_raised_as_crash(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TflmUnavailable):
        tflm_arena_bytes(bad)
