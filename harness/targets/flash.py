"""Flashing real boards and finding their serial ports.

`Flasher(board)` programs an ELF and resets the board with the first tool of
the board file's `flash_tools` that is installed:

* `pyocd` (PyPI: `pip install pyocd`; some parts need `pyocd pack install
  <target>` once): `pyocd load` programs and resets, `pyocd reset` resets;
* `openocd` (Debian: openocd): `program <elf> verify reset exit` through the
  ST-LINK (`interface/stlink.cfg` + the board's `openocd_target`);
* `st-flash` (Debian: stlink-tools): writes the raw image at the flash origin
  with `--reset`;
* `dfu-util` (Debian: dfu-util), for boards without a probe (OpenMV Cam H7 in
  its ROM bootloader): writes the raw image and leaves DFU mode; it cannot
  reset a hung board later.

`detect_ports()` lists the serial ports whose USB ids a board file names
(`usb_ids`: ST-LINK virtual COM ports, USB-serial adapters), which is how
`invoke boards` and `--port auto` find boards.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.targets.boards import Board, list_boards, load_board
from harness.errors import FusebenchError

KNOWN_TOOLS = ("pyocd", "openocd", "st-flash", "dfu-util")
INSTALL_HINTS = {
    "pyocd": "pip install pyocd",
    "openocd": "the Debian package openocd",
    "st-flash": "the Debian package stlink-tools",
    "dfu-util": "the Debian package dfu-util",
}
OBJCOPY = "arm-none-eabi-objcopy"
FLASH_TIMEOUT_S = 180.0


def tool_command(tool: str) -> Optional[list[str]]:
    """How to start `tool` here, None when it is not installed. pyocd also
    counts when only its Python module is importable."""
    found = shutil.which(tool)
    if found:
        return [found]
    if tool == "pyocd" and importlib.util.find_spec("pyocd") is not None:
        return [sys.executable, "-m", "pyocd"]
    return None


@dataclass
class Flasher:
    """Programs and resets one board with one tool."""
    board: Board
    tool: str
    executable: list[str]
    probe: Optional[str] = None          # pyocd -u / openocd adapter serial / st-flash --serial

    @classmethod
    def for_board(cls, board: Board, tool: Optional[str] = None,
                  probe: Optional[str] = None) -> "Flasher":
        target = board.runner("serial")
        choices = [tool] if tool else list(target.option("flash_tools", ("pyocd",)))
        for name in choices:
            if name not in KNOWN_TOOLS:
                raise FusebenchError(f"unknown flash tool {name!r} (known: {', '.join(KNOWN_TOOLS)})")
        for name in choices:
            command = tool_command(name)
            if command:
                return cls(board, name, command, probe)
        hints = "; ".join(f"{n}: {INSTALL_HINTS[n]}" for n in choices)
        raise FusebenchError(f"no flash tool for board {board.name} is installed ({hints})")

    # -- commands (kept separate so they can be checked without hardware) ---------------------

    def flash_commands(self, elf: Path, image: Optional[Path] = None) -> list[list[str]]:
        """The commands that program `elf` (or its raw `image`) and start it."""
        target = self.board.runner("serial")
        origin = f"{target.flash.origin:#010x}"
        if self.tool == "pyocd":
            probe = ["-u", self.probe] if self.probe else []
            return [[*self.executable, "load", "-t", str(target.option("pyocd_target")), *probe,
                     "--format", "elf", str(elf)]]
        if self.tool == "openocd":
            return [[*self.executable, *self._openocd_args(),
                     "-c", f"program {elf} verify reset exit"]]
        if self.tool == "st-flash":
            probe = ["--serial", self.probe] if self.probe else []
            return [[*self.executable, *probe, "--reset", "write", str(image), origin]]
        if self.tool == "dfu-util":
            device = str(target.option("dfu_id", "0483:df11"))
            return [[*self.executable, "-a", "0", "-d", device, "-s", f"{origin}:leave",
                     "-D", str(image)]]
        raise AssertionError(self.tool)

    def reset_command(self) -> Optional[list[str]]:
        """How to reset the board, None where the tool cannot (dfu-util)."""
        target = self.board.runner("serial")
        if self.tool == "pyocd":
            probe = ["-u", self.probe] if self.probe else []
            return [*self.executable, "reset", "-t", str(target.option("pyocd_target")), *probe]
        if self.tool == "openocd":
            return [*self.executable, *self._openocd_args(), "-c", "init", "-c", "reset run",
                    "-c", "shutdown"]
        if self.tool == "st-flash":
            probe = ["--serial", self.probe] if self.probe else []
            return [*self.executable, *probe, "reset"]
        return None

    def _openocd_args(self) -> list[str]:
        target = self.board.runner("serial")
        args = ["-f", "interface/stlink.cfg", "-f", str(target.option("openocd_target"))]
        if self.probe:
            args[2:2] = ["-c", f"adapter serial {self.probe}"]
        return args

    @property
    def can_reset(self) -> bool:
        return self.reset_command() is not None

    # -- doing it ---------------------------------------------------------------------------

    def flash(self, elf: Path) -> None:
        elf = Path(elf)
        if not elf.is_file():
            raise FusebenchError(f"firmware {elf} does not exist")
        with tempfile.TemporaryDirectory(prefix="fusebench-flash-") as scratch:
            image = None
            if self.tool in ("st-flash", "dfu-util"):
                image = Path(scratch) / "firmware.bin"
                _run([OBJCOPY, "-O", "binary", str(elf), str(image)], "objcopy")
            for command in self.flash_commands(elf, image):
                _run(command, self.tool)

    def reset(self) -> None:
        command = self.reset_command()
        if command is None:
            raise FusebenchError(f"{self.tool} cannot reset board {self.board.name}: "
                                 f"press its reset button")
        _run(command, self.tool)


def _run(command: list[str], what: str) -> None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=FLASH_TIMEOUT_S)
    except FileNotFoundError:
        raise FusebenchError(f"{what} not found ({command[0]})") from None
    except subprocess.TimeoutExpired:
        raise FusebenchError(f"{what} did not finish within {FLASH_TIMEOUT_S:g} s: "
                             f"{' '.join(command)}") from None
    if proc.returncode != 0:
        lines = [l.strip() for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
        raise FusebenchError(f"{what} failed (status {proc.returncode}): "
                             f"{lines[-1] if lines else 'no output'} [{' '.join(command)}]")


# -- finding boards on USB -------------------------------------------------------------------------

@dataclass(frozen=True)
class DetectedPort:
    device: str                  # /dev/ttyACM0
    usb_id: str                  # "0483:374b"
    description: str
    serial_number: Optional[str]
    boards: tuple[str, ...]      # board files whose usb_ids name this port


def _board_usb_ids(board: Board) -> set[str]:
    try:
        target = board.runner("serial")
    except FusebenchError:
        return set()
    return {u.lower() for u in target.option("usb_ids", ())}


def detect_ports(comports=None, boards: Optional[list[Board]] = None) -> list[DetectedPort]:
    """Serial ports with a USB id some board file names (ST-LINK, USB-serial
    adapters). `comports` defaults to pyserial's list of this machine's ports."""
    if comports is None:
        from serial.tools import list_ports
        comports = list_ports.comports()
    boards = boards if boards is not None else [load_board(n) for n in list_boards()]
    ids = {b.name: _board_usb_ids(b) for b in boards}
    found = []
    for port in comports:
        if port.vid is None or port.pid is None:
            continue
        usb_id = f"{port.vid:04x}:{port.pid:04x}"
        names = tuple(sorted(name for name, known in ids.items() if usb_id in known))
        if names:
            found.append(DetectedPort(port.device, usb_id, port.description or "",
                                      port.serial_number, names))
    return found


def port_for_board(board: Board, comports=None) -> str:
    """The one detected serial port that fits `board` (for `--port auto`)."""
    candidates = [p for p in detect_ports(comports, [board]) if board.name in p.boards]
    if len(candidates) == 1:
        return candidates[0].device
    if not candidates:
        raise FusebenchError(f"no serial port for board {board.name} found (looked for USB ids "
                             f"{', '.join(sorted(_board_usb_ids(board))) or 'none'}): plug it in or "
                             f"give --port /dev/ttyACM0")
    listed = ", ".join(f"{p.device} ({p.usb_id}, serial {p.serial_number})" for p in candidates)
    raise FusebenchError(f"several serial ports fit board {board.name}: {listed}; choose one with --port")


def boards_report(comports=None) -> str:
    """What `invoke boards` prints: board files, then the detected ports."""
    lines = ["boards:"]
    boards = [load_board(n) for n in list_boards()]
    width = max(len(b.name) for b in boards)
    for b in boards:
        kinds = ", ".join(t.kind for t in b.runners)
        lines.append(f"  {b.name:<{width}}  [{kinds}]  {b.description}")
    ports = detect_ports(comports, boards)
    lines.append("serial ports:" if ports else "serial ports: none with a known USB id "
                                                "(ST-LINK, USB-serial adapter) found")
    for p in ports:
        serial = f", serial {p.serial_number}" if p.serial_number else ""
        lines.append(f"  {p.device}  {p.usb_id}{serial}  {p.description}  -> {', '.join(p.boards)}")
    return "\n".join(lines)


# -- `invoke flash` ------------------------------------------------------------------------------

def build_silicon_image(board_name: str, model_path: str, variant: str = "unfused",
                        runner: str = "serial", options: Optional[dict] = None):
    """Plan, generate and build the silicon image of one model into
    build/<board>/<model>/<variant>/<runner>/ (as `invoke bench --runner` does)."""
    from harness.report.bench import build_planned, plan_variant

    board, graph, plan = plan_variant(board_name, model_path, variant, options)
    return board, build_planned(board, graph, plan, runner)


def flash_command(board: str, model: Optional[str] = None, variant: str = "unfused",
                  tool: Optional[str] = None, probe: Optional[str] = None,
                  elf: Optional[str] = None, options: Optional[dict] = None) -> Path:
    """Build (unless `elf` is given) and flash one firmware; returns the ELF.
    The model defaults to the first shipped one."""
    from harness.frontend.catalog import resolve_models

    b = load_board(board)
    b.runner("serial")                                  # a clear error for emulated-only boards
    flasher = Flasher.for_board(b, tool=tool, probe=probe)
    if elf:
        image = Path(elf)
    else:
        path = resolve_models(model)[0]
        _, build = build_silicon_image(b.name, str(path), variant, options=options)
        image = build.elf
        print(f"{b.name}: built {image} (flash {build.flash_bytes} of {b.flash.size} bytes)")
    flasher.flash(image)
    print(f"{b.name}: flashed {image} with {flasher.tool}")
    return image
