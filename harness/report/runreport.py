"""report.md: one page per run folder, readable alone (no other file needed to
know what ran where): the summary table, the plots, the boards and runners,
the commit, the tool versions and the reference the outputs were checked against."""
from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.report.tables import markdown_table

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("numpy", "pandas", "matplotlib", "ai-edge-litert", "invoke", "pyserial")


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "did not answer"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def commit() -> str:
    """The checkout's commit, with `+ changes` when the tree is not clean."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    return (head or "unknown") + (" + uncommitted changes" if dirty else "")


def tool_versions(runners: set[str], boards: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of what built and ran the run: the compiler of each board's
    architecture, each QEMU the boards use, Renode, the Python packages."""
    from harness.backend.build import toolchain
    from harness.targets.boards import load_board
    versions = {"python": platform.python_version(), "host": platform.platform()}
    loaded = []
    for name in boards:
        try:
            loaded.append(load_board(name))
        except Exception:                    # a board file gone since the run: name what is known
            continue
    for gcc in dict.fromkeys([toolchain(b).gcc for b in loaded] or ["arm-none-eabi-gcc"]):
        versions[gcc] = _first_line([gcc, "--version"])
    if "qemu" in runners or "qemu-pty" in runners:
        qemus = [str(t.option("qemu", "qemu-system-arm")) for b in loaded for t in b.runners if t.kind == "qemu"]
        for qemu in dict.fromkeys(qemus or ["qemu-system-arm"]):
            versions[qemu] = _first_line([qemu, "--version"])
    if "renode" in runners:
        versions["renode"] = _first_line(["renode", "--version"])
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_report(run_dir: Path, rows: pd.DataFrame, summary: pd.DataFrame,
                 detections: Optional[pd.DataFrame] = None) -> Path:
    run_dir = Path(run_dir)
    runners = set(rows["runner"].dropna().astype(str)) if "runner" in rows else set()
    count_col = next((c for c in summary.columns if c.endswith("_median")), None)
    shown = [c for c in ("board", "model", "variant", "runner", "ok", "mismatch", "crash", "timeout", "error",
                         "does_not_fit", "not_applicable", "count_source", count_col, "arena_bytes_planned",
                         "arena_bytes_peak", "stack_bytes_peak", "ram_bytes_total", "flash_bytes",
                         "top1_accuracy", "fps_estimated_from_instructions", "fps_measured_from_cycles",
                         "all_outputs_match")
             if c and c in summary.columns and (not c.startswith("fps") or summary[c].notna().any())]
    statuses = ", ".join(f"{s} {n}" for s, n in rows["status"].value_counts().items())
    references = ", ".join(sorted(set(rows["reference"].dropna().astype(str)))) if "reference" in rows else "?"
    inputs = ", ".join(sorted(set(rows["inputs"].dropna().astype(str)))) if "inputs" in rows else "?"
    lines = [f"# Bench run {run_dir.name}", "",
             f"- rows: {len(rows)} ({statuses})",
             f"- boards: {', '.join(dict.fromkeys(rows['board']))}; runners: {', '.join(sorted(runners))}",
             f"- counts: {', '.join(sorted(set(summary['count_source'].dropna().astype(str)) - {''}))} "
             "(qemu-icount and Renode count instructions; only silicon's DWT gives cycles)",
             f"- outputs checked against: {references}",
             f"- inputs: {inputs}",
             f"- commit: {commit()}", "",
             "## Summary", "", markdown_table(summary[shown]), "",
             "Bytes are measured on the device: the painted arena and stack watermarks; RAM total adds the "
             "static data. `arena_bytes_planned` is the planner's prediction."
             + (" FPS from instructions is an estimate at the board's clock and one instruction per cycle; "
                "only FPS from cycles (silicon) is measured." if "fps_estimated_from_instructions" in shown
                or "fps_measured_from_cycles" in shown else ""), ""]
    if detections is not None:
        lines += ["## Detection", "", markdown_table(detections), "",
                  "mAP@0.5 of the detections decoded (with NMS, on the host) from the device's int8 outputs, "
                  "beside the same from the reference's outputs, against the shipped scenes' ground truth.", ""]
    lines += ["## Plots", ""]
    for png in sorted(run_dir.glob("*.png")):
        lines += [f"![{png.stem}]({png.name})", ""]
    lines += ["## Tools", "", "| tool | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in tool_versions(runners, tuple(dict.fromkeys(rows["board"].astype(str)))).items()]
    path = run_dir / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
