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

import errno
import re
import time
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

from harness.targets.boards import Board, BoardTable
from harness.errors import FusebenchError
from harness.targets.hal import hal_value
from harness.targets.protocol import DeviceInfo, LinkClosed, LinkTimeout, Session
from harness.targets.runners.base import RunResult, Runner, count_column, register_runner

try:                         # pyserial's POSIX ports raise termios.error from tcdrain & co.
    import termios
    _TTY_ERRORS: tuple = (OSError, termios.error)
except ImportError:          # no termios (Windows)
    _TTY_ERRORS = (OSError,)

# A silicon image whose DWT did not count falls back to SysTick on the core clock.
SYSTICK_ON_SILICON = "systick-cycles"
# pyserial's rate for a line whose firmware takes no baud rate (QEMU's pty ignores it).
DEFAULT_BAUD = 115200
_USB_ID = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}")

_TRAILER = re.compile(rb"#\d{1,9}#[0-9a-f]{8}\r?$")


def _interrupted(exc: BaseException) -> bool:
    """A system call cut short by a signal (EINTR): retry it, the line is fine.
    Renode in-process (pyrenode3) delivers signals to our threads; termios
    errors carry the errno as args[0], pyserial's only in the message."""
    code = getattr(exc, "errno", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    return code == errno.EINTR or "Interrupted system call" in str(exc)


EINTR_RETRIES = 100


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

        # A write cut short resends the whole frame: the device drops the damaged
        # line by its checks and takes the whole one after it.
        for step in (lambda: self.port.write(data), self.port.flush):
            for attempt in range(EINTR_RETRIES + 1):
                try:
                    step()
                    break
                except (serial.SerialException, *_TTY_ERRORS) as exc:
                    if _interrupted(exc) and attempt < EINTR_RETRIES:
                        continue
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
                if _interrupted(exc):
                    continue            # a signal, not the end of the line
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


@register_runner
class SerialRunner(Runner):
    """Runs firmware on a board reached over a serial port."""

    kind = "serial"
    count_source = "dwt"
    silicon_image = True
    parallel_jobs = False          # one board on one port: one firmware at a time
    preference = 1                 # the default for boards with nothing but a serial table
    chosen_by_option = "port"
    default_instructions_per_tick = Fraction(1)   # DWT CYCCNT / SysTick on the core clock
    hello_until_ready = True       # the board may have said READY before the port was opened
    reason_on_timeout = "the board stopped answering: {}"
    reason_on_link_closed = "the serial link closed: {}"

    def __init__(self, board: Board, port: Optional[str], baud: Optional[int] = None,
                 flasher=None, firmware_runner: Optional[str] = None, boot_timeout_s: float = 15.0,
                 ack_timeout_s: float = 5.0, retries: int = 4, pass_retries: int = 3,
                 reset: Optional[Callable[[], None]] = None):
        """`firmware_runner`: the runner table the image was built for, when it
        is not this kind's (the QEMU-HAL image behind QEMU's pseudo-terminal)."""
        from harness.targets.runners import runner_class

        super().__init__(board, firmware_runner)
        self.firmware_runner = firmware_runner or self.kind
        if self.firmware_runner != self.kind:
            # What the image's time counter counts is its own runner's.
            self.count_source = runner_class(self.firmware_runner).count_source
        self.port = port
        self.baud = baud or int(hal_value(board, self.target, "baud") or DEFAULT_BAUD)
        self.flasher = flasher
        self.boot_timeout_s = boot_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.pass_retries = pass_retries
        # How to reset the board after a hang: given, else the flasher's reset.
        self._reset = reset or (getattr(flasher, "reset", None) if flasher is not None else None)
        self.link: Optional[SerialLink] = None

    @classmethod
    def from_options(cls, board: Board, port: Optional[str] = None, flash: bool = True,
                     flash_tool: Optional[str] = None, probe: Optional[str] = None,
                     **_) -> "SerialRunner":
        """`port`: a device, or "auto" / None to find the board by USB id;
        `flash` False: the board already runs the firmware. The baud rate is
        the board file's: the firmware is built with it."""
        from harness.targets.flash import Flasher, port_for_board

        board.runner(cls.kind)             # a clear error for boards without the table
        if port in (None, "", "auto"):
            port = port_for_board(board)
        flasher = Flasher.for_board(board, tool=flash_tool, probe=probe) if flash else None
        return cls(board, port, flasher=flasher)

    @classmethod
    def check_table(cls, table: BoardTable) -> None:
        for usb_id in table.values.get("usb_ids", []):
            if not isinstance(usb_id, str) or not _USB_ID.fullmatch(usb_id):
                raise table.fail(f"{table.ctx}usb_ids entries must look like \"0483:374b\", "
                                 f"not {usb_id!r}")

    @property
    def where(self) -> str:
        return str(self.port or "")

    # -- the session ------------------------------------------------------------------------

    def start(self, binary: Path) -> Session:
        if self.flasher is not None:
            self.flasher.flash(binary)          # also resets the board
        self.link = SerialLink.open(self.port, self.baud)
        return self._handshake(binary, after="opening the port")

    def restart(self, binary: Path, failed: RunResult) -> Session:
        """Silicon resets itself after a fault and says READY again; a hang
        needs a reset from outside (the flasher's probe)."""
        if failed.status == "timeout" and self._reset is not None:
            self._reset()
        try:
            return self._handshake(binary, after=f"input {failed.input_index} ended in {failed.status}")
        except BoardNotAnswering as exc:
            hint = "" if self._reset else " (no debug probe to reset it: press its reset button)"
            raise BoardNotAnswering(f"{exc}{hint}") from None

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    def _handshake(self, binary: Path, after: str) -> Session:
        self.link.discard_input()               # boot noise, answers to an abandoned session
        return self.handshake(self.link, binary, after)

    def not_ready(self, error, binary: Path, after: str) -> FusebenchError:
        if isinstance(error, LinkClosed):
            return BoardNotAnswering(f"the serial port {self.port} closed: {error}")
        return BoardNotAnswering(
            f"the board on {self.port} did not say READY within {self.boot_timeout_s:g} s "
            f"after {after}: check the port, the wiring and the baud rate ({self.baud}), "
            f"or reset the board")

    def check_ready(self, info: DeviceInfo, binary: Path) -> None:
        if info.board != self.board.name:
            raise FusebenchError(f"the board on {self.port} runs firmware built for "
                                 f"{info.board!r}, not {self.board.name!r} ({binary})")
        if info.timer == "systick" and count_column(self.count_source) == "cycles":
            self.count_source = SYSTICK_ON_SILICON   # still core cycles, from SysTick

    def failure_detail(self, error) -> dict:
        return {"port": self.port, "last_output": list(self.link.recent) if self.link else []}
