"""Image preprocessing and model inputs (numpy only).

The one `preprocess` function here is used for the training data, the
quantization calibration data and every benchmark input, so the harness
(which has no TensorFlow) feeds the models exactly what they were trained on.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import FusebenchError
from harness.paths import MODELS_DIR

CLASS_NAMES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

DEFAULT_INPUTS_FILE = MODELS_DIR / "inputs" / "fashion_mnist_test.npz"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class InputSample:
    """One model input, already quantized to the model's int8 input tensor."""
    name: str
    data: np.ndarray            # int8, shape [1, H, W, 3]
    label: int | None = None


# --------------------------------------------------------------------------
# Preprocessing

def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] interpolation weights, half-pixel centres.

    Sample positions are (o + 0.5) * in/out - 0.5, clamped to the image, so
    the image is stretched over the full output (same convention as
    align_corners=False / half_pixel_centers=True resizes)."""
    pos = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    pos = np.clip(pos, 0.0, in_size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = pos - lo
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights.astype(np.float32)


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize float images [N,h,w,C] to [N,height,width,C] (float32)."""
    images = np.asarray(images, dtype=np.float32)
    _, in_h, in_w, _ = images.shape
    if (in_h, in_w) == (height, width):
        return images.copy()
    rows = _bilinear_matrix(in_h, height)           # [H, h]
    cols = _bilinear_matrix(in_w, width)            # [W, w]
    # Separable: first along rows, then along columns; float32 throughout.
    out = np.einsum("Hh,nhwc->nHwc", rows, images, optimize=True)
    return np.einsum("Ww,nHwc->nHWc", cols, out, optimize=True).astype(np.float32)


