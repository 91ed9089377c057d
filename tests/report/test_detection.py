"""Host-side detection: IoU, decoding, per-class NMS, VOC mAP; and the shipped
microYOLO's int8 mAP on its shipped inputs with LiteRT's reference kernels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import FusebenchError
from harness.frontend.inputs import preprocess, quantize_input
from harness.paths import MODELS_DIR
from harness.report import detection as det
from harness.report.detection import Detection, Truth

DETECTION_DIR = MODELS_DIR / "detection"
MODEL = DETECTION_DIR / "microyolo_128.tflite"


def _head(boxes_index: int = 1, scores_index: int = 0) -> det.HeadSpec:
    return det.HeadSpec(
        grid=(8, 8), stride=16.0, anchors=((20.0, 30.0), (40.0, 40.0)), num_classes=10,
        boxes=det.OutputSpec("boxes", boxes_index, (1, 8, 8, 8), 1 / 256, -128),
        scores=det.OutputSpec("scores", scores_index, (1, 8, 8, 22), 1 / 256, -128),
        input_size=(128, 128))


# -- IoU ---------------------------------------------------------------------------------------

def test_iou_of_identical_disjoint_touching_and_half_shifted_boxes():
    assert det.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert det.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert det.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0            # sharing an edge
    assert det.iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(2 / 6)
    assert det.iou((0, 0, 4, 4), (1, 1, 3, 3)) == pytest.approx(4 / 16)   # one inside the other
    assert det.iou((5, 5, 5, 9), (5, 5, 5, 9)) == 0.0                # empty boxes overlap nothing


def test_iou_matrix_matches_pairwise_iou():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]], dtype=float)
    m = det.iou_matrix(a, b)
    assert m.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert m[i, j] == pytest.approx(det.iou(a[i], b[j]))
    assert m[0, 1] == pytest.approx(50 / 150) and m[1, 0] == pytest.approx(25 / 175)


# -- NMS ---------------------------------------------------------------------------------------

def test_nms_suppresses_overlaps_of_a_class_and_keeps_other_classes():
    dets = [
        Detection((0, 0, 10, 10), 0.6, 1),
        Detection((1, 0, 11, 10), 0.9, 1),       # IoU 9/11 with the first: suppresses it
        Detection((1, 0, 11, 10), 0.5, 2),       # same place, other class: kept
        Detection((40, 40, 50, 50), 0.3, 1),     # same class, elsewhere: kept
        Detection((0, 0, 10, 20), 0.4, 1),       # IoU with the 0.9 box 90/210 < 0.5: kept
    ]
    kept = det.nms(dets, iou_threshold=0.5)
    assert kept == [dets[1], dets[2], dets[4], dets[3]]            # highest score first
    assert det.nms(dets, iou_threshold=0.5, max_detections=2) == [dets[1], dets[2]]
    assert det.nms(dets, iou_threshold=0.95) == sorted(dets, key=lambda d: -d.score)
    assert det.nms([]) == []


# -- AP and mAP --------------------------------------------------------------------------------

def test_perfect_detections_have_an_ap_of_one():
    truths = [Truth(np.array([[0, 0, 20, 20], [50, 50, 90, 80]]), np.array([3, 7])),
              Truth(np.array([[10, 10, 40, 40]]), np.array([3])),
              Truth(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))]
    dets = [[Detection(tuple(map(float, b)), 0.9, int(c)) for b, c in zip(t.boxes, t.classes)] for t in truths]
    assert det.class_average_precisions(dets, truths) == {3: 1.0, 7: 1.0}
    assert det.mean_average_precision(dets, truths) == 1.0


def test_ap_of_a_small_case_computed_by_hand():
    # Class 0: two boxes in two images. Ranked detections: TP (0.9), FP (0.8: misplaced),
    # FP (0.75: a duplicate of the matched box), TP (0.7).
    # precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1: the envelope is 1 up to recall 1/2
    # and 1/2 after it, so AP = 0.5 * 1 + 0.5 * 0.5 = 0.75.
    # Class 1: one box, only detected at IoU 1/3 (FP): AP 0. Class 5 has detections but no
    # ground truth: not averaged. mAP = (0.75 + 0) / 2.
    truths = [Truth(np.array([[0, 0, 10, 10], [20, 0, 30, 10]]), np.array([0, 1])),
              Truth(np.array([[50, 50, 70, 70]]), np.array([0]))]
    dets = [[Detection((0, 0, 10, 10), 0.9, 0), Detection((60, 60, 80, 80), 0.8, 0),
             Detection((0, 0, 10, 11), 0.75, 0), Detection((25, 0, 35, 10), 0.95, 1),
             Detection((0, 0, 5, 5), 0.99, 5)],
            [Detection((50, 50, 70, 71), 0.7, 0)]]
    aps = det.class_average_precisions(dets, truths, iou=0.5)
    assert aps == {0: pytest.approx(0.75), 1: 0.0}
    assert det.mean_average_precision(dets, truths, iou=0.5) == pytest.approx(0.375)
    # At IoU 0.3 the class-1 detection (IoU 1/3) is a true positive.
    assert det.class_average_precisions(dets, truths, iou=0.3)[1] == 1.0


def test_average_precision_is_the_area_under_the_precision_envelope():
    assert det.average_precision(np.array([]), np.array([])) == 0.0
    # recall 0.25, 0.5, 0.5, 0.75 with precision 1, 1, 2/3, 3/4: envelope 1, 1, 3/4, 3/4
    ap = det.average_precision(np.array([0.25, 0.5, 0.5, 0.75]), np.array([1, 1, 2 / 3, 3 / 4]))
    assert ap == pytest.approx(0.25 + 0.25 + 0.25 * 0.75)


def test_map_needs_as_many_images_of_detections_as_of_truths():
    with pytest.raises(FusebenchError):
        det.mean_average_precision([[]], [])


# -- decoding ----------------------------------------------------------------------------------

def test_decode_of_a_hand_encoded_box():
    head = _head(boxes_index=1, scores_index=0)
    boxes_q = np.full((1, 8, 8, 8), -128, dtype=np.int8)
    scores_q = np.full((1, 8, 8, 22), -128, dtype=np.int8)
    # Cell row 2, col 5, anchor 1 (40 x 40): s = q / 256 + 0.5
    boxes_q[0, 2, 5, 4:8] = [0, -32, 0, 32]        # s = 0.5, 0.375, 0.5, 0.625
    scores_q[0, 2, 5, 11] = 64                     # objectness 0.75
    scores_q[0, 2, 5, 11 + 1 + 3] = 96             # class 3: 0.875
    scores_q[0, 2, 5, 11 + 1 + 4] = 32             # class 4: 0.625 (not the best)
    # cx = (5 + 2*0.5 - 0.5) * 16 = 88, cy = (2 + 2*0.375 - 0.5) * 16 = 36,
    # w = 40 * (2*0.5)^2 = 40, h = 40 * (2*0.625)^2 = 62.5
    found = det.decode([scores_q, boxes_q], head, score_threshold=0.01)
    assert len(found) == 1
    assert found[0].cls == 3 and found[0].score == pytest.approx(0.75 * 0.875)
    assert found[0].box == pytest.approx((68.0, 4.75, 108.0, 67.25))
    # and back: the same cell and sigmoid values
    row, col, s = det.encode_box(found[0].box, head, anchor=1)
    assert (row, col) == (2, 5) and s == pytest.approx([0.5, 0.375, 0.5, 0.625])
    assert det.best_anchor(found[0].box, head.anchors) == 1
    # floats (already dequantized) decode the same
    floats = [head.scores.dequantize(scores_q), head.boxes.dequantize(boxes_q)]
    assert det.decode(floats, head) == found


def test_encode_decode_round_trip_within_quantization():
    head = _head(boxes_index=0, scores_index=1)
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h = rng.uniform(10, 70, 2)
        x0, y0 = rng.uniform(0, 128 - w), rng.uniform(0, 128 - h)
        box = (x0, y0, x0 + w, y0 + h)
        anchor = det.best_anchor(box, head.anchors)
        row, col, s = det.encode_box(box, head, anchor)
        boxes_q = np.full((1, 8, 8, 8), -128, dtype=np.int8)
        scores_q = np.full((1, 8, 8, 22), -128, dtype=np.int8)
        boxes_q[0, row, col, 4 * anchor:4 * anchor + 4] = np.clip(np.rint(s * 256) - 128, -128, 127)
        scores_q[0, row, col, 11 * anchor] = 127
        scores_q[0, row, col, 11 * anchor + 1 + 7] = 127
        (found,) = det.decode([boxes_q, scores_q], head)
        assert found.cls == 7 and det.iou(found.box, box) > 0.95


def test_decode_refuses_outputs_of_the_wrong_size():
    head = _head()
    with pytest.raises(FusebenchError, match="expects"):
        det.decode([np.zeros((1, 8, 8, 22), np.int8), np.zeros((1, 8, 8, 4), np.int8)], head)


# -- the shipped model -------------------------------------------------------------------------

def _record() -> dict:
    return json.loads((DETECTION_DIR / "models.json").read_text())["microyolo_128.tflite"]


def test_the_shipped_head_record_and_inputs_load():
    record = _record()
    assert record["task"] == "detection"
    head = det.load_head(DETECTION_DIR / "models.json", "microyolo_128")
    assert head.grid == (8, 8) and head.num_classes == 10 and head.num_anchors == len(record["head"]["anchors"])
    assert {head.boxes.index, head.scores.index} == {0, 1}
    assert head.boxes.shape[-1] == 4 * head.num_anchors
    assert head.scores.shape[-1] == (1 + head.num_classes) * head.num_anchors
    shipped = det.load_inputs(DETECTION_DIR / record["inputs_file"])
    assert shipped.images.shape == (record["shipped_inputs"], 128, 128, 3) and shipped.images.dtype == np.uint8
    assert len(shipped.truths) == record["shipped_inputs"]
    for truth in shipped.truths:
        assert 1 <= len(truth.boxes) <= 3 and len(truth.classes) == len(truth.boxes)
        assert np.all((truth.classes >= 0) & (truth.classes < 10))
        assert np.all(truth.boxes[:, :2] >= 0) and np.all(truth.boxes[:, 2:] <= 128)
        assert np.all(truth.boxes[:, 2:] > truth.boxes[:, :2])


def test_the_shipped_model_scores_its_recorded_map_with_litert():
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    record = _record()
    head = det.load_head(DETECTION_DIR / "models.json", MODEL.name)
    shipped = det.load_inputs(DETECTION_DIR / record["inputs_file"])
    interp = Interpreter(model_path=str(MODEL), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                         num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    assert np.dtype(inp["dtype"]) == np.int8 and len(outs) == 2
    for spec in (head.boxes, head.scores):       # the head record says what the .tflite says
        o = outs[spec.index]
        assert o["name"] == spec.name and tuple(o["shape"]) == spec.shape and np.dtype(o["dtype"]) == np.int8
        assert o["quantization"] == pytest.approx((spec.scale, spec.zero_point))
    x = quantize_input(preprocess(shipped.images, 128, 128), *inp["quantization"], "int8")
    detections = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1])
        interp.invoke()
        outputs = [interp.get_tensor(o["index"]) for o in outs]
        post = record["head"]["postprocess"]
        detections.append(det.detect(outputs, head, post["score_threshold"], post["nms_iou"], post["max_detections"]))
    m = det.mean_average_precision(detections, shipped.truths, iou=0.5)
    assert m == pytest.approx(record["map50_int8_shipped_inputs"], abs=1e-6)
    assert m > 0.1                                  # far above chance (close to 0)
