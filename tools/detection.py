"""microYOLO-style single-shot detector (Deutel et al.'s microYOLO: 128x128 RGB
on a Cortex-M7) and the synthetic detection set it is trained on.

The dataset is made here, deterministically, from Fashion-MNIST: each
128x128 RGB image has a random background (a linear gradient between two
colours plus Gaussian noise) and 1-3 Fashion-MNIST objects, each scaled to
24-64 px (aspect jitter 0.8-1.25), tinted with a random bright colour and
pasted masked by its own pixel intensity (alpha = intensity / 255). An
object's box is the tight box of its pixels with intensity >= BOX_THRESHOLD,
(x0, y0, x1, y1) in pixel edges; a new object whose box overlaps an earlier
one by IoU > MAX_OVERLAP_IOU is placed again. Training images take their
objects from the Fashion-MNIST train split, held-out images from the test
split. Every image is a pure function of (seed, split, index).

The network: a MobileNetV2-style backbone (stride-2 stem, inverted residual
blocks with ReLU6, stride 16) and a grid head on its 8x8 map with two
outputs, both LOGISTIC: `boxes` [1, 8, 8, A*4] and `scores` [1, 8, 8, A*(1+C)]
(objectness and the 10 class probabilities per anchor); decoding, NMS and
mAP run on the host (harness/report/detection.py, which also defines the box
encoding). Anchors are the k-means (IoU distance) centres of the training
boxes. Made by `invoke models --arch microyolo` into models/detection/.

TensorFlow is imported inside functions only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.errors import FusebenchError
from harness.frontend import inputs as datasets
from harness.paths import MODELS_DIR, ROOT
from harness.report import detection as det
from tools import fashion_mnist

ARCH = "microyolo"
FOLDER = "detection"
IMAGE_SIZE = 128
GRID = 8
STRIDE = IMAGE_SIZE // GRID
NUM_ANCHORS = 2
NUM_CLASSES = 10
MAX_OBJECTS = 3
OBJECT_SIZES = (24, 64)          # longer side of the pasted 28x28 object, px
ASPECT_JITTER = (0.8, 1.25)
BOX_THRESHOLD = 64               # object pixels with intensity >= this are in its box
MAX_OVERLAP_IOU = 0.15
SPLITS = {"train": 0, "heldout": 1}

SEED = 0
TRAIN_IMAGES = 4000
HELDOUT_IMAGES = 500
SHIPPED_INPUTS = 32              # the first held-out images
EPOCHS = 5
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
CALIBRATION_IMAGES = 256
WIDTH = 1.0
SCORE_THRESHOLD = 0.01
NMS_IOU = 0.5
MAX_DETECTIONS = 100
MODEL_NAME = f"{ARCH}_{IMAGE_SIZE}.tflite"
INPUTS_NAME = f"{ARCH}_inputs.npz"


# --------------------------------------------------------------------------
# The synthetic detection set (numpy only)

@dataclass(frozen=True)
class DetectionSet:
    images: np.ndarray      # uint8 [N, 128, 128, 3]
    boxes: np.ndarray       # float32 [N, MAX_OBJECTS, 4], zero padded
    classes: np.ndarray     # int64 [N, MAX_OBJECTS], -1 padded
    counts: np.ndarray      # int64 [N]

    def truths(self) -> list[det.Truth]:
        return det.truths_from_arrays(self.boxes, self.classes, self.counts)

    def __len__(self) -> int:
        return len(self.images)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear gradient between two random colours along a random direction, plus noise."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    image = c0 + (c1 - c0) * t[..., None]
    image += rng.normal(0.0, rng.uniform(0, 30), (size, size, 3))
    return image


def render_image(objects: tuple[np.ndarray, np.ndarray], seed: int, split: str, index: int,
                 size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: (uint8 [size, size, 3], boxes float32 [n, 4], classes int64 [n])."""
    pool_images, pool_labels = objects
    rng = np.random.default_rng([seed, SPLITS[split], index])
    image = _background(rng, size)
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    boxes: list[list[float]] = []
    classes: list[int] = []
    for _ in range(count):
        for _attempt in range(20):
            k = int(rng.integers(len(pool_images)))
            side = rng.uniform(*OBJECT_SIZES)
            aspect = rng.uniform(*ASPECT_JITTER)
            h, w = (int(round(side)), int(round(side / aspect))) if aspect >= 1 else \
                (int(round(side * aspect)), int(round(side)))
            top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            colour = rng.uniform(0, 255, 3)
            colour[rng.integers(3)] = rng.uniform(200, 255)         # one bright channel
            obj = datasets.resize_bilinear(pool_images[k][None, :, :, None].astype(np.float32), h, w)[0, :, :, 0]
            obj = np.clip(obj, 0, 255)
            ys, xs = np.nonzero(obj >= BOX_THRESHOLD)
            if not len(ys):
                continue
            box = [left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1]
            if boxes and det.iou_matrix(np.array([box]), np.array(boxes)).max() > MAX_OVERLAP_IOU:
                continue
            alpha = (obj / 255.0)[..., None]
            region = image[top:top + h, left:left + w]
            image[top:top + h, left:left + w] = region * (1 - alpha) + colour * alpha
            boxes.append([float(v) for v in box])
            classes.append(int(pool_labels[k]))
            break
    return (np.clip(np.rint(image), 0, 255).astype(np.uint8),
            np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(classes, dtype=np.int64))


