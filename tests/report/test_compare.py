"""`invoke compare` and the regression gate."""
from __future__ import annotations

import pandas as pd
import pytest

from harness.errors import FusebenchError
from harness.report.compare import compare_command, compare_rows, load_rows, write_baseline


def rows(**changes):
    """Two variants of one model on one board, two inputs each; `changes`
    overrides a (variant, input) row's fields: {"msf_i1": dict(status="crash")}."""
    out = []
    for variant, arena, instructions in (("unfused", 60000, 9_000_000), ("msf", 12000, 9_100_000)):
        for i in range(2):
            row = dict(board="stm32h7", runner="qemu", model="m", variant=variant, input=f"i{i}", run=0,
                       status="ok", arena_bytes_peak=arena, ram_bytes_total=arena + 1700,
                       instructions=instructions + 40 * i, detail="")
            row.update(changes.get(f"{variant}_i{i}", {}))
            out.append(row)
    return pd.DataFrame(out)


def regressions(before, after, **kw):
    return [(c.variant, c.what) for c in compare_rows(before, after, **kw) if c.regression]


def test_an_unchanged_run_passes_and_jitter_is_not_a_regression():
    assert compare_rows(rows(), rows()) == []
    jitter = rows(unfused_i0=dict(instructions=9_000_040))      # one SysTick tick
    assert regressions(rows(), jitter) == []


def test_each_kind_of_regression_names_its_row():
    slower = rows(msf_i0=dict(instructions=9_300_000), msf_i1=dict(instructions=9_300_040))
    assert regressions(rows(), slower) == [("msf", "instructions")]
    bigger = rows(unfused_i1=dict(arena_bytes_peak=60016, ram_bytes_total=61716))
    assert regressions(rows(), bigger) == [("unfused", "arena_bytes_peak")]     # the total: within the jitter
    much_bigger = rows(unfused_i1=dict(arena_bytes_peak=60096, ram_bytes_total=61796))
    assert sorted(regressions(rows(), much_bigger)) == [("unfused", "arena_bytes_peak"),
                                                         ("unfused", "ram_bytes_total")]
    # a SysTick frame more on the stack (40 B, same arena) is not a regression
    assert regressions(rows(), rows(msf_i0=dict(ram_bytes_total=13740))) == []
    broken = rows(msf_i1=dict(status="crash"))
    assert regressions(rows(), broken) == [("msf", "status")]
    assert regressions(rows(), rows().iloc[:3]) == [("msf", "rows")]
    assert regressions(rows(), rows().iloc[0:0]) == [("", "rows")]
    # better is listed, never failed
    smaller = rows(msf_i0=dict(arena_bytes_peak=11000, ram_bytes_total=12600),
                   msf_i1=dict(arena_bytes_peak=11000, ram_bytes_total=12600))
    assert regressions(rows(), smaller) == [] and len(compare_rows(rows(), smaller)) == 2
    assert regressions(rows(), slower, counts=False) == []


def test_the_gate_against_a_baseline_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows().to_csv(run / "bench.csv", index=False)
    written = write_baseline(str(run), tmp_path / "baseline", log=lambda *a: None)
    assert [p.name for p in written] == ["stm32h7.csv"]
    assert len(load_rows(tmp_path / "baseline")) == 4
    log = []
    assert compare_command(str(tmp_path / "baseline"), str(run), log=log.append) == 0
    rows(unfused_i0=dict(arena_bytes_peak=70000)).to_csv(run / "bench.csv", index=False)
    log = []
    assert compare_command(str(tmp_path / "baseline"), str(run), log=log.append) == 1
    assert "arena_bytes_peak" in log[0] and "60,000" in log[0] and "70,000" in log[0]


def test_a_bad_run_is_never_a_baseline_and_bad_paths_are_clear(tmp_path):
    (tmp_path / "run").mkdir()
    rows(msf_i0=dict(status="mismatch")).to_csv(tmp_path / "run" / "bench.csv", index=False)
    with pytest.raises(FusebenchError, match="clean run"):
        write_baseline(str(tmp_path / "run"), tmp_path / "baseline")
    with pytest.raises(FusebenchError, match="no bench.csv"):
        load_rows(tmp_path / "nowhere")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FusebenchError, match="not a bench.csv"):
        load_rows(tmp_path / "x.csv")
