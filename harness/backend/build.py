"""Firmware build: linker script from the board file, the cross gcc, size.

One gcc call compiles and links the runtime kernels, the board's HAL, the
measurement app and the generated model, with the toolchain of the board's
architecture (`Board.arch`: arm-none-eabi-gcc and newlib-nano for Cortex-M,
riscv64-unknown-elf-gcc and picolibc for RISC-V). The linker script gives the image
exactly the real part's flash and RAM (at the addresses the runner needs), with
a fixed stack at the bottom of RAM, so a model whose arena and weights do not
fit fails at link time; ld's overflow message becomes `DoesNotFit`.

A build is skipped when the hash of everything that goes into it (sources,
headers, flags, linker script, toolchain version) matches the last one in
`out_dir`. The runtime and HAL sources do not depend on the model: each is
compiled once per content and flags into build/objects/ (about 5 s of the
7 s a model's build took; the runtime with the core's flags and kernel
selection only, so boards with one core share it), and a build compiles only the app and the
generated model and links them with those objects, in the same order as one
gcc call over all sources would.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from harness.targets.boards import Board, RunnerTarget
from harness.targets.hal import HAL_DIR, load_hal
from harness.errors import FusebenchError
from harness.paths import BUILD_DIR, FIRMWARE_DIR

APP_DIR = FIRMWARE_DIR / "app"
RUNTIME_DIR = FIRMWARE_DIR / "runtime"



@dataclass(frozen=True)
class Toolchain:
    """What building for one architecture takes."""
    arch: str                 # Board.arch
    gcc: str
    size: str                 # binutils' size, for the section sizes
    packages: str             # the Debian packages that install gcc and the C library
    specs: str                # the C library's gcc specs
    hal_dir: str              # the HAL parts every target of the architecture shares
    entry: str                # the start-up symbol (ENTRY of the linker script)


TOOLCHAINS = {
    "arm": Toolchain("arm", "arm-none-eabi-gcc", "arm-none-eabi-size",
                     "gcc-arm-none-eabi libnewlib-arm-none-eabi", "nano.specs", "cortexm",
                     "Reset_Handler"),
    # Debian has no newlib for this gcc, but picolibc (its rv32im multilib serves rv32imc).
    "riscv": Toolchain("riscv", "riscv64-unknown-elf-gcc", "riscv64-unknown-elf-size",
                       "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf", "picolibc.specs",
                       "riscv", "_start"),
}
# What every target shares, whatever its architecture (semihosting, host files, stack painting).
COMMON_HAL_DIR = "common"


def toolchain(board: Board) -> Toolchain:
    return TOOLCHAINS[board.arch]


ELF_NAME = "firmware.elf"
OBJECTS_DIR = BUILD_DIR / "objects"    # runtime and HAL objects, by content hash
RECORD_NAME = "build.json"

# The vector table has 256 entries (1 KB); VTOR needs it aligned to its size.
VECTOR_TABLE_ALIGN = 1024


class DoesNotFit(FusebenchError):
    """The image needs more flash or RAM than the board has."""

    def __init__(self, board: str, region: str, needed: int, available: int,
                 overflows: dict[str, int] | None = None):
        self.board = board
        self.region = region
        self.needed = needed
        self.available = available
        self.overflows = overflows or {region: needed - available}
        super().__init__(f"firmware does not fit {board}: {region} needs {needed} bytes, "
                         f"has {available} (over by {needed - available})")


@dataclass(frozen=True)
class BuildResult:
    elf: Path
    map_file: Path
    linker_script: Path
    board: str
    runner: str
    text_bytes: int          # code + read-only data (weights) + vector table
    data_bytes: int          # initialised RAM data (also stored in flash)
    bss_bytes: int           # zeroed RAM data, the arena included
    stack_bytes: int         # the fixed stack region
    flash_bytes: int         # text + data: what is written to flash
    ram_static_bytes: int    # data + bss
    cached: bool = False     # True when the previous build was reused
    external_flash_bytes: int = 0   # the weight blob, when the board keeps it in external flash

    @property
    def ram_bytes(self) -> int:
        """All RAM the image reserves: static data and the stack."""
        return self.ram_static_bytes + self.stack_bytes


def linker_script(board: Board, target: RunnerTarget) -> str:
    """The GNU ld script for `board` as the runner `target` runs it."""
    if board.arch == "riscv":
        return _riscv_linker_script(board, target)
    flash = target.flash
    if flash.origin % VECTOR_TABLE_ALIGN:
        raise FusebenchError(f"board {board.name}: flash origin {flash.origin:#x} is not "
                             f"{VECTOR_TABLE_ALIGN}-byte aligned (needed by the vector table)")
    weights_section = _weights_parts(target)[1]
    return _script_head(board, target) + f"""\
