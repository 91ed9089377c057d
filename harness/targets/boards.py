"""Board descriptions: `boards/<name>.toml` -> a frozen `Board`.

A board file holds the real part's figures (core, FPU, clock, flash and RAM)
and one `[runners.<kind>]` table per way of running firmware for it: `qemu`
(an emulated stand-in), `renode` (Renode's model of the part) and `serial`
(the real board on a serial port). A runner table may move where flash and
RAM start (QEMU's mps2-an500 stands in for the STM32H743 but has its memory
elsewhere), never how big they are: the firmware must fit the real part.

The `renode` and `serial` tables run the silicon HALs (firmware/hal/stm32h7,
firmware/hal/stm32f4), which need the console: `console_tx`/`console_rx`
(pins like "PD8"), `console_af` (the pins' alternate function) and `baud`.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from harness.errors import FusebenchError
from harness.paths import BOARDS_DIR


# -mcpu / -mfpu values gcc accepts for the cores we know; guards typos early.
KNOWN_CORES = ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7",
               "cortex-m33", "cortex-m55")
KNOWN_FPUS = ("none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16")


@dataclass(frozen=True)
class MemoryRegion:
    origin: int
    size: int

    @property
    def end(self) -> int:
        return self.origin + self.size


@dataclass(frozen=True)
class RunnerTarget:
    """How one runner kind runs firmware for a board (a `[runners.<kind>]` table)."""
    kind: str                         # 'qemu', 'renode', 'serial'
    hal: str                          # directory under firmware/hal/
    flash: MemoryRegion               # where the image is linked for this runner
    ram: MemoryRegion
    uart_address: int
    machine: str | None = None        # QEMU -M (or a Renode platform)
    serial_index: int = 0             # which -serial the console UART is
    instructions_per_tick: Fraction | None = None   # time counter tick -> instructions
    extra_args: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()        # keys this module does not interpret
    weights: MemoryRegion | None = None              # external weights flash, as this runner maps it

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    fpu: str
    clock_hz: int
    flash: MemoryRegion               # the real part's flash
    ram: MemoryRegion                 # the real part's data RAM
    stack_bytes: int
    runners: tuple[RunnerTarget, ...]
    path: Path
    # Optional memory-mapped external flash (QSPI NOR) that holds the model's
    # constant weights when they do not fit the internal flash.
    weights: MemoryRegion | None = None

    def runner(self, kind: str) -> RunnerTarget:
        for target in self.runners:
            if target.kind == kind:
                return target
        known = ", ".join(t.kind for t in self.runners) or "none"
        raise FusebenchError(f"board {self.name!r} has no [runners.{kind}] table "
                             f"(it has: {known})")

    @property
    def cpu_flags(self) -> tuple[str, ...]:
        """gcc flags selecting the core, FPU and hard-float ABI."""
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu == "none":
            flags.append("-mfloat-abi=soft")
        else:
            flags += [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]
        return tuple(flags)


def list_boards() -> list[str]:
    """Names of the boards in boards/, sorted."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def load_board(name_or_path: str | Path) -> Board:
    """A board by name (`stm32h7`) or by the path of its TOML file."""
    text = str(name_or_path)
    candidate = Path(text)
    if text.endswith(".toml") or candidate.is_file():
        path = candidate
        if not path.is_file():
            raise FusebenchError(f"board file {path} does not exist")
    else:
        path = BOARDS_DIR / f"{text}.toml"
        if not path.is_file():
            known = ", ".join(list_boards()) or "none"
            raise FusebenchError(f"unknown board {text!r} (known boards: {known})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FusebenchError(f"board file {path}: invalid TOML: {exc}") from None
    return _parse_board(data, path)


def _parse_board(data: dict, path: Path) -> Board:
    where = f"board file {path}"

    def need(table: dict, key: str, kind: type, ctx: str) -> Any:
        if key not in table:
            raise FusebenchError(f"{where}: missing key {ctx}{key}")
        value = table[key]
        # bool is an int subclass: do not accept `true` where a size is wanted
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FusebenchError(f"{where}: {ctx}{key} must be {kind.__name__}, "
                                 f"not {type(value).__name__}")
        return value

    def region(table: dict, ctx: str) -> MemoryRegion:
        origin = need(table, "origin", int, ctx)
        size = need(table, "size", int, ctx)
        if origin < 0 or size <= 0 or origin + size > 1 << 32:
            raise FusebenchError(f"{where}: {ctx[:-1]} must lie in the 32-bit address space")
        return MemoryRegion(origin, size)

    name = need(data, "name", str, "")
    if name != path.stem:
        raise FusebenchError(f"{where}: name {name!r} differs from the file name {path.stem!r}")
    core = need(data, "core", str, "")
    if core not in KNOWN_CORES:
        raise FusebenchError(f"{where}: core {core!r} is not one of {', '.join(KNOWN_CORES)}")
    fpu = need(data, "fpu", str, "")
    if fpu not in KNOWN_FPUS:
        raise FusebenchError(f"{where}: fpu {fpu!r} is not one of {', '.join(KNOWN_FPUS)}")
    clock_hz = need(data, "clock_hz", int, "")
    stack_bytes = need(data, "stack_bytes", int, "")
    if stack_bytes <= 0 or stack_bytes % 8:
        raise FusebenchError(f"{where}: stack_bytes must be a positive multiple of 8")
    memory = need(data, "memory", dict, "")
    flash = region(need(memory, "flash", dict, "memory."), "memory.flash.")
    ram = region(need(memory, "ram", dict, "memory."), "memory.ram.")
    if stack_bytes >= ram.size:
        raise FusebenchError(f"{where}: stack_bytes {stack_bytes} does not fit RAM ({ram.size})")
    weights = region(memory["weights"], "memory.weights.") if "weights" in memory else None

    runners = []
    for kind, table in data.get("runners", {}).items():
        ctx = f"runners.{kind}."
        if not isinstance(table, dict):
            raise FusebenchError(f"{where}: [runners.{kind}] must be a table")
        runners.append(_parse_runner(kind, table, flash, ram, need, where, ctx, weights))

    return Board(name=name, description=str(data.get("description", "")), core=core, fpu=fpu,
                 clock_hz=clock_hz, flash=flash, ram=ram, stack_bytes=stack_bytes,
                 runners=tuple(runners), path=path.resolve(), weights=weights)


_RUNNER_KEYS = {"hal", "uart_address", "machine", "serial_index", "instructions_per_tick",
                "extra_args", "flash_origin", "ram_origin", "weights_origin"}

# Runner kinds that run the silicon HALs and so need the console pins.
SILICON_RUNNERS = ("renode", "serial")
DEFAULT_BAUD = 115200
_PIN = re.compile(r"P([A-K])(\d{1,2})")
_USB_ID = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}")


