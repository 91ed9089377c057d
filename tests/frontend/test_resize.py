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


def test_the_other_architectures_resize_bit_exact():
    """MobileNetV3 (SE: MUL broadcast, tables), ShuffleNetV2 (STRIDED_SLICE on
    channels, CONCATENATION, the [1, H, W, 2, C/2] shuffle's RESHAPE and
    TRANSPOSE, MAX_POOL_2D) at other resolutions: shapes follow, outputs equal
    LiteRT's on the re-emitted model."""
    import pytest
    from harness import paths
    from harness.errors import FusebenchError
    folder = paths.MODELS_DIR / "architectures"
    for name in ("mobilenetv3_small_w075_96", "shufflenetv2_w050_96"):
        graph = load_model(folder / f"{name}.tflite")
        for resolution in (64, 128):
            data = resize_model(graph, resolution)
            resized = load_model_bytes(data, name)
            assert resized.input.shape == (1, resolution, resolution, 3)
            x = np.random.default_rng(resolution).integers(-128, 128, resized.input.shape, dtype=np.int8)
            np.testing.assert_array_equal(run_graph(resized, x).reshape(-1), reference_output(data, x))
    # a slice that cuts rows depends on the resolution: refused
    import tflite
    from harness.frontend.tflite_writer import Q
    from tests.helpers import tflite_builder as tb
    rows = load_model_bytes(tb.strided_slice_model([1, 8, 8, 4], [0, 0, 0, 0], [1, 4, 8, 4], [1, 1, 1, 1],
                                                   Q(0.1, 0)), "rows")
    with pytest.raises(FusebenchError, match="cuts a resolution-dependent axis"):
        resize_model(rows, 16)