SECTIONS
{{{weights_section}
  .text :
  {{
    KEEP(*(.isr_vector))
    *(.text .text.*)
    *(.rodata .rodata.*)
    . = ALIGN(4);
    __init_array_start = .;
    KEEP(*(.preinit_array*))
    KEEP(*(.init_array*))
    __init_array_end = .;
  }} > FLASH

  .ARM.extab : {{ *(.ARM.extab* .gnu.linkonce.armextab.*) }} > FLASH
  .ARM.exidx :
  {{
    __exidx_start = .;
    *(.ARM.exidx* .gnu.linkonce.armexidx.*)
    __exidx_end = .;
  }} > FLASH

  /* The stack first: an overflow runs off the start of RAM instead of into .bss. */
  .stack (NOLOAD) : ALIGN(8)
  {{
    __stack_bottom = .;
    . += __stack_size;
    __stack_top = .;
  }} > RAM

  .data : ALIGN(4)
  {{
    __data_start = .;
    *(.data .data.*)
    . = ALIGN(4);
    __data_end = .;
  }} > RAM AT > FLASH
  __data_load = LOADADDR(.data);

  .bss (NOLOAD) : ALIGN(4)
  {{
    __bss_start = .;
    *(.bss .bss.*)
    *(COMMON)
    . = ALIGN(4);
    __bss_end = .;
  }} > RAM

  end = .;
}}

/* Start-up code runs no constructors: there must be none. */
ASSERT(__init_array_end == __init_array_start, "static constructors are not supported")
"""


def _script_head(board: Board, target: RunnerTarget) -> str:
    """What both architectures' scripts begin with: the regions (the real
    part's sizes at the runner's origins), the entry and the stack size."""
    flash, ram = target.flash, target.ram
    weights_memory = _weights_parts(target)[0]
    return f"""\
/* Generated by harness/build.py for board {board.name}, runner {target.kind}.
 * Sizes are the real part's ({board.description});
 * origins are where {target.machine or target.kind} has them. */
