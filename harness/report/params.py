"""`invoke params`: a bench run's measured RAM beside each model's own
parameters and accuracy, for sweeps such as UNIST's number of patches,
margins and expansion ratio (the paper's Tables 3, 5 and 6).

The parameters and the int8 top-1 come from the `models.json` that
`invoke models` writes beside the models (`arch_params`, `int8_top1`,
`resolution`, `width`); the RAM from the run's summary.csv, as measured on
the device: the painted arena's watermark per variant.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.errors import FusebenchError
from harness.report.tables import markdown_table


def model_records(folders: list[Path]) -> dict[str, dict]:
    """Model name (file stem) -> its models.json record, from these folders."""
    records: dict[str, dict] = {}
    for folder in folders:
        path = Path(folder) / "models.json"
        if not path.is_file():
            raise FusebenchError(f"no {path}: --models names folders that `invoke models` wrote")
        for file, record in json.loads(path.read_text()).items():
            records[Path(file).stem] = record
    return records


def parameter_table(summary: pd.DataFrame, records: dict[str, dict], measure: str = "arena_bytes_peak",
                    board: Optional[str] = None) -> pd.DataFrame:
    """One row per (board, model): its parameters, its int8 top-1 (LiteRT, N
    test images), and `measure` per variant (ok rows only) as columns."""
    rows = summary[summary["model"].isin(records)]
    if board:
        rows = rows[rows["board"] == board]
    if rows.empty:
        raise FusebenchError("the run has no rows for these models"
                             + (f" on {board}" if board else ""))
    ok = rows[rows["ok"] > 0]
    wide = ok.pivot_table(index=["board", "model"], columns="variant", values=measure, aggfunc="max")
    # variants in the run's own order (the registry's), not alphabetical
    wide = wide[[v for v in dict.fromkeys(rows["variant"]) if v in wide.columns]]
    wide.columns = [f"{v}_{measure}" for v in wide.columns]
    params = sorted({k for r in records.values() for k in r.get("arch_params", {})})
    meta = pd.DataFrame([dict(model=name, resolution=r.get("resolution"), width=r.get("width"),
                              **{k: r.get("arch_params", {}).get(k) for k in params},
                              weights=r.get("parameters"), int8_top1=r.get("int8_top1"),
                              eval_images=r.get("eval_images"))
                         for name, r in records.items()])
    table = wide.reset_index().merge(meta, on="model", how="left")
    first = ["board", "model", "resolution", "width", *params, "weights", "int8_top1", "eval_images"]
    return table[first + list(wide.columns)].sort_values(["board", *params]).reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, bytes as KiB with one decimal."""
    shown = table.copy()
    for col in shown.columns:
        if col.endswith("_bytes_peak") or col.endswith("_bytes_total"):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v / 1024:.1f}")
            shown = shown.rename(columns={col: col.replace("_bytes", "_KiB")})
    if "int8_top1" in shown:
        shown["int8_top1"] = shown["int8_top1"].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}%")
    return markdown_table(shown)


def params_command(run: str = "results/latest", models: str = "", measure: str = "arena_bytes_peak",
                   board: Optional[str] = None, log=print) -> Path:
    """Write <run>/params.csv and print it as markdown."""
    run_dir = Path(run)
    summary_path = run_dir / "summary.csv"
    if not summary_path.is_file():
        raise FusebenchError(f"no {summary_path}: run `invoke bench` first or pass --run <results folder>")
    folders = [Path(f.strip()) for f in models.split(",") if f.strip()]
    if not folders:
        raise FusebenchError("--models: name the folder(s) of models.json the run's models came from")
    summary = pd.read_csv(summary_path)
    if measure not in summary.columns:
        raise FusebenchError(f"--measure {measure}: summary.csv has no such column")
    table = parameter_table(summary, model_records(folders), measure, board)
    out = run_dir / "params.csv"
    tmp = out.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)                       # a reader never sees half a table
    log(markdown(table))
    log(f"\nwrote {out}")
    return out
