"""The synthetic detection set of tools/detection.py (numpy only; needs Fashion-MNIST),
its training targets and anchors; the detector's Keras graph when TensorFlow is there."""
from __future__ import annotations

import numpy as np
import pytest

from harness.report import detection as det
from tools import detection, fashion_mnist

pytestmark = pytest.mark.skipif(not (fashion_mnist.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def heldout():
    return detection.make_split("heldout", 40)


def test_images_are_a_pure_function_of_seed_split_and_index(heldout):
    again = detection.make_split("heldout", 40)
    assert np.array_equal(again.images, heldout.images) and np.array_equal(again.boxes, heldout.boxes)
    train = detection.make_split("train", 5)
    assert not np.array_equal(train.images, heldout.images[:5])
    other_seed = detection.make_split("heldout", 5, seed=1)
    assert not np.array_equal(other_seed.images, heldout.images[:5])


def test_images_hold_one_to_three_boxes_inside_the_image(heldout):
    assert heldout.images.shape == (40, 128, 128, 3) and heldout.images.dtype == np.uint8
    assert set(heldout.counts.tolist()) <= {1, 2, 3} and len(set(heldout.counts.tolist())) > 1
    for i, truth in enumerate(heldout.truths()):
        assert np.all(heldout.classes[i, len(truth.classes):] == -1)
        assert np.all((truth.classes >= 0) & (truth.classes < 10))
        b = truth.boxes
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2:] <= 128) and np.all(b[:, 2:] > b[:, :2])
        assert np.all(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) <= detection.OBJECT_SIZES[1])
        if len(b) > 1:
            overlaps = det.iou_matrix(b, b)[~np.eye(len(b), dtype=bool)]
            assert overlaps.max() <= detection.MAX_OVERLAP_IOU


def test_a_lone_object_is_pasted_inside_its_box():
    objects = fashion_mnist.load_fashion_mnist("test")
    for index in range(30):
        image, boxes, _ = detection.render_image(objects, 0, "heldout", index)
        if len(boxes) != 1:
            continue
        # the background alone, from the same random stream, differs from the image only in the box
        rng = np.random.default_rng([0, detection.SPLITS["heldout"], index])
        background = np.clip(np.rint(detection._background(rng, 128)), 0, 255).astype(np.uint8)
        changed = np.any(image != background, axis=-1)
        x0, y0, x1, y1 = boxes[0].astype(int)
        outside = changed.copy()
        outside[y0:y1, x0:x1] = False
        assert changed[y0:y1, x0:x1].any()
        # faint edge pixels (below the box threshold) may lie just outside the tight box
        ys, xs = np.nonzero(outside)
        assert len(ys) == 0 or (min(ys) >= y0 - 6 and max(ys) < y1 + 6 and min(xs) >= x0 - 6 and max(xs) < x1 + 6)
        return
    pytest.fail("no image with one object among the first 30")


def test_targets_put_each_box_at_its_centre_cell_and_decode_back(heldout):
    head = detection.head_spec(detection.kmeans_anchors(heldout.boxes[heldout.classes >= 0]))
    box_t, score_t = detection.targets(heldout, head)
    assert box_t.shape == (40, 8, 8, 2 * 5) and score_t.shape == (40, 8, 8, 2 * 11)
    for i, truth in enumerate(heldout.truths()):
        positives = box_t[i].reshape(8, 8, 2, 5)[..., 4] > 0
        assert positives.sum() == len(truth.boxes)          # no two boxes share a cell and anchor here
        found = det.decode([box_t[i].reshape(8, 8, 2, 5)[..., :4].reshape(1, 8, 8, 8), score_t[i][None]],
                           head, score_threshold=0.5)
        assert len(found) == len(truth.boxes)
        for d in found:
            j = int(np.argmax(det.iou_matrix(np.array([d.box]), truth.boxes)[0]))
            assert det.iou(d.box, truth.boxes[j]) > 0.999 and d.cls == truth.classes[j]


def test_kmeans_anchors_are_sorted_and_fit_the_boxes(heldout):
    anchors = detection.kmeans_anchors(heldout.boxes[heldout.classes >= 0])
    assert len(anchors) == detection.NUM_ANCHORS
    areas = [w * h for w, h in anchors]
    assert areas == sorted(areas) and all(10 < w < 64 and 10 < h < 64 for w, h in anchors)


def test_the_detector_graph_has_two_sigmoid_grid_outputs():
    tf = pytest.importorskip("tensorflow")
    model = detection.microyolo(tf)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 8, 8, 8), (None, 8, 8, 22)]
    assert model.get_layer("boxes").activation.__name__ == "sigmoid"
    assert model.get_layer("scores").activation.__name__ == "sigmoid"
    tf.keras.backend.clear_session()


def test_the_model_script_sends_microyolo_to_models_detection():
    from harness.errors import FusebenchError
    from harness.paths import MODELS_DIR
    from tools import modelgen
    assert modelgen.default_out_dir(["microyolo"]) == MODELS_DIR / "detection"
    with pytest.raises(FusebenchError, match="on its own"):
        modelgen.make_models(MODELS_DIR / "detection", resolutions=[96], archs=["microyolo"])
    with pytest.raises(FusebenchError, match="on its own"):
        modelgen.make_models(MODELS_DIR / "detection", archs=["microyolo", "mobilenetv1"])
    with pytest.raises(FusebenchError, match="no parameters"):
        modelgen.parse_param_sweep("k=2", "microyolo")
