"""Re-emitting a model at another resolution keeps its weights and arithmetic."""
from __future__ import annotations

import numpy as np

from harness.backend.hostrt import run_graph
from harness.frontend.reference import reference_output
from harness.frontend.resize import resize_model
from harness.frontend.tflite_import import load_model, load_model_bytes


def test_same_resolution_is_equivalent_and_others_stay_bit_exact(model_paths):
    path = model_paths[0]
    graph = load_model(path)
    rng = np.random.default_rng(0)
    _, h, _, _ = graph.input.shape
    x = rng.integers(-128, 128, graph.input.shape, dtype=np.int8)
    same = resize_model(graph, h)
    assert np.array_equal(reference_output(same, x), reference_output(path, x))
    for r in (h - 16, h + 32):
        data = resize_model(graph, r)
        g = load_model_bytes(data, f"r{r}")
        assert g.input.shape == (1, r, r, 3) and g.output.shape == graph.output.shape
        first = g.tensors[g.ops[0].outputs[0]].shape
        assert first[1:3] == ((r + 1) // 2, (r + 1) // 2)
        # the same weights, bit for bit
        for t, t0 in zip(g.tensors, graph.tensors):
            if t0.data is not None:
                assert np.array_equal(t.data, t0.data)
        xr = rng.integers(-128, 128, g.input.shape, dtype=np.int8)
        assert np.array_equal(run_graph(g, xr).reshape(-1), reference_output(data, xr))


def test_models_with_float_and_uint8_edges_resize_bit_exact():
    """QUANTIZE / DEQUANTIZE at the edges and the elementwise activations are
    re-emitted as they are; the float32 output stays bit-exact."""
    from tests.helpers.tflite_builder import edge_model
    rng = np.random.default_rng(4)
    for input_dtype in ("float32", "uint8"):
        graph = load_model_bytes(edge_model(rng, input_dtype, input_hw=(12, 12)), f"edge_{input_dtype}")
        data = resize_model(graph, 20)
        g = load_model_bytes(data, "r20")
        assert g.input.shape == (1, 20, 20, 3) and g.input.dtype == input_dtype
        assert [op.kind for op in g.ops] == [op.kind for op in graph.ops]
        x = (rng.uniform(-1, 1, g.input.shape).astype(np.float32) if input_dtype == "float32"
             else rng.integers(0, 256, g.input.shape, dtype=np.uint8))
        ours, ref = run_graph(g, x).reshape(-1), reference_output(data, x)
        assert ours.dtype == ref.dtype == np.float32 and ours.tobytes() == ref.tobytes()
