"""`invoke bench`: build every (board, model, variant) firmware, run it on each
input, compare with the host reference, and collect the rows into the run folder.

Jobs (one per firmware) run in a process pool so a sweep takes about the time
of its longest jobs, or on a Dask cluster's workers (`cluster`:
harness.report.cluster); each row is appended to `bench.csv` as soon as it
is known, so an interrupted sweep keeps what it measured, and at the end the
rows are put in the sweep's order (board, model, variant, run, input).
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import multiprocessing as mp
import os
import queue as _queue
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from harness.paths import BUILD_DIR, MODELS_DIR, RESULTS_DIR
from harness.errors import FusebenchError

# Columns of bench.csv, in order. `instructions` is what the emulators count
# (QEMU's -icount, Renode's virtual time), `cycles` what real silicon counts
# (DWT, SysTick); `count_source` says which (harness.targets.runners.count_column).
BENCH_COLUMNS = [
    "board", "runner", "model", "variant", "input", "run", "status", "instructions", "cycles",
    "count_source", "arena_bytes_planned", "arena_bytes_peak", "stack_bytes_peak",
    "static_data_bytes", "ram_bytes_total", "ram_bytes_needed", "ram_bytes_available", "flash_bytes",
    "flash_bytes_available", "flash_bytes_needed", "external_flash_bytes", "top1", "reference_top1", "outputs_match", "label", "macs",
    "input_streamed", "input_io_ticks", "clock_hz", "reference", "inputs", "detail",
]
# A row's status: ok, mismatch (outputs differ from the reference), crash,
# timeout, error (the harness failed on this job), does-not-fit (the board is
# too small), not-applicable (the schedule does not apply to this network).
BAD_STATUSES = ("mismatch", "crash", "timeout", "error")


@dataclass
class Job:
    board: str
    model_path: str
    variant: str
    inputs: list[tuple[str, np.ndarray, Optional[int]]]   # (name, data in the input's dtype, label)
    references: list[np.ndarray]
    reference: str = ""                                     # which reference computed them
    input_source: str = ""                                  # what the inputs are (InputSet.source)
    runs: int = 1
    timeout_s: float = 300.0
    options: dict = field(default_factory=dict)
    runner: str = "qemu"                                    # a kind of harness.targets.runners.RUNNER_KINDS
    runner_options: dict = field(default_factory=dict)      # make_runner's options (port, renode, ...)


def new_run_dir(root: Optional[Path] = None) -> Path:
    """results/<timestamp> plus the `results/latest` link to it."""
    root = Path(root) if root is not None else RESULTS_DIR
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    run_dir, n = root / stamp, 1
    while True:                  # two runs started in the same second each get their own folder
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            n += 1
            run_dir = root / f"{stamp}-{n}"
    latest = root / "latest"
    tmp = root / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)      # atomic: `latest` always points at a whole folder
    return run_dir


class RowWriter:
    """Appends rows to a CSV, flushing each one (an interrupted sweep keeps them)."""

    def __init__(self, path: Path, columns: list[str] = BENCH_COLUMNS):
        self.path = path
        self.columns = columns
        new = not path.exists()
        self._file = open(path, "a", newline="")
        # "\n" rows: the csv module's default "\r\n" puts a carriage return in every line
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if new:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: dict) -> None:
        self._writer.writerow({c: row.get(c, "") for c in self.columns})
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def firmware_dir(board: str, graph, variant: str, runner: str = "qemu", options: Optional[dict] = None) -> Path:
    """build/<board>/<model>/<variant>/ holds the QEMU image; a runner that
    runs the silicon image has it in its own <runner>/ folder below. A model
    that is not a shipped one gets its file's digest after its name, schedule
    options after the variant: builds of other files or options never share
    a folder (parallel sweeps, two files of the same name)."""
    from harness.targets.runners import runner_class

    model = graph.name
    if graph.digest and Path(graph.source).parent != MODELS_DIR:
        model += f"-{graph.digest[:8]}"
    if options:
        variant += "-" + hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    folder = BUILD_DIR / board / model / variant
    runner = image_kind(board, runner)
    return folder / runner if runner_class(runner).silicon_image else folder


def image_kind(board: str, runner: str) -> str:
    """The runner kind whose image `runner` runs on `board`: its own, or the
    one its board table names in `image` (labgrid: qemu's or serial's)."""
    from harness.targets.boards import load_board

    try:
        return load_board(board).runner(runner).image_kind
    except FusebenchError:
        return runner                   # no such board or table: the caller's checks say so


def plan_variant(board_name: str, model_path: str, variant: str, options: Optional[dict] = None):
    """Import and plan one (board, model, variant). Returns (board, graph, plan)."""
    from harness.targets.boards import load_board
    from harness.schedules import make_plan
    from harness.frontend.tflite_import import load_model

    board = load_board(board_name)
    graph = load_model(model_path)
    return board, graph, make_plan(graph, variant, board=board, **(options or {}))


def build_planned(board, graph, plan, runner: str = "qemu"):
    """Generate the C for a plan and build the image `runner` runs into
    firmware_dir (build/<board>/<model>/<variant>/, the silicon image in its <runner>/ folder)."""
    from harness.backend.build import build_firmware, build_lock
    from harness.backend.codegen import generate_sources

    out_dir = firmware_dir(board.name, graph, plan.variant, runner, plan.options)
    with build_lock(out_dir):          # another run of this clone may build the same folder
        generate_sources(graph, plan, board, out_dir / "gen")
        plan.save(out_dir / "plan.json")
        return build_firmware(board, out_dir / "gen", out_dir, runner=runner)


def build_variant(board_name: str, model_path: str, variant: str, options: Optional[dict] = None):
    """Import, plan, generate and build one firmware. Returns (board, graph, plan, build result)."""
    board, graph, plan = plan_variant(board_name, model_path, variant, options)
    return board, graph, plan, build_planned(board, graph, plan)


def _base_row(job: Job, board, graph, plan) -> dict:
    return dict(board=job.board, model=graph.name if graph else Path(job.model_path).stem,
                reference=job.reference, inputs=job.input_source,
                variant=job.variant, arena_bytes_planned=plan.arena_bytes if plan else "",
                macs=plan.macs if plan else "",
                input_streamed=bool(plan.input_streamed) if plan else "",
                ram_bytes_available=board.ram.size if board else "",
                flash_bytes_available=board.flash.size if board else "",
                clock_hz=board.clock_hz if board else "")


def run_job(job: Job, events) -> None:
    """Worker: build then run one firmware on all inputs; rows go to `events`."""
    from harness.backend.build import DoesNotFit
    from harness.targets.runners import make_runner

    from harness.schedules import NotApplicable

    label = f"{job.board}/{Path(job.model_path).stem}/{job.variant}"
    events.put(("status", f"building {label}"))
    try:
        board, graph, plan = plan_variant(job.board, job.model_path, job.variant, job.options)
    except NotApplicable as exc:        # the schedule does not apply to this network: say why, go on
        _rows_without_run(job, events, "not-applicable", str(exc))
        return
    except FusebenchError as exc:       # e.g. a layer no kernel of this schedule takes
        _rows_without_run(job, events, "error", str(exc))
        return
    except Exception as exc:            # a harness bug: say so in the rows, keep the sweep going
        _rows_without_run(job, events, "error", f"planning failed: {type(exc).__name__}: {exc}")
        return
    events.put(("plan", (job.board, graph.name, job.variant, plan.to_json())))
    try:
        build = build_planned(board, graph, plan, job.runner)
    except DoesNotFit as exc:
        base = _base_row(job, board, graph, plan)
        for name, _, lbl in job.inputs:
            events.put(("row", dict(base, runner=job.runner, input=name, run=0, status="does-not-fit",
                                    label=lbl, detail=str(exc),
                                    ram_bytes_needed=(board.ram.size + exc.overflows["RAM"]
                                                      if "RAM" in exc.overflows else ""),
                                    flash_bytes_needed=(board.flash.size + exc.overflows["FLASH"]
                                                        if "FLASH" in exc.overflows else ""))))
        return
    base = _base_row(job, board, graph, plan)
    base.update(runner=job.runner, flash_bytes=build.flash_bytes,
                external_flash_bytes=build.external_flash_bytes,
                static_data_bytes=build.ram_static_bytes - plan.arena_bytes)
    runner = make_runner(job.runner, board, **job.runner_options)
    events.put(("status", f"running {label} on {job.runner} "
                          f"({board.runner(job.runner).machine or getattr(runner, 'port', '')})"))
    flat_inputs = [(name, data, lbl, ref, run) for run in range(job.runs)
                   for (name, data, lbl), ref in zip(job.inputs, job.references)]
    results = runner.run(build.elf, [x[1] for x in flat_inputs], timeout_s=job.timeout_s)
    for (name, _, lbl, ref, run), res in zip(flat_inputs, results):
        row = dict(base, input=name, run=run, label=lbl, status=res.status,
                   count_source=res.count_source,
                   detail=_detail_text(res.detail) if res.status != "ok" else "",
                   reference_top1=_top1(graph, ref))
        if res.status == "ok" and run == 0 and name == job.inputs[0][0] and res.per_layer_instructions:
            events.put(("layers", _layer_rows(base, name, plan, graph, res)))
        if res.status == "ok":
            out = np.frombuffer(np.asarray(res.output).tobytes(), dtype=graph.output_dtype)
            match = out.shape == ref.shape and np.array_equal(out, ref)
            cycles = res.count_column == "cycles"          # real silicon counts cycles
            row.update(instructions="" if cycles else res.instructions,
                       cycles=res.instructions if cycles else "",
                       arena_bytes_peak=res.arena_bytes_peak, stack_bytes_peak=res.stack_bytes_peak,
                       ram_bytes_total=res.arena_bytes_peak + res.stack_bytes_peak
                       + base["static_data_bytes"],
                       top1=_top1(graph, out), outputs_match=bool(match),
                       input_io_ticks=getattr(res, "io_ticks", 0),
                       status="ok" if match else "mismatch")
            if not match:
                row["detail"] = f"{int(np.sum(out != ref))} of {ref.size} outputs differ"
            if run == 0 and len(graph.outputs) > 1:     # a detector's rows are scored from what it output
                events.put(("outputs", (job.board, base["model"], job.variant, name, out.copy())))
        events.put(("row", row))


def _top1(graph, outputs: np.ndarray):
    """The class a classifier picks; "" for a model with several outputs (a
    detector: its rows are scored by harness.report.detection instead)."""
    return int(np.argmax(outputs)) if len(graph.outputs) == 1 else ""


def _rows_without_run(job: Job, events, status: str, detail: str) -> None:
    for row in rows_without_run(job, status, detail):
        events.put(("row", row))


def rows_without_run(job: Job, status: str, detail: str) -> list[dict]:
    """One row per input for a job that never ran, or whose run was lost
    (nothing was measured)."""
    from harness.targets.boards import load_board
    board = load_board(job.board)
    base = dict(board=job.board, model=Path(job.model_path).stem, variant=job.variant, runner=job.runner,
                reference=job.reference, inputs=job.input_source, ram_bytes_available=board.ram.size,
                flash_bytes_available=board.flash.size, clock_hz=board.clock_hz)
    return [dict(base, input=name, run=run, status=status, label=lbl, detail=detail)
            for run in range(job.runs if status == "crash" else 1) for name, _, lbl in job.inputs]


def _detail_text(detail) -> str:
    if not detail:
        return ""
    if isinstance(detail, dict):
        return "; ".join(f"{k}={v}" for k, v in detail.items())
    return str(detail)


LAYER_COLUMNS = ["board", "model", "variant", "input", "step", "op", "kind", "macs",
                 "instructions", "cycles", "count_source", "macs_per_instruction", "live_bytes"]


def _layer_rows(base: dict, input_name: str, plan, graph, res) -> list[dict]:
    """Per-layer instruction profile of one inference, beside the memory profile."""
    rows = []
    for step, count in zip(plan.steps, res.per_layer_instructions):
        rows.append(dict(board=base["board"], model=base["model"], variant=base["variant"],
                         input=input_name, step=step.index, op=step.op, kind=step.kind, macs=step.macs,
                         # silicon counts cycles (DWT, SysTick), the emulators instructions
                         **{res.count_column: count},
                         count_source=res.count_source,
                         macs_per_instruction=round(step.macs / count, 4) if count else "",
                         live_bytes=step.live_bytes))
    return rows


def reference_outputs_isolated(model_path: str, xs: list[np.ndarray], with_source: bool = False):
    """Host reference outputs, or with `with_source` (which reference, outputs):
    harness.frontend.reference.reference_outputs_with_source, which runs the
    interpreters in a child process (LiteRT aborts the whole process on some
    models), falling back to TFLite Micro where LiteRT refuses or aborts."""
    from harness.frontend.reference import reference_outputs_with_source
    source, outputs = reference_outputs_with_source(model_path, xs)
    return (source, outputs) if with_source else outputs


def model_input_set(graph, inputs_dir: Optional[str], model_path: Optional[str | Path] = None):
    """The InputSet for a model (harness.frontend.inputs.model_inputs): those
    of --inputs, else the inputs shipped with the model (a detector's scenes,
    named by `inputs_file` in its models.json record), else the defaults."""
    from harness.frontend.catalog import model_record
    from harness.frontend.inputs import InputSet, InputSpec, model_inputs, npz_image_inputs
    spec = InputSpec.of(graph.input)
    record = model_record(model_path) if model_path and not inputs_dir else None
    if record and record.get("inputs_file"):
        path = Path(model_path).parent / record["inputs_file"]
        return InputSet(npz_image_inputs(spec, path, Path(model_path).stem), path.name, False)
    classes = graph.output_values if len(graph.outputs) == 1 else None   # a detector has no one class
    return model_inputs(spec, inputs_dir, classes=classes)


def load_inputs(graph, inputs_dir: Optional[str],
                model_path: Optional[str | Path] = None) -> list[tuple[str, np.ndarray, Optional[int]]]:
    """(name, data, label) per input; the label only where labels belong to the model."""
    inputs = model_input_set(graph, inputs_dir, model_path)
    return [(s.name, np.ascontiguousarray(s.data), s.label if inputs.labels_apply else None)
            for s in inputs.samples]


class SweepInterrupted(FusebenchError):
    """Ctrl-C during a sweep: the workers and their emulators are gone, the
    rows written so far are kept in `run_dir`."""

    interrupted = True

    def __init__(self, run_dir: Path, rows: int, total: int):
        self.run_dir, self.rows, self.total = run_dir, rows, total
        super().__init__(f"interrupted after {rows} of {total} rows; what ran is in {run_dir}")


def _ignore_sigint() -> None:
    """In the worker and manager processes: Ctrl-C is the main process's to
    handle (it stops them itself), so they print no traceback of their own."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(pool: ProcessPoolExecutor, futures) -> None:
    """End a pool now: nothing queued starts, running workers are killed (each
    emulator dies with its worker: PR_SET_PDEATHSIG, its own process group).
    The pool's own shutdown cancels what is queued: futures cancelled from
    outside make its manager thread fail when it then marks the pool broken
    (Python 3.11 sets an exception on a cancelled future), and the
    interpreter could then hang at exit on the pool's queues."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        try:
            p.kill()
        except (OSError, AttributeError):
            pass
    for p in processes:
        p.join(timeout=2)


def run_sweep(boards: list[str], model_paths: list[Path], variants: list[str],
              inputs_dir: Optional[str] = None, runs: int = 1, jobs: Optional[int] = None,
              max_inputs: Optional[int] = None, timeout_s: float = 600.0,
              options: Optional[dict] = None, run_dir: Optional[Path] = None,
              runner: str = "qemu", runner_options: Optional[dict] = None,
              cluster: Optional[str] = None) -> Path:
    """Run the whole sweep; returns the run folder (bench.csv, summary.csv, plots).
    `runner` is a kind of harness.targets.runners.RUNNER_KINDS; `runner_options` go to make_runner.
    `cluster`: a Dask scheduler's address (tcp://host:8786): the jobs run on
    its workers instead of in a local pool (harness.report.cluster)."""
    from harness.targets.boards import load_board
    from harness.schedules import get_schedule
    from harness.frontend.tflite_import import load_model

    from harness.targets.runners import runner_class

    if max_inputs is not None and max_inputs < 1:
        raise FusebenchError(f"max_inputs must be at least 1 (got {max_inputs})")
    if runs < 1:
        raise FusebenchError(f"runs must be at least 1 (got {runs})")
    for b in boards:
        load_board(b)                   # unknown boards fail before any work starts
    for v in variants:
        get_schedule(v)                 # unknown variants fail before any work starts
    runner_cls = runner_class(runner)
    options_given = {k: v for k, v in (runner_options or {}).items() if v is not None}
    client = None
    if cluster:                         # the workers run the jobs: they must have what the runner needs
        from harness.report import cluster as dask_cluster
        client = dask_cluster.connect(cluster, runner_cls)
    try:
        if client is not None:
            dask_cluster.check_workers(client, cluster, boards, runner, options_given)
        else:                           # a missing table, tool, port or flash tool: say so now
            check_runner_setup(boards, runner, options_given)
        job_list = []
        for path in model_paths:
            graph = load_model(path)    # unsupported models fail here, with their reason
            input_set = model_input_set(graph, inputs_dir, path)
            inputs = [(s.name, np.ascontiguousarray(s.data), s.label if input_set.labels_apply else None)
                      for s in input_set.samples][:max_inputs]
            reference, refs = reference_outputs_isolated(str(path), [x for _, x, _ in inputs],
                                                         with_source=True)
            for b in boards:
                for v in variants:
                    job_list.append(Job(board=b, model_path=str(path), variant=v, inputs=inputs,
                                        references=refs, reference=reference,
                                        input_source=f"{input_set.source} ({len(inputs)})",
                                        runs=runs, timeout_s=timeout_s,
                                        options=options or {}, runner=runner,
                                        runner_options=runner_options or {}))
        run_dir = run_dir or new_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        _save_reference_outputs(run_dir, job_list, shipped_inputs=not inputs_dir)
        collector = RunCollector(run_dir, job_list)
        try:
            if client is not None:
                dask_cluster.run_jobs(client, cluster, job_list, collector)
            else:
                workers = max(1, min(jobs or os.cpu_count() or 1, len(job_list)))
                if not runner_cls.parallel_jobs:
                    workers = 1         # e.g. one board on one port: one firmware at a time
                _run_in_pool(job_list, workers, collector)
        finally:
            collector.close()           # also when interrupted: rows in job order, outputs saved
    finally:
        if client is not None:
            client.close()
    return run_dir


def check_runner_setup(boards: list[str], runner: str, options: dict) -> None:
    """Fail before any build when `runner` cannot run on one of `boards` (no
    table, tool, port or flash tool), here or on a cluster's worker."""
    from harness.targets.boards import load_board
    from harness.targets.runners import runner_class
    for b in boards:
        runner_class(runner).check_setup(load_board(b), **options)


