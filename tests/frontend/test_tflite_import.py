"""The importer on every shipped model, and its one-line error for each kind of bad input."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import tflite

from harness.paths import ROOT
from harness.errors import FusebenchError
from harness.frontend.tflite_writer import ModelBuilder, Q
from tests.helpers.tflite_builder import conv2d_model
from harness.frontend.tflite_import import load_model, load_model_bytes


def test_shipped_models_structure(model_paths):
    for path in model_paths:
        g = load_model(path)
        res = int(path.stem.rsplit("_", 1)[1])
        assert g.input.shape == (1, res, res, 3) and g.input.dtype == "int8", path.name
        assert g.output.shape == (1, 10) and g.output.dtype == "int8", path.name
        counts = Counter(op.kind for op in g.ops)
        # Keras MobileNetV2 as TFLite's converter emits it: 35 convolutions (first
        # conv, 16 expansions, 17 projections, last 1x1), 17 depthwise, 10 residual adds.
        assert counts["CONV_2D"] == 35 and counts["DEPTHWISE_CONV_2D"] == 17, counts
        assert counts["ADD"] == 10 and counts["FULLY_CONNECTED"] == 1 and counts["SOFTMAX"] == 1, counts
        assert counts["MEAN"] + counts["AVERAGE_POOL_2D"] == 1, counts
        first = g.ops[0]
        assert first.kind == "CONV_2D" and first.options["stride_h"] == 2
        assert g.tensors[first.inputs[1]].shape[1:3] == (3, 3)
        assert g.tensors[first.outputs[0]].shape == (1, (res + 1) // 2, (res + 1) // 2,
                                                    g.tensors[first.outputs[0]].shape[3])
        # per-channel weights: conv along axis 0, depthwise along axis 3
        for op in g.ops:
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = g.tensors[op.inputs[1]]
                channels = w.shape[0] if op.kind == "CONV_2D" else w.shape[3]
                assert w.quant.per_channel and w.quant.scale.size == channels
                assert w.quant.axis == (0 if op.kind == "CONV_2D" else 3)
                assert w.data is not None and w.data.dtype == np.int8
        # 17 inverted residual blocks, the first without expansion, 10 with a residual add
        assert len(g.blocks) == 17
        assert g.blocks[0].expand is None and all(b.expand is not None for b in g.blocks[1:])
        assert sum(b.add is not None for b in g.blocks) == 10
        for b in g.blocks:
            if b.add is not None:
                add = g.ops[b.add]
                block_input = g.ops[b.expand].inputs[0]
                assert block_input in add.inputs


def _int8_conv_model(**kw) -> bytes:
    rng = np.random.default_rng(0)
    return conv2d_model((1, 8, 8, 3), rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8),
                        [0.01] * 4, np.zeros(4, np.int32), Q(0.02, 0), Q(0.05, -3), **kw)


def test_small_builder_model_imports():
    g = load_model_bytes(_int8_conv_model(stride=(2, 2)), "conv.tflite")
    assert [op.kind for op in g.ops] == ["CONV_2D"]
    assert g.ops[0].options["stride_w"] == 2 and g.ops[0].options["padding"] == "SAME"
    assert g.output.shape == (1, 4, 4, 4)


def _error(data: bytes, name="bad.tflite") -> str:
    with pytest.raises(FusebenchError) as exc:
        load_model_bytes(data, name)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(name)
    return msg


def test_truncated_and_foreign_files(model_paths, tmp_path):
    data = model_paths[0].read_bytes()
    assert "truncated" in _error(data[: len(data) // 2])
    assert "truncated" in _error(data[:64])
    assert "not a TFLite model" in _error(b"GIF89a not a model at all")
    assert "not a TFLite model" in _error(b"")
    with pytest.raises(FusebenchError, match="cannot read"):
        load_model(tmp_path / "missing.tflite")


def test_float_model_is_refused():
    m = ModelBuilder()
    x = m.tensor((1, 4, 4, 2), "float32", name="x")
    f = m.tensor((2, 1, 1, 2), "float32", data=np.ones((2, 1, 1, 2), np.float32))
    b = m.tensor((2,), "float32", data=np.zeros(2, np.float32))
    y = m.tensor((1, 4, 4, 2), "float32", name="y")
    from harness.frontend.tflite_writer import conv_options
    m.op(tflite.BuiltinOperator.CONV_2D, [x, f, b], [y], tflite.BuiltinOptions.Conv2DOptions,
         conv_options((1, 1), "SAME", (1, 1), "NONE"))
    msg = _error(m.build([x], [y]))
    assert "float model" in msg and "int8" in msg


def test_multiple_subgraphs_are_refused():
    m = ModelBuilder()
    x = m.tensor((1, 4), q=Q(0.1, 0))
    y = m.tensor((1, 4), q=Q(1 / 256, -128))
    from harness.frontend.tflite_writer import softmax_options
    m.op(tflite.BuiltinOperator.SOFTMAX, [x], [y], tflite.BuiltinOptions.SoftmaxOptions, softmax_options(1.0))
    assert "2 subgraphs" in _error(m.build([x], [y], subgraph_copies=2))


def test_dynamic_shapes_are_refused_but_a_dynamic_batch_is_not():
    from harness.frontend.tflite_writer import softmax_options
    for signature, ok in (([1, -1, 4], False), ([-1, 2, 4], True)):
        m = ModelBuilder()
        x = m.tensor((1, 2, 4), q=Q(0.1, 0), shape_signature=signature)
        y = m.tensor((1, 2, 4), q=Q(1 / 256, -128))
        m.op(tflite.BuiltinOperator.SOFTMAX, [x], [y], tflite.BuiltinOptions.SoftmaxOptions,
             softmax_options(1.0))
        if ok:
            assert load_model_bytes(m.build([x], [y]), "ok.tflite").input.shape == (1, 2, 4)
        else:
            assert "dynamic shape" in _error(m.build([x], [y]))


def test_unsupported_op_names_op_index_and_file():
    m = ModelBuilder()
    x = m.tensor((1, 4, 4, 2), q=Q(0.1, 0))
    y = m.tensor((1, 4, 4, 2), q=Q(0.1, 0))
    m.op(tflite.BuiltinOperator.SIN, [x], [y])          # (MAX_POOL_2D, the example before, is supported now)
    msg = _error(m.build([x], [y]), "sin.tflite")
    assert "op 0 is SIN" in msg and msg.startswith("sin.tflite")


@pytest.mark.parametrize("content, expected", [
    (b"definitely not a flatbuffer", "not a TFLite model"),
    (None, "truncated"),
])
def test_cli_gives_one_line_and_nonzero_exit(tmp_path, model_paths, content, expected):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content if content is not None else model_paths[0].read_bytes()[:5000])
    proc = subprocess.run([sys.executable, "-m", "invoke", "plan", "--model", str(bad), "--no-tflm"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def _shape_arithmetic_model() -> bytes:
    """x -> RESHAPE(x, PACK(STRIDED_SLICE(SHAPE(x))[0], 192)) -> FULLY_CONNECTED:
    the shape computation a Keras export with a dynamic batch emits."""
    import tflite
    from harness.frontend.tflite_writer import ModelBuilder, Q, fc_options, table_options
    rng = np.random.default_rng(2)
    op, opt = tflite.BuiltinOperator, tflite.BuiltinOptions
    m = ModelBuilder()
    x = m.tensor([1, 4, 6, 8], q=Q(0.05, 1), name="input")
    shape = m.tensor([4], "int32", name="shape")
    m.op(op.SHAPE, [x], [shape], opt.ShapeOptions, table_options("Shape", OutType=tflite.TensorType.INT32))
    begin, end, strides = (m.tensor([1], "int32", data=np.array([v], np.int32)) for v in (0, 1, 1))
    batch = m.tensor([], "int32", name="batch")
    m.op(op.STRIDED_SLICE, [shape, begin, end, strides], [batch], opt.StridedSliceOptions,
         table_options("StridedSlice", ShrinkAxisMask=1))
    width = m.tensor([], "int32", data=np.array(192, np.int32))
    new_shape = m.tensor([2], "int32", name="new_shape")
    m.op(op.PACK, [batch, width], [new_shape], opt.PackOptions, table_options("Pack", ValuesCount=2, Axis=0))
    flat = m.tensor([1, 192], q=Q(0.05, 1), name="flat")
    m.op(op.RESHAPE, [x, new_shape], [flat])
    w = m.tensor([3, 192], scales=[0.01], zero_points=[0], data=rng.integers(-127, 128, (3, 192), dtype=np.int8))
    y = m.tensor([1, 3], q=Q(0.2, -4), name="output")
    m.op(op.FULLY_CONNECTED, [flat, w, -1], [y], opt.FullyConnectedOptions, fc_options("NONE", False))
    return m.build([x], [y])


def test_shape_arithmetic_is_folded_at_import(tmp_path):
    from harness.backend.hostrt import run_graph
    from harness.frontend.reference import reference_outputs
    path = tmp_path / "shapes.tflite"
    path.write_bytes(_shape_arithmetic_model())
    graph = load_model(path)
    assert [op.kind for op in graph.ops] == ["RESHAPE", "FULLY_CONNECTED"]
    assert [op.file_index for op in graph.ops] == [3, 4] and [op.index for op in graph.ops] == [0, 1]
    reshape = graph.ops[0]
    assert graph.tensors[reshape.inputs[1]].data.tolist() == [1, 192]
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, (1, 4, 6, 8), dtype=np.int8) for _ in range(2)]
    for x, ref in zip(xs, reference_outputs(path, xs)):
        np.testing.assert_array_equal(run_graph(graph, x).reshape(-1), ref)
