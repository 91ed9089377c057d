"""What a HAL takes from the board file: its description, `firmware/hal/<hal>/hal.toml`.

A silicon HAL is built with settings of the board (its clock, the console's
pins and baud rate) as -D flags. Its `hal.toml` lists them, in the order the
flags are given, as `[[setting]]` tables:

    [[setting]]
    key = "console_tx"        # the board-file key, in the [runners.<kind>] table naming this HAL
    kind = "pin"              # "pin": a GPIO pin such as "PD8" (port A-K, pin 0-15);
                              # "int": an integer, within `min`/`max` when given
    defines = ["FB_CONSOLE_TX_PORT", "FB_CONSOLE_TX_PIN"]   # pin: the port index (A = 0), the pin

    [[setting]]
    key = "clock_hz"
    board = true              # a figure of the board itself (top level, a Board field)
    kind = "int"
    defines = ["FB_CPU_HZ"]
    suffix = "u"              # appended to the value in the flag (-DFB_CPU_HZ=480000000u)

A setting with a `default` may be left out of the board file. boards.py checks
every runner table against its HAL's description (one-line errors naming the
board file and the key); build.py turns the settings into flags. A HAL
without a description (qemu-mps2, qemu-netduinoplus2) takes no settings.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.errors import FusebenchError
from harness.paths import FIRMWARE_DIR

if TYPE_CHECKING:
    from harness.targets.boards import Board, BoardTable, RunnerTarget

HAL_DIR = FIRMWARE_DIR / "hal"
DESCRIPTION_NAME = "hal.toml"

_PIN = re.compile(r"P([A-K])(\d{1,2})")
# How many -D flags each kind of value becomes.
_KIND_DEFINES = {"int": 1, "pin": 2}
_SETTING_KEYS = {"key", "kind", "defines", "board", "min", "max", "default", "suffix"}


def parse_pin(name: str) -> tuple[int, int]:
    """"PD8" -> (3, 8): GPIO port index (A=0) and pin number."""
    match = _PIN.fullmatch(str(name))
    if not match or int(match.group(2)) > 15:
        raise FusebenchError(f"bad pin name {name!r} (expected like \"PD8\": port A-K, pin 0-15)")
    return ord(match.group(1)) - ord("A"), int(match.group(2))


@dataclass(frozen=True)
class HalSetting:
    key: str
    kind: str                            # "int" or "pin"
    defines: tuple[str, ...]
    board: bool = False                  # read from the board's top level, not the runner table
    min: Optional[int] = None
    max: Optional[int] = None
    default: Any = None
    suffix: str = ""

    def check(self, table: "BoardTable") -> None:
        """Check this setting in `table` (the runner table, or the board's top level)."""
        if self.key not in table.values:
            if self.default is not None:
                return
            raise table.missing(self.key)
        value = table.values[self.key]
        if self.kind == "pin":
            text = table.need(self.key, str)
            try:
                parse_pin(text)
            except FusebenchError as exc:
                raise table.fail(f"{table.ctx}{self.key}: {exc}") from None
            return
        low = self.min is None or (isinstance(value, int) and value >= self.min)
        high = self.max is None or (isinstance(value, int) and value <= self.max)
        if not isinstance(value, int) or isinstance(value, bool) or not (low and high):
            bounds = (f" from {self.min} to {self.max}" if self.min is not None and self.max is not None
                      else f" of at least {self.min}" if self.min is not None
                      else f" of at most {self.max}" if self.max is not None else "")
            raise table.fail(f"{table.ctx}{self.key} must be an integer{bounds}, not {value!r}")

    def value(self, board: "Board", target: "RunnerTarget") -> Any:
        if self.board:
            return getattr(board, self.key)
        return target.option(self.key, self.default)

    def flags(self, board: "Board", target: "RunnerTarget") -> list[str]:
        value = self.value(board, target)
        values = parse_pin(value) if self.kind == "pin" else (value,)
        return [f"-D{name}={v}{self.suffix}" for name, v in zip(self.defines, values)]


@dataclass(frozen=True)
class HalDescription:
    name: str
    path: Optional[Path]                 # None: the HAL has no description
    settings: tuple[HalSetting, ...] = ()

    def check(self, table: "BoardTable", board_table: "BoardTable") -> None:
        """Check a runner table naming this HAL (and the board figures it reads)."""
        for setting in self.settings:
            setting.check(board_table if setting.board else table)

    def defines(self, board: "Board", target: "RunnerTarget") -> list[str]:
        """The -D flags the HAL is built with for `board` as `target` runs it."""
        return [flag for setting in self.settings for flag in setting.flags(board, target)]

    def setting(self, key: str) -> Optional[HalSetting]:
        return next((s for s in self.settings if s.key == key), None)


def load_hal(name: str) -> HalDescription:
    """The description of the HAL in firmware/hal/<name>/ (empty without hal.toml)."""
    return _read_description(name, HAL_DIR / name / DESCRIPTION_NAME)


@functools.lru_cache(maxsize=None)
def _read_description(name: str, path: Path) -> HalDescription:
    if not path.is_file():
        return HalDescription(name, None)
    where = f"HAL description {path}"
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FusebenchError(f"{where}: invalid TOML: {exc}") from None
    unknown = set(data) - {"setting"}
    if unknown:
        raise FusebenchError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (expected [[setting]] tables)")
    raw_settings = data.get("setting", [])
    if not isinstance(raw_settings, list) or not all(isinstance(s, dict) for s in raw_settings):
        raise FusebenchError(f"{where}: settings must be [[setting]] tables")
    from harness.targets.boards import Board
    board_fields = {f.name for f in dataclasses.fields(Board)}
    settings = []
    for number, raw in enumerate(raw_settings, 1):
        ctx = f"{where}: setting {number}"
        key, kind, defines = raw.get("key"), raw.get("kind"), raw.get("defines")
        if not isinstance(key, str) or not key:
            raise FusebenchError(f"{ctx} has no key")
        ctx = f"{where}: setting {key!r}"
        if set(raw) - _SETTING_KEYS:
            raise FusebenchError(f"{ctx}: unknown field(s) {', '.join(sorted(set(raw) - _SETTING_KEYS))}")
        if kind not in _KIND_DEFINES:
            raise FusebenchError(f"{ctx}: kind must be one of {', '.join(_KIND_DEFINES)}, not {kind!r}")
        if (not isinstance(defines, list) or len(defines) != _KIND_DEFINES[kind]
                or not all(isinstance(d, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]*", d) for d in defines)):
            raise FusebenchError(f"{ctx}: defines must be a list of {_KIND_DEFINES[kind]} C macro "
                                 f"name(s) for a {kind}")
        board = raw.get("board", False)
        if board is not False and (board is not True or key not in board_fields):
            raise FusebenchError(f"{ctx}: board = true only for a figure of the board "
                                 f"({', '.join(sorted(board_fields))})")
        for bound in ("min", "max"):
            if bound in raw and (kind != "int" or not isinstance(raw[bound], int)):
                raise FusebenchError(f"{ctx}: {bound} must be an integer, for an int setting")
        setting = HalSetting(key=key, kind=kind, defines=tuple(defines), board=board,
                             min=raw.get("min"), max=raw.get("max"), default=raw.get("default"),
                             suffix=str(raw.get("suffix", "")))
        if setting.default is not None:
            from harness.targets.boards import BoardTable
            setting.check(BoardTable({key: setting.default}, where, "default of "))
        settings.append(setting)
    return HalDescription(name, path, tuple(settings))


def hal_value(board: "Board", target: "RunnerTarget", key: str) -> Any:
    """The value of the HAL setting `key` that the image for `target` is built
    with (its default when the board file leaves it out); None when the HAL
    takes no such setting."""
    setting = load_hal(target.hal).setting(key)
    return setting.value(board, target) if setting is not None else None
