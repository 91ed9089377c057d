"""The bodies of the command-line tasks (tasks.py stays a thin wrapper)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Union

from harness.paths import MODELS_DIR, RESULTS_DIR

from harness.frontend.catalog import resolve_models
from harness.schedules import make_plan, schedule_names
from harness.errors import FusebenchError

PathOpt = Union[str, bool, None]


def _out_path(option: PathOpt, default: Path) -> Optional[Path]:
    """`--csv` alone means the default path; `--csv FILE` that file."""
    if option in (None, False, ""):
        return None
    path = default if option is True else Path(str(option))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plan_command(model: Optional[str], variant: str = "unfused", csv: PathOpt = None,
                 plot: PathOpt = None, json: PathOpt = None, tflm: bool = True,
                 options: Optional[dict] = None, board: Optional[str] = "stm32h7") -> None:
    from harness.targets.boards import load_board
    from harness.report.tables import format_plan, plan_table
    from harness.frontend.tflite_import import load_model
    from harness.frontend.tflm import TflmUnavailable, tflm_arena_bytes

    paths = resolve_models(model)
    # TFLM's figure comes from a subprocess (0.4 s when not cached): it runs beside the planning
    pool = ThreadPoolExecutor(max_workers=1)
    tflm_jobs = [pool.submit(tflm_arena_bytes, path) for path in paths] if tflm else []
    try:
        for n, path in enumerate(paths):
            graph = load_model(path)
            p = make_plan(graph, variant, board=load_board(board) if board else None, **(options or {}))
            baseline = make_plan(graph, "unfused") if variant != "unfused" else None
            tflm_bytes, note = None, "skipped (--no-tflm)"
            if tflm:
                try:
                    tflm_bytes = tflm_jobs[n].result()
                except TflmUnavailable as exc:
                    note = str(exc)
            print(format_plan(graph, p, tflm_bytes, note, baseline))
            stem = RESULTS_DIR / "plans" / f"{graph.name}-{variant}"
            if (out := _out_path(csv, stem.with_suffix(".csv"))):
                plan_table(graph, p, tflm_bytes).to_csv(out, index=False)
                print(f"wrote {out}")
            if (out := _out_path(plot, stem.with_suffix(".png"))):
                from harness.report.plots import plot_memory_profile    # matplotlib: 1 s to import
                plot_memory_profile([baseline, p] if baseline else [p], out)
                print(f"wrote {out}")
            if (out := _out_path(json, stem.with_suffix(".json"))):
                p.save(out)
                print(f"wrote {out}")
            print()
    finally:
        pool.shutdown(cancel_futures=True)


def models_command(resolution: Optional[int] = None, out: Optional[str] = None) -> None:
    from tools.modelgen import make_models
    make_models(Path(out) if out else MODELS_DIR,
                resolutions=[resolution] if resolution else None)


def bench_command(board: str = "stm32h7", model: Optional[str] = None, variant: Optional[str] = None,
                  inputs: Optional[str] = None, runs: int = 1, jobs: Optional[int] = None,
                  max_inputs: Optional[int] = None, timeout: float = 600.0,
                  options: Optional[dict] = None, runner: Optional[str] = None,
                  port: Optional[str] = None, renode: Optional[str] = None,
                  flash_tool: Optional[str] = None, probe: Optional[str] = None,
                  no_flash: bool = False, cluster: Optional[str] = None,
                  place: Optional[str] = None) -> Path:
    """The main job. Returns the run folder; raises FusebenchError when any row
    is a mismatch, crash or timeout (after everything is written). `cluster`:
    a Dask scheduler's address (default $DASK_SCHEDULER_ADDRESS) whose workers run the jobs."""
    import pandas as pd

    from harness.report.bench import BAD_STATUSES, run_sweep
    from harness.targets.boards import load_board

    boards = [b.strip() for b in board.split(",") if b.strip()]
    variants = [v.strip() for v in (variant or ",".join(schedule_names())).split(",") if v.strip()]
    model_paths = resolve_models(model)
    if runs < 1:
        raise FusebenchError("--runs must be at least 1")
    print(f"bench: boards {', '.join(boards)}; variants {', '.join(variants)}; "
          f"models {', '.join(p.name for p in model_paths)}")
    from harness.targets.runners import choose_runner
    runner_kind = choose_runner([load_board(b) for b in boards], runner, port=port, place=place)
    runner_options = dict(port=port, renode=renode, flash_tool=flash_tool, probe=probe,
                          flash=not no_flash, place=place)
    print(f"bench: runner {runner_kind}")
    from harness.report.bench import SweepInterrupted
    from harness.report.cluster import cluster_address
    cluster = cluster_address(cluster)
    if cluster:
        print(f"bench: jobs run on the Dask cluster at {cluster}")
    try:
        run_dir = run_sweep(boards, model_paths, variants, inputs_dir=inputs, runs=runs, jobs=jobs,
                            max_inputs=max_inputs, timeout_s=timeout, options=options,
                            runner=runner_kind, runner_options=runner_options, cluster=cluster)
    except SweepInterrupted as stopped:
        if stopped.rows:              # the summary and plots of what ran
            write_summary(stopped.run_dir, verbose=False)
        raise
    rows, _ = write_summary(run_dir, verbose=True)
    print(f"results: {run_dir} (bench.csv, summary.csv, plots); results/latest points there")
    bad = rows[rows["status"].isin(BAD_STATUSES)]
    if len(bad):
        first = bad.iloc[0]
        raise FusebenchError(f"{len(bad)} of {len(rows)} rows failed ({', '.join(sorted(set(bad['status'])))}); "
                             f"first: {first['board']}/{first['model']}/{first['variant']}/{first['input']}: "
                             f"{first['status']} {first['detail'] if pd.notna(first['detail']) else ''}")
    return run_dir