def _check_size(height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise FusebenchError(f"bad input size {height}x{width}")


def preprocess(images_u8: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels (uint8, 0..255) -> model input float32 [N,H,W,3] in [-1, 1].

    Accepts [N,h,w] or [N,h,w,1] grey images (replicated to 3 channels, as
    Fashion-MNIST is) or [N,h,w,3] colour images; any h, w (bilinear resize)."""
    _check_size(height, width)
    images = np.asarray(images_u8)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise FusebenchError(f"preprocess expects [N,h,w], [N,h,w,1] or [N,h,w,3] images, got {images.shape}")
    resized = resize_bilinear(images.astype(np.float32), height, width)
    scaled = resized * np.float32(1.0 / 127.5) - np.float32(1.0)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)


def quantize_input(x_float: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float -> int8 exactly as TFLite's QUANTIZE kernel does it.

    q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127),
    with the division done in float32 (the kernel divides by (float)scale)."""
    if not np.isfinite(scale) or scale <= 0:
        raise FusebenchError(f"bad input quantization scale {scale}")
    quotient = np.asarray(x_float, dtype=np.float32) / np.float32(scale)
    # float32 -> float64 makes `+ 0.5` exact, so floor(|q| + 0.5) equals
    # C's roundf (np.round would round half to even).
    magnitude = np.floor(np.abs(quotient.astype(np.float64)) + 0.5)
    rounded = np.copysign(magnitude, quotient)
    rounded = np.clip(rounded, -2.0**31, 2.0**31 - 1)   # kernel works in int32
    q = rounded.astype(np.int64) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


# --------------------------------------------------------------------------
# Default inputs (shipped) and user input folders

def load_default_inputs(height: int, width: int, scale: float, zero_point: int,
                        path: Path = DEFAULT_INPUTS_FILE) -> list[InputSample]:
    """The shipped held-out Fashion-MNIST test images, prepared for a model.

    The file keeps them at native 28x28 so every resolution derives its input
    with the same `preprocess`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            labels = npz["labels"]
            indices = npz["indices"]
    except (OSError, KeyError, ValueError) as e:
        raise FusebenchError(f"cannot read default inputs {path}: {e}") from None
    x = preprocess(images, height, width)
    q = quantize_input(x, scale, zero_point)
    return [InputSample(name=f"fmnist_test_{int(idx):05d}", data=q[i:i + 1], label=int(labels[i]))
            for i, idx in enumerate(indices)]


def _parse_label(text: str, where: str) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        label = int(text)
    elif text in CLASS_NAMES:
        label = CLASS_NAMES.index(text)
    else:
        raise FusebenchError(f"{where}: label {text!r} is neither an int nor a class name")
    if label < 0:
        raise FusebenchError(f"{where}: negative label {label}")
    return label


def _read_labels_csv(path: Path) -> dict[str, int]:
    """labels.csv rows: file,label (an optional header row 'file,label')."""
    labels: dict[str, int] = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FusebenchError(f"cannot read {path}: {e}") from None
    for line_no, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise FusebenchError(f"{path.name}:{line_no}: expected 'file,label', got {row}")
        name, label = row[0].strip(), row[1].strip()
        if line_no == 1 and label.lower() == "label":
            continue
        labels[name] = _parse_label(label, f"{path.name}:{line_no}")
    return labels


def _read_image(path: Path) -> np.ndarray:
    """An image file as uint8 [h,w] (grey) or [h,w,3] (colour)."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    try:
        if Image is not None:
            with Image.open(path) as img:
                grey = img.mode in ("L", "LA", "I", "I;16", "1")
                return np.asarray(img.convert("L" if grey else "RGB"), dtype=np.uint8)
        import matplotlib.image as mpimg          # PNG only without PIL
        pixels = mpimg.imread(path)
    except Exception as e:  # PIL/matplotlib raise many kinds for bad files
        raise FusebenchError(f"{path.name}: cannot read image ({e})") from None
    if pixels.dtype != np.uint8:                   # matplotlib gives floats in [0,1]
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    return pixels


def _sample_from_array(array: np.ndarray, name: str, height: int, width: int,
                       scale: float, zero_point: int) -> np.ndarray:
    """A .npy/.image array -> int8 [1,H,W,3].

    int8: already quantized, must be [H,W,3] or [1,H,W,3].
    uint8: raw pixels [h,w], [h,w,1|3] (or with a leading 1), preprocessed.
    float: already scaled to [-1,1], any size (resized), then quantized."""
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.dtype == np.int8:
        if array.shape != (height, width, 3):
            raise FusebenchError(f"{name}: int8 input has shape {array.shape}, model needs "
                                 f"{(height, width, 3)} or {(1, height, width, 3)}")
        return array[None].copy()
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or min(array.shape[:2]) < 1:
        raise FusebenchError(f"{name}: unsupported image shape {array.shape} (need [h,w], [h,w,1] or [h,w,3])")
    if array.dtype == np.uint8:
        x = preprocess(array[None], height, width)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < -1.0 or array.max() > 1.0:
            raise FusebenchError(f"{name}: float input must be preprocessed values in [-1, 1]")
        x = resize_bilinear(array[None].astype(np.float32), height, width)
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
    else:
        raise FusebenchError(f"{name}: unsupported dtype {array.dtype} (int8, uint8 or float)")
    return quantize_input(x, scale, zero_point)


def load_input_folder(path: Path, height: int, width: int, scale: float,
                      zero_point: int) -> list[InputSample]:
    """Every .npy and image file of a folder (sorted by name) as model inputs.

    Labels come from an optional labels.csv (file,label; file with or without
    its suffix, label an index or a class name); unlisted files get None."""
    _check_size(height, width)
    folder = Path(path)
    if not folder.is_dir():
        raise FusebenchError(f"input folder {folder} does not exist")
    labels_file = folder / "labels.csv"
    labels = _read_labels_csv(labels_file) if labels_file.exists() else {}
    samples: list[InputSample] = []
    for file in sorted(folder.iterdir()):
        if file.name == "labels.csv" or file.name.startswith(".") or file.is_dir():
            continue
        suffix = file.suffix.lower()
        if suffix == ".npy":
            try:
                array = np.load(file, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise FusebenchError(f"{file.name}: cannot read .npy ({e})") from None
        elif suffix in IMAGE_SUFFIXES:
            array = _read_image(file)
        else:
            raise FusebenchError(f"{file.name}: unsupported input file (use .npy, .png or .jpg)")
        data = _sample_from_array(array, file.name, height, width, scale, zero_point)
        label = labels.get(file.name, labels.get(file.stem))
        samples.append(InputSample(name=file.stem, data=data, label=label))
    known = {f.name for f in folder.iterdir()} | {f.stem for f in folder.iterdir()}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise FusebenchError(f"labels.csv names files that are not in {folder}: {', '.join(unknown)}")
    if not samples:
        raise FusebenchError(f"input folder {folder} holds no .npy or image files")
    return samples
