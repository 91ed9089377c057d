"""`invoke params`: measured RAM beside each model's parameters."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.errors import FusebenchError
from harness.report.params import markdown, params_command, parameter_table


def summary_rows():
    rows = []
    for model, arena in (("unist_k2_m9", 30000), ("unist_k4c_m9", 20000)):
        for variant, factor in (("unfused", 3), ("ordered", 1)):
            rows.append(dict(board="stm32f4", model=model, variant=variant, ok=2, arena_bytes_peak=arena * factor,
                             ram_bytes_total=arena * factor + 900))
    rows.append(dict(board="stm32f4", model="unist_k4c_m9", variant="fused", ok=0, arena_bytes_peak=None,
                     ram_bytes_total=None))                                  # does-not-fit: no figure
    rows.append(dict(board="stm32f4", model="other", variant="unfused", ok=2, arena_bytes_peak=1, ram_bytes_total=1))
    return pd.DataFrame(rows)


def records():
    return {"unist_k2_m9.tflite": dict(arch_params=dict(k=2, central=False, margin=9), int8_top1=0.8, resolution=96,
                                       width=16, parameters=1000, eval_images=1000),
            "unist_k4c_m9.tflite": dict(arch_params=dict(k=4, central=True, margin=9), int8_top1=0.85,
                                        resolution=96, width=16, parameters=2000, eval_images=1000)}


def test_the_table_joins_parameters_accuracy_and_measured_ram(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    summary_rows().to_csv(run / "summary.csv", index=False)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "models.json").write_text(json.dumps(records()))
    printed = []
    out = params_command(run=str(run), models=str(tmp_path / "models"), log=printed.append)
    table = pd.read_csv(out)
    assert list(table["model"]) == ["unist_k2_m9", "unist_k4c_m9"]          # by parameters; `other` left out
    assert list(table["k"]) == [2, 4] and list(table["int8_top1"]) == [0.8, 0.85]
    assert list(table["unfused_arena_bytes_peak"]) == [90000, 60000]
    assert list(table["ordered_arena_bytes_peak"]) == [30000, 20000]
    assert "fused_arena_bytes_peak" not in table                          # no ok row, no figure
    assert "| True | 4 | 9 |" in printed[0] and "85.0%" in printed[0] and "19.5" in printed[0]


def test_bad_runs_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(FusebenchError, match="run `invoke bench` first"):
        params_command(run=str(tmp_path), models="x")
    summary_rows().to_csv(tmp_path / "summary.csv", index=False)
    with pytest.raises(FusebenchError, match="--models"):
        params_command(run=str(tmp_path), models="")
    with pytest.raises(FusebenchError, match="models.json"):
        params_command(run=str(tmp_path), models=str(tmp_path / "nowhere"))
    with pytest.raises(FusebenchError, match="no rows"):
        parameter_table(summary_rows(), {"absent": {}})
    assert markdown(parameter_table(summary_rows(), {k[:-7]: v for k, v in records().items()})).count("\n") == 3
