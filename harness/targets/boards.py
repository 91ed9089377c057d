"""Board descriptions: `boards/<name>.toml` -> a frozen `Board`.

A board file holds the real part's figures (core, FPU, clock, flash and RAM)
and one `[runners.<kind>]` table per way of running firmware for it: `qemu`
(an emulated stand-in), `renode` (Renode's model of the part) and `serial`
(the real board on a serial port). A runner table may move where flash and
RAM start (QEMU's mps2-an500 stands in for the STM32H743 but has its memory
elsewhere), never how big they are: the firmware must fit the real part.

Who checks what: this module the keys every table has (`hal`,
`uart_address`, `instructions_per_tick`, ...); the HAL's description
(`firmware/hal/<hal>/hal.toml`, see harness.targets.hal) the settings that
HAL is built with (the silicon HALs' console pins, `console_af`, `baud`);
the runner class of the table's kind the keys only it reads (qemu's
`machine`, Renode's `platform`, `uart_peripheral`, `tags`, serial's
`usb_ids`). Every error is one line naming the board file and the key.

A board file may build on another: `extends = "<board>"` (a board file in
the same folder, else a shipped one in boards/).

* The child's keys replace the parent's; tables merge key by key (at every
  depth: `[memory.flash] size = ...` keeps the parent's flash origin). Arrays
  are values: they are replaced whole.
* A child's `[runners]` table, when it has one, replaces the parent's set of
  runner kinds: the board has exactly the kinds the child names. Each of them
  merges with the parent's table of the same kind, so an empty
  `[runners.serial]` inherits the parent's serial table whole.
* A merged table drops inherited keys it lists in `without = [...]` (keys
  the child must not have at all, e.g. another flash tool's settings).
* A runner table may run the image another table of the board builds:
  `image = "<kind>"` (the labgrid runner's table: a board farm's board runs
  the `serial` image, QEMU behind a loopback farm the `qemu` one). That
  table's keys (HAL, addresses, tick ratio) lie under its own, and the
  image is built exactly as for that kind (harness.backend.build), in its
  folder.
* `name` is never inherited. Chains are allowed (a parent may extend
  another); a cycle is an error.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

from harness.errors import FusebenchError
from harness.paths import BOARDS_DIR


# The cores we know and their architecture: the Arm names are gcc's -mcpu
# values, the RISC-V ones its -march values (the ISA string). A core's
# architecture picks the toolchain, the C library and the shared HAL parts
# (harness.backend.build); the table guards typos early.
CORE_ARCH = {
    "cortex-m0": "arm", "cortex-m0plus": "arm", "cortex-m3": "arm", "cortex-m4": "arm",
    "cortex-m7": "arm", "cortex-m33": "arm", "cortex-m55": "arm",
    "rv32imc": "riscv",               # ESP32-C3; Debian's picolibc has its rv32im multilib
}
KNOWN_CORES = tuple(CORE_ARCH)
KNOWN_FPUS = ("none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16")
# The integer-only RISC-V ABI: none of the RISC-V cores above has an FPU.
RISCV_ABI = "ilp32"


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

    @property
    def image_kind(self) -> str:
        """The runner kind whose image this table runs (its `image`, else its own kind)."""
        return str(self.option("image", self.kind))


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
    def arch(self) -> str:
        """"arm" or "riscv": which toolchain and shared HAL parts build for it."""
        return CORE_ARCH[self.core]

    @property
    def cpu_flags(self) -> tuple[str, ...]:
        """gcc flags selecting the core, FPU and hard-float ABI (Arm), or the
        ISA and the integer ABI (RISC-V)."""
        if self.arch == "riscv":
            return (f"-march={self.core}", f"-mabi={RISCV_ABI}")
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
    return _parse_board(_resolved_data(path, ()), path)


@dataclass(frozen=True)
class BoardTable:
    """One table of a board file being read: its values and where it is, for
    one-line errors (`ctx` is its dotted prefix, e.g. "runners.serial.")."""
    values: dict
    where: str                        # "board file <path>"
    ctx: str = ""

    def fail(self, message: str) -> FusebenchError:
        return FusebenchError(f"{self.where}: {message}")

    def missing(self, key: str) -> FusebenchError:
        return self.fail(f"missing key {self.ctx}{key}")

    def need(self, key: str, kind: type) -> Any:
        """The value of a required key of type `kind`."""
        if key not in self.values:
            raise self.missing(key)
        value = self.values[key]
        # bool is an int subclass: do not accept `true` where a size is wanted
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{self.ctx}{key} must be {kind.__name__}, not {type(value).__name__}")
        return value

    def table(self, key: str) -> "BoardTable":
        """The sub-table `key` (required)."""
        return BoardTable(self.need(key, dict), self.where, f"{self.ctx}{key}.")


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FusebenchError(f"board file {path}: invalid TOML: {exc}") from None


def _resolved_data(path: Path, children: tuple[Path, ...]) -> dict:
    """The board file's data with its `extends` chain merged in (see the
    module docstring); `children` are the files that extend this one."""
    data = _read_toml(path)
    if "extends" not in data:
        return data
    where = f"board file {path}"
    parent_name = data.pop("extends")
    if not isinstance(parent_name, str) or not parent_name or "/" in parent_name:
        raise FusebenchError(f"{where}: extends must be a board name, not {parent_name!r}")
    parent_path = next((p for p in (path.parent / f"{parent_name}.toml", BOARDS_DIR / f"{parent_name}.toml")
                        if p.is_file()), None)
    if parent_path is None:
        known = ", ".join(list_boards()) or "none"
        raise FusebenchError(f"{where}: extends {parent_name!r}, but there is no such board "
                             f"next to it or in {BOARDS_DIR} (known boards: {known})")
    chain = (*children, path)
    if parent_path.resolve() in {p.resolve() for p in chain}:
        names = " -> ".join(p.stem for p in (*chain, parent_path))
        raise FusebenchError(f"{where}: extends makes a cycle: {names}")
    parent = _resolved_data(parent_path, chain)
    parent.pop("name", None)                    # never inherited
    if "runners" in data and isinstance(data["runners"], dict) and isinstance(parent.get("runners"), dict):
        # The child's runner kinds are the board's; each merges with the parent's of its kind.
        parent["runners"] = {kind: parent["runners"][kind] for kind in data["runners"]
                             if kind in parent["runners"]}
    return _merge(parent, data, where, "")


def _merge(parent: dict, child: dict, where: str, ctx: str) -> dict:
    """`child` over `parent`: keys replaced, tables merged key by key, and
    the inherited keys a table lists in `without` dropped."""
    merged = dict(parent)
    without = child.get("without", [])
    if not isinstance(without, list) or not all(isinstance(k, str) for k in without):
        raise FusebenchError(f"{where}: {ctx}without must be a list of key names")
    for key in without:
        if key not in merged:
            raise FusebenchError(f"{where}: {ctx}without names {key!r}, which it does not inherit")
        del merged[key]
    for key, value in child.items():
        if key == "without":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, where, f"{ctx}{key}.")
        else:
            merged[key] = value
    return merged


def _leftover_without(data: dict, ctx: str = "") -> Optional[str]:
    """The first `without` that dropped nothing: in a table that inherits nothing."""
    for key, value in data.items():
        if key == "without":
            return f"{ctx}{key}"
        if isinstance(value, dict) and (found := _leftover_without(value, f"{ctx}{key}.")):
            return found
    return None


def _parse_board(data: dict, path: Path) -> Board:
    where = f"board file {path}"
    top = BoardTable(data, where)
    if (leftover := _leftover_without(data)):
        raise top.fail(f"{leftover} drops inherited keys, and this table inherits none")

    def region(table: BoardTable) -> MemoryRegion:
        origin = table.need("origin", int)
        size = table.need("size", int)
        if origin < 0 or size <= 0 or origin + size > 1 << 32:
            raise table.fail(f"{table.ctx[:-1]} must lie in the 32-bit address space")
        return MemoryRegion(origin, size)

    name = top.need("name", str)
    if name != path.stem:
        raise FusebenchError(f"{where}: name {name!r} differs from the file name {path.stem!r}")
    core = top.need("core", str)
    if core not in KNOWN_CORES:
        raise FusebenchError(f"{where}: core {core!r} is not one of {', '.join(KNOWN_CORES)}")
    fpu = top.need("fpu", str)
    if fpu not in KNOWN_FPUS:
        raise FusebenchError(f"{where}: fpu {fpu!r} is not one of {', '.join(KNOWN_FPUS)}")
    if CORE_ARCH[core] == "riscv" and fpu != "none":
        raise FusebenchError(f"{where}: fpu {fpu!r} is an Arm FPU; RISC-V core {core} takes fpu = \"none\"")
    clock_hz = top.need("clock_hz", int)
    stack_bytes = top.need("stack_bytes", int)
    # The stack pointer's alignment: 8 bytes (AAPCS), 16 on RISC-V (its psABI).
    stack_align = 16 if CORE_ARCH[core] == "riscv" else 8
    if stack_bytes <= 0 or stack_bytes % stack_align:
        raise FusebenchError(f"{where}: stack_bytes must be a positive multiple of {stack_align}")
    memory = top.table("memory")
    flash = region(memory.table("flash"))
    ram = region(memory.table("ram"))
    if stack_bytes >= ram.size:
        raise FusebenchError(f"{where}: stack_bytes {stack_bytes} does not fit RAM ({ram.size})")
    weights = region(memory.table("weights")) if "weights" in memory.values else None

    runners = []
    if not isinstance(data.get("runners", {}), dict):
        raise FusebenchError(f"{where}: runners must be a table of [runners.<kind>] tables")
    tables = data.get("runners", {})
    for kind, table in tables.items():
        if not isinstance(table, dict):
            raise FusebenchError(f"{where}: [runners.{kind}] must be a table")
        table = _with_image_table(kind, table, tables, where)
        runners.append(_parse_runner(kind, BoardTable(table, where, f"runners.{kind}."), top,
                                     flash, ram, weights))

    return Board(name=name, description=str(data.get("description", "")), core=core, fpu=fpu,
                 clock_hz=clock_hz, flash=flash, ram=ram, stack_bytes=stack_bytes,
                 runners=tuple(runners), path=path.resolve(), weights=weights)


def _with_image_table(kind: str, table: dict, tables: dict, where: str) -> dict:
    """A table with `image = "<kind>"` runs the image the board's table of
    that kind builds: that table's keys lie under its own (see the module
    docstring)."""
    if "image" not in table:
        return table
    image = table["image"]
    others = [k for k, t in tables.items() if k != kind and isinstance(t, dict) and "image" not in t]
    if not isinstance(image, str) or image not in others:
        raise FusebenchError(f"{where}: runners.{kind}.image must name another runner table of this "
                             f"board (one of: {', '.join(others) or 'none'}), not {image!r}")
    return {**tables[image], **table}


_RUNNER_KEYS = {"hal", "uart_address", "machine", "serial_index", "instructions_per_tick",
                "extra_args", "flash_origin", "ram_origin", "weights_origin"}


def _runner_class(kind: str):
    """The registered runner class of `kind`, None for kinds no runner has."""
    from harness.targets.runners import runner_classes   # runners import this module
    return runner_classes().get(kind)


def _parse_runner(kind: str, table: BoardTable, top: BoardTable, flash: MemoryRegion,
                  ram: MemoryRegion, weights: Optional[MemoryRegion]) -> RunnerTarget:
    from harness.targets.hal import load_hal

    values = table.values
    hal = table.need("hal", str)
    uart_address = table.need("uart_address", int)
    # The runner may move the memories (emulator memory map), keeping the real sizes.
    flash_here = MemoryRegion(values.get("flash_origin", flash.origin), flash.size)
    ram_here = MemoryRegion(values.get("ram_origin", ram.origin), ram.size)
    ratio = None
    if "instructions_per_tick" in values:
        raw = values["instructions_per_tick"]
        try:
            ratio = Fraction(raw) if not isinstance(raw, float) else None
        except (ValueError, ZeroDivisionError, TypeError):
            ratio = None
        if ratio is None or ratio <= 0:
            raise table.fail(f"{table.ctx}instructions_per_tick must be a positive "
                             f"integer or a fraction string like \"125/21\", not {raw!r}")
    extra = values.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise table.fail(f"{table.ctx}extra_args must be a list of strings")
    runner = _runner_class(kind)
    if runner is not None:
        runner.check_table(table)
        if ratio is None:
            ratio = runner.default_instructions_per_tick
    load_hal(hal).check(table, top)
    options = tuple(sorted((k, v) for k, v in values.items() if k not in _RUNNER_KEYS))
    weights_here = (MemoryRegion(values.get("weights_origin", weights.origin), weights.size)
                    if weights is not None else None)
    return RunnerTarget(kind=kind, hal=hal, flash=flash_here, ram=ram_here,
                        uart_address=uart_address, machine=values.get("machine"),
                        serial_index=int(values.get("serial_index", 0)),
                        instructions_per_tick=ratio, extra_args=tuple(extra),
                        options=tuple((k, _freeze(v)) for k, v in options), weights=weights_here)


def _freeze(value: Any) -> Any:
    """Make TOML values hashable so a Board can live in sets and cache keys."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
