"""QEMU with the board's console UART on a pseudo-terminal: a board on a
serial port without the hardware.

`qemu-system-arm -serial pty` gives the emulated UART a /dev/pts/N device;
`SerialRunner` opens it with pyserial exactly as it opens a Nucleo's
/dev/ttyACM0, and uploads every input over it in acknowledged chunks. The
image is the QEMU-HAL one (the firmware the `qemu` runner runs), so the time
counter still counts instructions (`count_source` stays `qemu-icount`); only
the path the bytes take differs from the direct QEMU runner.

    with QemuPtyBoard(board, elf) as device:
        results = list(SerialRunner(board, device.port, firmware_runner="qemu").run(elf, inputs))
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Optional

from harness.targets.boards import Board
from harness.errors import FusebenchError
from harness.targets.runners.qemu import QemuProcess, QemuRunner, missing_qemu, qemu_tool

_PTY_LINE = re.compile(r"char device redirected to (\S+) \(label (\w+)\)")


def pty_command(board: Board, elf: Path, qemu: Optional[str] = None) -> list[str]:
    """The direct runner's command with the console on a pty instead of stdio."""
    command = QemuRunner(board, qemu=qemu).command(Path(elf))
    for i, arg in enumerate(command[:-1]):
        if arg == "-serial" and command[i + 1] == "stdio":
            return command[:i + 1] + ["pty"] + command[i + 2:]
    raise FusebenchError("the QEMU command has no console on stdio to move to a pty")


class QemuPtyBoard:
    """One QEMU whose console is a pseudo-terminal; `port` is its path."""

    def __init__(self, board: Board, elf: Path, qemu: Optional[str] = None, start_timeout_s: float = 10.0):
        board_qemu, package = qemu_tool(board.runner("qemu"))
        qemu = qemu or board_qemu
        if shutil.which(qemu) is None:
            raise missing_qemu(qemu, package)
        self.board = board
        self.elf = Path(elf)
        self.qemu = qemu
        self.start_timeout_s = start_timeout_s
        self.process: Optional[QemuProcess] = None
        self.port: Optional[str] = None
        self._start()

    def _start(self) -> None:
        self.process = QemuProcess(pty_command(self.board, self.elf, self.qemu))
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                line = self.process.link.read_line(max(0.0, deadline - time.monotonic()))
            except FusebenchError:
                stderr = self.process.stderr_tail()
                self.close()
                raise FusebenchError(f"QEMU did not open a pty: {stderr or 'no message'}") from None
            match = _PTY_LINE.search(line)
            if match:
                self.port = match.group(1)
                return

    def restart(self) -> None:
        """A fresh emulator: what a reset button is to a board (a new pty path
        too, so only for runners that reopen `port`)."""
        self.close()
        self._start()

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None

    def exit_code(self, timeout_s: float = 5.0) -> Optional[int]:
        return self.process.wait(timeout_s) if self.process else None

    def __enter__(self) -> "QemuPtyBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