def parse_pin(name: str) -> tuple[int, int]:
    """"PD8" -> (3, 8): GPIO port index (A=0) and pin number."""
    match = _PIN.fullmatch(str(name))
    if not match or int(match.group(2)) > 15:
        raise FusebenchError(f"bad pin name {name!r} (expected like \"PD8\": port A-K, pin 0-15)")
    return ord(match.group(1)) - ord("A"), int(match.group(2))


def _check_silicon_table(kind: str, table: dict, need, where: str, ctx: str) -> None:
    """The console settings the silicon HALs need, checked early for a clear message."""
    for key in ("console_tx", "console_rx"):
        try:
            parse_pin(need(table, key, str, ctx))
        except FusebenchError as exc:
            raise FusebenchError(f"{where}: {ctx}{key}: {exc}") from None
    af = need(table, "console_af", int, ctx)
    if not 0 <= af <= 15:
        raise FusebenchError(f"{where}: {ctx}console_af must be 0..15, not {af}")
    baud = table.get("baud", DEFAULT_BAUD)
    if not isinstance(baud, int) or isinstance(baud, bool) or not 1200 <= baud <= 12_000_000:
        raise FusebenchError(f"{where}: {ctx}baud must be an integer from 1200 to 12000000")
    if kind == "renode":
        need(table, "platform", str, ctx)
        need(table, "uart_peripheral", str, ctx)
        for tag in table.get("tags", []):
            if not isinstance(tag, dict) or not all(
                    isinstance(tag.get(k, 0), int) for k in ("address", "size", "value")) \
                    or "address" not in tag:
                raise FusebenchError(f"{where}: {ctx}tags entries must be tables with an integer "
                                     f"address (and optional size, value, name)")
    for usb_id in table.get("usb_ids", []):
        if not isinstance(usb_id, str) or not _USB_ID.fullmatch(usb_id):
            raise FusebenchError(f"{where}: {ctx}usb_ids entries must look like \"0483:374b\", "
                                 f"not {usb_id!r}")


def _parse_runner(kind, table, flash, ram, need, where, ctx, weights=None) -> RunnerTarget:
    hal = need(table, "hal", str, ctx)
    uart_address = need(table, "uart_address", int, ctx)
    # The runner may move the memories (emulator memory map), keeping the real sizes.
    flash_here = MemoryRegion(table.get("flash_origin", flash.origin), flash.size)
    ram_here = MemoryRegion(table.get("ram_origin", ram.origin), ram.size)
    ratio = None
    if "instructions_per_tick" in table:
        raw = table["instructions_per_tick"]
        try:
            ratio = Fraction(raw) if not isinstance(raw, float) else None
        except (ValueError, ZeroDivisionError, TypeError):
            ratio = None
        if ratio is None or ratio <= 0:
            raise FusebenchError(f"{where}: {ctx}instructions_per_tick must be a positive "
                                 f"integer or a fraction string like \"125/21\", not {raw!r}")
    extra = table.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise FusebenchError(f"{where}: {ctx}extra_args must be a list of strings")
    machine = table.get("machine")
    if kind == "qemu":
        machine = need(table, "machine", str, ctx)
        if ratio is None:
            raise FusebenchError(f"{where}: missing key {ctx}instructions_per_tick")
    if kind in SILICON_RUNNERS:
        _check_silicon_table(kind, table, need, where, ctx)
        if ratio is None:
            ratio = Fraction(1)   # DWT CYCCNT / SysTick on the core clock: one tick, one cycle
    options = tuple(sorted((k, v) for k, v in table.items() if k not in _RUNNER_KEYS))
    weights_here = (MemoryRegion(table.get("weights_origin", weights.origin), weights.size)
                    if weights is not None else None)
    return RunnerTarget(kind=kind, hal=hal, flash=flash_here, ram=ram_here,
                        uart_address=uart_address, machine=machine,
                        serial_index=int(table.get("serial_index", 0)),
                        instructions_per_tick=ratio, extra_args=tuple(extra),
                        options=tuple((k, _freeze(v)) for k, v in options), weights=weights_here)


def _freeze(value: Any) -> Any:
    """Make TOML values hashable so a Board can live in sets and cache keys."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
