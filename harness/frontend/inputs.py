"""Model inputs (numpy only): what the model's input tensor takes
(`InputSpec`), the default inputs for it, and users' folders and batches.

Image inputs get the shipped held-out Fashion-MNIST images, resized and made
into the model's channels; other inputs (audio features, sensor vectors) a
seeded random set. The one `preprocess` function here is used for the
training data, the quantization calibration data and every benchmark input,
so the harness (which has no TensorFlow) feeds the shipped models exactly
what they were trained on.
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


def preprocess(images_u8: np.ndarray, height: int, width: int, channels: int = 3) -> np.ndarray:
    """Pixels (uint8, 0..255) -> model input float32 [N,H,W,channels] in [-1, 1].

    Accepts [N,h,w] or [N,h,w,1] grey images or [N,h,w,3] colour images, any
    h, w (bilinear resize). Grey images are replicated to 3 channels (as the
    shipped models see Fashion-MNIST); colour images become one channel by
    their luma (ITU-R BT.601 weights) for a one-channel model."""
    _check_size(height, width)
    if channels not in (1, 3):
        raise FusebenchError(f"images have 1 or 3 channels, not {channels}")
    images = np.asarray(images_u8)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise FusebenchError(f"preprocess expects [N,h,w], [N,h,w,1] or [N,h,w,3] images, got {images.shape}")
    resized = resize_bilinear(images.astype(np.float32), height, width)
    scaled = resized * np.float32(1.0 / 127.5) - np.float32(1.0)
    if scaled.shape[-1] == 1 and channels == 3:
        scaled = np.repeat(scaled, 3, axis=-1)
    elif scaled.shape[-1] == 3 and channels == 1:
        scaled = (scaled @ _LUMA)[..., None].astype(np.float32)
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def quantize_input(x_float: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Float -> int8 (or uint8) exactly as TFLite's QUANTIZE kernel does it.

    q = clamp(round_half_away_from_zero(x / scale) + zero_point, type range),
    with the division done in float32 (the kernel divides by (float)scale)."""
    if not np.isfinite(scale) or scale <= 0:
        raise FusebenchError(f"bad input quantization scale {scale}")
    info = np.iinfo(dtype)
    quotient = np.asarray(x_float, dtype=np.float32) / np.float32(scale)
    # float32 -> float64 makes `+ 0.5` exact, so floor(|q| + 0.5) equals
    # C's roundf (np.round would round half to even).
    magnitude = np.floor(np.abs(quotient.astype(np.float64)) + 0.5)
    rounded = np.copysign(magnitude, quotient)
    rounded = np.clip(rounded, -2.0**31, 2.0**31 - 1)   # kernel works in int32
    q = rounded.astype(np.int64) + int(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


# --------------------------------------------------------------------------
# What the model takes, and inputs for it

INPUT_DTYPES = ("int8", "uint8", "float32")
RANDOM_INPUT_COUNT = 32          # as many as the shipped images
RANDOM_INPUT_SEED = 0


@dataclass(frozen=True)
class InputSpec:
    """The model's input tensor as inputs must be made for it: its shape
    (batch 1), dtype and, for a quantized input, scale and zero point."""
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def of(cls, tensor) -> "InputSpec":
        """The spec of a graph tensor (harness.frontend.graph.Tensor)."""
        shape = tuple(int(d) for d in tensor.shape)
        if tensor.dtype not in INPUT_DTYPES:
            raise FusebenchError(f"the model's input is {tensor.dtype}; fusebench feeds int8, uint8 or float32")
        if shape and shape[0] != 1:
            raise FusebenchError(f"the model's input has batch {shape[0]}; fusebench runs batch 1")
        quantized = tensor.dtype != "float32"
        if quantized and tensor.quant is None:
            raise FusebenchError(f"the model's {tensor.dtype} input has no quantization parameters")
        return cls(shape, tensor.dtype, float(tensor.quant.scale[0]) if quantized else None,
                   int(tensor.quant.zero_point[0]) if quantized else None)

    @property
    def layout(self) -> str | None:
        """'NHWC' for a [1, H, W, C] map with 1 or 3 channels, 'NCHW' for a
        channels-first [1, C, H, W] one (PyTorch exports, which TRANSPOSE it
        first), None when the input is not an image."""
        if len(self.shape) != 4:
            return None
        if self.shape[3] in (1, 3):
            return "NHWC"
        if self.shape[1] in (1, 3) and min(self.shape[2:]) > 3:
            return "NCHW"
        return None

    @property
    def is_image(self) -> bool:
        """Images can be made for the input."""
        return self.layout is not None

    @property
    def hwc(self) -> tuple[int, int, int]:
        if self.layout == "NCHW":
            return self.shape[2], self.shape[3], self.shape[1]
        return self.shape[1], self.shape[2], self.shape[3]

    def from_nhwc(self, x: np.ndarray) -> np.ndarray:
        """A batch of [N, H, W, C] images in the input's layout."""
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.layout == "NCHW" else x

    def describe(self) -> str:
        if self.is_image:
            h, w, c = self.hwc
            first = ", channels first" if self.layout == "NCHW" else ""
            return f"an image of {h}x{w} pixels with {c} channel{'s' if c > 1 else ''}{first} ({self.dtype})"
        return f"a tensor of shape {list(self.shape)} ({self.dtype})"

    def from_float(self, x: np.ndarray) -> np.ndarray:
        """Real values -> the input's dtype (quantized as TFLite's QUANTIZE does)."""
        if self.dtype == "float32":
            return np.asarray(x, dtype=np.float32)
        return quantize_input(x, self.scale, self.zero_point, self.dtype)


@dataclass
class InputSample:
    """One model input, already in the model's input dtype and shape."""
    name: str
    data: np.ndarray            # the input tensor (batch 1)
    label: int | None = None


@dataclass
class InputSet:
    """The inputs of a run and what they are: `source` says where they came
    from (for the tables: "fashion-mnist test images, 96x96x1", "random int8,
    seed 0", a folder's name); `labels_apply` is False when the labels do not
    belong to this model (no top-1 accuracy is scored then)."""
    samples: list[InputSample]
    source: str
    labels_apply: bool


def model_inputs(spec: InputSpec, source: str | Path | None = None, classes: int | None = None) -> InputSet:
    """Inputs for a model: from `source` (a folder of images or .npy files, or
    one .npy holding a batch), else the defaults: the shipped Fashion-MNIST
    test images made into the model's image size and channels when the input
    is an image, else a seeded random set. `classes` (the model's output
    size) decides whether the shipped labels apply: only to 10-class models."""
    if source:
        path = Path(source)
        if path.is_file() and path.suffix.lower() == ".npy":
            samples = load_input_batch(path, spec)
        else:
            samples = load_folder(path, spec)
        labelled = any(s.label is not None for s in samples)
        return InputSet(samples, path.name, labelled)
    if spec.is_image:
        samples = default_image_inputs(spec)
        h, w, c = spec.hwc
        first = ", channels first" if spec.layout == "NCHW" else ""
        return InputSet(samples, f"fashion-mnist test images, {h}x{w}x{c}{first}", classes == len(CLASS_NAMES))
    return InputSet(random_inputs(spec), f"random {spec.dtype}, seed {RANDOM_INPUT_SEED}", False)


def default_image_inputs(spec: InputSpec, path: Path = DEFAULT_INPUTS_FILE) -> list[InputSample]:
    """The shipped held-out Fashion-MNIST test images, prepared for an image input.

    The file keeps them at native 28x28 so every resolution derives its input
    with the same `preprocess`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            labels = npz["labels"]
            indices = npz["indices"]
    except (OSError, KeyError, ValueError) as e:
        raise FusebenchError(f"cannot read default inputs {path}: {e}") from None
    h, w, c = spec.hwc
    x = spec.from_float(spec.from_nhwc(preprocess(images, h, w, c)))
    return [InputSample(name=f"fmnist_test_{int(idx):05d}", data=x[i:i + 1], label=int(labels[i]))
            for i, idx in enumerate(indices)]


def npz_image_inputs(spec: InputSpec, path: Path, prefix: str) -> list[InputSample]:
    """Images shipped with a model (`images`, uint8 [N, H, W, C], e.g. a
    detector's test scenes), prepared as the Fashion-MNIST defaults are; no
    labels (a detector's ground truth is boxes, scored by harness.report.detection)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
    except (OSError, KeyError, ValueError) as e:
        raise FusebenchError(f"cannot read the model's inputs {path}: {e}") from None
    if not spec.is_image:
        raise FusebenchError(f"{path} holds images, but the model takes {spec.describe()}")
    h, w, c = spec.hwc
    x = spec.from_float(spec.from_nhwc(preprocess(images, h, w, c)))
    return [InputSample(name=f"{prefix}_{i:03d}", data=x[i:i + 1]) for i in range(len(x))]


def random_inputs(spec: InputSpec, count: int = RANDOM_INPUT_COUNT,
                  seed: int = RANDOM_INPUT_SEED) -> list[InputSample]:
    """A deterministic set for inputs that are not images (audio features,
    sensor vectors): uniform over the dtype's range (floats in [-1, 1])."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        if spec.dtype == "float32":
            data = rng.uniform(-1.0, 1.0, spec.shape).astype(np.float32)
        else:
            info = np.iinfo(spec.dtype)
            data = rng.integers(info.min, info.max + 1, spec.shape, dtype=spec.dtype)
        samples.append(InputSample(name=f"random_{i:02d}", data=data))
    return samples


def load_default_inputs(height: int, width: int, scale: float, zero_point: int,
                        path: Path = DEFAULT_INPUTS_FILE) -> list[InputSample]:
    """The shipped images for an int8 [1, height, width, 3] input."""
    return default_image_inputs(InputSpec((1, height, width, 3), "int8", scale, zero_point), path)


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


def _wrong_shape(name: str, what: str, spec: InputSpec) -> FusebenchError:
    hint = (f"give {spec.dtype} arrays of {'x'.join(map(str, spec.shape[1:]))}, or images (uint8 pixels, or floats "
            f"in [-1, 1]) of any size" if spec.is_image else
            f"give arrays of shape {list(spec.shape)} (or without the leading 1), {spec.dtype} or float")
    return FusebenchError(f"{name}: holds {what}, but the model takes {spec.describe()}: {hint}")


def _array_words(array: np.ndarray) -> str:
    return f"{'x'.join(str(int(d)) for d in array.shape) or 'a scalar'} values ({array.dtype})"


def sample_from_array(array: np.ndarray, name: str, spec: InputSpec) -> np.ndarray:
    """One input from an array (a .npy file, an image file, a batch row).

    For an image input: arrays of the input's dtype must be [H,W,C] (or
    [1,H,W,C]) and are taken as they are; uint8 arrays are otherwise pixels
    ([h,w], [h,w,1] or [h,w,3], any size: preprocessed, resized, grey or colour
    made into the model's channels) and float arrays preprocessed values in
    [-1, 1]. For any other input: the input's shape (with or without the
    leading 1), in the input's dtype or as floats to quantize."""
    array = np.asarray(array)
    if not spec.is_image:
        if array.shape not in (spec.shape, spec.shape[1:]):
            raise _wrong_shape(name, _array_words(array), spec)
        if array.dtype == np.dtype(spec.dtype):
            return array.reshape(spec.shape).copy()
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)):
                raise FusebenchError(f"{name}: holds values that are not finite")
            return spec.from_float(array.reshape(spec.shape))
        raise _wrong_shape(name, _array_words(array), spec)
    h, w, c = spec.hwc
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    tensor_shape = spec.shape[1:]          # (h, w, c), or (c, h, w) channels first
    if array.dtype == np.dtype(spec.dtype) and not (spec.dtype == "uint8" and array.shape != tensor_shape):
        if array.shape != tensor_shape:
            raise _wrong_shape(name, _array_words(array), spec)
        return array[None].copy()
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or min(array.shape[:2]) < 1:
        raise _wrong_shape(name, _array_words(array), spec)
    if array.dtype == np.uint8:
        x = preprocess(array[None], h, w, c)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < -1.0 or array.max() > 1.0:
            raise FusebenchError(f"{name}: float images must be preprocessed values in [-1, 1]")
        x = resize_bilinear(array[None].astype(np.float32), h, w)
        if x.shape[-1] != c:
            x = np.repeat(x, 3, axis=-1) if c == 3 else (x @ _LUMA)[..., None].astype(np.float32)
    else:
        raise _wrong_shape(name, _array_words(array), spec)
    return spec.from_float(spec.from_nhwc(x))


