"""`invoke pareto` and the msf command line: the front CSV and picture, the
search timing, and one-line errors for impossible budgets and bad options."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import TESTS_DIR
from harness.report.pareto import MSF_CNN_W035_144, _published_applies, pareto_command
from harness.frontend.tflite_import import load_model

ROOT = TESTS_DIR.parent


@pytest.mark.slow
def test_pareto_writes_the_front_with_unfused_and_fused_points(tmp_path, model_paths):
    small = next(p for p in model_paths if p.stem == "mobilenetv2_w035_64")
    run_dir = pareto_command(model=str(small), out=str(tmp_path), log=lambda *a: None)
    graph = load_model(small)
    table = pd.read_csv(run_dir / f"pareto-{graph.name}.csv")
    front = table[table["kind"] == "msf"].sort_values("peak_bytes_predicted")
    assert len(front) >= 2
    # a front: more MACs only ever buys less RAM
    assert front["mac_ratio"].is_monotonic_decreasing and front["peak_bytes_predicted"].is_monotonic_increasing
    assert (front["arena_bytes_planned"] >= front["peak_bytes_predicted"] * 0.95).all()
    kinds = set(table["kind"])
    assert {"unfused", "fused"} <= kinds
    unfused = table[table["kind"] == "unfused"].iloc[0]
    assert front["arena_bytes_planned"].min() < unfused["arena_bytes_planned"]
    assert (run_dir / f"pareto-{graph.name}.png").stat().st_size > 10_000
    timing = pd.read_csv(run_dir / "pareto-search-time.csv")
    assert timing["edges"].iloc[0] > 100 and timing["price_s"].iloc[0] > 0


def test_published_msf_cnn_points_only_for_the_model_they_belong_to(model_paths):
    names = {p.stem: load_model(p) for p in model_paths}
    assert _published_applies(names["mobilenetv2_w035_144"])
    assert not _published_applies(names["mobilenetv2_w035_128"])
    assert MSF_CNN_W035_144["layer_by_layer_kb"] == 194.4 and len(MSF_CNN_W035_144["points"]) == 4


@pytest.mark.parametrize("args, expected", [
    (["plan", "--variant", "msf", "--ram-budget", "1K"], "smallest possible peak is"),
    (["plan", "--variant", "msf", "--ram-budget", "lots"], "--ram-budget 'lots'"),
    (["plan", "--variant", "msf", "--max-overhead", "-5"], "must not be negative"),
    (["plan", "--variant", "warp"], "unknown variant"),
])
def test_msf_command_line_errors_are_one_line(args, expected):
    proc = subprocess.run([sys.executable, "-m", "invoke", *args, "--model", "mobilenetv2_w035_64", "--no-tflm"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_plan_msf_prints_stages_and_the_saving():
    proc = subprocess.run([sys.executable, "-m", "invoke", "plan", "--variant", "msf", "--max-overhead", "10%",
                           "--model", "mobilenetv2_w035_64", "--no-tflm"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "input streamed" in proc.stdout and "predicted peak arena (msf)" in proc.stdout
