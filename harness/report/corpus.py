"""`invoke corpus`: bench every model in a folder, one line per model.

The benchmark of generality: real models from the field (`../shared/field-models`:
MLPerf Tiny, TFLite Micro's examples, MCUNet) each get every applicable
variant on the board, bit-exact or not; a model whose weights do not fit the
board's flash is run again on the fallback board (one with external flash for
the weights, `stm32h7-qspi`). A model the harness cannot take is refused in one
line naming why. Everything lands in one run folder: bench.csv and
layers.csv (all rows, every board), summary.csv, and corpus.csv with one row
per model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.errors import FusebenchError

CORPUS_COLUMNS = ["model", "status", "board", "variants_ok", "variants_not_applicable", "variants_failed",
                  "reference", "inputs", "detail"]


@dataclass
class ModelLine:
    model: str
    status: str                  # ok | refused | failed | does-not-fit
    board: str = ""
    variants_ok: str = ""
    variants_not_applicable: str = ""
    variants_failed: str = ""
    reference: str = ""
    inputs: str = ""
    detail: str = ""

    def line(self) -> str:
        if self.status == "refused":
            return f"{self.model}: refused: {self.detail}"
        parts = [f"{self.model}: {self.status} on {self.board}"]
        if self.variants_ok:
            parts.append(f"bit-exact: {self.variants_ok}")
        if self.variants_not_applicable:
            parts.append(f"not applicable: {self.variants_not_applicable}")
        if self.variants_failed:
            parts.append(f"failed: {self.variants_failed}")
        if self.detail:
            parts.append(self.detail)
        return "; ".join(parts)


def _flash_short(rows: pd.DataFrame) -> bool:
    """Every variant that ran no input did not fit, and for want of flash."""
    unfit = rows[rows["status"] == "does-not-fit"]
    return len(unfit) > 0 and unfit["detail"].fillna("").str.contains("FLASH").any() \
        and not (rows["status"] == "ok").any()


def _summarize(model: str, rows: pd.DataFrame) -> ModelLine:
    from harness.schedules.registry import schedule_names
    order = {v: i for i, v in enumerate(schedule_names())}
    statuses = rows.groupby("variant", sort=False)["status"].agg(lambda s: set(s))
    # in the registry's order, not the order the runs finished in
    statuses = statuses.reindex(sorted(statuses.index, key=lambda v: (order.get(v, len(order)), v)))
    ok = [v for v, s in statuses.items() if s == {"ok"}]
    not_applicable = [v for v, s in statuses.items() if s == {"not-applicable"}]
    unfit = [v for v, s in statuses.items() if s == {"does-not-fit"}]
    failed = [f"{v} ({', '.join(sorted(s))})" for v, s in statuses.items()
              if v not in ok and v not in not_applicable and v not in unfit]
    if failed:
        status = "failed"
    elif ok:
        status = "ok"
    else:
        status = "does-not-fit"
    first = rows.iloc[0]
    detail = ""
    if unfit:
        detail = f"does not fit: {', '.join(unfit)}"
    ran = rows[rows["status"] == "ok"]
    off = ran[pd.to_numeric(ran["arena_bytes_peak"]) != pd.to_numeric(ran["arena_bytes_planned"])]
    if len(off):                         # the plan must be exact: say where it is not
        pairs = off.groupby("variant", sort=False).first()
        detail = (detail + "; " if detail else "") + "measured arena differs from the plan: " + ", ".join(
            f"{v} {int(r['arena_bytes_peak'])} vs {int(r['arena_bytes_planned'])} B" for v, r in pairs.iterrows())
        status = "failed"
    bad = rows[~rows["status"].isin(("ok", "not-applicable", "does-not-fit"))]
    if len(bad):
        detail = (detail + "; " if detail else "") + f"first failure: {bad.iloc[0]['variant']}: " \
                                                     f"{str(bad.iloc[0]['detail'])[:200]}"
    return ModelLine(model, status, str(first["board"]), ", ".join(ok), ", ".join(not_applicable),
                     ", ".join(failed), str(first.get("reference", "")), str(first.get("inputs", "")), detail)


def corpus_command(folder: str, board: str = "stm32h7", fallback_board: Optional[str] = "stm32h7-qspi",
                   variants: Optional[list[str]] = None, max_inputs: Optional[int] = 4, jobs: Optional[int] = None,
                   timeout_s: float = 600.0, options: Optional[dict] = None, run_dir: Optional[Path] = None,
                   log=print) -> Path:
    """Bench every .tflite in `folder` on `board` (those whose weights do not
    fit its flash again on `fallback_board`); returns the run folder."""
    from harness.commands import write_summary
    from harness.frontend.tflite_import import load_model
    from harness.report.bench import new_run_dir, run_sweep
    from harness.schedules import schedule_names

    root = Path(folder)
    if not root.is_dir():
        raise FusebenchError(f"corpus folder {root} does not exist")
    paths = sorted(root.glob("*.tflite"))
    if not paths:
        raise FusebenchError(f"{root} holds no .tflite files")
    variants = variants or schedule_names()
    run_dir = Path(run_dir) if run_dir else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    lines: list[ModelLine] = []
    runnable = []
    for path in paths:
        try:
            load_model(path)
            runnable.append(path)
        except FusebenchError as exc:
            lines.append(ModelLine(path.stem, "refused", detail=str(exc).removeprefix(f"{path}: ")))
    log(f"corpus: {len(runnable)} of {len(paths)} models import; benching them on {board}")
    for path in runnable:               # one sweep per model: one model's failure never stops another's
        try:
            run_sweep([board], [path], variants, max_inputs=max_inputs, jobs=jobs, timeout_s=timeout_s,
                      options=options, run_dir=run_dir)
            rows = _rows_of(run_dir, path.stem, board)
            if fallback_board and _flash_short(rows):
                log(f"corpus: {path.stem} does not fit {board}'s flash; again on {fallback_board}")
                run_sweep([fallback_board], [path], variants, max_inputs=max_inputs, jobs=jobs,
                          timeout_s=timeout_s, options=options, run_dir=run_dir)
                rows = _rows_of(run_dir, path.stem, fallback_board)
            lines.append(_summarize(path.stem, rows))
        except FusebenchError as exc:    # e.g. the reference refuses the model
            lines.append(ModelLine(path.stem, "refused", detail=str(exc)))
    lines.sort(key=lambda m: m.model)
    pd.DataFrame([vars(m) for m in lines], columns=CORPUS_COLUMNS).to_csv(run_dir / "corpus.csv", index=False)
    if (run_dir / "bench.csv").is_file():
        write_summary(run_dir)
    for m in lines:
        log(m.line())
    log(f"results: {run_dir} (corpus.csv, bench.csv, summary.csv); results/latest points there")
    return run_dir


def _rows_of(run_dir: Path, model: str, board: str) -> pd.DataFrame:
    rows = pd.read_csv(run_dir / "bench.csv")
    return rows[(rows["model"] == model) & (rows["board"] == board)]