def _run_in_pool(job_list: list[Job], workers: int, collector: "RunCollector") -> None:
    """The jobs in a local process pool; their events go to `collector` as they come."""
    from multiprocessing.managers import SyncManager
    context = mp.get_context("spawn")
    manager = SyncManager(ctx=context)
    manager.start(_ignore_sigint)
    events = manager.Queue()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)
    futures = []
    try:
        try:
            futures = [pool.submit(run_job, j, events) for j in job_list]
            while True:
                try:
                    kind, payload = events.get(timeout=0.5)
                except _queue.Empty:
                    if all(f.done() for f in futures) and events.empty():
                        break
                    continue
                collector.handle(kind, payload)
            for f in futures:
                f.result()              # re-raise a worker's FusebenchError
        except KeyboardInterrupt:
            _stop_pool(pool, futures)
            raise collector.interrupted() from None
        pool.shutdown(wait=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)      # done already, unless a job raised
        manager.shutdown()


class RunCollector:
    """What the main process does with the jobs' events, wherever they ran:
    rows to bench.csv (on disk as each comes), layer profiles to layers.csv,
    plans to plans/, a detector's outputs to outputs/, progress to the bar.
    `close` puts both CSVs in job order (the order of the sweep: board,
    model, variant, then run and input), whatever order the jobs finished in."""

    def __init__(self, run_dir: Path, job_list: list[Job]):
        from tqdm import tqdm

        self.run_dir = run_dir
        self.job_list = job_list
        self.writer = RowWriter(run_dir / "bench.csv")
        self.layer_writer = RowWriter(run_dir / "layers.csv", LAYER_COLUMNS)
        self.total_rows = sum(len(j.inputs) * j.runs for j in job_list)
        self.written = 0
        self.device_outputs: dict[tuple, dict[str, np.ndarray]] = {}
        # A live bar on a terminal; plain progress lines otherwise (disable=None).
        self.bar = tqdm(total=self.total_rows, unit="row", dynamic_ncols=True, mininterval=0.5, disable=None)

    def handle(self, kind: str, payload) -> None:
        if kind == "layers":
            for r in payload:
                self.layer_writer.write(r)
        elif kind == "plan":
            board_name, model_name, variant_name, text = payload
            plans_dir = self.run_dir / "plans"
            plans_dir.mkdir(exist_ok=True)
            (plans_dir / f"{board_name}-{model_name}-{variant_name}.json").write_text(text)
        elif kind == "outputs":
            board_name, model_name, variant_name, input_name, out = payload
            self.device_outputs.setdefault((board_name, model_name, variant_name), {})[input_name] = out
        elif kind == "row":
            self.writer.write(payload)
            self.written += 1
            self.bar.update(1)
            self.bar.set_postfix_str(f"{payload['board']}/{payload['model']}/"
                                     f"{payload['variant']}: {payload['status']}")
        else:
            self.say(payload)

    def say(self, text: str) -> None:
        """A progress line: on the bar, or printed where there is no terminal (CI, a log file)."""
        self.bar.set_description_str(text)
        if self.bar.disable:
            print(f"bench: {text}", flush=True)

    def interrupted(self) -> "SweepInterrupted":
        return SweepInterrupted(self.run_dir, self.written, self.total_rows)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
        self.layer_writer.close()
        order = {(j.board, Path(j.model_path).stem, j.variant): (i, {name: k for k, (name, _, _)
                                                                     in enumerate(j.inputs)})
                 for i, j in enumerate(self.job_list)}
        _sort_csv(self.run_dir / "bench.csv", BENCH_COLUMNS,
                  lambda r: _sweep_position(order, r, r.get("run")))
        _sort_csv(self.run_dir / "layers.csv", LAYER_COLUMNS,
                  lambda r: _sweep_position(order, r, 0) + (_whole(r.get("step")),))
        for (board_name, model_name, variant_name), outs in self.device_outputs.items():
            _save_outputs(self.run_dir / "outputs" / f"{board_name}-{model_name}-{variant_name}.npz",
                          dict(outs, __board__=np.array(board_name), __model__=np.array(model_name),
                               __variant__=np.array(variant_name)))


