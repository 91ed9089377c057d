"""Fashion-MNIST, the shipped models' dataset, read from Debian's IDX files (numpy only).

Only the model script (tools.modelgen) trains or evaluates on it; the harness
reads the held-out inputs that script writes (models/inputs/)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from harness.errors import FusebenchError

# Debian's `dataset-fashion-mnist` package installs the IDX files here.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip'd or not): big-endian header, uint8 payload."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FusebenchError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise FusebenchError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header_end)
    if payload.size != int(np.prod(dims)):
        raise FusebenchError(f"{path}: truncated IDX file")
    return payload.reshape(dims)


def load_fashion_mnist(split: str, data_dir: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels int64 [N]) of 'train' or 'test'."""
    if split not in _IDX_FILES:
        raise FusebenchError(f"unknown Fashion-MNIST split {split!r} (use 'train' or 'test')")
    image_file, label_file = (data_dir / name for name in _IDX_FILES[split])
    if not image_file.exists() or not label_file.exists():
        raise FusebenchError(
            f"Fashion-MNIST not found in {data_dir}: apt-get install dataset-fashion-mnist")
    images = _read_idx(image_file)
    labels = _read_idx(label_file).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise FusebenchError(f"{image_file}: unexpected shapes {images.shape} / {labels.shape}")
    return images, labels
