"""The peer figure: the arena TFLite Micro's own planner needs for a model.

The `tflite-micro` package's interpreter prints, after allocation, the line
`[RecordingMicroAllocator] Arena allocation total N bytes` to the C-level
stderr. It runs in a subprocess because TFLM aborts the process on some
malformed models. The figure depends only on the model's bytes and the
package's version, so it is kept in build/cache/tflm-arena.json: a second
`invoke plan` of the same model does not pay the 0.4 s subprocess again.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

from harness.paths import BUILD_DIR

CACHE_FILE = BUILD_DIR / "cache" / "tflm-arena.json"

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
    if importlib.util.find_spec("tflite_micro") is None:
        raise TflmUnavailable("the tflite-micro package is not installed")
    model_path = Path(model_path)
    key = f"{hashlib.sha256(model_path.read_bytes()).hexdigest()} tflite-micro " \
          f"{importlib.metadata.version('tflite-micro')}"
    cached = _read_cache().get(key)
    if isinstance(cached, int):
        return cached
    total = _run_tflm(model_path, timeout_s)
    _write_cache(key, total)
    return total


def _read_cache() -> dict:
    try:
        data = json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, total: int) -> None:
    """Add one entry, atomically (parallel plans may write at once; a lost entry is only recomputed)."""
    try:
        CACHE_FILE.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache()
        data[key] = total
        tmp = CACHE_FILE.with_name(f"{CACHE_FILE.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True))
        os.replace(tmp, CACHE_FILE)
    except OSError:
        pass                      # a read-only checkout: the figure is simply not kept


def _run_tflm(model_path: Path, timeout_s: float) -> int:
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