def make_split(split: str, count: int, seed: int = SEED) -> DetectionSet:
    """`count` images of a split: objects from Fashion-MNIST train (train) or test (heldout)."""
    if split not in SPLITS:
        raise FusebenchError(f"unknown detection split {split!r} (use {', '.join(SPLITS)})")
    objects = fashion_mnist.load_fashion_mnist("train" if split == "train" else "test")
    images = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    boxes = np.zeros((count, MAX_OBJECTS, 4), dtype=np.float32)
    classes = np.full((count, MAX_OBJECTS), -1, dtype=np.int64)
    counts = np.zeros(count, dtype=np.int64)
    for i in range(count):
        images[i], b, c = render_image(objects, seed, split, i)
        boxes[i, :len(b)], classes[i, :len(c)], counts[i] = b, c, len(c)
    return DetectionSet(images, boxes, classes, counts)


def kmeans_anchors(boxes: np.ndarray, k: int = NUM_ANCHORS, iterations: int = 50) -> tuple[tuple[float, float], ...]:
    """YOLOv2's anchors: k-means of box shapes with 1 - IoU as the distance
    (initialised at shape quantiles; deterministic), sorted by area."""
    wh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = np.stack([wh[:, 2] - wh[:, 0], wh[:, 3] - wh[:, 1]], axis=1)
    area = wh[:, 0] * wh[:, 1]
    centres = wh[np.argsort(area)[((np.arange(k) + 0.5) / k * len(wh)).astype(int)]]

    def as_boxes(s):
        return np.concatenate([np.zeros_like(s), s], axis=1)

    for _ in range(iterations):
        nearest = np.argmax(det.iou_matrix(as_boxes(wh), as_boxes(centres)), axis=1)
        updated = np.array([wh[nearest == j].mean(axis=0) if np.any(nearest == j) else centres[j] for j in range(k)])
        if np.allclose(updated, centres):
            break
        centres = updated
    centres = centres[np.argsort(centres[:, 0] * centres[:, 1])]
    return tuple((round(float(w), 2), round(float(h), 2)) for w, h in centres)


