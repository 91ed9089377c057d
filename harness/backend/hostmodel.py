"""Build generated model code for the host (gcc) and run it: a fast bit-exact
check of code generation and plan offsets without an emulator."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

from harness.paths import FIRMWARE_DIR
from harness.errors import FusebenchError


def build_host_model(gen_dir: Path, out: Path | None = None) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise FusebenchError("no host C compiler (install Debian's gcc)")
    gen_dir = Path(gen_dir)
    sources = sorted((FIRMWARE_DIR / "runtime" / "src").glob("*.c")) + \
        [FIRMWARE_DIR / "host" / "main.c", gen_dir / "fb_model.c"]
    out = out or gen_dir / "host_model"
    digest = hashlib.sha1()
    for f in sources + sorted((FIRMWARE_DIR / "runtime" / "include").glob("*.h")) + \
            [gen_dir / "fb_model.h", gen_dir / "weights.bin"]:
        digest.update(f.read_bytes())
    stamp = out.with_suffix(".sha1")
    if out.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest():
        return out
    cmd = [cc, "-std=c99", "-O2", "-Wall", "-o", str(out), f"-I{gen_dir}",
           f"-I{FIRMWARE_DIR / 'runtime' / 'include'}", *map(str, sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FusebenchError(f"host build of {gen_dir} failed: {proc.stderr.strip()[:2000]}")
    stamp.write_text(digest.hexdigest())
    return out


# The dtypes a model's input and output may have (int8 inside; uint8 / float32 at
# QUANTIZE / DEQUANTIZE edges): their bytes go to and come from the model as they are.
EDGE_DTYPES = (np.int8, np.uint8, np.float32)


def run_host_model(exe: Path, inputs: list[np.ndarray], output_bytes: int,
                   output_dtype: str = "int8") -> list[np.ndarray]:
    """Run the host build on each input (its bytes as they are when it is an
    int8, uint8 or float32 array, else converted to int8); each output is
    `output_bytes` bytes read as `output_dtype` (the model output's dtype)."""
    def raw(x) -> bytes:
        x = np.asarray(x)
        return np.ascontiguousarray(x if x.dtype in EDGE_DTYPES else x.astype(np.int8)).tobytes()
    data = b"".join(raw(x) for x in inputs)
    proc = subprocess.run([str(exe)], input=data, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise FusebenchError(f"{exe} failed: {proc.stderr.decode(errors='replace').strip()}")
    out = np.frombuffer(proc.stdout, dtype=np.uint8)
    return [out[i * output_bytes:(i + 1) * output_bytes].view(output_dtype).copy() for i in range(len(inputs))]
