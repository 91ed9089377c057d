"""Single-shot detectors' outputs on the host (numpy only): decoding, per-class
non-maximum suppression and VOC-style mAP.

A grid detector (the shipped microYOLO, models/detection/) has two int8
outputs: box regression [1, H, W, A*4] and scores [1, H, W, A*(1+C)] (per
anchor the objectness, then C class probabilities), both through LOGISTIC.
`HeadSpec` says which output is which (by position in the model's output list
and by name), their quantization, the grid, the stride and the anchors; it is
read from the head record in models/detection/models.json (`load_head`).

Box encoding "yolov5" (s are the sigmoid outputs, in [0, 1]):

    cx = (col + 2 * s_x - 0.5) * stride      w = anchor_w * (2 * s_w) ** 2
    cy = (row + 2 * s_y - 0.5) * stride      h = anchor_h * (2 * s_h) ** 2

A box is (x0, y0, x1, y1) in input pixels, pixel edges: a box covering
columns 3..9 is x0 = 3, x1 = 10. A detection's score is objectness times
its class's probability (the best class of each anchor).

Mean average precision: per class, detections of all images sorted by score
(highest first); a detection is a true positive when its IoU with a not yet
matched ground-truth box of its class in its image is at least the threshold
(the best-overlapping box is taken; if that one is matched already, it is a
false positive, as in the VOC devkit). AP is the all-point interpolated area
under the precision-recall curve (VOC 2010 onwards); mAP averages it over the
classes present in the ground truth.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from harness.errors import FusebenchError

BOX_ENCODINGS = ("yolov5",)


@dataclass(frozen=True)
class OutputSpec:
    """One output tensor of the model: where it is and how to dequantize it."""
    name: str
    index: int                  # position in the model's output list
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """int8 -> float32 (floats pass through unchanged)."""
        q = np.asarray(q)
        if np.issubdtype(q.dtype, np.floating):
            return q.astype(np.float32)
        return ((q.astype(np.int32) - int(self.zero_point)) * np.float64(self.scale)).astype(np.float32)


@dataclass(frozen=True)
class HeadSpec:
    grid: tuple[int, int]                      # rows, columns
    stride: float                              # input pixels per cell
    anchors: tuple[tuple[float, float], ...]   # (w, h) in input pixels
    num_classes: int
    boxes: OutputSpec
    scores: OutputSpec
    input_size: tuple[int, int] = (128, 128)   # height, width
    box_encoding: str = "yolov5"
    class_names: tuple[str, ...] = ()

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]      # x0, y0, x1, y1 in pixels
    score: float
    cls: int


@dataclass(frozen=True)
class Truth:
    """One image's ground truth: boxes [n, 4] (x0, y0, x1, y1) and classes [n]."""
    boxes: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class DetectionInputs:
    """Shipped inputs: uint8 images [N, H, W, 3] and their ground truth."""
    images: np.ndarray
    truths: list[Truth] = field(default_factory=list)
    class_names: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Boxes

def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [n, 4] with every box in b [m, 4] -> [n, m]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


# --------------------------------------------------------------------------
# Encoding and decoding

def encode_box(box: Sequence[float], head: HeadSpec, anchor: int) -> tuple[int, int, np.ndarray]:
    """The cell (row, col) whose anchor `anchor` predicts `box`, and the four
    sigmoid values (s_x, s_y, s_w, s_h) that decode to it (clipped to [0, 1]:
    boxes wider than 4x the anchor cannot be represented)."""
    if head.box_encoding != "yolov5":
        raise FusebenchError(f"unknown box encoding {head.box_encoding!r} (known: {', '.join(BOX_ENCODINGS)})")
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rows, cols = head.grid
    col = min(max(int(np.floor(cx / head.stride)), 0), cols - 1)
    row = min(max(int(np.floor(cy / head.stride)), 0), rows - 1)
    aw, ah = head.anchors[anchor]
    s = np.array([(cx / head.stride - col + 0.5) / 2, (cy / head.stride - row + 0.5) / 2,
                  np.sqrt(max(x1 - x0, 0.0) / aw) / 2, np.sqrt(max(y1 - y0, 0.0) / ah) / 2])
    return row, col, np.clip(s, 0.0, 1.0).astype(np.float32)


