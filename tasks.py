"""Invoke tasks: the command line of fusebench (`invoke --list`).

Each task is a thin wrapper: it parses options, calls one function of the
`harness` package, and turns a FusebenchError into a one-line message and a
non-zero exit.
"""
from __future__ import annotations

import functools
import inspect

import invoke
from invoke import Exit


from harness.schedules import cli_options, parse_cli_options, schedule_names

# Every schedule's options, from the schedule registry (harness.schedules):
# the tasks that plan take them all, each schedule reads its own.
SCHEDULE_OPTIONS = {o.name: o for o in cli_options()}
SCHEDULE_HELP = {name: o.help for name, o in SCHEDULE_OPTIONS.items()}


class _Task(invoke.Task):
    """invoke picks each option's short flag from the characters of its name,
    dashes included (`--patch-end` got `-`, shown as `--=STRING`): drop such a
    flag, so that option keeps only its long one (the others are unchanged).
    Schedule options have only their long flags."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in SCHEDULE_OPTIONS:
            opts["names"] = [n for n in opts["names"] if len(n) > 1]
        if "-" in opts["names"]:
            opts["names"].remove("-")
            taken_names.add("-")         # as if given: later options pick as they always did
        return opts


task = functools.partial(invoke.task, klass=_Task)


def _with_schedule_options(fn):
    """The task also takes every schedule option (after its own parameters);
    the body receives them as keyword arguments in `**schedule`."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default if o.switch else None)
             for o in SCHEDULE_OPTIONS.values()]
    fn.__signature__ = sig.replace(parameters=own + extra)
    return fn


def _count(value, option: str, minimum: int = 1, optional: bool = True):
    """A whole-number option (None when absent and `optional`): a clear error,
    before any work, for text, zero or negative counts."""
    from harness.errors import FusebenchError
    from harness.schedules.registry import whole_number
    if value is None or (optional and value == ""):
        return None
    number = whole_number(value, option)
    if number < minimum:
        raise FusebenchError(f"--{option} {number}: must be at least {minimum}")
    return number


def _seconds(value, option: str = "timeout") -> float:
    from harness.errors import FusebenchError
    try:
        number = float(str(value).strip())
    except ValueError:
        raise FusebenchError(f"--{option} '{value}': expected seconds") from None
    if not number > 0:
        raise FusebenchError(f"--{option} {value}: must be more than 0 seconds")
    return number


def _cli(fn):
    """Run a task body; user errors become one line on stderr and exit 1."""
    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from harness.errors import FusebenchError
        try:
            return fn(c, *args, **kwargs)
        except FusebenchError as exc:
            if getattr(exc, "interrupted", False):      # Ctrl-C in a sweep: what ran is written
                raise Exit(f"{exc}", code=130) from None
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted; results written so far are kept", code=130) from None
    return wrapper


VARIANT_HELP = ", ".join(schedule_names())


