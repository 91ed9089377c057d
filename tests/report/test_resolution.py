"""`invoke resolution`: any model re-emitted at each resolution, planned, the largest fitting found."""
from __future__ import annotations

import pandas as pd
import pytest

from harness.errors import FusebenchError
from harness.paths import MODELS_DIR
from harness.report import resolution


def test_a_sweep_over_another_architecture_without_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(resolution, "RESOLUTION_MODELS_DIR", tmp_path / "models")
    (tmp_path / "run").mkdir()
    monkeypatch.setattr("harness.report.bench.new_run_dir", lambda: tmp_path / "run")
    said = []
    run_dir = resolution.resolution_sweep(["stm32f4"], variants=["unfused", "msf"], resolutions=(64, 96, 128),
                                          run=False, log=said.append,
                                          model="architectures/shufflenetv2_w050_96", max_resolution=160)
    table = pd.read_csv(run_dir / "resolution.csv")
    # msf still fits at 128: the search goes on past the range, up to --max-resolution
    assert set(table["base_model"]) == {"shufflenetv2_w050_96"} and set(table["resolution"]) == {64, 96, 128, 160}
    unfused = table[table["variant"] == "unfused"].set_index("resolution")["arena_bytes_planned"]
    assert unfused[64] < unfused[96] < unfused[128]              # RAM grows with the input
    summary = pd.read_csv(run_dir / "resolution-summary.csv").set_index("variant")
    assert summary.loc["unfused", "largest_resolution"] == 96      # the F4's 128 KB
    assert summary.loc["msf", "largest_resolution"] == 160
    assert "a larger one may fit" in summary.loc["msf", "detail"]
    assert pd.isna(summary.loc["unfused", "detail"])
    assert (run_dir / "resolution.png").is_file()
    assert (tmp_path / "models" / "shufflenetv2_w050_96-at-128.tflite").is_file()


def test_unknown_width_and_models_are_one_line():
    with pytest.raises(FusebenchError, match="shipped widths are"):
        resolution.base_models(width=0.5)
    with pytest.raises(FusebenchError, match="model not found"):
        resolution.base_models(model="no_such_model")
    assert resolution.base_models(width=0.35) == [MODELS_DIR / resolution.BASE_MODELS[0.35]]


def test_the_search_past_the_range_finds_what_a_dense_sweep_finds(tmp_path, monkeypatch):
    """From one resolution the search grows the input by half while a schedule
    fits, then bisects to the sweep's step: the same limit as planning every
    multiple of 16."""
    monkeypatch.setattr(resolution, "RESOLUTION_MODELS_DIR", tmp_path / "models")
    base = resolution.base_models(model="architectures/mobilenetv3_small_w075_96")[0]
    found = resolution.search_limits(["stm32f4"], base, (64, 80), ["unfused"], None, 1024, log=lambda _: None)
    dense = resolution.predict(["stm32f4"], base, tuple(range(64, 257, 16)), ["unfused"], log=lambda _: None)
    want = resolution.largest_fitting(dense, "stm32f4", "unfused")
    assert 80 < want < 256
    assert resolution.largest_fitting(found, "stm32f4", "unfused") == want
    assert not found[found["resolution"] == want + 16]["fits_stm32f4"].any()     # the next step was planned
    assert len(found) < len(dense)
