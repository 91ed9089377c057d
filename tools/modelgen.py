"""Train and convert the default int8 MobileNetV2 models (needs TensorFlow).

Keras' MobileNetV2 is built without downloaded weights and trained here on
Fashion-MNIST. The net is fully convolutional up to the global pool, so each
width is trained once (on batches of mixed resolution, weights cached in
build/models/) and rebuilt at every wanted resolution, where it gets one short
fine-tuning epoch and re-estimated batch-norm statistics; then it is converted
with full-integer quantization (int8 input and output, per-channel weights)
calibrated at that resolution.

Other expansion ratios of the inverted residual blocks (t = 6 in Keras) come
from `mobilenetv2_backbone`, a copy of Keras' builder with t as a parameter;
their files get a `_t<t>` suffix. Runs asking for any t other than 6 train
"short" by default (one epoch on a subset, at each model's own resolution,
no fine-tuning): those models are for memory measurements.

The report's other backbones (`tools.architectures`: EfficientNet-Lite,
MobileNetV3-Small, ShuffleNetV2, MobileNetV1) are made with `--arch`: each is
trained "short" at its own resolution, files named `<arch>_w<width>_<px>`.
The microYOLO-style detector (`--arch microyolo`, tools/detection.py: its
own synthetic detection set, training and head record) goes to
models/detection/.
UNIST-style networks (`--arch unist`, shipped in models/unist/) also take
per-model parameters (k, central, margin, depth, t), named in their files
(`unist_k4c_m9_d5_t4_w16_96`); `--params "k=2,3,4,5 margin=0,9"` makes every
combination of those values around each shipped UNIST model, by default into
build/sweeps/ (not the shipped folder).

TensorFlow is imported inside functions only, so `import tools.modelgen`
works without it. Run: `python -m tools.modelgen [--resolution N ...]`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from harness.frontend import inputs as datasets
from tools import fashion_mnist
from harness.errors import FusebenchError
from harness.paths import BUILD_DIR, MODELS_DIR, ROOT

WEIGHTS_CACHE_DIR = BUILD_DIR / "models"

DEFAULT_WIDTHS: tuple[float, ...] = (0.35, 1.0)
DEFAULT_EXPANSION = 6           # Keras' (and the paper's) t of the 16 expanding blocks
# (width, resolution) of the shipped models. 64x64 is the STM32F4 model: its
# largest layer input+output is ~64 KB at width 0.35 (Keras uses SAME padding,
# so no PAD op doubles the expanded 32x32x48 tensor).
DEFAULT_MODELS: tuple[tuple[float, int], ...] = ((0.35, 128), (0.35, 144), (1.0, 128), (0.35, 64))
NUM_CLASSES = 10
DEFAULT_ARCH = "mobilenetv2"
# The microYOLO-style detector (tools/detection.py), shipped in models/detection/.
DETECTOR_ARCH = "microyolo"
DETECTOR_FOLDER = "detection"
# The other backbones train short (one pass at their own resolution) on more
# images than the expansion study: they are for memory and time measurements,
# and their accuracy says only that they learned (models/README.md has it).
ARCH_TRAIN_SUBSET = 12800


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained float weights (the cache key)."""
    width: float
    seed: int = 0
    train_resolutions: tuple[int, ...] = (64, 96, 128)   # cycled batch by batch
    train_subset: int = 24000                            # first N of a seeded shuffle
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 2e-3
    bn_momentum: float = 0.9
    keras_version: str = ""
    expansion: int = DEFAULT_EXPANSION
    training: str = "full"            # "full" (shared mixed-resolution weights) or "short"
    arch: str = DEFAULT_ARCH          # MobileNetV2, or one of tools.architectures
    params: tuple = ()                # the architecture's own parameters, sorted (key, value) pairs

    @property
    def cache_stem(self) -> str:
        tag = arch_tag(self.arch, self.width, dict(self.params))
        stem = f"{self.arch}_{tag}{expansion_tag(self.expansion)}_seed{self.seed}"
        if self.training != "full":
            stem += f"_{self.training}{'-'.join(map(str, self.train_resolutions))}"
        return stem


# Fields added to TrainConfig after caches were written: a cached record
# without them was made with these values.
_CONFIG_FIELD_DEFAULTS = {"expansion": DEFAULT_EXPANSION, "training": "full", "arch": "mobilenetv2",
                          "params": []}


# Per-width training on the shared 2-core CPU (measured: 17 min for 0.35, 20 for 1.0).
# The weights generalise poorly to resolutions outside the trained range
# (0.35 trained at 64..128 scored 76% at 144), so each width trains over the
# range of its shipped models.
TRAIN_SUBSET = {0.35: 24000, 1.0: 20000}
TRAIN_RESOLUTIONS = {0.35: (64, 96, 128, 144), 1.0: (64, 96, 128)}

# "short" training (the expansion-ratio study): one epoch from scratch on a
# subset, at the model's own resolution only; no fine-tuning step. Measured
# at 64x64, width 0.35, t = 2/4/6/8 on the 2 shared cores: 6400 images train
# in 37-41 s per model, the whole sweep (with conversion and evaluation) in
# 4.2 min, int8 top-1 44/61/67/66%; 12800 images took 56-68 s per model,
# 5.5 min in all, for 55/71/78/79%.
SHORT_TRAIN_SUBSET = 6400
SHORT_EPOCHS = 1
TRAININGS = ("full", "short")

