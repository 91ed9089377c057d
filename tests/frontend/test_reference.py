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


def _depthwise_with_odd_bias_axis() -> bytes:
    """A depthwise layer whose bias carries quantized_dimension 3 (as
    person_detect's do): LiteRT refuses to load it, TFLite Micro runs it."""
    from harness.frontend.tflite_writer import ModelBuilder, Q, depthwise_options
    import tflite
    rng = np.random.default_rng(4)
    m = ModelBuilder()
    x = m.tensor([1, 6, 5, 2], q=Q(0.05, 3), name="input")
    scales = list(rng.uniform(0.005, 0.02, 4))
    f = m.tensor((1, 3, 3, 4), scales=scales, zero_points=[0] * 4, axis=3,
                 data=rng.integers(-127, 128, (1, 3, 3, 4), dtype=np.int8))
    b = m.tensor([4], "int32", scales=[0.05 * s for s in scales], zero_points=[0] * 4, axis=3,
                 data=rng.integers(-500, 500, 4).astype(np.int32))
    y = m.tensor([1, 6, 5, 4], q=Q(0.04, -2), name="output")
    m.op(tflite.BuiltinOperator.DEPTHWISE_CONV_2D, [x, f, b], [y], tflite.BuiltinOptions.DepthwiseConv2DOptions,
         depthwise_options((1, 1), "SAME", (1, 1), 2, "RELU6"))
    return m.build([x], [y])


def test_a_model_litert_refuses_gets_tflite_micro_as_its_reference(tmp_path):
    from harness.backend.hostrt import run_graph
    from harness.frontend.reference import LITERT, TFLM, reference_outputs_with_source
    path = tmp_path / "odd_bias.tflite"
    path.write_bytes(_depthwise_with_odd_bias_axis())
    with pytest.raises(FusebenchError, match="LiteRT cannot load"):
        reference_output(path, np.zeros((1, 6, 5, 2), np.int8))
    rng = np.random.default_rng(9)
    xs = [rng.integers(-128, 128, (1, 6, 5, 2), dtype=np.int8) for _ in range(3)]
    source, outputs = reference_outputs_with_source(path, xs)
    assert source == TFLM
    graph = load_model(path)
    for x, out in zip(xs, outputs):
        np.testing.assert_array_equal(run_graph(graph, x).reshape(-1), out)
    shipped = sorted(MODELS_DIR.glob("*.tflite"))[0]
    assert reference_outputs_with_source(shipped, [])[0] == LITERT


def test_a_model_the_reference_aborts_on_is_one_line_not_a_dead_process(tmp_path):
    """LiteRT's reference SOFTMAX aborts the process (SIGABRT) on an input scale
    of 1e-30; the interpreters run in a child, so this is an error message."""
    from harness.frontend.reference import reference_outputs_with_source
    import tflite

    from harness.frontend.tflite_writer import Q, ModelBuilder, table_options
    m = ModelBuilder()
    x = m.tensor((1, 10), q=Q(1e-30, 0), name="input")
    y = m.tensor((1, 10), q=Q(1 / 256, -128), name="output")
    m.op(tflite.BuiltinOperator.SOFTMAX, [x], [y], tflite.BuiltinOptions.SoftmaxOptions,
         table_options("Softmax", Beta=1.0))
    path = tmp_path / "collapsed.tflite"
    path.write_bytes(m.build([x], [y]))
    with pytest.raises(FusebenchError) as err:
        reference_outputs_with_source(path, [np.zeros((1, 10), np.int8)])
    message = str(err.value)
    assert "LiteRT crashed loading the model" in message and "\n" not in message