def write_summary(run_dir: Path, verbose: bool = False):
    """summary.csv and the plots of a run folder, from its bench.csv and the
    plans its jobs ran (plans/); prints the summary table when `verbose`.
    Returns (rows, summary)."""
    import pandas as pd

    from harness.report.plots import plot_bench_bars, plot_memory_profile, variant_order
    from harness.report.tables import summarize_bench
    from harness.schedules.plan import Plan
    from harness.targets.boards import load_board

    rows = pd.read_csv(run_dir / "bench.csv")
    summary = summarize_bench(rows)
    # Rows in a fixed order (board, model as they ran; variants as the registry lists them).
    rank = {v: k for k, v in enumerate(variant_order(summary["variant"]))}
    summary = summary.sort_values(["board", "model", "variant"], key=lambda col: col.map(
        rank if col.name == "variant" else {v: k for k, v in enumerate(dict.fromkeys(col))}), kind="stable")
    summary.to_csv(run_dir / "summary.csv", index=False)
    boards = list(dict.fromkeys(rows["board"]))
    ram = {b: load_board(b).ram.size for b in boards}
    say = print if verbose else (lambda *a, **k: None)
    # memory profile per model: all its variants' plans, on the first board that ran it
    models = list(rows.groupby("model", sort=False))
    for n, (model, group) in enumerate(models, 1):
        first = group["board"].iloc[0]
        plans = [Plan.from_json(f.read_text()) for v in dict.fromkeys(group["variant"])
                 if (f := run_dir / "plans" / f"{first}-{model}-{v}.json").is_file()]
        if plans:
            say(f"plots: memory profile {n}/{len(models)} ({model})", flush=True)
            plot_memory_profile(plans, run_dir / f"memory-profile-{model}.png", ram_bytes=ram)
    say("plots: peak RAM, flash, instructions", flush=True)
    plot_bench_bars(summary, run_dir / "peak-ram.png", "ram_bytes_total", "measured peak RAM (KiB)",
                    scale=1024, unit="KiB", title="Measured peak RAM (arena + stack + static data)",
                    needed_column="ram_bytes_needed", available_column="ram_bytes_available")
    plot_bench_bars(summary, run_dir / "flash.png", "flash_bytes", "flash (KiB)", scale=1024, unit="KiB",
                    title="Flash (code + weights)", needed_column="flash_bytes_needed",
                    available_column="flash_bytes_available", available_label="flash")
    count_col = next((c for c in summary.columns if c.endswith("_median")), None)
    if count_col:
        plot_bench_bars(summary, run_dir / "instructions.png", count_col,
                        f"{count_col.replace('_median', '')} per inference (millions)", scale=1e6,
                        title=f"{count_col.replace('_median', '').capitalize()} per inference")
    from harness.report.detection import detection_table
    detections = detection_table(run_dir)         # None: no detector in the run
    if detections is not None:
        detections.to_csv(run_dir / "detection.csv", index=False)
    from harness.report.runreport import write_report
    write_report(run_dir, rows, summary, detections)
    if verbose:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            shown = [c for c in ("board", "model", "variant", "ok", "mismatch", "crash", "timeout", "error",
                                 "does_not_fit", "not_applicable", count_col, "arena_bytes_planned",
                                 "arena_bytes_peak", "stack_bytes_peak", "ram_bytes_total", "flash_bytes",
                                 "top1_accuracy", "fps_estimated_from_instructions", "fps_measured_from_cycles")
                     if c and c in summary.columns and (not c.startswith("fps") or summary[c].notna().any())]
            print(summary[shown].to_string(index=False))
            if detections is not None:
                print("detection (mAP@0.5 of the device's outputs beside the reference's, "
                      "on the shipped scenes' ground truth):")
                print(detections.to_string(index=False))
    return rows, summary


