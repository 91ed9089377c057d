"""The GitHub workflows cannot run here, so they must at least be valid."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _linter() -> list[str] | None:
    bin_dir = Path(sys.executable).parent
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("actionlint", path=path):
        return [shutil.which("actionlint", path=path)]
    if shutil.which("jactionlint", path=path):
        # the fork's "correctness" profile is what actionlint checks
        return [shutil.which("jactionlint", path=path), "--profile", "correctness"]
    return None


def test_nightly_workflow_exists_and_runs_bench_on_both_boards():
    text = (ROOT / ".github" / "workflows" / "nightly.yml").read_text()
    assert "schedule:" in text and "invoke bench" in text
    assert "stm32h7" in text and "stm32f4" in text
    assert "upload-artifact" in text and "harness.report.check_results" in text


def test_workflows_pass_actionlint():
    linter = _linter()
    if linter is None:
        pytest.skip("neither actionlint nor jactionlint is installed (pip install -e '.[test]')")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(linter + [str(w) for w in WORKFLOWS], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_results_fails_on_bad_rows(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("board,model,variant,input,status,detail\nb,m,unfused,i0,ok,\nb,m,unfused,i1,does-not-fit,x\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("board,model,variant,input,status,detail\nb,m,unfused,i0,ok,\nb,m,unfused,i1,crash,pc\n")
    run = lambda p: subprocess.run([sys.executable, "-m", "harness.report.check_results", str(p)],  # noqa: E731
                                   capture_output=True, text=True, cwd=ROOT)
    assert run(good).returncode == 0
    r = run(bad)
    assert r.returncode == 1 and "FAILED b/m/unfused/i1: crash" in r.stdout
