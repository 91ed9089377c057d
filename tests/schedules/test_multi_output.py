"""Graphs with several outputs (a detector's box and score heads): imported,
planned by every schedule with each output live to the end, and the generated
C bit-exact with LiteRT, the outputs joined in the subgraph's order."""
from __future__ import annotations

import numpy as np
import pytest

from harness.backend.hostrt import run_graph, run_plan
from harness.errors import FusebenchError
from harness.frontend.reference import reference_output, reference_outputs
from harness.frontend.tflite_import import load_model, load_model_bytes
from harness.frontend.tflite_writer import Q, ModelBuilder, add_options, table_options
from harness.schedules import make_plan
from harness.schedules.registry import NotApplicable, schedule_names
from tests.helpers.hostcheck import assert_plan_bit_exact
from tests.helpers.tflite_builder import _OP, _OPT, inverted_residual_chain_model

ANCHORS, CLASSES = 2, 3


def detector(seed: int = 0, hw=(16, 16)) -> bytes:
    return inverted_residual_chain_model(np.random.default_rng(seed), hw, 3, [(1, 8, 1), (6, 8, 2), (6, 8, 1)],
                                         first_conv=8, detection_head=(ANCHORS, CLASSES))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "detector.tflite"
    path.write_bytes(detector())
    return path


def test_both_heads_are_outputs_in_the_subgraph_order(model_path):
    graph = load_model(model_path)
    boxes, scores = (graph.tensors[t] for t in graph.outputs)
    assert boxes.shape == (1, 4, 4, 4 * ANCHORS) and scores.shape == (1, 4 * 4 * ANCHORS, 1 + CLASSES)
    assert graph.output_bytes == boxes.nbytes + scores.nbytes
    x = np.random.default_rng(1).integers(-128, 128, graph.input.shape, dtype=np.int8)
    joined = reference_output(model_path, x)
    assert joined.size == graph.output_values
    parts = graph.split_outputs(joined)
    assert [p.shape for p in parts] == [boxes.shape, scores.shape]
    assert np.array_equal(run_graph(graph, x), joined)


def test_outputs_of_two_types_are_refused():
    m = ModelBuilder()
    x = m.tensor([1, 4], q=Q(0.1, 0), name="input")
    y = m.tensor([1, 4], q=Q(0.1, 0), name="copy")
    m.op(_OP.ADD, [x, x], [y], _OPT.AddOptions, add_options("NONE"))
    f = m.tensor([1, 4], "float32", name="float")
    m.op(_OP.DEQUANTIZE, [y], [f], _OPT.DequantizeOptions, table_options("Dequantize"))
    with pytest.raises(FusebenchError, match="outputs of several types"):
        load_model_bytes(m.build([x], [y, f]), "mixed.tflite")


@pytest.mark.parametrize("variant", schedule_names())
def test_every_schedule_keeps_every_output_and_is_bit_exact(model_path, tmp_path, variant):
    graph = load_model(model_path)
    if variant == "ordered":
        # a chain has no other op order: the one schedule that must refuse it
        with pytest.raises(NotApplicable, match="no other op order"):
            make_plan(graph, variant)
        return
    plan = make_plan(graph, variant)
    # every output has its own bytes in the arena at the end
    spans = sorted((plan.allocation_of(t).offset, plan.allocation_of(t).offset + graph.tensors[t].nbytes)
                   for t in graph.outputs)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    xs = [np.random.default_rng(k).integers(-128, 128, graph.input.shape, dtype=np.int8) for k in range(2)]
    for x, ref in zip(xs, reference_outputs(model_path, xs)):
        assert np.array_equal(run_plan(graph, plan, x), ref)
    assert_plan_bit_exact(graph, plan, model_path, tmp_path / variant)


def test_the_fused_schedules_apply(model_path):
    """The backbone is fusable: a multi-output head must not stop that."""
    graph = load_model(model_path)
    for variant in ("fused", "msf"):
        assert make_plan(graph, variant).stages, variant