def build_command(board: str, model: Optional[str], variant: str = "unfused",
                  options: Optional[dict] = None) -> None:
    from harness.report.bench import build_variant
    for path in resolve_models(model):
        b, graph, p, result = build_variant(board, str(path), variant, options)
        print(f"{b.name}/{graph.name}/{variant}: {result.elf}")
        print(f"  flash {result.flash_bytes} of {b.flash.size} bytes; static RAM "
              f"{result.ram_static_bytes} bytes (arena {p.arena_bytes}) + stack {b.stack_bytes} "
              f"of {b.ram.size} bytes{'  (cached)' if getattr(result, 'cached', False) else ''}")


def run_command(board: str, model: Optional[str], variant: str = "unfused", inputs: Optional[str] = None,
                max_inputs: Optional[int] = None, timeout: float = 600.0, runner: Optional[str] = None,
                port: Optional[str] = None, renode: Optional[str] = None, flash_tool: Optional[str] = None,
                probe: Optional[str] = None, no_flash: bool = False, options: Optional[dict] = None,
                place: Optional[str] = None) -> None:
    """Run already-built firmware on the inputs and print one line per input.
    The runner is chosen as `invoke bench` chooses it, with the same options;
    the schedule options it was built with find its folder."""
    from harness.schedules.registry import recorded_options
    import numpy as np

    from harness.report.bench import firmware_dir, load_inputs, reference_outputs_isolated
    from harness.targets.boards import load_board
    from harness.targets.runners import choose_runner, make_runner, runner_class
    from harness.frontend.tflite_import import load_model

    b = load_board(board)
    kind = choose_runner([b], runner, port=port, place=place)
    running = make_runner(kind, b, port=port, renode=renode, flash_tool=flash_tool, probe=probe,
                          flash=not no_flash, place=place)
    for path in resolve_models(model):
        graph = load_model(path)
        elf = firmware_dir(b.name, graph, variant, kind, recorded_options(variant, options or {})) / "firmware.elf"
        if not elf.exists():
            how = (f"invoke bench --board {board} --model {path} --variant {variant} --runner {kind} "
                   f"--max-inputs 1" if runner_class(b.runner(kind).image_kind).silicon_image else
                   f"invoke build --board {board} --model {path} --variant {variant}")
            raise FusebenchError(f"{elf} is not built; run `{how}` first")
        samples = load_inputs(graph, inputs, path)[:max_inputs]
        refs = reference_outputs_isolated(str(path), [x for _, x, _ in samples])
        results = running.run(elf, [x for _, x, _ in samples], timeout_s=timeout)
        for (name, _, label), ref, res in zip(samples, refs, results):
            if res.status != "ok":
                print(f"{name}: {res.status} {res.detail or ''}")
                continue
            out = np.asarray(res.output, dtype=np.int8).reshape(-1)
            top1 = (f"top1 {int(np.argmax(out))} (reference {int(np.argmax(ref))}, label {label}) "
                    if len(graph.outputs) == 1 else f"{len(graph.outputs)} outputs, ")
            print(f"{name}: {top1}bit-exact {np.array_equal(out, ref)}; {res.count_source} {res.instructions}; "
                  f"arena peak {res.arena_bytes_peak} B; stack peak {res.stack_bytes_peak} B")
