"""Run firmware in QEMU (`qemu-system-arm`, or the board's `qemu`) and count instructions.

One emulator per firmware serves all inputs: the firmware's console UART is
QEMU's stdio, the host speaks harness.targets.protocol over the pipes. `-icount
shift=0` makes QEMU's virtual clock advance exactly 1 ns per executed
instruction, and SysTick follows that clock, so SysTick ticks times the board
file's `instructions_per_tick` is the instruction count (QEMU does not model
caches or pipelines: this is an instruction count, not a cycle count). On
RISC-V the time counter is minstret, which -icount feeds one per instruction.

The board's `[runners.qemu]` table names the emulator (`qemu`, default
qemu-system-arm, and `qemu_package`, the Debian package to name when it is
missing) and how the image is loaded (`load`: "kernel", `-kernel`, which
starts a Cortex-M at its vector table's reset handler; or "loader", `-device
loader` with the CPU started at the ELF's entry, which the RISC-V `virt`
machine with `-bios none` needs: it would jump to the start of its DRAM).

Inputs reach the firmware through a host file it reads with semihosting
(`input_via="file"`, the default: fast), or over the UART in acknowledged
chunks (`input_via="uart"`: what a real board on a serial line gets; QEMU
moves about 13 KB/s through its one-byte UART buffer).

A fault ends the emulator (the firmware reports it and exits through
semihosting), a hang is cut off after `timeout_s`; either way the next input
gets a fresh emulator. The process is always killed on the way out, also when
the caller stops iterating or presses Ctrl-C.
"""
from __future__ import annotations

import os
import queue
import shutil
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from harness.targets.boards import Board, BoardTable, RunnerTarget
from harness.errors import FusebenchError
from harness.targets.protocol import DeviceFault, LinkClosed, LinkTimeout, ProtocolError, Session
from harness.targets.runners.base import Runner, kill_process_group, register_runner

QEMU = "qemu-system-arm"
QEMU_PACKAGE = "qemu-system-arm"
LOAD_MODES = ("kernel", "loader")
# QEMU messages that say nothing about the firmware.
_STDERR_NOISE = ("has no peer",)
# What a RUN file= value may hold (frame values: printable, no space, @, #, =).
_FRAMEABLE_PATH = re.compile(r"(?:(?![@#=])[!-~]){1,255}")


class PipeLink:
    """The emulator's stdio as a line link. A thread reads stdout so that
    reads can time out; lines are kept for the report of a hang."""

    def __init__(self, process: subprocess.Popen):
        self._process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.recent: deque[str] = deque(maxlen=20)
        self._closed = False
        self._fd = os.dup(process.stdout.fileno())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # The thread reads its own duplicate of the pipe and closes it at EOF.
        # Reading the owner's descriptor would race with the owner closing it:
        # the number can be reused at once by the next emulator's pipe, and a
        # stale reader would then take that emulator's READY line.
        fd = self._fd
        pending = b""
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._lines.put(raw.decode("latin-1").rstrip("\r"))
        finally:
            os.close(fd)
        if pending:
            self._lines.put(pending.decode("latin-1"))
        self._lines.put(None)

    def write(self, data: bytes) -> None:
        try:
            self._process.stdin.write(data)
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise LinkClosed("the emulator closed its input") from None

    def read_line(self, timeout_s: float) -> str:
        if self._closed:
            raise LinkClosed("the emulator has exited")
        try:
            line = self._lines.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise LinkTimeout(f"no output for {timeout_s:g} s") from None
        if line is None:
            self._closed = True
            raise LinkClosed("the emulator has exited")
        self.recent.append(line)
        return line


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the harness dies,
    so an emulator never outlives a harness that was killed outright."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                               # not Linux: the normal clean-up still applies


def qemu_tool(target: RunnerTarget) -> tuple[str, str]:
    """The emulator a `[runners.qemu]` table names, and its Debian package."""
    return str(target.option("qemu", QEMU)), str(target.option("qemu_package", QEMU_PACKAGE))


def missing_qemu(qemu: str, package: str) -> FusebenchError:
    return FusebenchError(f"{qemu} not found: install the Debian package {package}")


