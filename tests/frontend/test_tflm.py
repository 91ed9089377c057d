"""The peer figure: TFLite Micro's arena for every shipped model."""
from __future__ import annotations

import importlib.util
import json

import pytest

from harness.schedules.unfused import plan_layer_by_layer
from harness.report.tables import plan_table
from harness.frontend.tflite_import import load_model
from harness.frontend import tflm
from harness.frontend.tflm import TflmUnavailable, tflm_arena_bytes

needs_tflm = pytest.mark.skipif(importlib.util.find_spec("tflite_micro") is None,
                                reason="the tflite-micro package is not installed for this Python")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test starts with no cached TFLM figures (and leaves build/cache alone)."""
    monkeypatch.setattr(tflm, "CACHE_FILE", tmp_path / "cache" / "tflm-arena.json")


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


@needs_tflm
def test_tflm_figure_is_cached_per_model_bytes(model_paths, tmp_path, monkeypatch):
    path = model_paths[0]
    first = tflm_arena_bytes(path)

    def no_subprocess(*args):
        raise AssertionError("TFLM ran again for a cached model")
    monkeypatch.setattr(tflm, "_run_tflm", no_subprocess)
    assert tflm_arena_bytes(path) == first
    # another file with the same bytes is the same model; changed bytes are not
    copy = tmp_path / "copy.tflite"
    copy.write_bytes(path.read_bytes())
    assert tflm_arena_bytes(copy) == first
    copy.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(AssertionError, match="ran again"):
        tflm_arena_bytes(copy)


@needs_tflm
def test_a_damaged_cache_is_ignored_and_rewritten(model_paths):
    tflm.CACHE_FILE.parent.mkdir(parents=True)
    tflm.CACHE_FILE.write_text("{not json")
    total = tflm_arena_bytes(model_paths[0])
    assert total in json.loads(tflm.CACHE_FILE.read_text()).values()
