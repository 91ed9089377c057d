"""The host reference (LiteRT, BUILTIN_REF) on the shipped models and inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.paths import MODELS_DIR
from harness.frontend.inputs import load_default_inputs
from harness.errors import FusebenchError
from harness.backend.hostrt import run_graph_tensors
from harness.frontend.reference import (first_mismatch, reference_intermediates, reference_output,
                               reference_outputs)
from harness.frontend.tflite_import import load_model

MANIFEST = json.loads((MODELS_DIR / "models.json").read_text())


def _inputs(graph):
    _, h, w, _ = graph.input.shape
    return load_default_inputs(h, w, graph.input.scale, graph.input.zero_point)


def test_top1_on_shipped_inputs_matches_the_recorded_accuracy(model_paths):
    for path in model_paths:
        graph = load_model(path)
        samples = _inputs(graph)
        outs = reference_outputs(path, [s.data for s in samples])
        top1 = np.mean([int(np.argmax(o)) == s.label for o, s in zip(outs, samples)])
        record = MANIFEST[path.name]
        # exactly what models/README.md states for the shipped inputs ...
        assert top1 == pytest.approx(record["shipped_inputs_top1"], abs=1e-3), path.name
        # ... and consistent with the held-out accuracy (1000 test images): a trained net
        assert top1 >= record["int8_top1"] - 0.2 and record["int8_top1"] >= 0.7, path.name
        # an untrained net answers the same class for everything
        assert len({int(np.argmax(o)) for o in outs}) >= 5, path.name


def test_intermediates_end_in_the_output_and_locate_a_mismatch(model_paths):
    path = model_paths[0]
    graph = load_model(path)
    x = _inputs(graph)[0].data
    ref = reference_intermediates(path, x)
    assert np.array_equal(ref[graph.outputs[0]].reshape(-1), reference_output(path, x))
    ours = run_graph_tensors(graph, x)
    assert first_mismatch(graph, path, x, ours) is None
    # corrupt one mid-network tensor: the report names that op
    op = graph.ops[len(graph.ops) // 2]
    bad = dict(ours)
    bad[op.outputs[0]] = ours[op.outputs[0]].copy()
    bad[op.outputs[0]].reshape(-1)[0] ^= 1
    assert first_mismatch(graph, path, x, bad).startswith(f"op {op.index} {op.kind}")


def test_wrong_input_is_a_clear_error(model_paths):
    with pytest.raises(FusebenchError, match="shape"):
        reference_output(model_paths[0], np.zeros((1, 3, 3, 3), np.int8))
    with pytest.raises(FusebenchError, match="dtype"):
        reference_output(model_paths[0], np.zeros((1, 64, 64, 3), np.float32))
