"""Runners: one way each of running firmware and collecting RunResults.

* `qemu`: QEMU's stand-in machines (instructions from -icount);
* `renode`: Renode's model of the real part (the silicon image; virtual time);
* `serial`: the real board on a serial port (flashed, DWT cycles).
* `labgrid`: a board in a labgrid farm's place (`farm.py`: acquired, flashed and
  released through the coordinator; the console over labgrid's SerialDriver).

Each is one class (`harness.targets.runners.base.Runner`) registered under
its kind with `@register_runner`; its class attributes say what the rest of
the harness needs to know (which image it runs, what it counts, whether jobs
may run in parallel, when it is the default). The registry imports every
module of this package the first time it is asked, so a new runner is one
module holding one class.
"""
from __future__ import annotations

import importlib
import pkgutil

from harness.errors import FusebenchError
from harness.targets.runners import base as _base
from harness.targets.runners.base import COUNT_SOURCES, PAINTS, RunResult, Runner, count_column, register_runner

__all__ = ["COUNT_SOURCES", "PAINTS", "RUNNER_KINDS", "RunResult", "Runner", "choose_runner",
           "count_column", "get_runner", "make_runner", "register_runner", "runner_class",
           "runner_classes"]

_discovered = False


def _discover() -> None:
    """Import every module of the package once: each registers its runner."""
    global _discovered
    if not _discovered:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _discovered = True


def runner_classes() -> dict[str, type[Runner]]:
    """Every registered runner class by kind, in the order of the kinds' names."""
    _discover()
    return {kind: _base._RUNNERS[kind] for kind in sorted(_base._RUNNERS)}


def runner_class(kind: str) -> type[Runner]:
    """The runner class of `kind`; a clear error naming the known ones."""
    classes = runner_classes()
    if kind not in classes:
        raise FusebenchError(f"unknown runner {kind!r} (known runners: {', '.join(classes)})")
    return classes[kind]


def __getattr__(name: str):
    if name == "RUNNER_KINDS":         # derived from the registry, never a list kept by hand
        return tuple(runner_classes())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_runner(kind: str, board, **options) -> Runner:
    """The runner of `kind` for `board`, from the command line's runner
    options (`port`, `renode`, `flash_tool`, `probe`, `flash`; None means the
    default; each runner takes the ones it uses: see its `from_options`)."""
    options = {k: v for k, v in options.items() if v is not None}
    return runner_class(kind).from_options(board, **options)


def choose_runner(boards, runner=None, **options) -> str:
    """`invoke bench`'s runner when --runner is not given: the runner that a
    given option picks (serial: --port); else the runner every board prefers
    (the best-ranked `preference` it has a table for: qemu, then serial for
    boards with nothing but a serial table); else the best-ranked one."""
    if runner:
        return runner_class(runner).kind
    classes = runner_classes().values()
    for cls in classes:
        if cls.chosen_by_option and options.get(cls.chosen_by_option):
            return cls.kind
    ranked = sorted((cls for cls in classes if cls.preference is not None), key=lambda c: c.preference)
    preferred = {next((cls.kind for cls in ranked if cls.kind in {t.kind for t in b.runners}), None)
                 for b in boards}
    if len(preferred) == 1 and None not in preferred:
        return preferred.pop()
    return ranked[0].kind


def get_runner(kind: str, board) -> Runner:
    """The runner of `kind` for `board` with default options."""
    return make_runner(kind, board)