FINETUNE_IMAGES = 6400          # per model, at its resolution, from the training subset
FINETUNE_LEARNING_RATE = 2e-4
BN_REESTIMATE_BATCHES = 24       # x 64 training images at the target resolution
CALIBRATION_IMAGES = 256         # representative dataset for the int8 ranges
DEFAULT_EVAL_IMAGES = 1000       # first N test-split images, int8 top-1
DEFAULT_INPUT_COUNT = 32


def width_tag(width: float) -> str:
    return f"w{int(round(width * 100)):03d}"


def expansion_tag(expansion: int) -> str:
    """'' for Keras' t = 6 (the shipped names), else '_t<t>'."""
    return "" if int(expansion) == DEFAULT_EXPANSION else f"_t{int(expansion)}"


# The model's edges: int8 in and out (the shipped models), or the STM32 model
# zoo's uint8 pixels in and float scores out (int8 inside either way).
EDGES = {"int8": ("int8", "int8"), "uint8-float32": ("uint8", "float32")}
DEFAULT_EDGES = "int8"


def arch_tag(arch: str, width: float, params: dict | None = None) -> str:
    """The file-name part naming a model's width (and its architecture's own
    parameters, for architectures with a `tag`, e.g. UNIST's k4c_m9_d5_t4_w16)."""
    if arch != DEFAULT_ARCH:
        from tools.architectures import ARCHITECTURES
        tag = ARCHITECTURES[arch].tag
        if tag is not None:
            return tag(width, dict(params or {}))
    return width_tag(width)


def model_filename(width: float, resolution: int, expansion: int = DEFAULT_EXPANSION,
                   edges: str = DEFAULT_EDGES, arch: str = DEFAULT_ARCH, params: dict | None = None) -> str:
    suffix = "" if edges == DEFAULT_EDGES else "_" + edges.replace("-", "_")
    return f"{arch}_{arch_tag(arch, width, params)}_{resolution}{expansion_tag(expansion)}{suffix}.tflite"


def parse_param_sweep(text: str, arch: str) -> dict[str, list]:
    """`--params` text, `key=v1,v2 key=v3` (spaces or `;` between keys), into
    {key: [typed values]} for the architecture's parameters (and `width`)."""
    from tools.architectures import ARCHITECTURES
    if arch == DETECTOR_ARCH:
        raise FusebenchError(f"--params: architecture {arch!r} takes no parameters")
    if arch != DEFAULT_ARCH and arch not in ARCHITECTURES:
        raise FusebenchError(f"unknown architecture {arch!r} (known: "
                             f"{', '.join((DEFAULT_ARCH,) + tuple(ARCHITECTURES))})")
    param_types = ARCHITECTURES[arch].param_types if arch in ARCHITECTURES else {}
    types = {"width": float, **param_types}
    if not param_types:
        raise FusebenchError(f"--params: architecture {arch!r} takes no parameters")

    def typed(key: str, value: str):
        kind = types[key]
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return kind(value)

    sweep: dict[str, list] = {}
    for item in text.replace(";", " ").split():
        key, sep, values = item.partition("=")
        if not sep or key not in types:
            raise FusebenchError(f"--params: expected key=value[,value...] with key one of "
                                 f"{', '.join(types)} (got {item!r})")
        try:
            sweep[key] = list(dict.fromkeys(typed(key, v) for v in values.split(",") if v.strip()))
        except ValueError:
            raise FusebenchError(f"--params: bad value in {item!r}") from None
        if not sweep[key]:
            raise FusebenchError(f"--params: no values in {item!r}")
    if not sweep:
        raise FusebenchError("--params: no parameters given")
    return sweep


# MobileNetV2's inverted residual blocks: (t, c, n, s) = expansion ratio,
# output channels (before the width multiplier), repeats, first stride.
# t = 6 marks the blocks whose ratio `mobilenetv2_backbone` replaces.
MOBILENETV2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Keras' (and the reference implementation's) channel rounding."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:           # never round down by more than 10%
        new_v += divisor
    return new_v


def _correct_pad(size: tuple, kernel_size: int = 3) -> tuple[tuple[int, int], tuple[int, int]]:
    """keras.applications' `correct_pad`: the ZeroPadding2D before a stride-2
    depthwise (one extra row/column at the bottom/right for even sizes)."""
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    correct = (kernel_size // 2, kernel_size // 2)
    return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))


def block_expansions(expansion: int) -> list[int]:
    """The expansion ratio of each of the 17 blocks (block 0 keeps t = 1)."""
    return [expansion if t == DEFAULT_EXPANSION else t
            for t, _, n, _ in MOBILENETV2_BLOCKS for _ in range(n)]


# --------------------------------------------------------------------------
# TensorFlow side

def _import_tf():
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
    except ImportError:
        raise FusebenchError("TensorFlow is needed to regenerate models: pip install -e '.[models]'") from None
    return tf


def _set_determinism(tf, seed: int) -> None:
    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except AttributeError:
        pass


