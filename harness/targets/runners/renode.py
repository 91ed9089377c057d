"""Run firmware on Renode's model of the real part (STM32H743, STM32F4).

The image is the silicon one (firmware/hal/stm32h7, stm32f4, linked at the
real addresses). The runner writes a Renode script (`.resc`) that creates the
machine from Renode's own platform file, adds what the firmware needs and the
platform lacks, loads the ELF, puts the console USART on a pseudo-terminal and
starts; the host then speaks `harness.targets.protocol` over that pty with the serial
runner's code, uploading every input in acknowledged chunks.

    mach create "fusebench"
    machine LoadPlatformDescription @platforms/cpus/stm32h743.repl
    machine LoadPlatformDescription @<scratch>/fusebench-additions.repl   (the DWT)
    sysbus Tag <0x5C001000, 0x5C001003> "DBGMCU_IDC" 0x20036450           (board file `tags`)
    sysbus.cpu PerformanceInMips 480
    sysbus LoadELF @<scratch>/firmware.elf
    sysbus.cpu VectorTableOffset 0x08000000
    emulation CreateUartPtyTerminal "fbconsole" "<scratch>/console.pty" true
    connector Connect sysbus.usart3 fbconsole
    start

Counting: Renode's platforms have no DWT, so the script adds
`Miscellaneous.DWT @ sysbus 0xE0001000` counting at the board's clock, and
runs the core at clock-MHz MIPS: CYCCNT then advances one per executed
instruction of Renode's *virtual* time. That is an instruction count under a
one-instruction-per-cycle model, not a measurement of the chip's cycles:
`count_source` is `renode-virtual`.

Renode is found at run time: `--renode PATH` (the executable or its folder),
else the RENODE environment variable, else pyrenode3 when it imports (Renode
in this process, driven through its Monitor), else `renode` on PATH. The
`renode` command runs headless (`--disable-xwt`) with its Monitor on a local
TCP port, through which the runner says `quit`; the process (group) is killed
if it does not go, on every way out: done, error, timeout, Ctrl-C.

Renode is not installable from the package registries here: this module is
written from Renode's documentation and sources (monitor syntax, platform
files, the DWT and UART models), its scripts are unit-tested, and its
end-to-end tests run where a Renode installation is found.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.targets.boards import Board, BoardTable
from harness.errors import FusebenchError
from harness.targets.protocol import DeviceInfo, Session
from harness.targets.runners.base import RunResult, kill_process_group, register_runner
from harness.targets.runners.serial import SerialLink, SerialRunner

RENODE_ENV = "RENODE"
RENODE_NOT_FOUND = ("Renode not found: install it (renode.io, e.g. the portable Linux package) and "
                    "pass --renode /path/to/renode, set RENODE=/path/to/renode, or put `renode` on "
                    "PATH")
CONSOLE_NAME = "fbconsole"
MACHINE_NAME = "fusebench"
_SAFE_PATH_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+")


# -- finding Renode -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenodeInstall:
    """How this machine runs Renode: an executable, or pyrenode3 in-process."""
    kind: str                       # "command" or "pyrenode3"
    executable: Optional[Path] = None

    def describe(self) -> str:
        return str(self.executable) if self.kind == "command" else "pyrenode3"


def _executable_at(text: str, origin: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "renode"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FusebenchError(f"{origin} {text} is not a Renode executable (or a folder holding "
                             f"`renode`); {RENODE_NOT_FOUND}")
    return path.resolve()


def find_renode(explicit: Optional[str] = None, env: Optional[dict] = None,
                allow_pyrenode3: bool = True) -> RenodeInstall:
    """Where Renode is: `explicit` (--renode), $RENODE, pyrenode3, `renode` on PATH."""
    env = os.environ if env is None else env
    if explicit:
        return RenodeInstall("command", _executable_at(explicit, "--renode"))
    if env.get(RENODE_ENV):
        return RenodeInstall("command", _executable_at(env[RENODE_ENV], f"${RENODE_ENV}"))
    if allow_pyrenode3 and importlib.util.find_spec("pyrenode3") is not None:
        return RenodeInstall("pyrenode3")
    found = shutil.which("renode", path=env.get("PATH"))
    if found:
        return RenodeInstall("command", Path(found).resolve())
    raise FusebenchError(RENODE_NOT_FOUND)


# -- the script ------------------------------------------------------------------------------------

def _renode_path(path: Path) -> str:
    """A path as a Renode `@path` token: no spaces or quotes (the scratch
    folder is chosen so; a repo path is copied there first)."""
    text = str(path)
    if not set(text) <= _SAFE_PATH_CHARS:
        raise FusebenchError(f"path {text!r} has characters Renode's monitor cannot take")
    return text


def platform_additions(board: Board) -> str:
    """Peripherals the firmware needs that Renode's platform lacks (a .repl)."""
    target = board.runner("renode")
    if not target.option("add_dwt", True):
        return ""
    return ("// Added by fusebench: a DWT whose CYCCNT counts at the core clock.\n"
            f"dwt: Miscellaneous.DWT @ sysbus 0xE0001000\n"
            f"    frequency: {board.clock_hz}\n")