def best_anchor(box: Sequence[float], anchors: Sequence[tuple[float, float]]) -> int:
    """The anchor whose shape (both centred) overlaps the box's most."""
    w, h = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
    shapes = np.array([[0.0, 0.0, w, h]])
    anchor_boxes = np.array([[0.0, 0.0, aw, ah] for aw, ah in anchors])
    return int(np.argmax(iou_matrix(shapes, anchor_boxes)[0]))


def decode_arrays(outputs: Sequence[np.ndarray], head: HeadSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's outputs (in the model's output order, int8 or float) ->
    boxes [H*W*A, 4], objectness [H*W*A], class probabilities [H*W*A, C];
    rows in (row, col, anchor) order, boxes clipped to the input."""
    if head.box_encoding != "yolov5":
        raise FusebenchError(f"unknown box encoding {head.box_encoding!r} (known: {', '.join(BOX_ENCODINGS)})")
    rows, cols = head.grid
    a, c = head.num_anchors, head.num_classes
    for spec, width in ((head.boxes, a * 4), (head.scores, a * (1 + c))):
        if spec.index >= len(outputs):
            raise FusebenchError(f"output {spec.index} ({spec.name}) missing: {len(outputs)} outputs given")
        if np.asarray(outputs[spec.index]).size != rows * cols * width:
            raise FusebenchError(f"output {spec.index} ({spec.name}) has {np.asarray(outputs[spec.index]).size} "
                                 f"values, the head expects {rows}x{cols}x{width}")
    s = head.boxes.dequantize(outputs[head.boxes.index]).astype(np.float64).reshape(rows, cols, a, 4)
    p = head.scores.dequantize(outputs[head.scores.index]).astype(np.float64).reshape(rows, cols, a, 1 + c)
    grid_y, grid_x = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64),
                                 indexing="ij")
    anchors = np.asarray(head.anchors, dtype=np.float64)            # [A, 2]
    cx = (grid_x[:, :, None] + 2 * s[..., 0] - 0.5) * head.stride
    cy = (grid_y[:, :, None] + 2 * s[..., 1] - 0.5) * head.stride
    w = anchors[None, None, :, 0] * (2 * s[..., 2]) ** 2
    h = anchors[None, None, :, 1] * (2 * s[..., 3]) ** 2
    height, width = head.input_size
    boxes = np.stack([np.clip(cx - w / 2, 0, width), np.clip(cy - h / 2, 0, height),
                      np.clip(cx + w / 2, 0, width), np.clip(cy + h / 2, 0, height)], axis=-1)
    return boxes.reshape(-1, 4), p[..., 0].reshape(-1), p[..., 1:].reshape(-1, c)


def decode(outputs: Sequence[np.ndarray], head: HeadSpec, score_threshold: float = 0.01) -> list[Detection]:
    """One image's outputs -> a detection per anchor whose score (objectness
    x best class probability) reaches `score_threshold`, in (row, col, anchor)
    order; empty boxes are dropped."""
    boxes, objectness, classes = decode_arrays(outputs, head)
    best = np.argmax(classes, axis=1)
    scores = objectness * classes[np.arange(len(best)), best]
    keep = (scores >= score_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return [Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), int(best[i]))
            for i in np.flatnonzero(keep)]


def nms(detections: Iterable[Detection], iou_threshold: float = 0.5,
        max_detections: int | None = 100) -> list[Detection]:
    """Per-class greedy non-maximum suppression: highest score first, a box is
    dropped when its IoU with a kept box of its class exceeds the threshold.
    Returns the kept detections, highest score first (ties in input order),
    at most `max_detections`."""
    dets = list(detections)
    order = sorted(range(len(dets)), key=lambda i: -dets[i].score)     # stable: ties keep input order
    kept: list[int] = []
    for cls in sorted({d.cls for d in dets}):
        members = [i for i in order if dets[i].cls == cls]
        boxes = np.array([dets[i].box for i in members], dtype=np.float64).reshape(-1, 4)
        overlaps = iou_matrix(boxes, boxes)
        suppressed = np.zeros(len(members), dtype=bool)
        for j in range(len(members)):
            if suppressed[j]:
                continue
            kept.append(members[j])
            suppressed |= overlaps[j] > iou_threshold
    rank = {i: r for r, i in enumerate(order)}
    kept.sort(key=lambda i: rank[i])
    return [dets[i] for i in kept[:max_detections]]


def detect(outputs: Sequence[np.ndarray], head: HeadSpec, score_threshold: float = 0.01,
           iou_threshold: float = 0.5, max_detections: int = 100) -> list[Detection]:
    """decode, then nms: one image's final detections."""
    return nms(decode(outputs, head, score_threshold), iou_threshold, max_detections)