@task(optional=["csv", "plot", "json"],
      help={"model": "a .tflite file or a shipped model name (default: all shipped models)",
            "variant": f"schedule to plan: {VARIANT_HELP}",
            "board": "msf without limits: the fewest MACs that fit this board (default stm32h7)",
            "csv": "write the per-layer table as CSV (optionally to this path)",
            "plot": "write the per-layer memory profile as PNG (optionally to this path)",
            "json": "write the plan as JSON (optionally to this path)",
            "tflm": "also ask TFLite Micro's planner for its arena (default on)", **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def plan(c, model=None, variant="unfused", csv=None, plot=None, json=None, tflm=True, board="stm32h7",
         **schedule):
    """Print the memory plan of a model: live tensors per layer and the predicted peak arena."""
    from harness.commands import plan_command
    plan_command(model=model, variant=variant, csv=csv, plot=plot, json=json, tflm=tflm,
                 options=parse_cli_options(schedule), board=board)


@task(help={"resolution": "make every width at this input resolution, or comma-separated resolutions "
                          "(default: the shipped set)",
            "width": "MobileNetV2 width(s), comma-separated (default: 0.35,1.0)",
            "expansion": "expansion ratio(s) t of the inverted residual blocks, comma-separated, e.g. 2,4,6,8 "
                         "(default 6, Keras' own; other ratios get a _t<t> file suffix)",
            "training": "full (the shipped models' schedule) or short (one epoch per model at its own "
                        "resolution; default when any expansion other than 6 is asked for)",
            "out": "output folder, gets the models, models.json and README.md (default: models/, or "
                   "models/architectures for --arch without mobilenetv2, models/unist for unist, models/detection "
                   "for microyolo, "
                   "build/sweeps/<arch> with --params)",
            "edges": "input and output types: int8 (default) or uint8-float32 (uint8 pixels in, float "
                     "scores out, as the STM32 model zoo's MobileNets)",
            "arch": "architecture(s), comma-separated: mobilenetv2 (default), efficientnet_lite, "
                    "mobilenetv3_small, shufflenetv2, mobilenetv1, unist (tools/architectures.py; trained short), "
                    "or microyolo (the 128x128 detector, tools/detection.py, into models/detection/)",
            "params": "sweep one architecture's own parameters: every combination of the values around each "
                      "shipped model, e.g. --arch unist --resolution 96 --params \"k=2,3,4,5 central=0,1 "
                      "margin=0,9\" (unist: k, central, margin, depth, t, width; default --out "
                      "build/sweeps/<arch>)"})
@_cli
def models(c, resolution=None, out=None, width=None, expansion=None, training=None, edges="int8", arch=None,
           params=None):
    """Regenerate the shipped int8 models (needs the `models` extra: TensorFlow)."""
    from pathlib import Path

    from harness.errors import FusebenchError
    from tools.modelgen import DEFAULT_EXPANSION, DEFAULT_WIDTHS, default_out_dir, make_models, parse_param_sweep

    def numbers(text, kind, option):
        try:
            return [kind(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise FusebenchError(f"--{option}: expected comma-separated numbers, got {text!r}") from None

    archs = [a.strip() for a in str(arch).split(",") if a.strip()] if arch else ["mobilenetv2"]
    sweep = parse_param_sweep(str(params), archs[0]) if params else None
    make_models(Path(out) if out else default_out_dir(archs, bool(sweep)),
                resolutions=numbers(resolution, int, "resolution") if resolution else None,
                widths=numbers(width, float, "width") if width else DEFAULT_WIDTHS,
                expansions=numbers(expansion, int, "expansion") if expansion else (DEFAULT_EXPANSION,),
                training=training, edges=edges,
                archs=archs, param_sweep=sweep)


PLACE_HELP = ("a labgrid place holding the board (runner labgrid; default: $LG_PLACE; "
              "coordinator: $LG_COORDINATOR)")


@task(help={"board": "board name(s), comma-separated (see boards/)",
            "model": "a .tflite file or shipped model name(s), comma-separated (default: all shipped)",
            "variant": f"schedule(s), comma-separated: {VARIANT_HELP} (default: all)",
            "inputs": "a folder of images or .npy files (default: the shipped held-out images)",
            "runs": "runs per input", "jobs": "parallel firmware jobs (default: cores)",
            "max_inputs": "use only the first N inputs", "timeout": "seconds per firmware session",
            "runner": "qemu, renode, serial or labgrid (default: serial with --port, labgrid with --place; "
                      "serial for real boards, else qemu)",
            "port": "serial port of a real board (e.g. /dev/ttyACM0; `auto` finds it by USB id)",
            "place": PLACE_HELP,
            "renode": "Renode executable or its folder (default: $RENODE, pyrenode3, `renode` on PATH)",
            "flash_tool": "pyocd, openocd, st-flash or dfu-util (default: the board file's first installed)",
            "probe": "debug probe serial number, when several are plugged in",
            "no_flash": "the board already runs this firmware: do not flash",
            "cluster": "a Dask scheduler (tcp://HOST:8786) whose workers run the jobs "
                       "(default: $DASK_SCHEDULER_ADDRESS, else a local pool)",
            **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def bench(c, board="stm32h7", model=None, variant=None, inputs=None, runs=1, jobs=None,
          max_inputs=None, timeout=600, runner=None, port=None, renode=None, flash_tool=None, probe=None,
          no_flash=False, cluster=None, place=None, **schedule):
    """Build, run and measure every variant of every model on a board; write results/<run-id>/."""
    from harness.commands import bench_command
    bench_command(board=board, model=model, variant=variant, inputs=inputs, runs=_count(runs, "runs"),
                  jobs=_count(jobs, "jobs"), max_inputs=_count(max_inputs, "max-inputs"),
                  timeout=_seconds(timeout),
                  options=parse_cli_options(schedule), runner=runner, port=port,
                  renode=renode, flash_tool=flash_tool, probe=probe, no_flash=bool(no_flash),
                  cluster=cluster, place=place)


@task(help={"board": "board name", "model": "a .tflite file or shipped model name",
            "variant": f"schedule: {VARIANT_HELP}", **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def build(c, board="stm32h7", model=None, variant="unfused", **schedule):
    """Build one firmware into build/<board>/<model>/<variant>/ and print its size."""
    from harness.commands import build_command
    build_command(board=board, model=model, variant=variant, options=parse_cli_options(schedule))


@task(help={"board": "board name", "model": "a .tflite file or shipped model name",
            "variant": f"schedule (default unfused): {VARIANT_HELP}",
            "inputs": "a folder of images or .npy files, or one .npy holding a batch",
            "max_inputs": "use only the first N inputs", "timeout": "seconds for the session",
            "runner": "a runner kind: qemu, renode, serial, ... (default: as bench chooses)",
            "port": "serial port of a real board (e.g. /dev/ttyACM0; `auto` finds it by USB id)",
            "place": PLACE_HELP,
            "renode": "Renode executable or its folder (default: $RENODE, pyrenode3, `renode` on PATH)",
            "flash_tool": "pyocd, openocd, st-flash or dfu-util (default: the board file's first installed)",
            "probe": "debug probe serial number, when several are plugged in",
            "no_flash": "the board already runs this firmware: do not flash", **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def run(c, board="stm32h7", model=None, variant="unfused", inputs=None, max_inputs=None, timeout=600,
        runner=None, port=None, renode=None, flash_tool=None, probe=None, no_flash=False, place=None,
        **schedule):
    """Run a built firmware on a runner and compare with the host reference
    (the schedule options it was built with find its build folder)."""
    from harness.commands import run_command
    run_command(board=board, model=model, variant=variant, inputs=inputs,
                max_inputs=_count(max_inputs, "max-inputs"), timeout=_seconds(timeout),
                runner=runner, port=port, renode=renode, flash_tool=flash_tool, probe=probe,
                no_flash=bool(no_flash), place=place, options=parse_cli_options(schedule))


@task(help={"folder": "a folder of .tflite files (default: ../shared/field-models)",
            "board": "board to bench on (default stm32h7)",
            "fallback_board": "board for models whose weights do not fit the first one's flash "
                              "(default stm32h7-qspi; 'none' for none)",
            "variant": f"schedule(s), comma-separated: {VARIANT_HELP} (default: all)",
            "max_inputs": "inputs per model (default 4)", "jobs": "parallel firmware jobs (default: cores)",
            "timeout": "seconds per firmware session", **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def corpus(c, folder="../shared/field-models", board="stm32h7", fallback_board="stm32h7-qspi", variant=None,
           max_inputs=4, jobs=None, timeout=600, **schedule):
    """Bench every model in a folder: one line per model (bit-exact variants, not applicable, refused and why)."""
    from harness.report.corpus import corpus_command
    corpus_command(folder, board=board, fallback_board=None if fallback_board in ("", "none") else fallback_board,
                   variants=[v.strip() for v in variant.split(",") if v.strip()] if variant else None,
                   max_inputs=_count(max_inputs, "max-inputs", optional=False), jobs=_count(jobs, "jobs"),
                   timeout_s=_seconds(timeout),
                   options=parse_cli_options(schedule))


@task(help={"board": "board name(s), comma-separated", "width": "MobileNetV2 width (0.35 or 1.0)",
            "model": "sweep these models instead (files, names or a folder, e.g. architectures)",
            "variant": "schedules, comma-separated (default unfused,fused,msf)",
            "resolutions": "first:last:step (default 64:320:16)",
            "max_inputs": "inputs per emulator run", "run": "run the largest fitting models (default on)",
            "max_resolution": "search past the range while a schedule still fits, up to this size (default 1024)",
            **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def resolution(c, board="stm32h7,stm32f4", width=0.35, variant="unfused,fused,msf", resolutions="64:320:16",
               max_inputs=3, run=True, model=None, max_resolution=1024, **schedule):
    """Largest input resolution each schedule fits on each board; plot RAM vs resolution."""
    from harness.errors import FusebenchError
    from harness.report.resolution import resolution_sweep
    try:
        first, last, step = (int(v) for v in resolutions.split(":"))
    except ValueError:
        raise FusebenchError(f"--resolutions '{resolutions}': expected first:last:step") from None
    try:
        width = float(width)
    except ValueError:
        raise FusebenchError(f"--width '{width}': expected a number such as 0.35") from None
    run_dir = resolution_sweep([b for b in board.split(",") if b], width,
                               [v for v in variant.split(",") if v], tuple(range(first, last + 1, step)),
                               _count(max_inputs, "max-inputs", optional=False), parse_cli_options(schedule), run,
                               model=model, max_resolution=_count(max_resolution, "max-resolution", optional=False))
    print(f"results: {run_dir}")


@task(help={"model": "a .tflite file or shipped model name(s) (default: all shipped)",
            "stream_input": "msf reads the input tile by tile (default on)",
            "resolution": "re-emit the model at this square input size first (same weights)",
            "measure": "also build and run msf at these overhead limits, e.g. 2,25,40,70 (percent)",
            "board": "board for --measure (default stm32h7)", "max_inputs": "inputs per --measure run",
            "out": "output folder (default: a new results/<run-id>/)"})
@_cli
def pareto(c, model=None, stream_input=True, out=None, resolution=None, measure=None, board="stm32h7",
           max_inputs=None):
    """The msf front of peak RAM against MACs per model, with unfused, fused and msf-CNN's points."""
    from harness.report.pareto import pareto_command
    run_dir = pareto_command(model=model, stream_input=bool(stream_input), out=out,
                             resolution=_count(resolution, "resolution"), measure=measure,
                             board=board, max_inputs=_count(max_inputs, "max-inputs"))
    print(f"results: {run_dir}")


@task(help={"run": "results folder of `invoke bench` (default: results/latest)",
            "board": "only this board", "model": "only this model (name without .tflite)",
            "variant": "schedule (default unfused)", "layers": "also print every layer"})
@_cli
def profile(c, run="results/latest", board=None, model=None, variant="unfused", layers=False):
    """Instruction profile of a bench run per kernel kind (and per layer): MACs per instruction
    against the DSP extension's limit of 2 (one SMLAD = 2 MACs)."""
    from harness.report.profile import profile_command
    profile_command(run=run, board=board, model=model, variant=variant, layers=bool(layers))


@task(help={"before": "a run folder, its bench.csv, or a baseline folder (default: results/baseline)",
            "after": "the run to check (default: results/latest)",
            "tolerance": "instruction and cycle counts may grow by this many percent (default 0.1)",
            "counts": "compare instruction and cycle counts (--no-counts: only statuses and bytes)"})
@_cli
def compare(c, before="results/baseline", after="results/latest", tolerance=0.1, counts=True):
    """What changed between two bench runs, as a table; exit 1 on a regression (a row no longer ok,
    arena or RAM up by any byte, instructions up by more than the tolerance). The nightly gate."""
    from harness.errors import FusebenchError
    from harness.report.compare import compare_command
    try:
        tolerance = float(tolerance)
    except ValueError:
        raise FusebenchError(f"--tolerance '{tolerance}': expected a percentage such as 0.1") from None
    regressions = compare_command(before, after, tolerance, bool(counts))
    if regressions:
        raise FusebenchError(f"{regressions} regression(s) from {before} to {after}")


@task(help={"run": "a clean bench run to make the baseline of its boards (default: results/latest)"})
@_cli
def baseline(c, run="results/latest"):
    """Refresh the committed regression baseline (results/baseline/<board>.csv) from a run, on purpose."""
    from harness.report.compare import write_baseline
    write_baseline(run)


@task(help={"run": "results folder of `invoke bench` (default: results/latest)",
            "models": "folder(s) of the run's models, comma-separated: their models.json gives each model's "
                      "parameters and int8 top-1 (e.g. models/unist or build/sweeps/unist-k)",
            "measure": "the summary.csv column per variant (default arena_bytes_peak; e.g. ram_bytes_total, "
                       "instructions_median)",
            "board": "only this board"})
@_cli
def params(c, run="results/latest", models="", measure="arena_bytes_peak", board=None):
    """A bench run's measured RAM per variant beside each model's parameters and accuracy
    (sweeps: UNIST's patches, margins, expansion ratio); writes <run>/params.csv."""
    from harness.report.params import params_command
    params_command(run=run, models=models, measure=measure, board=board)


@task(help={"board": "a board with a [runners.serial] table (nucleo-h743zi, nucleo-f446re, openmv-h7, ...)",
            "model": "a .tflite file or shipped model name (default: the first shipped model)",
            "variant": f"schedule (default unfused): {VARIANT_HELP}",
            "tool": "pyocd, openocd, st-flash or dfu-util (default: the board file's first installed)",
            "probe": "debug probe serial number, when several are plugged in",
            "elf": "flash this ELF instead of building one", **SCHEDULE_HELP})
@_cli
@_with_schedule_options
def flash(c, board=None, model=None, variant="unfused", tool=None, probe=None, elf=None, **schedule):
    """Build the silicon firmware for a real board and flash it (pyocd, openocd, st-flash, dfu-util)."""
    from harness.errors import FusebenchError
    from harness.targets.flash import flash_command
    if not board:                 # an option, not a positional: `invoke flash -h` is the help
        raise FusebenchError("--board: name the board to flash (see `invoke boards`)")
    flash_command(board=board, model=model, variant=variant, tool=tool, probe=probe, elf=elf,
                  options=parse_cli_options(schedule))


@task
@_cli
def boards(c):
    """List the board files and the serial ports of boards plugged in (ST-LINK, OpenMV by USB id)."""
    from harness.targets.flash import boards_report
    print(boards_report())
