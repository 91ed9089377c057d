"""A bench run of the shipped detector, scored from its folder alone: the
shipped scenes as its inputs, the outputs saved per (board, model, variant),
and mAP@0.5 of the device's outputs beside the reference's."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.frontend.reference import reference_outputs
from harness.frontend.tflite_import import load_model
from harness.paths import MODELS_DIR
from harness.report.bench import Job, _save_outputs, _save_reference_outputs, model_input_set
from harness.report.detection import detection_table

DETECTOR = MODELS_DIR / "detection" / "microyolo_128.tflite"
pytestmark = pytest.mark.skipif(not DETECTOR.is_file(), reason="no shipped detector (invoke models --arch microyolo)")


def test_the_detector_runs_on_its_shipped_scenes_without_class_labels():
    graph = load_model(DETECTOR)
    inputs = model_input_set(graph, None, DETECTOR)
    assert inputs.source == "microyolo_inputs.npz" and not inputs.labels_apply
    assert len(inputs.samples) == 32 and inputs.samples[0].name == "microyolo_128_000"
    assert inputs.samples[0].data.shape == (1, 128, 128, 3) and inputs.samples[0].data.dtype == np.int8


def test_a_run_folder_scores_device_outputs_beside_the_reference(tmp_path):
    graph = load_model(DETECTOR)
    samples = model_input_set(graph, None, DETECTOR).samples
    inputs = [(s.name, s.data, None) for s in samples]
    refs = reference_outputs(DETECTOR, [s.data for s in samples])
    job = Job(board="stm32h7", model_path=str(DETECTOR), variant="unfused", inputs=inputs, references=refs)
    _save_reference_outputs(tmp_path, [job], shipped_inputs=True)

    def device(variant, outputs):
        _save_outputs(tmp_path / "outputs" / f"stm32h7-microyolo_128-{variant}.npz",
                      dict({n: o for (n, _, _), o in zip(inputs, outputs)}, __board__=np.array("stm32h7"),
                           __model__=np.array("microyolo_128"), __variant__=np.array(variant)))

    device("unfused", refs)
    # a broken device: every score output at its lowest value (nothing detected)
    broken = [r.copy() for r in refs]
    for b in broken:
        b[:] = -128
    device("fused", broken)
    table = detection_table(tmp_path).set_index("variant")
    assert list(table.index) == ["unfused", "fused"]      # the variants' order, not the files' names
    recorded = json.loads((DETECTOR.parent / "models.json").read_text())[DETECTOR.name]
    assert table.loc["unfused", "images"] == 32
    assert table.loc["unfused", "map50"] == table.loc["unfused", "reference_map50"] == \
        round(recorded["map50_int8_shipped_inputs"], 4)
    assert bool(table.loc["unfused", "outputs_equal_reference"])
    assert table.loc["fused", "map50"] < table.loc["fused", "reference_map50"]
    assert not bool(table.loc["fused", "outputs_equal_reference"])


def test_other_inputs_have_no_ground_truth_to_score(tmp_path):
    graph = load_model(DETECTOR)
    x = np.zeros(graph.input.shape, np.int8)
    job = Job(board="stm32h7", model_path=str(DETECTOR), variant="unfused", inputs=[("mine", x, None)],
              references=reference_outputs(DETECTOR, [x]))
    _save_reference_outputs(tmp_path, [job], shipped_inputs=False)
    assert (tmp_path / "outputs" / "microyolo_128-reference.npz").is_file()
    assert detection_table(tmp_path) is None