MEMORY
{{
  FLASH (rx)  : ORIGIN = {flash.origin:#010x}, LENGTH = {flash.size:#x}
  RAM   (rwx) : ORIGIN = {ram.origin:#010x}, LENGTH = {ram.size:#x}{weights_memory}
}}

ENTRY({toolchain(board).entry})

__stack_size = {board.stack_bytes:#x};

"""


def _weights_parts(target: RunnerTarget) -> tuple[str, str]:
    """The MEMORY line and the section of an external weights flash ("" without one)."""
    if target.weights is None:
        return "", ""
    # The model's weight blob goes to the external flash; this statement must
    # come before .text, whose *(.rodata.*) would otherwise take it.
    return (f"\n  WEIGHTS (r)  : ORIGIN = {target.weights.origin:#010x}, "
            f"LENGTH = {target.weights.size:#x}",
            "\n  .fb_weights (READONLY) : { KEEP(*(.rodata.fb_weights)) } > WEIGHTS\n")


def _riscv_linker_script(board: Board, target: RunnerTarget) -> str:
    """The RISC-V script: the same regions and RAM order as the Cortex-M one
    (stack, .data, .bss), without the vector table and the Arm unwind tables,
    with the small-data sections the global pointer reaches, the thread-local
    block picolibc keeps errno in, and an empty heap."""
    weights_section = _weights_parts(target)[1]
    return _script_head(board, target) + f"""\
SECTIONS
{{{weights_section}
  .text :
  {{
    KEEP(*(.text.start))
    *(.text .text.*)
    *(.rodata .rodata.* .srodata .srodata.*)
    . = ALIGN(4);
    __init_array_start = .;
    KEEP(*(.preinit_array*))
    KEEP(*(.init_array*))
    __init_array_end = .;
  }} > FLASH

  /* The stack first: an overflow runs off the start of RAM instead of into .bss.
   * 16-byte aligned, as the psABI wants sp. */
  .stack (NOLOAD) : ALIGN(16)
  {{
    __stack_bottom = .;
    . += __stack_size;
    __stack_top = .;
  }} > RAM

  /* Small data last in .data and first in .bss, so that gp (2 KB past the start
   * of .sdata: its 12-bit offsets reach both ways) covers both. */
  .data : ALIGN(4)
  {{
    __data_start = .;
    *(.data .data.*)
    __global_pointer$ = . + 0x800;
    *(.sdata .sdata.*)
    . = ALIGN(4);
    __data_end = .;
  }} > RAM AT > FLASH
  __data_load = LOADADDR(.data);

  /* The thread-local block (picolibc's errno): its initial values, then its
   * zeroed part, which takes no addresses of its own (ld lays the next section
   * over a .tbss), hence .tbss_space. */
  .tdata : ALIGN(4)
  {{
    __tdata_start = .;
    *(.tdata .tdata.*)
    . = ALIGN(4);
    __tdata_end = .;
  }} > RAM AT > FLASH
  __tdata_load = LOADADDR(.tdata);
  .tbss (NOLOAD) : ALIGN(4)
  {{
    __tbss_start = .;
    *(.tbss .tbss.*)
    . = ALIGN(4);
    __tbss_end = .;
  }} > RAM
  .tbss_space (NOLOAD) : {{ . = __tbss_end; }} > RAM

  .bss (NOLOAD) : ALIGN(4)
  {{
    __bss_start = .;
    *(.sbss .sbss.*)
    *(.bss .bss.*)
    *(COMMON)
    . = ALIGN(4);
    __bss_end = .;
  }} > RAM

  end = .;
  /* No heap: picolibc's sbrk gets none, so malloc fails. */
  __heap_start = end;
  __heap_end = end;
}}

/* Start-up code runs no constructors: there must be none. */
ASSERT(__init_array_end == __init_array_start, "static constructors are not supported")
"""


def hal_defines(board: Board, target: RunnerTarget) -> list[str]:
    """What the runner table's HAL takes from the board file, as -D flags (its
    firmware/hal/<hal>/hal.toml: the silicon HALs' clock, console baud rate
    and pins); none for a HAL without a description (the QEMU ones)."""
    return load_hal(target.hal).defines(board, target)


# Cores with the DSP extension (SMLAD, SXTB16, ...): the runtime's optimized
# kernels (firmware/runtime/src/fb_*_dsp.c); other cores (Cortex-M0/M3, every
# RISC-V core: the optimized kernels are Arm code) get the portable ones.
DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
KERNELS_ENV = "FB_KERNELS"          # "portable" forces the portable kernels (A/B runs)


def kernel_set(board: Board) -> str:
    """The kernels the image for `board` runs: "dsp" on a DSP core unless
    $FB_KERNELS is "portable", else "portable" (the names of hostrt's builds)."""
    wanted = os.environ.get(KERNELS_ENV, "").strip().lower() or "auto"
    if wanted not in ("auto", "dsp", "portable"):
        raise FusebenchError(f"${KERNELS_ENV} is {wanted!r}: expected dsp or portable")
    if wanted == "dsp" and board.core not in DSP_CORES:
        raise FusebenchError(f"board {board.name}: {board.core} has no DSP extension for the dsp kernels")
    return "dsp" if board.core in DSP_CORES and wanted != "portable" else "portable"


def kernel_defines(board: Board) -> list[str]:
    """-DFB_KERNELS_DSP=1 when the board runs the dsp kernels (kernel_set), else 0."""
    return [f"-DFB_KERNELS_DSP={int(kernel_set(board) == 'dsp')}"]


@functools.lru_cache(maxsize=None)
def _toolchain_version(tools: Toolchain) -> str:
    if shutil.which(tools.gcc) is None:
        raise FusebenchError(f"{tools.gcc} not found: install the Debian packages {tools.packages}")
    proc = subprocess.run([tools.gcc, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"


def _c_sources(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.c")) if directory.is_dir() else []


def _headers(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.h")) if directory.is_dir() else []


def build_firmware(board: Board, gen_dir: Path, out_dir: Path,
                   extra_sources: Iterable[Path] = (), opt: str = "-O2",
                   runner: str = "qemu") -> BuildResult:
    """Build the firmware for `board` as run by `runner`, from the generated
    model in `gen_dir` (fb_model.c/.h and any other .c there), into `out_dir`.

    Raises DoesNotFit when the image exceeds the board's flash or RAM and
    FusebenchError for a missing toolchain or a compile error."""
    gen_dir, out_dir = Path(gen_dir).resolve(), Path(out_dir).resolve()
    # A table that runs another table's image (`image = "<kind>"`) gets that very image.
    target = board.runner(board.runner(runner).image_kind)
    tools = toolchain(board)
    version = _toolchain_version(tools)
    if not (gen_dir / "fb_model.h").is_file():
        raise FusebenchError(f"no fb_model.h in {gen_dir}: generate the model code first")
    hal_dir = HAL_DIR / target.hal
    if not hal_dir.is_dir():
        raise FusebenchError(f"board {board.name}: HAL {target.hal!r} not found in {HAL_DIR}")
    if not re.fullmatch(r"-O[0-3sgz]|-Ofast", opt):
        raise FusebenchError(f"bad optimisation flag {opt!r} (expected -O0..-O3, -Os, -Oz, -Og)")

    # model-independent sources first (compiled once into build/objects), then the app and the model
    runtime = _c_sources(RUNTIME_DIR / "src")
    hal = _c_sources(HAL_DIR / COMMON_HAL_DIR) + _c_sources(HAL_DIR / tools.hal_dir) + _c_sources(hal_dir)
    shared = runtime + hal
    own = _c_sources(APP_DIR) + _c_sources(gen_dir) + [Path(s).resolve() for s in extra_sources]
    sources = shared + own
    for source in sources:
        if not source.is_file():
            raise FusebenchError(f"firmware source {source} does not exist")
    include_dirs = [HAL_DIR, APP_DIR, RUNTIME_DIR / "include", gen_dir]
    headers = [h for d in (HAL_DIR, APP_DIR, RUNTIME_DIR, gen_dir) for h in _headers(d)]

    elf = out_dir / ELF_NAME
    map_file = out_dir / "firmware.map"
    script_path = out_dir / "firmware.ld"
    script = linker_script(board, target)
    defines = [
        f'-DFB_BOARD_NAME="{board.name}"',
        f"-DFB_UART_BASE={target.uart_address:#x}u",
        f"-DFB_RUNNER_{target.kind.upper()}=1",
        *hal_defines(board, target),
        *kernel_defines(board),
    ]
    core_flags = [*board.cpu_flags, opt, "-g3", "-std=c11", "-Wall", "-Wextra",
                  "-ffunction-sections", "-fdata-sections", "-fno-common"]
    compile_flags = [*core_flags, *defines, *[f"-I{d}" for d in include_dirs]]
    # The runtime and the HAL see neither the app's nor the model's folder; the
    # runtime reads only the kernel selection, so every board with this core and
    # kernel set shares its objects (the board's and runner's defines go to the HAL).
    runtime_flags = [*core_flags, *kernel_defines(board), f"-I{RUNTIME_DIR / 'include'}"]
    hal_flags = [*core_flags, *defines, *[f"-I{d}" for d in (HAL_DIR, RUNTIME_DIR / "include")]]
    link_flags = ["-nostartfiles", f"--specs={tools.specs}", f"-T{script_path}",
                  "-Wl,--gc-sections", f"-Wl,-Map={map_file}", "-Wl,--no-warn-rwx-segments"]
    # Linked under a temporary name and moved into place: an emulator another
    # run starts meanwhile loads the old image or the new one, never half of one.
    linked = out_dir / f".{ELF_NAME}.{os.getpid()}"
    command = [tools.gcc, *compile_flags, *map(str, sources), *link_flags,
               "-o", str(linked), "-lc", "-lm", "-lgcc"]

    digest = hashlib.sha256()
    for part in (version, script, "\0".join(command).replace(str(linked), str(elf))):
        digest.update(part.encode() + b"\0")
    for path in sorted(set(sources) | set(headers)):
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    build_hash = digest.hexdigest()

    record_path = out_dir / RECORD_NAME
    cached = _cached_result(record_path, build_hash, elf)
    if cached is not None:
        return cached

    out_dir.mkdir(parents=True, exist_ok=True)
    script_path.write_text(script)
    # the C library's specs also set its include folders (picolibc, newlib-nano): compile with them too
    specs = f"--specs={tools.specs}"
    objects, log = _shared_objects(tools.gcc, version, [*runtime_flags, specs], runtime, out_dir)
    if objects is not None:
        hal_objects, log = _shared_objects(tools.gcc, version, [*hal_flags, specs], hal, out_dir)
        objects = objects + hal_objects if hal_objects is not None else None
    if objects is not None:
        command = [tools.gcc, *compile_flags, *map(str, objects), *map(str, own), *link_flags,
                   "-o", str(linked), "-lc", "-lm", "-lgcc"]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=out_dir)
        log = proc.stdout + proc.stderr
    else:
        proc = subprocess.CompletedProcess(command, 1)
    origin = "".join(f"{obj.name}: {src}\n" for src, obj in zip(shared, objects or []))
    (out_dir / "build.log").write_text(" ".join(command) + "\n\n" + log +
                                       (f"\nobjects from {OBJECTS_DIR} (same flags, no model folder):\n{origin}"
                                        if origin else ""))
    if proc.returncode != 0:
        linked.unlink(missing_ok=True)
        _raise_build_error(board, target, log, out_dir / "build.log")
    os.replace(linked, elf)

    result = _measure(board, target, elf, map_file, script_path)
    record_path.write_text(json.dumps({"hash": build_hash, "result": _to_json(result)}, indent=1))
    return result


def _shared_objects(gcc: str, version: str, flags: list[str], sources: list[Path],
                    out_dir: Path) -> tuple[list[Path] | None, str]:
    """The object of every model-independent source, compiled when its content,
    the headers it may include, the flags or the compiler changed; (None, log)
    when one fails to compile."""
    headers = hashlib.sha256()
    for path in _headers(HAL_DIR) + _headers(RUNTIME_DIR):
        headers.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    common = "\0".join([gcc, version, *flags, headers.hexdigest()])
    objects, missing = [], []
    for source in sources:
        key = hashlib.sha256(common.encode() + b"\0" + str(source).encode() + b"\0" + source.read_bytes())
        obj = OBJECTS_DIR / f"{source.stem}-{key.hexdigest()[:20]}.o"
        objects.append(obj)
        if not obj.is_file():
            missing.append((source, obj))
    OBJECTS_DIR.mkdir(parents=True, exist_ok=True)

    def compile_one(job: tuple[Path, Path]) -> str | None:
        source, obj = job
        # written under a temporary name and moved: parallel builds share the folder
        tmp = obj.with_name(f".{obj.name}.{os.getpid()}.{threading.get_ident()}")
        proc = subprocess.run([gcc, *flags, "-c", str(source), "-o", str(tmp)], capture_output=True, text=True,
                              cwd=out_dir)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            return proc.stdout + proc.stderr
        os.replace(tmp, obj)
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(len(missing), os.cpu_count() or 1))) as pool:
        failures = [log for log in pool.map(compile_one, missing) if log is not None]
    return (None, failures[0]) if failures else (objects, "")


@contextmanager
def build_lock(folder: Path):
    """Hold a build folder for one process: two runs of the same clone that
    build the same (board, model, variant) take turns, and the second finds
    the first's image up to date instead of rewriting it under it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_result(record_path: Path, build_hash: str, elf: Path) -> BuildResult | None:
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("hash") != build_hash or not elf.is_file():
        return None
    fields = dict(record["result"])
    for key in ("elf", "map_file", "linker_script"):
        fields[key] = Path(fields[key])
    fields["cached"] = True
    return BuildResult(**fields)


def _to_json(result: BuildResult) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}


_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def _raise_build_error(board: Board, target: RunnerTarget, log: str, log_path: Path) -> None:
    overflows: dict[str, int] = {}
    for region, excess in _OVERFLOW.findall(log):
        overflows[region] = max(overflows.get(region, 0), int(excess))
    if overflows:
        sizes = {"FLASH": target.flash.size, "RAM": target.ram.size}
        # RAM first: the arena is what usually does not fit.
        region = "RAM" if "RAM" in overflows else next(iter(overflows))
        available = sizes.get(region, 0)
        raise DoesNotFit(board.name, region, available + overflows[region], available, overflows)
    tools = toolchain(board)
    if tools.specs in log and "cannot read spec file" in log:
        library = tools.specs.removesuffix(".specs")
        raise FusebenchError(f"the C library's {tools.specs} is missing ({library}): install the "
                             f"Debian packages {tools.packages}")
    first = next((line.strip() for line in log.splitlines() if "error" in line.lower()),
                 log.strip().splitlines()[-1] if log.strip() else "no output")
    raise FusebenchError(f"firmware build failed: {first} (full log: {log_path})")


def _measure(board: Board, target: RunnerTarget, elf: Path, map_file: Path,
             script_path: Path) -> BuildResult:
    size_tool = toolchain(board).size
    proc = subprocess.run([size_tool, "-A", "-d", str(elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise FusebenchError(f"{size_tool} failed on {elf}: {proc.stderr.strip()}")
    sections: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    text = sum(sections.get(s, 0) for s in (".text", ".ARM.extab", ".ARM.exidx"))
    # RISC-V's thread-local block counts as data (.tdata) and bss (.tbss_space,
    # the addresses reserved for .tbss); Arm images have none.
    data = sections.get(".data", 0) + sections.get(".tdata", 0)
    bss = sections.get(".bss", 0) + sections.get(".tbss_space", 0)
    stack = sections.get(".stack", 0)
    return BuildResult(elf=elf, map_file=map_file, linker_script=script_path,
                       board=board.name, runner=target.kind, text_bytes=text,
                       data_bytes=data, bss_bytes=bss, stack_bytes=stack,
                       flash_bytes=text + data, ram_static_bytes=data + bss,
                       external_flash_bytes=sections.get(".fb_weights", 0))