def _sweep_position(order: dict, row: dict, run) -> tuple[int, int, int]:
    """(job, run, input) position of a CSV row in the sweep, the order run_job
    writes a job's rows in; rows of another sweep (a folder written to
    before) keep their place at the front."""
    job, inputs = order.get((row.get("board"), row.get("model"), row.get("variant")), (-1, {}))
    return job, _whole(run), inputs.get(row.get("input"), -1)


def _whole(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _sort_csv(path: Path, columns: list[str], key) -> None:
    """Rewrite a CSV with its rows sorted by `key` (stable): written whole to a
    temporary file, then renamed over it, so the folder never holds half of one."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or columns
        rows = list(reader)
    ordered = sorted(rows, key=key)
    if ordered == rows:
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(ordered)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """Outputs by input name; written whole to a temporary file, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **outputs)
    os.replace(tmp, path)


def _save_reference_outputs(run_dir: Path, jobs: list[Job], shipped_inputs: bool) -> None:
    """For models with several outputs (detectors): the reference's outputs
    (outputs/<model>-reference.npz) and the models.json record with the head and
    the ground truth of its shipped inputs (outputs/<model>-record.json and
    -truth.npz; not for other --inputs), so that the run folder alone scores the
    device's detections against both (harness.report.detection)."""
    from harness.frontend.catalog import model_record
    from harness.frontend.tflite_import import load_model
    seen = set()
    for job in jobs:
        model = Path(job.model_path).stem
        if model in seen or len(load_model(job.model_path).outputs) < 2:
            continue
        seen.add(model)
        _save_outputs(run_dir / "outputs" / f"{model}-reference.npz",
                      {name: np.asarray(ref) for (name, _, _), ref in zip(job.inputs, job.references)})
        record = model_record(job.model_path)
        if shipped_inputs and record and record.get("head") and record.get("inputs_file"):
            with np.load(Path(job.model_path).parent / record["inputs_file"], allow_pickle=False) as npz:
                truth = {k: npz[k] for k in ("boxes", "classes", "counts") if k in npz.files}
            _save_outputs(run_dir / "outputs" / f"{model}-truth.npz", truth)    # the boxes, not the images
            (run_dir / "outputs" / f"{model}-record.json").write_text(
                json.dumps(dict(record, input_names=[name for name, _, _ in job.inputs]), indent=2) + "\n")
