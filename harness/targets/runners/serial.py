"""Run firmware on a board on a serial port (a Nucleo's ST-LINK virtual COM
port, an OpenMV Cam's UART through a USB-serial adapter) and count cycles.

The firmware is flashed once per image (`harness.targets.flash`), the board is reset
and the host speaks `harness.targets.protocol` over pyserial: every input goes up in
acknowledged, checksummed chunks (real boards have no host file system), and
every answer is a framed line with a CRC-32, so a flipped or dropped byte is
detected and the command resent instead of being taken as data.

On top of the command-level retries of `protocol.Session`, this runner

* handshakes with HELLO until READY: the board may have booted (and said
  READY) before the port was opened;
* repeats a whole pass when its RESULT arrives damaged, or when lost answers
  made the device leave the transfer (a pass is idempotent: RUN repaints the
  arena and the input goes up again): a row never comes from a corrupted
  frame;
* after a fault (the silicon HALs report it and reset the chip) waits for the
  next READY, after a hang resets the board through the flasher when it can;
  a board that does not come back is a clear error naming the port.

The same class talks to QEMU's pseudo-terminal (`harness.targets.runners.qemu_pty`)
exactly as to a Nucleo: `firmware_runner="qemu"` then says that the image
is the QEMU-HAL one, whose counter counts instructions (`qemu-icount`).
"""
from __future__ import annotations

import re
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from harness.targets.boards import DEFAULT_BAUD, Board
from harness.errors import FusebenchError
from harness.targets.protocol import (INPUT_READ_FAILED, CorruptFrame, DeviceFault, DeviceInfo, LinkClosed,
                              LinkTimeout, PassResult, ProtocolError, Session, encode_frame)
from harness.targets.runners.base import PAINTS, RunResult, Runner, input_bytes, merge_passes

try:                         # pyserial's POSIX ports raise termios.error from tcdrain & co.
    import termios
    _TTY_ERRORS: tuple = (OSError, termios.error)
except ImportError:          # no termios (Windows)
    _TTY_ERRORS = (OSError,)

# What the time counter of an image counts, by the runner table it was built for.
COUNT_SOURCES = {"serial": "dwt", "renode": "renode-virtual", "qemu": "qemu-icount"}
# A silicon image whose DWT did not count falls back to SysTick on the core clock.
SYSTICK_ON_SILICON = "systick-cycles"
CYCLE_SOURCES = ("dwt", SYSTICK_ON_SILICON)

_TRAILER = re.compile(rb"#\d{1,9}#[0-9a-f]{8}\r?$")


class BoardNotAnswering(FusebenchError):
    """The board stopped answering and could not be brought back."""


class SerialLink:
    """A pyserial port as a line link (harness.targets.protocol.Link).

    Lines end in '\\n'. When the newline itself was lost but the bytes so far
    end like a whole frame and nothing more arrives for `idle_flush_s`, they
    are handed on as a line: the frame's checks decide, not a timeout."""

    def __init__(self, port, idle_flush_s: float = 0.2):
        self.port = port                       # a serial.Serial (or anything with its API)
        self.idle_flush_s = idle_flush_s
        self.recent: deque[str] = deque(maxlen=20)
        self._pending = bytearray()
        self._lines: deque[bytes] = deque()

    @classmethod
    def open(cls, device: str, baud: int = DEFAULT_BAUD) -> "SerialLink":
        import serial

        try:
            port = serial.serial_for_url(device, baudrate=baud, timeout=0.05, write_timeout=10)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise FusebenchError(f"cannot open serial port {device}: {exc}") from None
        return cls(port)

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:   # closing a port whose device vanished may raise anything
            pass

    def discard_input(self) -> None:
        """Forget everything received so far (boot noise, stale answers)."""
        try:
            self.port.reset_input_buffer()
        except Exception:
            pass
        self._pending.clear()
        self._lines.clear()

    def write(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, *_TTY_ERRORS) as exc:
            raise LinkClosed(f"serial port closed while writing: {exc}") from None

    def read_line(self, timeout_s: float) -> str:
        import serial

        deadline = time.monotonic() + max(timeout_s, 0.0)
        last_byte = time.monotonic()
        while not self._lines:
            now = time.monotonic()
            if (self._pending and now - last_byte >= self.idle_flush_s
                    and _TRAILER.search(bytes(self._pending))):
                self._lines.append(bytes(self._pending))
                self._pending.clear()
                break
            if now >= deadline:
                raise LinkTimeout(f"no line for {timeout_s:g} s")
            try:
                waiting = self.port.in_waiting
            except (serial.SerialException, *_TTY_ERRORS):
                waiting = 0             # the other end went away: still read what it left
            try:
                chunk = self.port.read(max(1, min(waiting, 65536)))
            except (serial.SerialException, *_TTY_ERRORS) as exc:
                if self._pending and _TRAILER.search(bytes(self._pending)):
                    # the last frame (e.g. FAULT) arrived whole but the end closed before its newline
                    self._lines.append(bytes(self._pending))
                    self._pending.clear()
                    break
                raise LinkClosed(f"serial port closed: {exc}") from None
            if chunk:
                last_byte = time.monotonic()
                self._pending += chunk
                *complete, rest = bytes(self._pending).split(b"\n")
                self._lines.extend(complete)
                self._pending = bytearray(rest)
        line = self._lines.popleft().decode("latin-1").rstrip("\r")
        self.recent.append(line)
        return line