def mobilenetv2_backbone(tf, input_shape: tuple, alpha: float, expansion: int = DEFAULT_EXPANSION):
    """MobileNetV2 without its top, as `keras.applications.MobileNetV2(...,
    weights=None, include_top=False)` builds it (same layers, names, order and
    shapes) but with every t = 6 block expanding by `expansion` instead.

    Channels-last only. Layer for layer: 3x3 stride-2 Conv1 -> BN -> ReLU6;
    17 inverted residual blocks (block 0 has no expand conv; expand to
    t * input channels, ZeroPadding2D + VALID before stride-2 depthwise convs,
    projection to _make_divisible(int(c * alpha), 8), ADD when shapes match);
    1x1 Conv_1 to 1280 channels (_make_divisible(1280 * alpha, 8) for alpha > 1)."""
    layers = tf.keras.layers
    expansion = int(expansion)
    if expansion < 1:
        raise FusebenchError(f"expansion ratio must be a positive integer (got {expansion})")

    def bn(name):
        return layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.999, name=name)

    def inverted_res_block(inputs, t, stride, filters, block_id):
        in_channels = inputs.shape[-1]
        pointwise_filters = _make_divisible(int(filters * alpha), 8)
        x = inputs
        prefix = f"block_{block_id}_"
        if block_id:
            x = layers.Conv2D(t * in_channels, kernel_size=1, padding="same", use_bias=False,
                              activation=None, name=f"{prefix}expand")(x)
            x = bn(f"{prefix}expand_BN")(x)
            x = layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
        else:
            prefix = "expanded_conv_"
        if stride == 2:
            x = layers.ZeroPadding2D(padding=_correct_pad(tuple(x.shape[1:3]), 3), name=f"{prefix}pad")(x)
        x = layers.DepthwiseConv2D(kernel_size=3, strides=stride, activation=None, use_bias=False,
                                   padding="same" if stride == 1 else "valid",
                                   name=f"{prefix}depthwise")(x)
        x = bn(f"{prefix}depthwise_BN")(x)
        x = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
        x = layers.Conv2D(pointwise_filters, kernel_size=1, padding="same", use_bias=False,
                          activation=None, name=f"{prefix}project")(x)
        x = bn(f"{prefix}project_BN")(x)
        if in_channels == pointwise_filters and stride == 1:
            return layers.Add(name=f"{prefix}add")([inputs, x])
        return x

    img_input = layers.Input(shape=input_shape)
    x = layers.Conv2D(_make_divisible(32 * alpha, 8), kernel_size=3, strides=(2, 2), padding="same",
                      use_bias=False, name="Conv1")(img_input)
    x = bn("bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    block_id = 0
    for t, c, n, s in MOBILENETV2_BLOCKS:
        for i in range(n):
            x = inverted_res_block(x, expansion if t == DEFAULT_EXPANSION else t,
                                   s if i == 0 else 1, c, block_id)
            block_id += 1
    # Like Keras (and the paper): no width multiplier on the last conv unless alpha > 1.
    last_block_filters = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = layers.Conv2D(last_block_filters, kernel_size=1, use_bias=False, name="Conv_1")(x)
    x = bn("Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    rows = input_shape[0] if input_shape[0] is not None else 224
    return tf.keras.Model(img_input, x, name=f"mobilenetv2_{alpha:0.2f}_{rows}_t{expansion}")


def build_model(tf, width: float, resolution: int | None, bn_momentum: float,
                expansion: int = DEFAULT_EXPANSION, arch: str = DEFAULT_ARCH, params: dict | None = None):
    """Keras MobileNetV2 (random init, 10 classes); None = any resolution.

    Expansion 6 uses keras.applications itself (the shipped models), any
    other ratio `mobilenetv2_backbone`. The classifier head is added here
    exactly as Keras' include_top=True would (global average pool + softmax
    Dense), because Keras only allows its own head with a fixed input size and
    training mixes sizes. Other architectures: tools.architectures (head
    included), at a fixed resolution, with their own `params` (keyword arguments
    of the builder)."""
    if arch != DEFAULT_ARCH:
        from tools.architectures import ARCHITECTURES
        try:
            model = ARCHITECTURES[arch].build(tf, (resolution, resolution, 3), width, **dict(params or {}))
        except (ValueError, TypeError) as e:      # a bad --params value or key
            raise FusebenchError(f"{arch} {dict(params or {})} at {resolution} px: {e}") from None
        for layer in model.layers:
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
        return model
    if int(expansion) == DEFAULT_EXPANSION:
        backbone = tf.keras.applications.MobileNetV2(
            input_shape=(resolution, resolution, 3), alpha=width, weights=None, include_top=False)
    else:
        backbone = mobilenetv2_backbone(tf, (resolution, resolution, 3), width, expansion)
    pooled = tf.keras.layers.GlobalAveragePooling2D()(backbone.output)
    scores = tf.keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(pooled)
    model = tf.keras.Model(backbone.input, scores,
                           name=f"mobilenetv2_{width_tag(width)}{expansion_tag(expansion)}")
    # Keras' default BN momentum (0.999 here) is far too slow for a short run.
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model


def _train_batches(tf, images: np.ndarray, labels: np.ndarray, cfg: TrainConfig):
    """A Keras PyDataset preprocessing each batch on the fly (memory stays
    small) and cycling through the training resolutions batch by batch."""

    class MixedResolutionBatches(tf.keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.order = np.arange(len(images))
            self.epoch = 0
            self.on_epoch_end()

        def __len__(self) -> int:
            return len(images) // cfg.batch_size

        def __getitem__(self, i: int):
            rows = self.order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            res = cfg.train_resolutions[i % len(cfg.train_resolutions)]
            return datasets.preprocess(images[rows], res, res), labels[rows]

        def on_epoch_end(self) -> None:
            self.order = np.random.default_rng([cfg.seed, self.epoch]).permutation(len(images))
            self.epoch += 1

    return MixedResolutionBatches()


def _train_rows(cfg: TrainConfig, total: int) -> np.ndarray:
    """The training subset: the first `train_subset` of a seeded shuffle."""
    return np.sort(np.random.default_rng(cfg.seed).permutation(total)[:cfg.train_subset])


def _compile(tf, model, learning_rate: float, steps: int) -> None:
    schedule = tf.keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.02)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def train_weights(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[list[np.ndarray], dict]:
    """Train one width; returns (Keras weights, training record)."""
    tf = _import_tf()
    _set_determinism(tf, cfg.seed)
    train_x, train_y = fashion_mnist.load_fashion_mnist("train")
    rows = _train_rows(cfg, len(train_x))
    # MobileNetV2 trains at any size; the others (ShuffleNet's reshapes) at their one resolution
    resolution = None if cfg.arch == DEFAULT_ARCH else cfg.train_resolutions[0]
    model = build_model(tf, cfg.width, resolution, cfg.bn_momentum, cfg.expansion, cfg.arch, dict(cfg.params))
    batches = _train_batches(tf, train_x[rows], train_y[rows], cfg)
    _compile(tf, model, cfg.learning_rate, cfg.epochs * len(batches))
    log(f"training {cfg.arch} width {cfg.width}{' ' + str(dict(cfg.params)) if cfg.params else ''}, "
        f"expansion {cfg.expansion} ({cfg.training}): "
        f"{cfg.train_subset} images x {cfg.epochs} epochs at {'/'.join(map(str, cfg.train_resolutions))} px")
    start = time.monotonic()
    history = model.fit(batches, epochs=cfg.epochs, verbose=2, shuffle=False)
    seconds = time.monotonic() - start
    record = {
        "config": asdict(cfg),
        "train_seconds": round(seconds, 1),
        "final_train_accuracy": round(float(history.history["accuracy"][-1]), 4),
    }
    log(f"  trained in {seconds:.0f} s, last-epoch train accuracy {record['final_train_accuracy']:.3f}")
    return model.get_weights(), record


def trained_weights(cfg: TrainConfig, cache_dir: Path, log: Callable[[str], None]) -> tuple[list[np.ndarray], dict]:
    """Cached float weights of one training configuration (width, expansion,
    ...), training them if the cache is missing or was made with another
    configuration."""
    weights_file = cache_dir / f"{cfg.cache_stem}.npz"
    record_file = cache_dir / f"{cfg.cache_stem}.json"
    if weights_file.exists() and record_file.exists():
        record = json.loads(record_file.read_text())
        if {**_CONFIG_FIELD_DEFAULTS, **record.get("config", {})} == json.loads(json.dumps(asdict(cfg))):
            with np.load(weights_file) as npz:
                weights = [npz[f"w{i}"] for i in range(len(npz.files))]
            log(f"using cached weights {weights_file}")
            return weights, record
        log(f"cached weights {weights_file} were made with another configuration: retraining")
    weights, record = train_weights(cfg, log)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(weights_file, **{f"w{i}": w for i, w in enumerate(weights)})
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return weights, record


def _finetune_at_resolution(tf, model, cfg: TrainConfig, resolution: int,
                            train_x: np.ndarray, train_y: np.ndarray) -> float:
    """One short low-rate epoch at the model's own resolution.

    The shared weights do best at multiples of 32 (every stride-2 stage then
    halves an even size): 0.35 at 144 (last stage 9x9 -> 5x5) reached only 80%
    with mixed-resolution training and re-estimated BN alone. Returns the
    fine-tuning accuracy."""
    rows = _train_rows(cfg, len(train_x))
    rows = np.sort(np.random.default_rng([cfg.seed, resolution, 2]).permutation(rows)[:FINETUNE_IMAGES])
    tune = replace(cfg, train_resolutions=(resolution,), epochs=1)
    batches = _train_batches(tf, train_x[rows], train_y[rows], tune)
    _compile(tf, model, FINETUNE_LEARNING_RATE, len(batches))
    history = model.fit(batches, epochs=1, verbose=0, shuffle=False)
    return float(history.history["accuracy"][-1])


def _reestimate_batch_norm(tf, model, images: np.ndarray, resolution: int, seed: int) -> None:
    """Replace BN moving statistics by their average over training batches at
    this resolution (momentum 1-1/k makes the moving value a plain mean)."""
    bn_layers = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
    rows = np.random.default_rng([seed, resolution]).permutation(len(images))
    for k in range(1, BN_REESTIMATE_BATCHES + 1):
        for layer in bn_layers:
            layer.momentum = 1.0 - 1.0 / k
        batch = datasets.preprocess(images[rows[(k - 1) * 64:k * 64]], resolution, resolution)
        model(batch, training=True)
    for layer in bn_layers:
        layer.momentum = 0.9


def convert_int8(tf, model, calibration: np.ndarray, edges: str = DEFAULT_EDGES) -> bytes:
    """Full-integer quantization, per-channel weights; the input and output
    types as `edges` says (EDGES: int8 in and out, or uint8 in, float32 out)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in calibration:
            yield [image[None].astype(np.float32)]

    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    input_type, output_type = EDGES[edges]
    converter.inference_input_type = getattr(tf, input_type)
    converter.inference_output_type = getattr(tf, output_type)
    return converter.convert()


# --------------------------------------------------------------------------
# Host-reference evaluation (LiteRT BUILTIN_REF, in a child process so the
# interpreter never shares a process with TensorFlow's own TFLite runtime)

def evaluate_int8(model_path: Path, count: int) -> dict:
    """int8 top-1 on the first `count` test images with the reference kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interpreter = Interpreter(model_path=str(model_path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    _, height, width, _ = inp["shape"]
    scale, zero_point = inp["quantization"]
    spec = datasets.InputSpec(tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]).name,
                              float(scale), int(zero_point))
    images, labels = fashion_mnist.load_fashion_mnist("test")
    correct = 0
    distinct: set[bytes] = set()
    for start in range(0, count, 100):
        x = spec.from_float(datasets.preprocess(images[start:start + 100], height, width))
        for i in range(len(x)):
            interpreter.set_tensor(inp["index"], x[i:i + 1])
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])[0]
            distinct.add(y.tobytes())
            correct += int(np.argmax(y) == labels[start + i])
    shipped = datasets.default_image_inputs(spec)
    shipped_correct = 0
    for sample in shipped:
        interpreter.set_tensor(inp["index"], sample.data)
        interpreter.invoke()
        shipped_correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == sample.label)
    return {"eval_images": count, "int8_top1": round(correct / count, 4),
            "distinct_outputs": len(distinct),
            "shipped_inputs_top1": round(shipped_correct / len(shipped), 4),
            "shipped_inputs": len(shipped)}


