"""Train and convert the default int8 MobileNetV2 models (needs TensorFlow).

Keras' MobileNetV2 is built without downloaded weights and trained here on
Fashion-MNIST. The net is fully convolutional up to the global pool, so each
width is trained once (on batches of mixed resolution, weights cached in
build/models/) and rebuilt at every wanted resolution, where it gets one short
fine-tuning epoch and re-estimated batch-norm statistics; then it is converted
with full-integer quantization (int8 input and output, per-channel weights)
calibrated at that resolution.

TensorFlow is imported inside functions only, so `import harness.modelgen`
works without it. Run: `python -m harness.modelgen [--resolution N ...]`.
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

from harness import datasets
from harness.errors import FusebenchError

MODELS_DIR = datasets.REPO_ROOT / "models"
WEIGHTS_CACHE_DIR = datasets.REPO_ROOT / "build" / "models"

DEFAULT_WIDTHS: tuple[float, ...] = (0.35, 1.0)
# (width, resolution) of the shipped models. 64x64 is the STM32F4 model: its
# largest layer input+output is ~64 KB at width 0.35 (Keras uses SAME padding,
# so no PAD op doubles the expanded 32x32x48 tensor).
DEFAULT_MODELS: tuple[tuple[float, int], ...] = ((0.35, 128), (0.35, 144), (1.0, 128), (0.35, 64))
NUM_CLASSES = 10


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

    @property
    def cache_stem(self) -> str:
        return f"mobilenetv2_{width_tag(self.width)}_seed{self.seed}"


# Per-width training on the shared 2-core CPU (measured: 17 min for 0.35, 20 for 1.0).
# The weights generalise poorly to resolutions outside the trained range
# (0.35 trained at 64..128 scored 76% at 144), so each width trains over the
# range of its shipped models.
TRAIN_SUBSET = {0.35: 24000, 1.0: 20000}
TRAIN_RESOLUTIONS = {0.35: (64, 96, 128, 144), 1.0: (64, 96, 128)}

FINETUNE_IMAGES = 6400          # per model, at its resolution, from the training subset
FINETUNE_LEARNING_RATE = 2e-4
BN_REESTIMATE_BATCHES = 24       # x 64 training images at the target resolution
CALIBRATION_IMAGES = 256         # representative dataset for the int8 ranges
DEFAULT_EVAL_IMAGES = 1000       # first N test-split images, int8 top-1
DEFAULT_INPUT_COUNT = 32


def width_tag(width: float) -> str:
    return f"w{int(round(width * 100)):03d}"


def model_filename(width: float, resolution: int) -> str:
    return f"mobilenetv2_{width_tag(width)}_{resolution}.tflite"


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


def build_model(tf, width: float, resolution: int | None, bn_momentum: float):
    """Keras MobileNetV2 (random init, 10 classes); None = any resolution.

    The classifier head is added here exactly as Keras' include_top=True
    would (global average pool + softmax Dense), because Keras only allows
    its own head with a fixed input size and training mixes sizes."""
    backbone = tf.keras.applications.MobileNetV2(
        input_shape=(resolution, resolution, 3), alpha=width, weights=None, include_top=False)
    pooled = tf.keras.layers.GlobalAveragePooling2D()(backbone.output)
    scores = tf.keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(pooled)
    model = tf.keras.Model(backbone.input, scores, name=f"mobilenetv2_{width_tag(width)}")
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
    train_x, train_y = datasets.load_fashion_mnist("train")
    rows = _train_rows(cfg, len(train_x))
    model = build_model(tf, cfg.width, None, cfg.bn_momentum)
    batches = _train_batches(tf, train_x[rows], train_y[rows], cfg)
    _compile(tf, model, cfg.learning_rate, cfg.epochs * len(batches))
    log(f"training MobileNetV2 width {cfg.width}: {cfg.train_subset} images x {cfg.epochs} epochs "
        f"at {'/'.join(map(str, cfg.train_resolutions))} px")
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
    """Cached float weights of one width, training them if the cache is
    missing or was made with another configuration."""
    weights_file = cache_dir / f"{cfg.cache_stem}.npz"
    record_file = cache_dir / f"{cfg.cache_stem}.json"
    if weights_file.exists() and record_file.exists():
        record = json.loads(record_file.read_text())
        if record.get("config") == json.loads(json.dumps(asdict(cfg))):
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


def convert_int8(tf, model, calibration: np.ndarray) -> bytes:
    """Full-integer quantization: int8 in/out, per-channel weights."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in calibration:
            yield [image[None].astype(np.float32)]

    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
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
    images, labels = datasets.load_fashion_mnist("test")
    correct = 0
    distinct: set[bytes] = set()
    for start in range(0, count, 100):
        x = datasets.quantize_input(datasets.preprocess(images[start:start + 100], height, width),
                                    scale, zero_point)
        for i in range(len(x)):
            interpreter.set_tensor(inp["index"], x[i:i + 1])
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])[0]
            distinct.add(y.tobytes())
            correct += int(np.argmax(y) == labels[start + i])
    shipped = datasets.load_default_inputs(height, width, scale, zero_point)
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
    cmd = [sys.executable, "-m", "harness.modelgen", "--evaluate", str(model_path), "--count", str(count)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=datasets.REPO_ROOT)
    if done.returncode != 0:
        raise FusebenchError(f"evaluating {model_path.name} with LiteRT failed: "
                             f"{(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Shipped inputs and the generated README

def write_default_inputs(path: Path, count: int = DEFAULT_INPUT_COUNT) -> None:
    """`count` held-out test images at native 28x28, classes taken in turn."""
    images, labels = datasets.load_fashion_mnist("test")
    picked: list[int] = []
    next_of_class = {c: iter(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)}
    for i in range(count):
        picked.append(int(next(next_of_class[i % NUM_CLASSES])))
    indices = np.array(picked, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images[indices], labels=labels[indices].astype(np.int64),
                        indices=indices, class_names=np.array(datasets.CLASS_NAMES))


def _write_readme(out_dir: Path, records: dict[str, dict]) -> None:
    lines = [
        "# Default models",
        "",
        "Generated by `harness/modelgen.py` (`invoke models`); do not edit by hand.",
        "",
        "Keras MobileNetV2 (random init, 10 classes) trained here on Fashion-MNIST",
        "(28x28 grey, bilinear upscale, replicated to 3 channels, scaled to [-1, 1] by",
        "`harness.datasets.preprocess`), then converted with full-integer quantization:",
        "int8 input and output, per-channel int8 weights, calibrated on",
        f"{CALIBRATION_IMAGES} training images at the model's resolution. Each width is trained",
        "once on batches of mixed resolution (train px); each model starts from those",
        f"weights, is fine-tuned for one short epoch ({FINETUNE_IMAGES} of the training images,",
        f"learning rate {FINETUNE_LEARNING_RATE}) at its own resolution and gets its batch-norm",
        "statistics re-estimated there.",
        "",
        "int8 top-1 is measured with LiteRT's reference kernels (BUILTIN_REF) on the",
        "first N images of the Fashion-MNIST test split (never trained on).",
        "",
        "| file | width | input | train px (mixed) | epochs | train images | train time | int8 top-1 | N test | top-1 on the shipped inputs | size |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in sorted(records):
        r = records[name]
        lines.append(
            f"| `{name}` | {r['width']} | {r['resolution']}x{r['resolution']}x3 | "
            f"{'/'.join(map(str, r['train_resolutions']))} | {r['epochs']} | {r['train_subset']} | "
            f"{r['train_seconds'] / 60:.0f} min | {100 * r['int8_top1']:.1f}% | {r['eval_images']} | "
            f"{100 * r.get('shipped_inputs_top1', float('nan')):.1f}% of {r.get('shipped_inputs', '?')} | "
            f"{r['bytes'] / 1024:.0f} KiB |")
    lines += [
        "",
        "Train time is for the width's shared weights (2 shared CPU cores), not per file.",
    ]
    if model_filename(0.35, 64) in records:
        lines += [
            f"`{model_filename(0.35, 64)}` is the STM32F4 model: its largest layer input +",
            "output is 60 KiB (the 32x32x48 expansion into the stride-2 depthwise).",
        ]
    lines += [
        "",
        "`inputs/fashion_mnist_test.npz`: the default benchmark inputs, "
        f"{DEFAULT_INPUT_COUNT} held-out test",
        "images at native 28x28 (`images` uint8, `labels`, test-split `indices`,",
        "`class_names`); `harness.datasets.load_default_inputs` prepares them for any model.",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines))


def make_models(out_dir: Path, resolutions: list[int] | None = None,
                widths: Iterable[float] = DEFAULT_WIDTHS, seed: int = 0,
                log: Callable[[str], None] = print,
                eval_images: int = DEFAULT_EVAL_IMAGES,
                cache_dir: Path = WEIGHTS_CACHE_DIR) -> list[Path]:
    """Write the int8 models (default set, or every width at each of
    `resolutions`), the default inputs and models/README.md; returns the
    model paths. Trained float weights are cached in `cache_dir`."""
    out_dir = Path(out_dir)
    widths = tuple(float(w) for w in widths)
    if resolutions is None:
        wanted = [(w, r) for (w, r) in DEFAULT_MODELS if w in widths]
    else:
        for r in resolutions:
            if not 32 <= int(r) <= 512:
                raise FusebenchError(f"resolution {r} out of range (32..512)")
        wanted = [(w, int(r)) for w in widths for r in resolutions]
    if not wanted:
        raise FusebenchError("no models to make (check --width / --resolution)")
    tf = _import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_default_inputs(out_dir / "inputs" / "fashion_mnist_test.npz")

    manifest_file = out_dir / "models.json"
    records: dict[str, dict] = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    train_x, train_y = datasets.load_fashion_mnist("train")
    paths: list[Path] = []
    for width in sorted({w for w, _ in wanted}):
        cfg = TrainConfig(width=width, seed=seed, train_subset=TRAIN_SUBSET.get(width, 20000),
                          train_resolutions=TRAIN_RESOLUTIONS.get(width, (64, 96, 128)),
                          keras_version=tf.keras.__version__)
        weights, train_record = trained_weights(cfg, cache_dir, log)
        for resolution in sorted(r for w, r in wanted if w == width):
            name = model_filename(width, resolution)
            log(f"converting {name}")
            _set_determinism(tf, seed)
            model = build_model(tf, width, resolution, cfg.bn_momentum)
            model.set_weights(weights)
            start = time.monotonic()
            tune_accuracy = _finetune_at_resolution(tf, model, cfg, resolution, train_x, train_y)
            tune_seconds = time.monotonic() - start
            log(f"  fine-tuned at {resolution} px in {tune_seconds:.0f} s (accuracy {tune_accuracy:.3f})")
            _reestimate_batch_norm(tf, model, train_x, resolution, seed)
            calib_rows = np.random.default_rng([seed, resolution, 1]).permutation(len(train_x))[:CALIBRATION_IMAGES]
            calibration = datasets.preprocess(train_x[np.sort(calib_rows)], resolution, resolution)
            path = out_dir / name
            path.write_bytes(convert_int8(tf, model, calibration))
            result = _evaluate_in_child(path, eval_images)
            if result["distinct_outputs"] < 2:
                raise FusebenchError(f"{name}: the int8 model gives the same output for every input")
            records[name] = {
                "width": width, "resolution": resolution,
                "train_resolutions": list(cfg.train_resolutions), "epochs": cfg.epochs,
                "train_subset": cfg.train_subset, "seed": seed,
                "train_seconds": train_record["train_seconds"],
                "finetune_images": FINETUNE_IMAGES, "finetune_seconds": round(tune_seconds, 1),
                "bytes": path.stat().st_size, **result,
            }
            log(f"  {name}: {path.stat().st_size / 1024:.0f} KiB, int8 top-1 "
                f"{100 * result['int8_top1']:.1f}% on {eval_images} test images")
            paths.append(path)
            tf.keras.backend.clear_session()
    manifest_file.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    _write_readme(out_dir, records)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.modelgen", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--resolution", type=int, action="append",
                        help="make every width at this resolution (repeatable); default: the shipped set")
    parser.add_argument("--width", type=float, action="append", help="default: 0.35 and 1.0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=DEFAULT_EVAL_IMAGES)
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)   # child-process mode
    parser.add_argument("--count", type=int, default=DEFAULT_EVAL_IMAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.evaluate is not None:
            print(json.dumps(evaluate_int8(args.evaluate, args.count)))
            return 0
        make_models(args.out, args.resolution, tuple(args.width or DEFAULT_WIDTHS), args.seed,
                    eval_images=args.eval_images)
    except FusebenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
