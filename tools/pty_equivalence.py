"""Does the serial path measure what the direct QEMU path measures?

For every model and input, runs the same QEMU image twice: once with the
direct runner (QEMU's stdio, input through a semihosted host file) and once
with the serial runner on QEMU's pseudo-terminal (pyserial, input uploaded in
acknowledged chunks, exactly as to a Nucleo). Compares the outputs (and both
with LiteRT's reference), the arena and stack high-water marks and the
instruction counts, whole and per layer.

The app starts its time counter afresh at the timed region (hal_time_restart),
so how long the firmware waited for its input no longer shifts the phase of
the counter (40 instructions a tick on stm32h7, 125/21 on stm32f4): counts
and stack peaks are expected identical. The summary still says how many are
within one tick and one exception frame (32 or 104 bytes, plus 4 of
alignment), the bounds before that, for a streamed input read over the UART
inside the timed region.

    python -m tools.pty_equivalence --board stm32h7 [--model M] [--max-inputs N]
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from harness.errors import FusebenchError

COLUMNS = ["board", "model", "input", "direct_status", "serial_status", "outputs_equal",
           "direct_matches_reference", "serial_matches_reference", "direct_instructions",
           "serial_instructions", "instructions_diff", "ticks_diff", "max_layer_diff", "arena_equal",
           "direct_stack", "serial_stack", "stack_diff"]
# The largest exception frame an interrupt pushes (extended, with FP state, plus alignment).
EXCEPTION_FRAME_BYTES = 108


def compare(board_name: str, model_paths: list[Path], max_inputs: Optional[int],
            out_csv: Path, timeout_s: float = 600.0) -> dict:
    from harness.report.bench import load_inputs, plan_variant, reference_outputs_isolated
    from harness.backend.build import build_firmware
    from harness.paths import BUILD_DIR
    from harness.backend.codegen import generate_sources
    from harness.targets.runners.qemu import QemuRunner
    from harness.targets.runners.qemu_pty import QemuPtyBoard
    from harness.targets.runners.serial import SerialRunner
    from harness.frontend.tflite_import import load_model

    from harness.backend.build import DoesNotFit

    rows = []
    skipped: list[str] = []
    started = time.monotonic()
    for path in model_paths:
        # The QEMU image, in a folder of its own (a sweep may be building build/<board>/...).
        board, graph, plan = plan_variant(board_name, str(path), "unfused")
        out_dir = BUILD_DIR / "pty-equivalence" / board.name / graph.name
        generate_sources(graph, plan, board, out_dir / "gen")
        try:
            build = build_firmware(board, out_dir / "gen", out_dir)
        except DoesNotFit as exc:          # neither path can run it: say so, go on
            print(f"{board.name}/{graph.name}: {exc}", flush=True)
            skipped.append(f"{graph.name}: {exc}")
            continue
        samples = load_inputs(load_model(path), None, path)[:max_inputs]
        xs = [x for _, x, _ in samples]
        refs = reference_outputs_isolated(str(path), xs)
        t0 = time.monotonic()
        direct = list(QemuRunner(board).run(build.elf, xs, timeout_s=timeout_s))
        t1 = time.monotonic()
        with QemuPtyBoard(board, build.elf) as device:
            serial = list(SerialRunner(board, device.port, firmware_runner="qemu")
                          .run(build.elf, xs, timeout_s=timeout_s))
        t2 = time.monotonic()
        print(f"{board.name}/{graph.name}: {len(xs)} inputs, direct {t1 - t0:.0f} s, "
              f"serial over the pty {t2 - t1:.0f} s", flush=True)
        for (name, _, _), ref, d, s in zip(samples, refs, direct, serial):
            ok = d.status == "ok" and s.status == "ok"
            ref = np.asarray(ref, np.int8).reshape(-1)
            layer_diffs = [abs(a - b) for a, b in zip(d.per_layer_instructions,
                                                      s.per_layer_instructions)] if ok else []
            rows.append(dict(
                board=board.name, model=graph.name, input=name, direct_status=d.status,
                serial_status=s.status,
                outputs_equal=ok and np.array_equal(d.output, s.output),
                direct_matches_reference=d.status == "ok" and np.array_equal(d.output.reshape(-1), ref),
                serial_matches_reference=s.status == "ok" and np.array_equal(s.output.reshape(-1), ref),
                direct_instructions=d.instructions, serial_instructions=s.instructions,
                instructions_diff=(s.instructions - d.instructions) if ok else "",
                ticks_diff=(s.ticks - d.ticks) if ok else "",
                max_layer_diff=max(layer_diffs) if layer_diffs else "",
                arena_equal=ok and d.arena_bytes_peak == s.arena_bytes_peak,
                direct_stack=d.stack_bytes_peak, serial_stack=s.stack_bytes_peak,
                stack_diff=(s.stack_bytes_peak - d.stack_bytes_peak) if ok else ""))
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    from harness.targets.boards import load_board
    tick = load_board(board_name).runner("qemu").instructions_per_tick
    diffs = [abs(r["instructions_diff"]) for r in rows if r["instructions_diff"] != ""]
    tick_diffs = [abs(r["ticks_diff"]) for r in rows if r["ticks_diff"] != ""]
    layer = [r["max_layer_diff"] for r in rows if r["max_layer_diff"] != ""]
    return dict(
        rows=len(rows),
        both_ok=sum(r["direct_status"] == "ok" and r["serial_status"] == "ok" for r in rows),
        outputs_equal=sum(bool(r["outputs_equal"]) for r in rows),
        matches_reference=sum(bool(r["direct_matches_reference"] and r["serial_matches_reference"])
                              for r in rows),
        arena_equal=sum(bool(r["arena_equal"]) for r in rows),
        stack_equal=sum(r["stack_diff"] == 0 for r in rows),
        stack_within_one_exception_frame=sum(r["stack_diff"] != "" and
                                             abs(r["stack_diff"]) <= EXCEPTION_FRAME_BYTES for r in rows),
        stack_diffs_seen=sorted({r["stack_diff"] for r in rows if r["stack_diff"] not in ("", 0)}),
        instructions_identical=sum(d == 0 for d in diffs),
        instructions_within_one_tick=sum(d <= 1 for d in tick_diffs),
        max_instructions_diff=max(diffs) if diffs else None,
        max_layer_diff=max(layer) if layer else None,
        tick_instructions=str(tick),
        does_not_fit=skipped,
        seconds=round(time.monotonic() - started),
        csv=str(out_csv))


def main(argv: Optional[list[str]] = None) -> int:
    from harness.paths import RESULTS_DIR
    from harness.frontend.catalog import resolve_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="stm32h7")
    parser.add_argument("--model", default=None, help="model(s), comma-separated (default: all shipped)")
    parser.add_argument("--max-inputs", type=int, default=None)
    parser.add_argument("--csv", default=None, help="where to write the per-input table")
    args = parser.parse_args(argv)
    try:
        out = Path(args.csv) if args.csv else RESULTS_DIR / f"pty-equivalence-{args.board}.csv"
        summary = compare(args.board, resolve_models(args.model), args.max_inputs, out)
    except FusebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in summary.items():
        print(f"{key}: {value}")
    good = (summary["rows"] > 0 and summary["outputs_equal"] == summary["rows"]
            and summary["arena_equal"] == summary["rows"]
            and summary["stack_within_one_exception_frame"] == summary["rows"]
            and summary["instructions_within_one_tick"] == summary["rows"])
    print("EQUIVALENT" if good else "DIFFERENT")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