def _evaluate_in_child(model_path: Path, count: int) -> dict:
    cmd = [sys.executable, "-m", "tools.modelgen", "--evaluate", str(model_path), "--count", str(count)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise FusebenchError(f"evaluating {model_path.name} with LiteRT failed: "
                             f"{(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Shipped inputs and the generated README

def write_default_inputs(path: Path, count: int = DEFAULT_INPUT_COUNT) -> None:
    """`count` held-out test images at native 28x28, classes taken in turn."""
    images, labels = fashion_mnist.load_fashion_mnist("test")
    picked: list[int] = []
    next_of_class = {c: iter(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)}
    for i in range(count):
        picked.append(int(next(next_of_class[i % NUM_CLASSES])))
    indices = np.array(picked, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images[indices], labels=labels[indices].astype(np.int64),
                        indices=indices, class_names=np.array(datasets.CLASS_NAMES))


def _train_time(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(params.items())) or "-"


def _write_readme(out_dir: Path, records: dict[str, dict]) -> None:
    # Columns and paragraphs about expansion ratios and short training appear
    # only when such records exist, so models/README.md keeps its form.
    show_expansion = any(r.get("expansion", DEFAULT_EXPANSION) != DEFAULT_EXPANSION for r in records.values())
    short = sorted(n for n, r in records.items() if r.get("training", "full") == "short")
    show_arch = any(r.get("arch", DEFAULT_ARCH) != DEFAULT_ARCH for r in records.values())
    show_params = any("arch_params" in r for r in records.values())
    show_count = any("parameters" in r for r in records.values())
    is_default_dir = Path(out_dir).resolve() == MODELS_DIR.resolve()
    lines = [
        "# Default models" if is_default_dir else "# Generated models",
        "",
        "Generated by `tools/modelgen.py` (`invoke models`); do not edit by hand.",
        "",
        ("Keras MobileNetV2" if any(r.get("arch", DEFAULT_ARCH) == DEFAULT_ARCH for r in records.values())
         else "Keras backbones") + " (random init, 10 classes) trained here on Fashion-MNIST",
        "(28x28 grey, bilinear upscale, replicated to 3 channels, scaled to [-1, 1] by",
        "`harness.frontend.inputs.preprocess`), then converted with full-integer quantization:",
        "int8 input and output, per-channel int8 weights, calibrated on",
        f"{CALIBRATION_IMAGES} training images at the model's resolution."
        + (" Each width is trained" if len(short) < len(records) else ""),
    ] + ([
        "once on batches of mixed resolution (train px); each model starts from those",
        f"weights, is fine-tuned for one short epoch ({FINETUNE_IMAGES} of the training images,",
        f"learning rate {FINETUNE_LEARNING_RATE}) at its own resolution and gets its batch-norm",
        "statistics re-estimated there.",
    ] if len(short) < len(records) else []) + [
        "",
        "int8 top-1 is measured with LiteRT's reference kernels (BUILTIN_REF) on the",
        "first N images of the Fashion-MNIST test split (never trained on).",
        "",
    ]
    if show_expansion:
        lines += [
            "Expansion is the ratio t of the 16 expanding inverted residual blocks",
            "(t = 6 in Keras' MobileNetV2; the first block always has t = 1). Other ratios",
            "are built by `tools.modelgen.mobilenetv2_backbone`, layer for layer Keras'",
            "network with t replaced; their files end in `_t<t>`.",
            "",
        ]
    if show_arch:
        from tools.architectures import ARCHITECTURES
        lines += ["Beside MobileNetV2, the re-implementation report's other backbones "
                  "(`tools/architectures.py`), trained short (below) with the same data and conversion:", ""]
        shown = [a for a in ARCHITECTURES.values() if any(r.get("arch") == a.name for r in records.values())]
        lines += [f"- `{a.name}`: {a.describe}" for a in shown]
        lines += [""]
        for a in shown:
            lines += list(a.notes) + ([""] if a.notes else [])
    if short:
        lines += [
            f"Short training ({', '.join(f'`{n}`' for n in short)}): these models",
            "were trained from scratch, for their memory measurements rather than their",
            "accuracy, on the listed number of training images for the listed epochs at",
            "their own resolution only, with no fine-tuning step (batch-norm statistics",
            "re-estimated, then converted as above). Their train time is per file.",
            "",
        ]
    head = ["file"] + (["architecture"] if show_arch else []) + ["width"] + \
        (["parameters of the architecture"] if show_params else []) + \
        (["expansion"] if show_expansion else []) + [
        "input", "train px (mixed)", "epochs", "train images", "train time", "int8 top-1", "N test",
        "top-1 on the shipped inputs", "size"] + (["weights"] if show_count else [])
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in sorted(records):
        r = records[name]
        lines.append(
            f"| `{name}` | " + (f"{r.get('arch', DEFAULT_ARCH)} | " if show_arch else "")
            + (f"{r['width']:g} | " if "arch_params" in r else f"{r['width']} | ")
            + (f"{_params_text(r.get('arch_params', {}))} | " if show_params else "")
            + (f"{r.get('expansion', DEFAULT_EXPANSION)} | " if show_expansion else "")
            + f"{r['resolution']}x{r['resolution']}x3 | "
            f"{'/'.join(map(str, r['train_resolutions']))} | {r['epochs']} | {r['train_subset']} | "
            f"{_train_time(r['train_seconds'])} | {100 * r['int8_top1']:.1f}% | {r['eval_images']} | "
            f"{100 * r.get('shipped_inputs_top1', float('nan')):.1f}% of {r.get('shipped_inputs', '?')} | "
            f"{r['bytes'] / 1024:.0f} KiB |" + (f" {r['parameters']:,} |" if "parameters" in r else
                                               " - |" if show_count else ""))
    notes = []
    if len(short) < len(records):
        notes += ["Train time is for the width's shared weights (2 shared CPU cores), not per file."]
    f4 = records.get(model_filename(0.35, 64))
    if f4 is not None and f4.get("training", "full") == "full":
        notes += [
            f"`{model_filename(0.35, 64)}` is the STM32F4 model: its largest layer input +",
            "output is 60 KiB (the 32x32x48 expansion into the stride-2 depthwise).",
        ]
    if notes:
        lines += [""] + notes
    lines += [""] if not is_default_dir else [
        "",
        "`inputs/fashion_mnist_test.npz`: the default benchmark inputs, "
        f"{DEFAULT_INPUT_COUNT} held-out test",
        "images at native 28x28 (`images` uint8, `labels`, test-split `indices`,",
        "`class_names`); `harness.frontend.inputs.load_default_inputs` prepares them for any model.",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines))


def make_models(out_dir: Path, resolutions: list[int] | None = None,
                widths: Iterable[float] = DEFAULT_WIDTHS, seed: int = 0,
                log: Callable[[str], None] = print,
                eval_images: int = DEFAULT_EVAL_IMAGES,
                cache_dir: Path = WEIGHTS_CACHE_DIR,
                expansions: Iterable[int] = (DEFAULT_EXPANSION,),
                training: str | None = None, edges: str = DEFAULT_EDGES,
                archs: Iterable[str] = (DEFAULT_ARCH,),
                param_sweep: dict[str, list] | None = None) -> list[Path]:
    """Write the int8 models (default set, or every width at each of
    `resolutions`; each at every expansion ratio of `expansions`), the default
    inputs, models.json and README.md into `out_dir`; returns the model paths.

    `training`: "full" (each width's shared mixed-resolution weights plus a
    fine-tuning epoch per resolution, as the shipped models) or "short" (one
    epoch from scratch per model at its own resolution); default "short" when
    any expansion other than 6 is asked for, so a ratio sweep is trained alike.
    Trained float weights are cached in `cache_dir`, keyed by width,
    expansion, seed and training. `edges`: the input and output types (EDGES).
    `archs`: MobileNetV2 and/or tools.architectures names; the others make
    their shipped (width, resolution) pairs, or their widths at `resolutions`,
    trained short. `param_sweep` ({key: values}, see parse_param_sweep; one
    architecture only): every combination of those values replaces the
    shipped models' own parameters (or width)."""
    from tools.architectures import ARCHITECTURES
    archs = tuple(dict.fromkeys(archs))
    if DETECTOR_ARCH in archs:                   # the detector has its own data, training and records
        if len(archs) > 1 or resolutions or param_sweep or edges != DEFAULT_EDGES or training not in (None, "short") \
                or tuple(expansions) != (DEFAULT_EXPANSION,):
            raise FusebenchError(f"--arch {DETECTOR_ARCH} is made on its own, at 128x128 with int8 edges "
                                 "(no --resolution, --width, --expansion, --edges or --params)")
        from tools.detection import make_detector
        return [make_detector(Path(out_dir), seed, log)]
    unknown = [a for a in archs if a != DEFAULT_ARCH and a not in ARCHITECTURES]
    if unknown:
        raise FusebenchError(f"unknown architecture {unknown[0]!r} (known: "
                             f"{', '.join((DEFAULT_ARCH,) + tuple(ARCHITECTURES) + (DETECTOR_ARCH,))})")
    if edges not in EDGES:
        raise FusebenchError(f"edges must be one of {', '.join(EDGES)} (got {edges!r})")
    out_dir = Path(out_dir)
    widths = tuple(float(w) for w in widths)
    expansions = tuple(dict.fromkeys(int(e) for e in expansions))
    if not expansions or any(not 1 <= e <= 32 for e in expansions):
        raise FusebenchError(f"expansion ratios must be integers in 1..32 (got {list(expansions)})")
    if training is None:
        training = "full" if expansions == (DEFAULT_EXPANSION,) else "short"
    if training not in TRAININGS:
        raise FusebenchError(f"training must be one of {', '.join(TRAININGS)} (got {training!r})")
    for r in resolutions or ():
        if not 32 <= int(r) <= 512:
            raise FusebenchError(f"resolution {r} out of range (32..512)")
    if param_sweep and (len(archs) != 1 or archs[0] == DEFAULT_ARCH):
        raise FusebenchError("--params sweeps the parameters of one architecture (other than mobilenetv2)")
    wanted = []                                  # (arch, width, resolution, params as sorted items)
    for arch in archs:
        if arch == DEFAULT_ARCH:
            pairs = [(w, r) for (w, r) in DEFAULT_MODELS if w in widths] if resolutions is None else \
                [(w, int(r)) for w in widths for r in resolutions]
            wanted += [(arch, w, r, ()) for w, r in pairs]
            continue
        shipped = [(w, r, tuple(sorted(p.items()))) for w, r, p in ARCHITECTURES[arch].shipped()]
        if resolutions is not None:
            shipped = [(w, int(r), p) for w, p in dict.fromkeys((w, p) for w, _, p in shipped)
                       for r in resolutions]
        if param_sweep:
            shipped = [swept for w, r, p in shipped for swept in _sweep(w, r, dict(p), param_sweep)]
        wanted += [(arch, w, r, p) for w, r, p in dict.fromkeys(shipped)]
    if not wanted:
        raise FusebenchError("no models to make (check --width / --resolution)")
    tf = _import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() == MODELS_DIR.resolve():       # the benchmark's inputs, for every model
        write_default_inputs(out_dir / "inputs" / "fashion_mnist_test.npz")

    def config(arch: str, width: float, expansion: int, resolution: int, params: tuple) -> TrainConfig:
        if arch != DEFAULT_ARCH:
            return TrainConfig(width=width, seed=seed, training="short", train_resolutions=(resolution,),
                               train_subset=ARCH_TRAIN_SUBSET, epochs=SHORT_EPOCHS, arch=arch,
                               params=params, keras_version=tf.keras.__version__)
        if training == "short":
            return TrainConfig(width=width, seed=seed, expansion=expansion, training="short",
                               train_resolutions=(resolution,), train_subset=SHORT_TRAIN_SUBSET,
                               epochs=SHORT_EPOCHS, keras_version=tf.keras.__version__)
        return TrainConfig(width=width, seed=seed, expansion=expansion,
                           train_subset=TRAIN_SUBSET.get(width, 20000),
                           train_resolutions=TRAIN_RESOLUTIONS.get(width, (64, 96, 128)),
                           keras_version=tf.keras.__version__)

    manifest_file = out_dir / "models.json"
    records: dict[str, dict] = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    train_x, train_y = fashion_mnist.load_fashion_mnist("train")
    paths: list[Path] = []
    cfg = weights = train_record = None
    jobs = sorted({(a, w, e if a == DEFAULT_ARCH else DEFAULT_EXPANSION, r, p)
                   for a, w, r, p in wanted for e in expansions})
    for arch, width, expansion, resolution, params in jobs:
        if config(arch, width, expansion, resolution, params) != cfg:
            # Full training shares one set of weights across resolutions.
            cfg = config(arch, width, expansion, resolution, params)
            weights, train_record = trained_weights(cfg, cache_dir, log)
        name = model_filename(width, resolution, expansion, edges, arch, dict(params))
        log(f"converting {name}")
        _set_determinism(tf, seed)
        model = build_model(tf, width, resolution, cfg.bn_momentum, expansion, arch, dict(params))
        model.set_weights(weights)
        start = time.monotonic()
        if cfg.training == "full":
            tune_accuracy = _finetune_at_resolution(tf, model, cfg, resolution, train_x, train_y)
            tune_seconds = time.monotonic() - start
            log(f"  fine-tuned at {resolution} px in {tune_seconds:.0f} s (accuracy {tune_accuracy:.3f})")
        else:
            tune_seconds = 0.0
        _reestimate_batch_norm(tf, model, train_x, resolution, seed)
        calib_rows = np.random.default_rng([seed, resolution, 1]).permutation(len(train_x))[:CALIBRATION_IMAGES]
        calibration = datasets.preprocess(train_x[np.sort(calib_rows)], resolution, resolution)
        path = out_dir / name
        path.write_bytes(convert_int8(tf, model, calibration, edges))
        result = _evaluate_in_child(path, eval_images)
        if result["distinct_outputs"] < 2:
            raise FusebenchError(f"{name}: the int8 model gives the same output for every input")
        records[name] = {
            "width": width, "resolution": resolution,
            "train_resolutions": list(cfg.train_resolutions), "epochs": cfg.epochs,
            "train_subset": cfg.train_subset, "seed": seed,
            "train_seconds": train_record["train_seconds"],
            "finetune_images": FINETUNE_IMAGES if cfg.training == "full" else 0,
            "finetune_seconds": round(tune_seconds, 1),
            "bytes": path.stat().st_size, "parameters": int(model.count_params()), **result,
        }
        if expansion != DEFAULT_EXPANSION or cfg.training != "full":
            records[name].update(training=cfg.training)
            if not params:              # an architecture with its own parameters has no MobileNetV2 t
                records[name].update(expansion=expansion)
        if arch != DEFAULT_ARCH:
            records[name].update(arch=arch)
        if params:
            records[name].update(arch_params=dict(params))
        if edges != DEFAULT_EDGES:
            records[name].update(edges=edges)
        log(f"  {name}: {path.stat().st_size / 1024:.0f} KiB, int8 top-1 "
            f"{100 * result['int8_top1']:.1f}% on {eval_images} test images")
        paths.append(path)
        tf.keras.backend.clear_session()
    manifest_file.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    _write_readme(out_dir, records)
    return paths


def _sweep(width: float, resolution: int, params: dict, sweep: dict[str, list]) -> list[tuple]:
    """(width, resolution, params items) for every combination of the swept values."""
    import itertools
    keys = list(sweep)
    out = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        chosen = {**params, **dict(zip(keys, values))}
        w = float(chosen.pop("width", width))
        out.append((w, resolution, tuple(sorted(chosen.items()))))
    return out


def default_out_dir(archs: Iterable[str], sweep: bool = False) -> Path:
    """models/ for MobileNetV2 (the main job's set), else the architectures'
    folder (models/architectures, models/unist); a parameter sweep goes to
    build/sweeps/<arch>, never over the shipped files."""
    from tools.architectures import ARCHITECTURES
    archs = tuple(archs)
    if sweep:
        return BUILD_DIR / "sweeps" / "-".join(archs)
    if DETECTOR_ARCH in archs:
        return MODELS_DIR / DETECTOR_FOLDER
    if DEFAULT_ARCH in archs:
        return MODELS_DIR
    folders = sorted({ARCHITECTURES[a].folder for a in archs if a in ARCHITECTURES}) or ["architectures"]
    if len(folders) > 1:
        raise FusebenchError(f"these architectures ship into different folders ({', '.join(folders)}): "
                             "make them one folder at a time, or give --out")
    return MODELS_DIR / folders[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.modelgen", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path,
                        help="default models/, or models/architectures for the other backbones")
    parser.add_argument("--resolution", type=int, action="append",
                        help="make every width at this resolution (repeatable); default: the shipped set")
    parser.add_argument("--width", type=float, action="append", help="default: 0.35 and 1.0")
    parser.add_argument("--expansion", type=int, action="append",
                        help="expansion ratio t of the inverted residual blocks (repeatable; default 6)")
    parser.add_argument("--training", choices=TRAININGS,
                        help="default: full for t = 6 only, short when other ratios are asked for")
    parser.add_argument("--edges", choices=tuple(EDGES), default=DEFAULT_EDGES,
                        help="input and output types: int8 (default) or uint8-float32 (the STM32 model zoo's)")
    parser.add_argument("--arch", action="append",
                        help="mobilenetv2 (default), a tools.architectures backbone (repeatable), "
                             "or microyolo (the detector, tools/detection.py)")
    parser.add_argument("--params",
                        help='sweep one architecture\'s parameters, e.g. "k=2,3,4,5 margin=0,9" (every '
                             "combination around each shipped model; default --out build/sweeps/<arch>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=DEFAULT_EVAL_IMAGES)
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)   # child-process mode
    parser.add_argument("--count", type=int, default=DEFAULT_EVAL_IMAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.evaluate is not None:
            print(json.dumps(evaluate_int8(args.evaluate, args.count)))
            return 0
        archs = tuple(args.arch or (DEFAULT_ARCH,))
        sweep = parse_param_sweep(args.params, archs[0]) if args.params else None
        make_models(args.out or default_out_dir(archs, bool(sweep)), args.resolution,
                    tuple(args.width or DEFAULT_WIDTHS), args.seed,
                    eval_images=args.eval_images,
                    expansions=tuple(args.expansion or (DEFAULT_EXPANSION,)), training=args.training,
                    edges=args.edges, archs=archs, param_sweep=sweep)
    except FusebenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
