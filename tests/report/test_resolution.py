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
                                          model="architectures/shufflenetv2_w050_96")
    table = pd.read_csv(run_dir / "resolution.csv")
    assert set(table["base_model"]) == {"shufflenetv2_w050_96"} and len(table) == 6
    unfused = table[table["variant"] == "unfused"].set_index("resolution")["arena_bytes_planned"]
    assert unfused[64] < unfused[96] < unfused[128]              # RAM grows with the input
    summary = pd.read_csv(run_dir / "resolution-summary.csv").set_index("variant")
    assert summary.loc["unfused", "largest_resolution"] == 96      # the F4's 128 KB
    assert summary.loc["msf", "largest_resolution"] == 128
    assert "a larger one may fit" in summary.loc["msf", "detail"]
    assert (run_dir / "resolution.png").is_file()
    assert (tmp_path / "models" / "shufflenetv2_w050_96-at-128.tflite").is_file()


def test_unknown_width_and_models_are_one_line():
    with pytest.raises(FusebenchError, match="shipped widths are"):
        resolution.base_models(width=0.5)
    with pytest.raises(FusebenchError, match="model not found"):
        resolution.base_models(model="no_such_model")
    assert resolution.base_models(width=0.35) == [MODELS_DIR / resolution.BASE_MODELS[0.35]]
