"""The peer figure: the arena TFLite Micro's own planner needs for a model.

The `tflite-micro` package's interpreter prints, after allocation, the line
`[RecordingMicroAllocator] Arena allocation total N bytes` to the C-level
stderr. It runs in a subprocess because TFLM aborts the process on some
malformed models.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

_SCRIPT = r"""
import sys
from tflite_micro.python.tflite_micro import runtime
interp = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
interp.print_allocations()
"""
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


class TflmUnavailable(Exception):
    pass


def tflm_arena_bytes(model_path: str | Path, timeout_s: float = 120) -> int:
    """TFLM's arena total for the model; raises TflmUnavailable with the reason."""
    try:
        import tflite_micro  # noqa: F401  (only to say clearly when it is missing)
    except ImportError:
        raise TflmUnavailable("the tflite-micro package is not installed") from None
    model_path = Path(model_path)
    arena = max(4 * 1024 * 1024, 12 * model_path.stat().st_size)
    try:
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(model_path), str(arena)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TflmUnavailable(f"TFLM did not finish within {timeout_s:.0f} s") from None
    match = _TOTAL.search(proc.stderr + proc.stdout)
    if not match:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        if proc.returncode < 0:
            last = f"killed by signal {-proc.returncode}, {last}"
        raise TflmUnavailable(f"TFLM could not allocate the model (exit {proc.returncode}: {last})")
    return int(match.group(1))


def tflm_arena_bytes_or_none(model_path: str | Path) -> Optional[int]:
    try:
        return tflm_arena_bytes(model_path)
    except TflmUnavailable:
        return None
