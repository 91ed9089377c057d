"""The schedule registry: every variant is one module of this package that
declares a `SCHEDULE`: its name, what runs and where the RAM goes (the
README's table), its options, each once (parser, default, help), and
`plan(graph, board=None, **options) -> Plan`.

`make_plan`, the command line (`invoke plan/bench/build/resolution` take every
schedule option, `--help` says which schedule reads it and what it means
there) and the README's schedule table are derived from these declarations, so
a new schedule is one new module (plus its tests).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from harness.errors import FusebenchError


class NotApplicable(FusebenchError):
    """The schedule does not apply to this network (fused: nothing to fuse).
    A sweep records it as a `not-applicable` row with the reason and goes on."""

    def __init__(self, schedule: str, model: str, why: str):
        self.schedule, self.model, self.why = schedule, model, why
        super().__init__(f"{schedule} does not apply to {model}: {why}")


# -- option parsers: command-line text -> the value plan() takes ------------------------------

def percent(text, option: str) -> float:
    """'15', '15%' -> 0.15 (a fraction)."""
    raw = str(text).strip()
    try:
        value = float(raw.rstrip("%")) / 100.0
    except ValueError:
        raise FusebenchError(f"--{option} '{raw}': expected a percentage such as 15 or 15%") from None
    if value < 0:
        raise FusebenchError(f"--{option} must not be negative")
    return value


def byte_size(text, option: str) -> int:
    """'64K', '64KiB', '64KB', '65536', '1.5M' -> bytes (K and M are 1024-based)."""
    raw = str(text).strip()
    t = raw.upper().replace("IB", "").replace("B", "")
    scale = 1
    if t.endswith("K"):
        scale, t = 1024, t[:-1]
    elif t.endswith("M"):
        scale, t = 1024 * 1024, t[:-1]
    try:
        value = float(t) * scale
    except ValueError:
        raise FusebenchError(f"--{option} '{raw}': expected bytes such as 65536, 64K or 1.5M") from None
    if value <= 0:
        raise FusebenchError(f"--{option} '{raw}' must be positive")
    return int(value)


def whole_number(text, option: str) -> int:
    raw = str(text).strip()
    try:
        return int(raw)
    except ValueError:
        raise FusebenchError(f"--{option} '{raw}': expected a whole number") from None


def text(value, option: str) -> str:
    return str(value).strip()


def yes_no(value, option: str) -> bool:
    if isinstance(value, bool):
        return value
    raw = str(value).strip().lower()
    if raw in ("yes", "true", "on", "1"):
        return True
    if raw in ("no", "false", "off", "0"):
        return False
    raise FusebenchError(f"--{option} '{value}': expected yes or no")


@dataclass(frozen=True)
class Option:
    """One option of a schedule. `name` is plan()'s keyword (`--max-overhead`
    on the command line); `parse(text, option)` turns command-line text into
    the value; `help` says what it means for this schedule, with its default.
    A `switch` is an on/off flag whose default is `default` (`--[no-]name`);
    other options are absent (None) unless given, and plan() applies its own
    default."""
    name: str
    parse: Callable[[Any, str], Any]
    help: str
    switch: bool = False
    default: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def stream_windows_option(what: str = "") -> "Option":
    """`--[no-]stream-input` for a schedule that streams a segmented input
    window by window (stages.WindowRead) and nothing else."""
    return Option("stream_input", yes_no,
                  "read an input that only slices read (UNIST's patches) from the host one window at a time "
                  f"instead of holding it{what} (default on; --no-stream-input holds it whole)",
                  switch=True, default=True)


@dataclass(frozen=True)
class Schedule:
    name: str
    runs: str                        # what runs (one sentence or two, for the README and --help)
    ram: str                         # where the RAM goes
    plan: Callable[..., Any]         # plan(graph, board=None, **options) -> Plan
    options: tuple[Option, ...] = ()
    # Also plan the schedule in the other op orders a graph with branches allows
    # and keep the smallest arena (not for unfused, TFLite Micro's file order,
    # nor for ordered, which chooses its own).
    other_orders: bool = True
    order: int = 100                 # position in listings and in the default sweep

    def option(self, name: str) -> Optional[Option]:
        return next((o for o in self.options if o.name == name), None)


_SCHEDULES: Optional[dict[str, Schedule]] = None


def all_schedules() -> list[Schedule]:
    """Every schedule, found as a `SCHEDULE` in the modules of this package."""
    global _SCHEDULES
    if _SCHEDULES is None:
        import harness.schedules as package
        found = {}
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue                 # __main__ prints the README table
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            schedule = getattr(module, "SCHEDULE", None)
            if isinstance(schedule, Schedule):
                if schedule.name in found:
                    raise RuntimeError(f"two schedules are called {schedule.name!r}")
                found[schedule.name] = schedule
        _SCHEDULES = dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
    return list(_SCHEDULES.values())


def schedule_names() -> list[str]:
    return [s.name for s in all_schedules()]


def get_schedule(name: str) -> Schedule:
    for s in all_schedules():
        if s.name == name:
            return s
    raise FusebenchError(f"unknown variant '{name}' (available: {', '.join(schedule_names())})")


@dataclass(frozen=True)
class CliOption:
    """A command-line option: one name, read by one or more schedules."""
    name: str
    flag: str
    switch: bool
    default: Any
    help: str                       # per schedule: "fused: ...; msf: ..."
    readers: tuple[Schedule, ...] = field(default=())


def cli_options() -> list[CliOption]:
    """The union of every schedule's options, one per name (first declared
    first). Schedules that share a name must parse it alike; the help says
    what each makes of it."""
    merged: dict[str, list[tuple[Schedule, Option]]] = {}
    for s in all_schedules():
        for o in s.options:
            merged.setdefault(o.name, []).append((s, o))
    out = []
    for name, uses in merged.items():
        first = uses[0][1]
        for s, o in uses[1:]:
            if (o.parse, o.switch, o.default) != (first.parse, first.switch, first.default):
                raise RuntimeError(f"schedules {uses[0][0].name} and {s.name} declare option {name} differently")
        out.append(CliOption(name=name, flag=first.flag, switch=first.switch, default=first.default,
                             help="; ".join(f"{s.name}: {o.help}" for s, o in uses),
                             readers=tuple(s for s, _ in uses)))
    return out


def parse_cli_options(given: dict[str, Any]) -> dict[str, Any]:
    """Command-line values (text; None when absent) -> plan() keyword values.
    Unknown names are an error."""
    known = {o.name: o for o in cli_options()}
    parsers = {o.name: o.parse for s in all_schedules() for o in s.options}
    values = {}
    for name, value in given.items():
        if name not in known:
            raise FusebenchError(f"unknown schedule option {name}")
        if value is None or (value == "" and not known[name].switch):
            continue
        if known[name].switch and value == known[name].default:
            continue                 # a switch left at its default: as if not given
        values[name] = parsers[name](value, known[name].flag[2:])
    return values


def make_plan(graph, variant: str, board=None, **options):
    """The plan of one schedule variant. `options` are plan() keyword values
    (already parsed); each schedule gets only the ones it declares, so one set
    of options serves a sweep over several variants."""
    import contextlib

    from harness.backend.hostrt import planning_kernels
    mine = own_options(variant, options)
    schedule = get_schedule(variant)
    if board is not None:                # scratch for the kernels the board's image runs
        from harness.backend.build import kernel_set
        kernels = planning_kernels(kernel_set(board))
    else:                                # no board: enough for either build
        kernels = contextlib.nullcontext()
    with kernels:
        if schedule.other_orders:
            plan = _plan_over_orders(schedule, graph, board, mine)
        else:
            plan = schedule.plan(graph, board=board, **mine)
    plan.options = recorded_options(variant, options)
    return plan


def _plan_over_orders(schedule: "Schedule", graph, board, options: dict):
    """The schedule's plan in file order, or in another op order of a graph
    with branches (harness.schedules.order.candidate_orders) when that order's
    arena is smaller. The plan records the order it runs and notes the gain."""
    from harness.schedules.order import candidate_orders, in_order, order_key, stages_run_whole
    from harness.schedules.plan import Note

    best, file_arena, refusal = None, None, None
    for name, order in candidate_orders(graph):
        ordered = in_order(graph, order)
        try:
            plan = schedule.plan(ordered, board=board, **options)
        except FusebenchError as e:   # not applicable, or does not fit the board, in this order
            refusal = refusal or e
            continue
        if not stages_run_whole(ordered, plan):
            continue                  # another op sits inside a stage and needs what it makes
        if name == "file":
            file_arena = plan.arena_bytes
        if best is None or plan.arena_bytes < best[2].arena_bytes:
            best = (name, ordered, plan)
    if best is None:
        raise refusal or NotApplicable(schedule.name, graph.name, "in no op order can its stages run whole")
    name, ordered, plan = best
    if name != "file":
        plan.op_order = order_key(ordered)
        before = f"{file_arena} B in file order" if file_arena is not None else "not applicable in file order"
        plan.notes.append(Note("op-order", f"op order ({name}): arena {before} -> {plan.arena_bytes} B",
                               dict(order=name, file_order_arena_bytes=file_arena, arena_bytes=plan.arena_bytes)))
    return plan


def own_options(variant: str, options: dict) -> dict:
    """The options (plan() values; None: absent) that schedule `variant` reads."""
    schedule = get_schedule(variant)
    given = {k: v for k, v in options.items() if v is not None}
    declared = {o.name for s in all_schedules() for o in s.options}
    unknown = set(given) - declared
    if unknown:
        raise FusebenchError(f"unknown schedule option(s) {', '.join(sorted(unknown))}")
    return {k: v for k, v in given.items() if schedule.option(k) is not None}


def recorded_options(variant: str, options: dict) -> dict:
    """own_options as plain JSON values, sorted: what a plan records (and what
    tells its build folder from those of other options)."""
    return {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
            for k, v in sorted(own_options(variant, options).items())}


def readme_table() -> str:
    """The README's schedule table (markdown), from the declarations."""
    rows = ["| variant | what runs | where the RAM goes | options |", "|---|---|---|---|"]
    for s in all_schedules():
        options = "<br>".join(f"`{o.flag}`: {o.help}" for o in s.options) or "none"
        rows.append(f"| `{s.name}` | {s.runs} | {s.ram} | {options} |")
    return "\n".join(rows)