class QemuProcess:
    """One QEMU process; a context manager that always kills it."""

    def __init__(self, command: list[str]):
        self.command = command
        self._stderr = tempfile.TemporaryFile()
        # Own session: a Ctrl-C in the terminal reaches only us; we end QEMU.
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr, start_new_session=True,
                                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.link = PipeLink(self.process)

    def stderr_tail(self, lines: int = 5) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        kept = [l for l in text.splitlines() if l.strip() and not any(n in l for n in _STDERR_NOISE)]
        return " | ".join(kept[-lines:])

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        kill_process_group(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.close()

    def __enter__(self) -> "QemuProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@register_runner
class QemuRunner(Runner):
    """QEMU's stand-in machine of the board (`[runners.qemu]`), one emulator
    per session; its SysTick ticks times `instructions_per_tick` count instructions."""

    kind = "qemu"
    count_source = "qemu-icount"
    preference = 0                 # no hardware needed: the default
    end_failed_sessions = True     # a hung emulator spins a core: end it at once
    reason_on_link_closed = "the emulator exited during the run"

    def __init__(self, board: Board, qemu: str | None = None, boot_timeout_s: float = 30.0,
                 ack_timeout_s: float = 10.0, input_via: str = "file"):
        super().__init__(board)
        if input_via not in ("file", "uart"):
            raise FusebenchError(f"input_via must be 'file' or 'uart', not {input_via!r}")
        board_qemu, self.qemu_package = qemu_tool(self.target)
        self.qemu = qemu or board_qemu
        self.boot_timeout_s = boot_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.input_via = input_via
        self.last_exit_code: int | None = None   # QEMU's status after a clean EXIT
        self.emulator: QemuProcess | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None

    @classmethod
    def check_table(cls, table: BoardTable) -> None:
        table.need("machine", str)
        if "instructions_per_tick" not in table.values:
            raise table.missing("instructions_per_tick")
        for key in ("qemu", "qemu_package"):
            if key in table.values:
                table.need(key, str)
        if "load" in table.values and table.need("load", str) not in LOAD_MODES:
            raise table.fail(f"{table.ctx}load must be one of {', '.join(LOAD_MODES)}, "
                             f"not {table.values['load']!r}")

    def command(self, elf: Path) -> list[str]:
        target = self.target
        # The console UART is the serial_index-th -serial; the ones before it go nowhere.
        serials = ["-serial", "null"] * target.serial_index + ["-serial", "stdio"]
        if target.option("load", "kernel") == "loader":
            # QEMU's option syntax: a comma inside a value is written twice.
            load = ["-device", f"loader,file={str(elf).replace(',', ',,')},cpu-num=0"]
        else:
            load = ["-kernel", str(elf)]
        return [self.qemu, "-M", str(target.machine), "-nodefaults", "-display", "none",
                "-monitor", "none", *serials,
                "-icount", "shift=0",
                "-semihosting-config", "enable=on,target=native",
                *target.extra_args, *load]

    def check_tools(self) -> None:
        if shutil.which(self.qemu) is None:
            raise missing_qemu(self.qemu, self.qemu_package)

    def start(self, binary: Path) -> Session:
        if self.input_via == "file":
            self._scratch = tempfile.TemporaryDirectory(prefix="fusebench-qemu-")
        self.emulator = QemuProcess(self.command(binary))
        return self.handshake(self.emulator.link, binary)

    def host_file(self, data: bytes) -> str | None:
        if self._scratch is None:
            return None
        path = str(Path(self._scratch.name) / "input.bin")
        if not _FRAMEABLE_PATH.fullmatch(path):
            return None               # e.g. a TMPDIR with spaces: fall back to the UART
        Path(path).write_bytes(data)
        return path

    def not_ready(self, error, binary: Path, after: str) -> FusebenchError:
        code = self.emulator.process.poll()
        if code is not None:
            return FusebenchError(f"QEMU exited with status {code} before the firmware was "
                                  f"ready: {self.emulator.stderr_tail() or 'no message'}")
        return FusebenchError(f"firmware {binary} did not say READY within "
                              f"{self.boot_timeout_s:g} s ({error})")

    def failure_detail(self, error) -> dict:
        detail: dict = {}
        if isinstance(error, (DeviceFault, LinkClosed)):
            # The firmware reports a fault and exits through semihosting: its status says how.
            detail["exit_code"] = self.emulator.wait(2.0)
        detail["last_output"] = list(self.emulator.link.recent)
        if isinstance(error, LinkClosed):
            stderr = self.emulator.stderr_tail()
            if stderr:
                detail["stderr"] = stderr
        return detail

    def shut_down(self, session: Session) -> None:
        """EXIT: the firmware answers BYE and ends QEMU through semihosting."""
        try:
            session.exit()
        except ProtocolError:
            return          # stop() kills it
        self.last_exit_code = self.emulator.wait(5.0)

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.close()
            self.emulator = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