def _tags(board: Board) -> list[str]:
    lines = []
    for raw in board.runner("renode").option("tags", ()):
        tag = dict(raw)
        address, size = int(tag["address"]), int(tag.get("size", 4))
        name = str(tag.get("name", "fusebench_tag")).replace('"', "")
        lines.append(f'sysbus Tag <{address:#x}, {address + size - 1:#x}> "{name}" '
                     f'{int(tag.get("value", 0)):#x}')
    return lines


# Renode lines that say nothing about the firmware: offline, stm32f4.repl's
# attempt to download its SVD file fails, is logged, and the platform loads anyway.
_LOG_NOISE = re.compile(r"\bsvd\b|\.svd(\.gz)?\b|could not download|failed to download", re.IGNORECASE)


def _log_noise(line: str) -> bool:
    return bool(_LOG_NOISE.search(line))


DEFAULT_QUANTUM_S = 2e-6          # board files may set [runners.renode] quantum_s


def renode_script(board: Board, elf: Path, pty: Path, additions: Optional[Path]) -> str:
    """The .resc that runs `elf` on Renode's model of `board`'s part with the
    console USART on the pseudo-terminal `pty`."""
    target = board.runner("renode")
    mips = max(1, round(board.clock_hz / 1_000_000))
    lines = [
        f"# Generated by fusebench for board {board.name} ({board.description}).",
        "logLevel 3",
        f'mach create "{MACHINE_NAME}"',
        f"machine LoadPlatformDescription @{target.option('platform')}",
    ]
    if additions is not None:
        lines.append(f"machine LoadPlatformDescription @{_renode_path(additions)}")
    lines += _tags(board)
    quantum = float(target.option("quantum_s", DEFAULT_QUANTUM_S))
    lines += [
        # One instruction per cycle of virtual time at the core clock: the
        # DWT's CYCCNT then counts executed instructions.
        f"sysbus.cpu PerformanceInMips {mips}",
        # Virtual time moves in quanta (100 us by default: 48,000 instructions
        # at 480 MHz, so every count was a multiple of that). A 2 us quantum
        # puts each read of the counter within 960 instructions (336 on the F4).
        f'emulation SetGlobalQuantum "{quantum:.9f}"',
        f"sysbus LoadELF @{_renode_path(elf)}",
        # Boot from the image's vector table (Renode would guess address 0).
        f"sysbus.cpu VectorTableOffset {target.flash.origin:#010x}",
        # The console last: once its pty exists, everything above succeeded.
        f'emulation CreateUartPtyTerminal "{CONSOLE_NAME}" "{_renode_path(pty)}" true',
        f"connector Connect {target.option('uart_peripheral')} {CONSOLE_NAME}",
        "start",
    ]
    return "\n".join(lines) + "\n"