# --------------------------------------------------------------------------
# Mean average precision

def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+): the area under the precision
    envelope (precision made non-increasing from the right) over recall."""
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def class_average_precisions(detections_per_image: Sequence[Sequence[Detection]],
                             truths_per_image: Sequence[Truth], iou: float = 0.5) -> dict[int, float]:
    """AP per class present in the ground truth."""
    if len(detections_per_image) != len(truths_per_image):
        raise FusebenchError(f"{len(detections_per_image)} images of detections but "
                             f"{len(truths_per_image)} of ground truth")
    truths = [Truth(np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4), np.asarray(t.classes).reshape(-1))
              for t in truths_per_image]
    present = sorted({int(c) for t in truths for c in t.classes})
    result: dict[int, float] = {}
    for cls in present:
        gt = [t.boxes[t.classes == cls] for t in truths]
        total = sum(len(g) for g in gt)
        cands = [(d.score, img, k) for img, dets in enumerate(detections_per_image)
                 for k, d in enumerate(dets) if d.cls == cls]
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        matched = [np.zeros(len(g), dtype=bool) for g in gt]
        tp = np.zeros(len(cands))
        for n, (_, img, k) in enumerate(cands):
            if not len(gt[img]):
                continue
            overlaps = iou_matrix(np.asarray(detections_per_image[img][k].box)[None], gt[img])[0]
            j = int(np.argmax(overlaps))
            if overlaps[j] >= iou and not matched[img][j]:
                matched[img][j] = True
                tp[n] = 1.0
        ctp = np.cumsum(tp)
        recall = ctp / total
        precision = ctp / np.arange(1, len(cands) + 1)
        result[cls] = average_precision(recall, precision)
    return result


def mean_average_precision(detections_per_image: Sequence[Sequence[Detection]],
                           truths_per_image: Sequence[Truth], iou: float = 0.5) -> float:
    """mAP@iou: the mean of the AP of every class present in the ground truth
    (0.0 when there is no ground truth at all)."""
    aps = class_average_precisions(detections_per_image, truths_per_image, iou)
    return float(np.mean(list(aps.values()))) if aps else 0.0


# --------------------------------------------------------------------------
# Head record and shipped inputs

def head_from_record(head: dict) -> HeadSpec:
    """A HeadSpec from a models.json "head" record."""
    try:
        outputs = head["outputs"]

        def output(role: str) -> OutputSpec:
            o = outputs[role]
            return OutputSpec(str(o["name"]), int(o["index"]), tuple(int(d) for d in o["shape"]),
                              float(o["scale"]), int(o["zero_point"]))

        return HeadSpec(grid=tuple(int(g) for g in head["grid"]), stride=float(head["stride"]),
                        anchors=tuple((float(w), float(h)) for w, h in head["anchors"]),
                        num_classes=int(head["num_classes"]), boxes=output("boxes"), scores=output("scores"),
                        input_size=tuple(int(v) for v in head["input_size"]),
                        box_encoding=str(head["box_encoding"]["name"] if isinstance(head["box_encoding"], dict)
                                         else head["box_encoding"]),
                        class_names=tuple(head.get("class_names", ())))
    except (KeyError, TypeError, ValueError) as e:
        raise FusebenchError(f"bad detection head record: {type(e).__name__} {e}") from None


def load_head(models_json: str | Path, model: str) -> HeadSpec:
    """The head of `model` (file name, with or without .tflite) in a models.json."""
    path = Path(models_json)
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FusebenchError(f"cannot read {path}: {e}") from None
    name = model if model.endswith(".tflite") else f"{model}.tflite"
    if name not in records or "head" not in records[name]:
        raise FusebenchError(f"{path} has no detection head record for {name}")
    return head_from_record(records[name]["head"])


def truths_from_arrays(boxes: np.ndarray, classes: np.ndarray, counts: np.ndarray) -> list[Truth]:
    """Padded arrays (boxes [N, M, 4], classes [N, M], counts [N]) -> one Truth per image."""
    return [Truth(np.asarray(boxes[i, :int(n)], dtype=np.float32), np.asarray(classes[i, :int(n)], dtype=np.int64))
            for i, n in enumerate(counts)]


def load_inputs(path: str | Path) -> DetectionInputs:
    """models/detection/microyolo_inputs.npz: `images` uint8 [N, H, W, 3],
    `boxes` float32 [N, M, 4] (x0, y0, x1, y1 pixels, padded with zeros),
    `classes` int64 [N, M] (padded with -1), `counts` int64 [N], `class_names`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, boxes, classes, counts = (npz[k] for k in ("images", "boxes", "classes", "counts"))
            names = tuple(str(n) for n in npz["class_names"]) if "class_names" in npz.files else ()
    except (OSError, KeyError, ValueError) as e:
        raise FusebenchError(f"cannot read detection inputs {path}: {e}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(counts):
        raise FusebenchError(f"{path}: expected uint8 images [N,H,W,3] and N counts")
    return DetectionInputs(images, truths_from_arrays(boxes, classes, counts), names)


# --------------------------------------------------------------------------
# A bench run's detections (run_dir/outputs, written by harness.report.bench)

def split_joined(joined: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """The device's (and the reference's) joined flat outputs -> one array per
    output, in the model's output order."""
    joined = np.asarray(joined).reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if joined.size != sum(sizes):
        raise FusebenchError(f"{joined.size} output values, the head's outputs have {sum(sizes)}")
    return [part.reshape(s) for part, s in zip(np.split(joined, np.cumsum(sizes)[:-1]), shapes)]


def detection_table(run_dir: str | Path, iou: float = 0.5) -> "pd.DataFrame | None":
    """Per (board, model, variant) of a detector in the run: how many images,
    detections after NMS, and mAP@iou of the device's outputs beside the
    reference's, both against the shipped scenes' ground truth. None when the
    run has no detector with its ground truth (e.g. other --inputs)."""
    import pandas as pd
    out_dir = Path(run_dir) / "outputs"
    rows = []
    for record_path in sorted(out_dir.glob("*-record.json")):
        model = record_path.name[:-len("-record.json")]
        record = json.loads(record_path.read_text())
        head = head_from_record(record["head"])
        with np.load(out_dir / f"{model}-truth.npz", allow_pickle=False) as npz:
            truths = truths_from_arrays(npz["boxes"], npz["classes"], npz["counts"])
        names = record["input_names"]
        shapes = [spec.shape for spec in sorted((head.boxes, head.scores), key=lambda o: o.index)]

        def score(npz_path: Path):
            with np.load(npz_path, allow_pickle=False) as npz:
                got = {n: npz[n] for n in npz.files if not n.startswith("__")}
                where = tuple(str(npz[k]) for k in ("__board__", "__variant__")) if "__board__" in npz.files else None
            images = [i for i, n in enumerate(names) if n in got]
            dets = [detect(split_joined(got[names[i]], shapes), head) for i in images]
            return where, got, len(images), sum(len(d) for d in dets), mean_average_precision(
                dets, [truths[i] for i in images], iou)

        _, ref_outputs, _, ref_count, ref_map = score(out_dir / f"{model}-reference.npz")
        for path in sorted(out_dir.glob("*.npz")):
            if path.name.startswith(f"{model}-"):
                continue                          # the model's own reference and truth files
            with np.load(path, allow_pickle=False) as npz:
                if "__model__" not in npz.files or str(npz["__model__"]) != model:
                    continue
            (board, variant), got, images, count, device_map = score(path)
            same = all(np.array_equal(got[n], ref_outputs[n]) for n in got if n in ref_outputs)
            rows.append(dict(board=board, model=model, variant=variant, images=images,
                             detections=count, map50=round(device_map, 4),
                             reference_detections=ref_count, reference_map50=round(ref_map, 4),
                             outputs_equal_reference=bool(same),
                             map50_int8_litert_heldout=record.get("map50_int8")))
    from harness.schedules import schedule_names
    rank = {name: k for k, name in enumerate(schedule_names())}    # the variants' order everywhere
    rows.sort(key=lambda r: (r["board"], r["model"], rank.get(r["variant"], len(rank)), r["variant"]))
    return pd.DataFrame(rows) if rows else None