class SerialRunner(Runner):
    """Runs firmware on a board reached over a serial port."""

    kind = "serial"
    count_source = "dwt"

    def __init__(self, board: Board, port: str, baud: Optional[int] = None,
                 flasher=None, firmware_runner: str = "serial", boot_timeout_s: float = 15.0,
                 ack_timeout_s: float = 5.0, retries: int = 4, pass_retries: int = 3,
                 reset: Optional[Callable[[], None]] = None):
        if firmware_runner not in COUNT_SOURCES:
            raise FusebenchError(f"firmware_runner must be one of {', '.join(COUNT_SOURCES)}")
        # Not Runner.__init__: the image may be one built for another runner table
        # (the QEMU-HAL image behind QEMU's pseudo-terminal).
        self.board = board
        self.target = board.runner(firmware_runner)
        self.firmware_runner = firmware_runner
        self.count_source = COUNT_SOURCES[firmware_runner]
        self.port = port
        self.baud = baud or int(self.target.option("baud", DEFAULT_BAUD))
        self.flasher = flasher
        self.boot_timeout_s = boot_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.pass_retries = pass_retries
        # How to reset the board after a hang: given, else the flasher's reset.
        self._reset = reset or (getattr(flasher, "reset", None) if flasher is not None else None)
        self.link: Optional[SerialLink] = None
        self.pass_repeats = 0          # passes run again after a damaged RESULT (for tests)

    # -- the session ------------------------------------------------------------------------

    def run(self, binary: Path, inputs: Iterable[np.ndarray],
            timeout_s: float = 60.0) -> Iterator[RunResult]:
        binary = Path(binary)
        if not binary.is_file():
            raise FusebenchError(f"firmware {binary} does not exist")
        if self.flasher is not None:
            self.flasher.flash(binary)          # also resets the board
        self.link = SerialLink.open(self.port, self.baud)
        try:
            session = self.handshake(binary, after="opening the port")
            failed: Optional[RunResult] = None
            for index, array in enumerate(inputs):
                if failed is not None:          # only when there is a next input
                    session, failed = self._recover(binary, failed), None
                data = input_bytes(array, session.info.input_bytes, index)
                result = self.measure(session, data, timeout_s, index)
                yield result
                if result.status != "ok":
                    failed = result
            if failed is None:
                try:
                    session.exit()              # BYE; silicon then resets, QEMU quits
                except ProtocolError:
                    pass
        finally:
            self.link.close()

    def _new_session(self) -> Session:
        return Session(self.link, ack_timeout_s=self.ack_timeout_s, retries=self.retries)

    def handshake(self, binary: Path, after: str) -> Session:
        """HELLO until READY: the first READY may have gone out before we listened."""
        self.link.discard_input()
        session = self._new_session()
        deadline = time.monotonic() + self.boot_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BoardNotAnswering(
                    f"the board on {self.port} did not say READY within {self.boot_timeout_s:g} s "
                    f"after {after}: check the port, the wiring and the baud rate ({self.baud}), "
                    f"or reset the board")
            try:
                self.link.write(encode_frame("HELLO"))
                info = session.wait_ready(min(1.0, remaining))
            except (LinkTimeout, CorruptFrame):
                continue
            except LinkClosed as exc:
                raise BoardNotAnswering(f"the serial port {self.port} closed: {exc}") from None
            except DeviceFault as fault:
                raise FusebenchError(f"firmware {binary} faulted while booting: {fault}") from None
            self._check(info, binary)
            return session

    def _check(self, info: DeviceInfo, binary: Path) -> None:
        if info.board != self.board.name:
            raise FusebenchError(f"the board on {self.port} runs firmware built for "
                                 f"{info.board!r}, not {self.board.name!r} ({binary})")
        if info.timer == "systick" and self.firmware_runner == "renode":
            raise FusebenchError("on Renode the firmware found no DWT cycle counter (timer=systick): "
                                 "the platform needs Miscellaneous.DWT at 0xE0001000")
        if info.timer == "systick" and self.firmware_runner == "serial":
            self.count_source = SYSTICK_ON_SILICON   # still core cycles, from SysTick

    def measure(self, session: Session, data: bytes, timeout_s: float, index: int) -> RunResult:
        passes: list[PassResult] = []
        try:
            for paint in PAINTS:
                passes.append(self._one_pass(session, data, paint, timeout_s))
                if passes[-1].status != 0:
                    break
        except DeviceFault as fault:
            return self._failed("crash", index, reason=str(fault), exception=fault.exception,
                                **fault.registers)
        except LinkTimeout as exc:
            return self._failed("timeout", index, reason=f"the board stopped answering: {exc}",
                                timeout_s=timeout_s)
        except LinkClosed as exc:
            return self._failed("crash", index, reason=f"the serial link closed: {exc}")
        except ProtocolError as exc:          # damaged beyond the retries, or off-protocol
            return self._failed("crash", index, reason=f"protocol error: {exc}")
        return merge_passes(passes, self.ticks_to_count, self.count_source, index)

    def _one_pass(self, session: Session, data: bytes, paint: int, timeout_s: float) -> PassResult:
        for attempt in range(self.pass_retries + 1):
            try:
                result = session.run_pass(data, paint, timeout_s)
                if result.status == INPUT_READ_FAILED and attempt < self.pass_retries:
                    # a streamed model gave up on a piece of its input the line kept
                    # damaging: like a damaged RESULT, run the pass again
                    self.pass_repeats += 1
                    continue
                return result
            except (LinkTimeout, LinkClosed, DeviceFault):
                raise                         # silence, a dead link, a fault: not a glitch
            except ProtocolError:
                # A damaged RESULT, or answers lost so that the device left the
                # transfer (NAK why=command): a pass is idempotent (RUN repaints
                # and the input goes up again), so run it again.
                if attempt == self.pass_retries:
                    raise
                self.pass_repeats += 1
        raise AssertionError("unreachable")

    def _failed(self, status: str, index: int, **detail) -> RunResult:
        detail["port"] = self.port
        detail["last_output"] = list(self.link.recent) if self.link else []
        return RunResult(status=status, instructions=None, count_source=self.count_source,
                         arena_bytes_peak=None, stack_bytes_peak=None, output=None,
                         input_index=index, detail=detail)

    def _recover(self, binary: Path, failed: RunResult) -> Session:
        """A fresh session after a failed input: silicon resets itself after a
        fault; a hang needs a reset from outside (the flasher's probe)."""
        if failed.status == "timeout" and self._reset is not None:
            self._reset()
        try:
            return self.handshake(binary, after=f"input {failed.input_index} ended in "
                                                 f"{failed.status}")
        except BoardNotAnswering as exc:
            hint = "" if self._reset else " (no debug probe to reset it: press its reset button)"
            raise BoardNotAnswering(f"{exc}{hint}") from None