def load_input_batch(path: Path, spec: InputSpec) -> list[InputSample]:
    """One .npy holding a batch (its first axis counts the inputs), or one
    input of exactly the model's input shape without the batch axis."""
    try:
        batch = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FusebenchError(f"{path.name}: cannot read .npy ({e})") from None
    if batch.ndim < 1 or batch.shape[0] < 1:
        raise FusebenchError(f"{path.name}: an empty batch")
    if tuple(batch.shape) == tuple(spec.shape[1:]) and len(spec.shape) > 1 and spec.shape[0] == 1:
        return [InputSample(name=path.stem, data=sample_from_array(batch, path.name, spec))]
    return [InputSample(name=f"{path.stem}[{i}]", data=sample_from_array(row, f"{path.name}[{i}]", spec))
            for i, row in enumerate(batch)]


def load_folder(path: Path, spec: InputSpec) -> list[InputSample]:
    """Every .npy and image file of a folder (sorted by name) as model inputs.

    Labels come from an optional labels.csv (file,label; file with or without
    its suffix, label an index or a class name); unlisted files get None."""
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
            if not spec.is_image:
                raise FusebenchError(f"{file.name}: an image, but the model takes {spec.describe()}")
            array = _read_image(file)
        else:
            raise FusebenchError(f"{file.name}: unsupported input file (use .npy, .png or .jpg)")
        data = sample_from_array(array, file.name, spec)
        label = labels.get(file.name, labels.get(file.stem))
        samples.append(InputSample(name=file.stem, data=data, label=label))
    known = {f.name for f in folder.iterdir()} | {f.stem for f in folder.iterdir()}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise FusebenchError(f"labels.csv names files that are not in {folder}: {', '.join(unknown)}")
    if not samples:
        raise FusebenchError(f"input folder {folder} holds no .npy or image files")
    return samples


def load_input_folder(path: Path, height: int, width: int, scale: float,
                      zero_point: int) -> list[InputSample]:
    """A folder's inputs for an int8 [1, height, width, 3] input."""
    _check_size(height, width)
    return load_folder(path, InputSpec((1, height, width, 3), "int8", scale, zero_point))
