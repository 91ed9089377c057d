"""`invoke compare`: what changed between two bench runs, and the nightly
regression gate against the committed baseline (`results/baseline/`).

Rows are matched on (board, model, variant, input, run). A regression is:
  - a row that was `ok` and now is anything else, or a row that is gone;
  - a variant's measured arena up by any byte, its total RAM by more than
    the stack's jitter (STACK_JITTER_BYTES: the stack watermark includes the
    SysTick handler's frame when a tick lands during the deepest call, so it
    moves by 40 B, sometimes 80, between runs of the same image);
  - its instruction (or cycle) count up by more than the tolerance (QEMU's
    count moves by a SysTick tick, 40 instructions, from run to run);
  - a run with no rows at all.
Improvements are listed too (they are why a baseline gets refreshed), but
only regressions fail. `invoke baseline` writes the baseline on purpose.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.errors import FusebenchError

KEY = ["board", "model", "variant", "input", "run"]
VARIANT = ["board", "model", "variant"]
BYTE_COLUMNS = ("arena_bytes_peak", "ram_bytes_total")
# Bytes more than this are a regression: the arena is painted by the model
# alone (exact); the total holds the stack watermark (interrupt frames).
BYTE_TOLERANCE = {"arena_bytes_peak": 0, "ram_bytes_total": 80}
STACK_JITTER_BYTES = BYTE_TOLERANCE["ram_bytes_total"]
COUNT_COLUMNS = ("instructions", "cycles")
DEFAULT_TOLERANCE_PERCENT = 0.1
BASELINE_DIR = Path(__file__).resolve().parents[2] / "results" / "baseline"


@dataclass(frozen=True)
class Change:
    board: str
    model: str
    variant: str
    what: str              # status, arena_bytes_peak, ram_bytes_total, instructions, cycles, rows
    before: str
    after: str
    regression: bool


def load_rows(path: Path) -> pd.DataFrame:
    """A run's rows: a run folder (its bench.csv), a bench.csv, or a baseline
    folder of <board>.csv files."""
    path = Path(path)
    if path.is_dir() and (path / "bench.csv").is_file():
        files = [path / "bench.csv"]
    elif path.is_dir():
        files = sorted(path.glob("*.csv"))
    else:
        files = [path]
    if not files or not all(f.is_file() for f in files):
        raise FusebenchError(f"{path}: no bench.csv (a run folder, a bench.csv, or a baseline folder)")
    try:
        rows = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FusebenchError(f"{path}: cannot read its rows ({exc})") from None
    missing = [c for c in KEY + ["status"] if c not in rows.columns]
    if missing:
        raise FusebenchError(f"{path}: not a bench.csv (no {', '.join(missing)} column)")
    return rows


def _per_variant(rows: pd.DataFrame) -> pd.DataFrame:
    """The measured figures of each variant over its ok rows: peaks of bytes, medians of counts."""
    ok = rows[rows["status"] == "ok"]
    figures = {}
    for col in BYTE_COLUMNS:
        if col in ok:
            figures[col] = pd.to_numeric(ok[col], errors="coerce").groupby([ok[k] for k in VARIANT]).max()
    for col in COUNT_COLUMNS:
        if col in ok:
            figures[col] = pd.to_numeric(ok[col], errors="coerce").groupby([ok[k] for k in VARIANT]).median()
    return pd.DataFrame(figures)


def compare_rows(before: pd.DataFrame, after: pd.DataFrame, tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
                 counts: bool = True) -> list[Change]:
    """Every change from `before` to `after` (see the module docstring);
    `counts=False` leaves instruction and cycle counts out (a runner whose
    counts are not comparable to the baseline's)."""
    changes: list[Change] = []
    if after.empty:
        return [Change("", "", "", "rows", str(len(before)), "0", True)]
    a = before.set_index(KEY)
    b = after.set_index(KEY)
    for key in a.index.difference(b.index):
        changes.append(Change(*key[:3], "rows", f"{'/'.join(map(str, key[3:]))} {a.loc[key, 'status']}",
                              "missing", True))
    common = a.index.intersection(b.index)
    for key in common:
        was, now = str(a.loc[key, "status"]), str(b.loc[key, "status"])
        if was != now:
            changes.append(Change(*key[:3], "status", f"{key[3]}: {was}", now, was == "ok"))
    fa, fb = _per_variant(before), _per_variant(after)
    for key in fa.index.intersection(fb.index):
        for col in fa.columns.intersection(fb.columns):
            x, y = fa.loc[key, col], fb.loc[key, col]
            if pd.isna(x) or pd.isna(y) or x == y:
                continue
            if col in COUNT_COLUMNS:
                if not counts:
                    continue
                percent = 100.0 * (y - x) / x if x else float("inf")
                if abs(percent) <= tolerance_percent:
                    continue              # run-to-run jitter
                changes.append(Change(*key, col, f"{x:,.0f}", f"{y:,.0f} ({percent:+.2f}%)",
                                      percent > tolerance_percent))
            else:
                slack = BYTE_TOLERANCE.get(col, 0)
                if abs(y - x) <= slack:
                    continue              # within the stack's interrupt-frame jitter
                changes.append(Change(*key, col, f"{x:,.0f}", f"{y:,.0f} ({y - x:+,.0f} B)", y > x + slack))
    return changes


def changes_table(changes: list[Change]) -> pd.DataFrame:
    table = pd.DataFrame([c.__dict__ for c in changes],
                         columns=["board", "model", "variant", "what", "before", "after", "regression"])
    return table.sort_values(["regression", "board", "model", "variant", "what"],
                             ascending=[False, True, True, True, True]).reset_index(drop=True)


def compare_command(before: str, after: str, tolerance: float = DEFAULT_TOLERANCE_PERCENT,
                    counts: bool = True, log=print) -> int:
    """Print the changes; the number of regressions (the gate fails on > 0)."""
    a, b = load_rows(Path(before)), load_rows(Path(after))
    if not b.empty:
        a = a[a["board"].isin(set(b["board"]))]     # a baseline of every board against one board's run
    changes = compare_rows(a, b, tolerance, counts)
    table = changes_table(changes)
    regressions = int(table["regression"].sum()) if len(table) else 0
    if len(table):
        with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 500):
            log(table.to_string(index=False))
    log(f"compare: {len(b)} rows against {len(a)}: {regressions} regression(s), "
        f"{len(table) - regressions} other change(s) (instruction tolerance {tolerance:g}%"
        f"{'' if counts else ', counts not compared'})")
    return regressions


def write_baseline(run: str, out: Path = BASELINE_DIR, log=print) -> list[Path]:
    """Make a run's rows the baseline: one <board>.csv per board it ran (the
    other boards' files stay). Refused when a row is bad or nothing ran."""
    rows = load_rows(Path(run))
    bad = rows[rows["status"].isin(("mismatch", "crash", "timeout", "error"))]
    if rows.empty or len(bad):
        raise FusebenchError(f"{run}: {len(bad)} bad row(s) of {len(rows)}: a baseline must be a clean run")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for board, group in rows.groupby("board", sort=False):
        path = out / f"{board}.csv"
        tmp = path.with_suffix(".csv.tmp")
        group.to_csv(tmp, index=False)
        shutil.move(tmp, path)
        written.append(path)
        log(f"baseline: {path} ({len(group)} rows from {run})")
    return written