def head_spec(anchors, outputs: dict[str, det.OutputSpec] | None = None) -> det.HeadSpec:
    """The head with these anchors; the outputs' quantization as LOGISTIC's
    (1/256, -128) until the converted model says otherwise."""
    if outputs is None:
        a = len(anchors)
        outputs = {"boxes": det.OutputSpec("boxes", 0, (1, GRID, GRID, a * 4), 1 / 256, -128),
                   "scores": det.OutputSpec("scores", 1, (1, GRID, GRID, a * (1 + NUM_CLASSES)), 1 / 256, -128)}
    return det.HeadSpec(grid=(GRID, GRID), stride=float(STRIDE), anchors=tuple(anchors),
                        num_classes=NUM_CLASSES, boxes=outputs["boxes"], scores=outputs["scores"],
                        input_size=(IMAGE_SIZE, IMAGE_SIZE), class_names=tuple(datasets.CLASS_NAMES))


def targets(data: DetectionSet, head: det.HeadSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training targets: boxes [N, H, W, A*5] (s_x, s_y, s_w, s_h, positive)
    and scores [N, H, W, A*(1+C)] (objectness, one-hot class). Each box goes to
    the cell holding its centre and its best-shaped anchor."""
    n, (rows, cols), a, c = len(data), head.grid, head.num_anchors, head.num_classes
    box_t = np.zeros((n, rows, cols, a, 5), dtype=np.float32)
    score_t = np.zeros((n, rows, cols, a, 1 + c), dtype=np.float32)
    for i, truth in enumerate(data.truths()):
        for box, cls in zip(truth.boxes, truth.classes):
            anchor = det.best_anchor(box, head.anchors)
            row, col, s = det.encode_box(box, head, anchor)
            box_t[i, row, col, anchor] = [*s, 1.0]
            score_t[i, row, col, anchor] = 0.0
            score_t[i, row, col, anchor, 0] = 1.0
            score_t[i, row, col, anchor, 1 + int(cls)] = 1.0
    return box_t.reshape(n, rows, cols, a * 5), score_t.reshape(n, rows, cols, a * (1 + c))


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the model's float input in [-1, 1] (the harness's own preprocessing)."""
    return datasets.preprocess(images, IMAGE_SIZE, IMAGE_SIZE)


# --------------------------------------------------------------------------
# The network (TensorFlow)

# (expansion t, output channels, repeats, first stride) after the stem (16 ch, stride 2)
# The first stride-2 block expands by 2 only: its 64x64 expansion is the largest tensor.
MICROYOLO_BLOCKS = ((1, 16, 1, 1), (2, 24, 1, 2), (4, 24, 1, 1), (4, 32, 3, 2), (4, 64, 3, 2), (4, 96, 2, 1))
HEAD_CHANNELS = 128


def microyolo(tf, input_shape: tuple = (IMAGE_SIZE, IMAGE_SIZE, 3), width: float = WIDTH,
              num_anchors: int = NUM_ANCHORS, num_classes: int = NUM_CLASSES):
    """Stem 3x3/2 conv (16 ch) + MobileNetV2 inverted residual blocks (ReLU6,
    3x3 depthwise, SAME padding, ADD when the shape is kept) down to stride 16,
    then the head: 3x3 depthwise + 1x1 conv to HEAD_CHANNELS (ReLU6), and two
    1x1 convs with sigmoid: `boxes` (A*4) and `scores` (A*(1+C))."""
    layers = tf.keras.layers

    def ch(c):
        return max(8, int(round(c * width / 8)) * 8)

    def bn(name):
        return layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=name)

    inputs = layers.Input(shape=input_shape, name="image")
    x = layers.Conv2D(ch(16), 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.ReLU(6.0, name="stem_relu")(bn("stem_bn")(x))
    block = 0
    for t, c, n, s in MICROYOLO_BLOCKS:
        for i in range(n):
            stride, in_c, out_c, p = (s if i == 0 else 1), x.shape[-1], ch(c), f"block{block}_"
            y = x
            if t != 1:
                y = layers.Conv2D(in_c * t, 1, use_bias=False, name=p + "expand")(y)
                y = layers.ReLU(6.0, name=p + "expand_relu")(bn(p + "expand_bn")(y))
            y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=p + "dw")(y)
            y = layers.ReLU(6.0, name=p + "dw_relu")(bn(p + "dw_bn")(y))
            y = layers.Conv2D(out_c, 1, use_bias=False, name=p + "project")(y)
            y = bn(p + "project_bn")(y)
            x = layers.Add(name=p + "add")([x, y]) if stride == 1 and in_c == out_c else y
            block += 1
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="head_dw")(x)
    x = layers.ReLU(6.0, name="head_dw_relu")(bn("head_dw_bn")(x))
    x = layers.Conv2D(ch(HEAD_CHANNELS), 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(bn("head_bn")(x))
    boxes = layers.Conv2D(num_anchors * 4, 1, activation="sigmoid", name="boxes")(x)
    scores = layers.Conv2D(num_anchors * (1 + num_classes), 1, activation="sigmoid", name="scores",
                           bias_initializer=tf.keras.initializers.Constant(-4.0))(x)
    return tf.keras.Model(inputs, [boxes, scores], name=f"microyolo_{input_shape[0]}")


BOX_WEIGHT = 5.0
NOOBJ_WEIGHT = 1.0


def _losses(tf, num_anchors: int, num_classes: int):
    ops = tf.keras.ops

    def bce(y, p):
        p = ops.clip(p, 1e-6, 1 - 1e-6)
        return -(y * ops.log(p) + (1 - y) * ops.log(1 - p))

    def box_loss(y_true, y_pred):
        t = ops.reshape(y_true, (-1, GRID, GRID, num_anchors, 5))
        p = ops.reshape(y_pred, (-1, GRID, GRID, num_anchors, 4))
        err = ops.sum(ops.square(t[..., :4] - p), axis=-1) * t[..., 4]
        return BOX_WEIGHT * ops.sum(err, axis=(1, 2, 3))

    def score_loss(y_true, y_pred):
        t = ops.reshape(y_true, (-1, GRID, GRID, num_anchors, 1 + num_classes))
        p = ops.reshape(y_pred, (-1, GRID, GRID, num_anchors, 1 + num_classes))
        obj = t[..., 0]
        obj_loss = bce(obj, p[..., 0]) * (obj + NOOBJ_WEIGHT * (1 - obj))
        cls_loss = ops.sum(bce(t[..., 1:], p[..., 1:]), axis=-1) * obj
        return ops.sum(obj_loss + cls_loss, axis=(1, 2, 3))

    return box_loss, score_loss


def _batches(tf, data: DetectionSet, box_t: np.ndarray, score_t: np.ndarray, seed: int):
    class Batches(tf.keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.on_epoch_end()

        def __len__(self) -> int:
            return len(data) // BATCH_SIZE

        def __getitem__(self, i: int):
            rows = np.sort(self.order[i * BATCH_SIZE:(i + 1) * BATCH_SIZE])
            images = data.images[rows]
            bt, st = box_t[rows], score_t[rows]
            flip = np.random.default_rng([seed, self.epoch, i]).random(len(rows)) < 0.5
            if flip.any():                        # horizontal flips: mirror the image and the targets
                images = images.copy()
                images[flip] = images[flip][:, :, ::-1]
                bt, st = bt.copy(), st.copy()
                a = NUM_ANCHORS
                b = bt[flip].reshape(-1, GRID, GRID, a, 5)[:, :, ::-1]
                b[..., 0] = np.where(b[..., 4] > 0, 1.0 - b[..., 0], 0.0)
                bt[flip] = b.reshape(-1, GRID, GRID, a * 5)
                st[flip] = st[flip][:, :, ::-1]
            return preprocess(images), (bt, st)

        def on_epoch_end(self) -> None:
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(data))
            self.epoch += 1

    return Batches()


# --------------------------------------------------------------------------
# Evaluation

def evaluate(outputs_per_image: list[list[np.ndarray]], truths: list[det.Truth], head: det.HeadSpec) -> float:
    dets = [det.detect(o, head, SCORE_THRESHOLD, NMS_IOU, MAX_DETECTIONS) for o in outputs_per_image]
    return det.mean_average_precision(dets, truths, 0.5)


def litert_outputs(model_path: Path, images: np.ndarray) -> tuple[list[list[np.ndarray]], list[dict]]:
    """Every image's int8 outputs (in the model's output order) with LiteRT's
    reference kernels, and the output details."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_path=str(model_path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                         num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    scale, zero_point = inp["quantization"]
    x = datasets.quantize_input(preprocess(images), scale, zero_point, np.dtype(inp["dtype"]).name)
    outs = interp.get_output_details()
    results = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1])
        interp.invoke()
        results.append([interp.get_tensor(o["index"]).copy() for o in outs])
    details = [{"name": o["name"], "index": int(o["index"]), "shape": [int(d) for d in o["shape"]],
                "dtype": np.dtype(o["dtype"]).name, "scale": float(o["quantization"][0]),
                "zero_point": int(o["quantization"][1])} for o in outs]
    return results, details


def evaluate_int8(model_path: Path, head_json: Path, count: int, seed: int = SEED) -> dict:
    """int8 mAP@0.5 with LiteRT on the first `count` held-out images, and on the shipped inputs."""
    head = det.head_from_record(json.loads(Path(head_json).read_text()))
    heldout = make_split("heldout", count, seed)
    outputs, _ = litert_outputs(model_path, heldout.images)
    shipped = evaluate(outputs[:SHIPPED_INPUTS], heldout.truths()[:SHIPPED_INPUTS], head)
    flat = {o.tobytes() for per in outputs for o in per}
    return {"map50_int8": round(evaluate(outputs, heldout.truths(), head), 6),
            "map50_int8_shipped_inputs": round(shipped, 6), "distinct_outputs": len(flat)}


# --------------------------------------------------------------------------
# Making the shipped model

def _output_specs(tflite_path: Path) -> tuple[dict[str, det.OutputSpec], dict]:
    """Which output of the .tflite is `boxes` and which `scores` (by their
    channel count, A*4 vs A*(1+C)), with their quantization; and the input's."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(tflite_path))
    outs = interp.get_output_details()
    inp = interp.get_input_details()[0]
    specs = {}
    for position, o in enumerate(outs):
        role = {NUM_ANCHORS * 4: "boxes", NUM_ANCHORS * (1 + NUM_CLASSES): "scores"}.get(int(o["shape"][-1]))
        if role is None or np.dtype(o["dtype"]) != np.int8:
            raise FusebenchError(f"{tflite_path.name}: unexpected output {o['name']} {list(o['shape'])} "
                                 f"{np.dtype(o['dtype']).name}")
        specs[role] = det.OutputSpec(o["name"], position, tuple(int(d) for d in o["shape"]),
                                     float(o["quantization"][0]), int(o["quantization"][1]))
    if set(specs) != {"boxes", "scores"}:
        raise FusebenchError(f"{tflite_path.name}: expected a boxes and a scores output, got {len(outs)} outputs")
    return specs, {"shape": [int(d) for d in inp["shape"]], "dtype": np.dtype(inp["dtype"]).name,
                   "scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])}


def head_record(head: det.HeadSpec) -> dict:
    def out(spec: det.OutputSpec, layout: str) -> dict:
        return {"index": spec.index, "name": spec.name, "shape": list(spec.shape), "dtype": "int8",
                "scale": spec.scale, "zero_point": spec.zero_point, "activation": "LOGISTIC", "layout": layout}

    return {
        "type": "yolo-grid",
        "input_size": list(head.input_size), "grid": list(head.grid), "stride": head.stride,
        "anchors": [list(a) for a in head.anchors], "num_anchors": head.num_anchors,
        "num_classes": head.num_classes, "class_names": list(head.class_names),
        "outputs": {
            "boxes": out(head.boxes, "[1, H, W, A*4]: per anchor (s_x, s_y, s_w, s_h)"),
            "scores": out(head.scores, "[1, H, W, A*(1+C)]: per anchor objectness, then C class probabilities"),
        },
        "box_encoding": {
            "name": head.box_encoding,
            "formula": "cx = (col + 2*s_x - 0.5)*stride, cy = (row + 2*s_y - 0.5)*stride, "
                       "w = anchor_w*(2*s_w)^2, h = anchor_h*(2*s_h)^2; s = dequantized sigmoid outputs; "
                       "box (cx - w/2, cy - h/2, cx + w/2, cy + h/2) in input pixels, clipped to the image",
        },
        "score": "objectness * probability of the anchor's best class",
        "postprocess": {"score_threshold": SCORE_THRESHOLD, "nms": "per class", "nms_iou": NMS_IOU,
                        "max_detections": MAX_DETECTIONS},
    }


def write_inputs(path: Path, heldout: DetectionSet, count: int = SHIPPED_INPUTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=heldout.images[:count], boxes=heldout.boxes[:count],
                        classes=heldout.classes[:count], counts=heldout.counts[:count],
                        indices=np.arange(count, dtype=np.int64),
                        class_names=np.array(datasets.CLASS_NAMES))


def _evaluate_in_child(model_path: Path, head: dict, count: int, seed: int) -> dict:
    head_file = model_path.with_suffix(".head.json")
    head_file.write_text(json.dumps(head))
    try:
        cmd = [sys.executable, "-m", "tools.detection", "--evaluate", str(model_path), "--head", str(head_file),
               "--count", str(count), "--seed", str(seed)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    finally:
        head_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise FusebenchError(f"evaluating {model_path.name} with LiteRT failed: "
                             f"{(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_detector(out_dir: Path = MODELS_DIR / FOLDER, seed: int = SEED, log: Callable[[str], None] = print,
                  train_images: int = TRAIN_IMAGES, epochs: int = EPOCHS,
                  heldout_images: int = HELDOUT_IMAGES) -> Path:
    """Train, convert (full int8) and evaluate microYOLO; write the .tflite,
    models.json (with the head record and mAP), the shipped inputs and README.md."""
    from tools.modelgen import _import_tf, _set_determinism, convert_int8
    tf = _import_tf()
    _set_determinism(tf, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    train = make_split("train", train_images, seed)
    heldout = make_split("heldout", heldout_images, seed)
    log(f"made {train_images} training and {heldout_images} held-out images in {time.monotonic() - start:.0f} s")
    anchors = kmeans_anchors(train.boxes[train.classes >= 0])
    head = head_spec(anchors)
    box_t, score_t = targets(train, head)
    model = microyolo(tf)
    box_loss, score_loss = _losses(tf, NUM_ANCHORS, NUM_CLASSES)
    batches = _batches(tf, train, box_t, score_t, seed)
    schedule = tf.keras.optimizers.schedules.CosineDecay(LEARNING_RATE, decay_steps=epochs * len(batches), alpha=0.02)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=[box_loss, score_loss])
    log(f"training {ARCH}: {train_images} images x {epochs} epochs, anchors {anchors}, "
        f"{model.count_params():,} weights")
    start = time.monotonic()
    history = model.fit(batches, epochs=epochs, verbose=2, shuffle=False)
    train_seconds = time.monotonic() - start
    log(f"  trained in {train_seconds:.0f} s")

    boxes_f, scores_f = model.predict(preprocess(heldout.images), batch_size=64, verbose=0)
    float_outputs = [[boxes_f[i:i + 1], scores_f[i:i + 1]] for i in range(len(heldout))]
    map_float = evaluate(float_outputs, heldout.truths(), head)
    map_float_shipped = evaluate(float_outputs[:SHIPPED_INPUTS], heldout.truths()[:SHIPPED_INPUTS], head)
    log(f"  float mAP@0.5 {map_float:.3f} on {heldout_images} held-out images")

    calibration = preprocess(train.images[np.sort(np.random.default_rng([seed, 1]).permutation(len(train))
                                                  [:CALIBRATION_IMAGES])])
    path = out_dir / MODEL_NAME
    path.write_bytes(convert_int8(tf, model, calibration, "int8"))
    specs, input_record = _output_specs(path)
    head = head_spec(anchors, specs)
    record_head = head_record(head)
    result = _evaluate_in_child(path, record_head, heldout_images, seed)
    if result["distinct_outputs"] < 2:
        raise FusebenchError(f"{path.name}: the int8 model gives the same output for every input")
    log(f"  {path.name}: {path.stat().st_size / 1024:.0f} KiB, int8 mAP@0.5 {result['map50_int8']:.3f} "
        f"(float {map_float:.3f}); on the {SHIPPED_INPUTS} shipped inputs {result['map50_int8_shipped_inputs']:.3f}")
    write_inputs(out_dir / INPUTS_NAME, heldout)
    manifest = out_dir / "models.json"
    records = json.loads(manifest.read_text()) if manifest.exists() else {}
    records[path.name] = {
        "arch": ARCH, "task": "detection", "width": WIDTH, "resolution": IMAGE_SIZE, "seed": seed,
        "epochs": epochs, "train_subset": train_images, "train_resolutions": [IMAGE_SIZE],
        "train_seconds": round(train_seconds, 1), "training": "short",
        "final_train_loss": round(float(history.history["loss"][-1]), 4),
        "bytes": path.stat().st_size, "parameters": int(model.count_params()),
        "input": input_record, "head": record_head,
        "eval_images": heldout_images, "map50_float": round(map_float, 6),
        "map50_float_shipped_inputs": round(map_float_shipped, 6),
        "map50_int8": result["map50_int8"], "map50_int8_shipped_inputs": result["map50_int8_shipped_inputs"],
        "distinct_outputs": result["distinct_outputs"],
        "shipped_inputs": SHIPPED_INPUTS, "inputs_file": INPUTS_NAME,
        "dataset": {"generator": "tools/detection.py", "image_size": IMAGE_SIZE, "objects_per_image": [1, MAX_OBJECTS],
                    "object_sizes": list(OBJECT_SIZES), "train_images": train_images,
                    "heldout_images": heldout_images, "train_objects": "Fashion-MNIST train split",
                    "heldout_objects": "Fashion-MNIST test split"},
    }
    manifest.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    _write_readme(out_dir, records)
    tf.keras.backend.clear_session()
    return path


def _write_readme(out_dir: Path, records: dict) -> None:
    r = records[MODEL_NAME]
    h = r["head"]
    b, s = h["outputs"]["boxes"], h["outputs"]["scores"]
    lines = [
        "# Detection models",
        "",
        "Generated by `tools/detection.py` (`invoke models --arch microyolo`); do not edit by hand.",
        "",
        "`microyolo_128.tflite`: a microYOLO-style single-shot detector (Deutel et al.: microYOLO on an",
        "OpenMV H7, 128x128 RGB, < 800 KB flash, < 350 KB RAM) for 10 classes, full int8 (int8 input and",
        "outputs, per-channel int8 weights), calibrated on "
        f"{CALIBRATION_IMAGES} training images.",
        "",
        "- Backbone: 3x3 stride-2 stem (16 channels, ReLU6), MobileNetV2 inverted residual blocks",
        "  (expansion 1, 2, then 4; 16, 24, 32, 64, 96 channels; ReLU6; ADD when the shape is kept) down to",
        f"  stride {int(h['stride'])}; head: 3x3 depthwise + 1x1 conv ({HEAD_CHANNELS} channels, ReLU6), then two 1x1 convs",
        "  with LOGISTIC. Ops: CONV_2D, DEPTHWISE_CONV_2D, ADD, LOGISTIC.",
        f"- Outputs (int8, scale {b['scale']:.6g}, zero point {b['zero_point']}): output {b['index']} `boxes` "
        f"{b['shape']} (`{b['name']}`), output {s['index']} `scores` {s['shape']} (`{s['name']}`).",
        f"  Grid {h['grid'][0]}x{h['grid'][1]}, {h['num_anchors']} anchors (w, h px, k-means of the training boxes): "
        f"{', '.join(f'({w:g}, {hh:g})' for w, hh in h['anchors'])}.",
        f"  Box encoding `{h['box_encoding']['name']}`: {h['box_encoding']['formula']}.",
        f"  Score = {h['score']}; per-class NMS at IoU {h['postprocess']['nms_iou']}, score threshold "
        f"{h['postprocess']['score_threshold']}. Decoding, NMS and mAP: `harness/report/detection.py`.",
        "- Data: made by `tools/detection.py`, deterministic (seed 0): 128x128 RGB backgrounds (a random",
        "  two-colour linear gradient plus Gaussian noise), 1-3 Fashion-MNIST objects per image, each scaled",
        f"  to {OBJECT_SIZES[0]}-{OBJECT_SIZES[1]} px (aspect 0.8-1.25), tinted with a random colour and pasted "
        "masked by its own intensity;",
        f"  its box is the tight box of its pixels >= {BOX_THRESHOLD}/255 (x0, y0, x1, y1, pixel edges). Training "
        "images use",
        "  objects of the Fashion-MNIST train split, held-out images objects of the test split.",
        f"- Training: {r['train_subset']} images x {r['epochs']} epochs (Adam, cosine decay from {LEARNING_RATE}, "
        f"batch {BATCH_SIZE}, random horizontal flips), {r['train_seconds'] / 60:.1f} min on the 2 shared CPU cores.",
        "  Loss: squared error of the four box sigmoids at the assigned anchor (the cell of the box centre, the",
        "  anchor of the best shape IoU), binary cross-entropy of objectness everywhere and of the classes there.",
        "",
        "| file | input | weights | size | mAP@0.5 float | mAP@0.5 int8 (LiteRT) | N held-out | int8 mAP@0.5 on the shipped inputs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| `{MODEL_NAME}` | {IMAGE_SIZE}x{IMAGE_SIZE}x3 | {r['parameters']:,} | {r['bytes'] / 1024:.0f} KiB | "
        f"{r['map50_float']:.3f} | {r['map50_int8']:.3f} | {r['eval_images']} | "
        f"{r['map50_int8_shipped_inputs']:.3f} of {r['shipped_inputs']} (float {r['map50_float_shipped_inputs']:.3f}) |",
        "",
        "mAP@0.5: VOC all-point interpolated AP per class present in the ground truth, averaged; int8 with",
        "LiteRT's reference kernels (BUILTIN_REF), float with Keras, on the same held-out images.",
        "",
        f"`{INPUTS_NAME}`: the first {r['shipped_inputs']} held-out images and their ground truth:",
        "`images` uint8 [32, 128, 128, 3] (RGB pixels; the model's input is `harness.frontend.inputs.preprocess`",
        "of them, [-1, 1], quantized with the input's scale and zero point), `boxes` float32 [32, 3, 4]",
        "(x0, y0, x1, y1 in pixels, zero padded), `classes` int64 [32, 3] (padded with -1), `counts` int64 [32]",
        "(boxes per image), `indices` (held-out image numbers), `class_names`.",
        "`harness.report.detection.load_inputs` reads it; `load_head` reads the head record of `models.json`.",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.detection", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR / FOLDER)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)   # child-process mode
    parser.add_argument("--head", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=HELDOUT_IMAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.evaluate is not None:
            print(json.dumps(evaluate_int8(args.evaluate, args.head, args.count, args.seed)))
            return 0
        make_detector(args.out, args.seed)
    except FusebenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