def renode_command(executable: Path, script: Path, monitor_port: int) -> list[str]:
    """Headless Renode running `script`, its Monitor on a local TCP port."""
    return [str(executable), "--disable-xwt", "--plain", "--port", str(monitor_port),
            str(script)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- running Renode --------------------------------------------------------------------------------

class RenodeProcess:
    """One emulation; `pty` is the console. Always ended by close()."""

    def __init__(self, install: RenodeInstall, board: Board, elf: Path, start_timeout_s: float,
                 quit_timeout_s: float = 5.0):
        self.install = install
        self.quit_timeout_s = quit_timeout_s
        # A scratch folder whose path Renode's monitor can take (no spaces).
        base = tempfile.gettempdir()
        if not set(base) <= _SAFE_PATH_CHARS:
            base = "/tmp"
        self.scratch = Path(tempfile.mkdtemp(prefix="fusebench-renode-", dir=base))
        self.process: Optional[subprocess.Popen] = None
        self.monitor_port: Optional[int] = None
        self._emulation = None
        self.log_path = self.scratch / "renode.log"
        try:
            self.pty = self.scratch / "console.pty"
            elf_copy = self.scratch / "firmware.elf"
            shutil.copyfile(elf, elf_copy)
            additions_text = platform_additions(board)
            additions = None
            if additions_text:
                additions = self.scratch / "fusebench-additions.repl"
                additions.write_text(additions_text)
            self.script = self.scratch / "fusebench.resc"
            self.script.write_text(renode_script(board, elf_copy, self.pty, additions))
            if install.kind == "pyrenode3":
                self._start_pyrenode3()
            else:
                self._start_command()
            self._wait_for_console(start_timeout_s)
        except BaseException:
            self.close()
            raise

    def _start_command(self) -> None:
        self.monitor_port = _free_port()
        command = renode_command(self.install.executable, self.script, self.monitor_port)
        with open(self.log_path, "wb") as log:
            # Own session: Ctrl-C reaches only us, and close() can end the group.
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.scratch,
                                            start_new_session=True)

    def _start_pyrenode3(self) -> None:
        try:
            from pyrenode3.wrappers import Emulation, Monitor
        except Exception as exc:   # pyrenode3 needs PYRENODE_PKG or a Renode build to load
            raise FusebenchError(f"pyrenode3 is installed but cannot load Renode ({exc}); set "
                                 f"PYRENODE_PKG, or use the renode command: "
                                 f"{RENODE_NOT_FOUND}") from None
        self._emulation = Emulation()
        _, error = Monitor().execute(f"include @{self.script}")
        if error and error.strip():
            raise FusebenchError(f"Renode refused the script {self.script}: "
                                 f"{error.strip().splitlines()[-1]}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        kept = [l.strip() for l in text.splitlines() if l.strip() and not _log_noise(l)]
        return " | ".join(kept[-lines:])

    def _wait_for_console(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.pty.exists():
            if self.process is not None and self.process.poll() is not None:
                raise FusebenchError(f"Renode exited with status {self.process.returncode} before "
                                     f"the console existed: {self.log_tail() or 'no output'} "
                                     f"(script {self.script})")
            if time.monotonic() > deadline:
                raise FusebenchError(f"Renode did not create the console within {timeout_s:g} s: "
                                     f"{self.log_tail() or 'no output'} (script {self.script})")
            time.sleep(0.05)

    def _quit_through_monitor(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.monitor_port), timeout=2) as s:
                s.sendall(b"quit\n")
                s.settimeout(0.5)
                try:
                    s.recv(4096)
                except OSError:
                    pass
        except OSError:
            pass

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None and self.monitor_port:
                self._quit_through_monitor()
                try:
                    self.process.wait(timeout=self.quit_timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            kill_process_group(self.process)
            self.process = None
        if self._emulation is not None:
            try:
                self._emulation.clear()
            except Exception:
                pass
            self._emulation = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "RenodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@register_runner
class RenodeRunner(SerialRunner):
    """Runs firmware on Renode; one emulation per session, a fresh one after
    a crash or a hang (the HAL's reset-on-exit is not what Renode models).
    The console is a serial line on a pseudo-terminal: everything else is the
    serial runner's."""

    kind = "renode"
    count_source = "renode-virtual"
    parallel_jobs = True
    preference = None              # only when asked for: Renode is rarely installed
    chosen_by_option = None
    end_failed_sessions = True     # a hung emulation spins a core: end it at once

    def __init__(self, board: Board, renode: Optional[str] = None, start_timeout_s: float = 120.0,
                 boot_timeout_s: float = 30.0, ack_timeout_s: float = 10.0,
                 quit_timeout_s: float = 5.0):
        super().__init__(board, port=None, boot_timeout_s=boot_timeout_s, ack_timeout_s=ack_timeout_s)
        self.quit_timeout_s = quit_timeout_s
        self.renode = renode
        self.start_timeout_s = start_timeout_s
        self.install: Optional[RenodeInstall] = None
        self.sim: Optional[RenodeProcess] = None

    @classmethod
    def from_options(cls, board: Board, renode: Optional[str] = None, **_) -> "RenodeRunner":
        """`renode`: the Renode executable or its folder (default: found, see find_renode)."""
        return cls(board, renode=renode)

    @classmethod
    def check_table(cls, table: BoardTable) -> None:
        super().check_table(table)
        table.need("platform", str)
        table.need("uart_peripheral", str)
        for tag in table.values.get("tags", []):
            if not isinstance(tag, dict) or not all(
                    isinstance(tag.get(k, 0), int) for k in ("address", "size", "value")) \
                    or "address" not in tag:
                raise table.fail(f"{table.ctx}tags entries must be tables with an integer "
                                 f"address (and optional size, value, name)")

    @property
    def where(self) -> str:
        return str(self.target.option("platform", ""))

    def check_tools(self) -> None:
        self.install = find_renode(self.renode)

    def start(self, binary: Path) -> Session:
        self.sim = RenodeProcess(self.install, self.board, binary, self.start_timeout_s,
                                 self.quit_timeout_s)
        self.port = str(self.sim.pty)
        self.link = SerialLink.open(self.port, self.baud)
        return self._handshake(binary, after=f"Renode started ({self.sim.log_tail()})")

    def restart(self, binary: Path, failed: RunResult) -> Session:
        self.stop()
        return self.start(binary)          # a fresh emulation

    def stop(self) -> None:
        super().stop()
        if self.sim is not None:
            self.sim.close()
            self.sim = None

    def check_ready(self, info: DeviceInfo, binary: Path) -> None:
        super().check_ready(info, binary)
        if info.timer == "systick":
            raise FusebenchError("on Renode the firmware found no DWT cycle counter (timer=systick): "
                                 "the platform needs Miscellaneous.DWT at 0xE0001000")

    def failure_detail(self, error) -> dict:
        return {**super().failure_detail(error), "renode_log": self.sim.log_tail()}
