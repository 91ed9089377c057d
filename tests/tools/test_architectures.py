"""The report's other backbones (tools.architectures): their defining layers, built
as Keras graphs (no training); and that each converts to ops fusebench runs."""
from __future__ import annotations

import numpy as np
import pytest

from tools import architectures, modelgen

tf = pytest.importorskip("tensorflow")

L = None if tf is None else tf.keras.layers


def _kinds(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_efficientnet_lite_has_5x5_depthwise_relu6_and_no_squeeze_excite():
    model = architectures.efficientnet_lite(tf, (64, 64, 3), 0.35)
    kernels = {l.kernel_size for l in model.layers if isinstance(l, L.DepthwiseConv2D)}
    assert kernels == {(3, 3), (5, 5)}
    assert all(l.max_value == 6.0 for l in model.layers if isinstance(l, L.ReLU))
    assert "Multiply" not in _kinds(model)
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("head_conv").filters == 1280


def test_mobilenetv3_small_gates_its_squeeze_excite_with_a_hard_sigmoid():
    model = architectures.mobilenetv3_small(tf, (64, 64, 3), 0.75)
    se = [l for l in model.layers if l.name.endswith("se_scale")]
    assert len(se) == sum(1 for b in architectures.MOBILENETV3_SMALL_BLOCKS if b[3])
    assert model.get_layer("block3_se_gate_plus3").offset == 3.0
    assert {l.kernel_size for l in model.layers if isinstance(l, L.DepthwiseConv2D)} == {(3, 3), (5, 5)}


def test_shufflenetv2_splits_concatenates_and_shuffles():
    model = architectures.shufflenetv2(tf, (64, 64, 3), 0.5)
    kinds = _kinds(model)
    assert kinds.count("Concatenate") == sum(architectures.SHUFFLENETV2_REPEATS)
    assert kinds.count("Permute") == sum(architectures.SHUFFLENETV2_REPEATS)
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 1, 8)
    shuffled = tf.keras.Model(inp := L.Input((1, 1, 8)), architectures._shuffle(tf, inp, "t"))(x)
    assert np.asarray(shuffled).reshape(-1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_every_architecture_is_named_in_files_and_builds_at_its_shipped_sizes():
    for arch in architectures.ARCHITECTURES.values():
        for width, resolution, params in arch.shipped():
            model = modelgen.build_model(tf, width, resolution, 0.9, arch=arch.name, params=params)
            assert tuple(model.output.shape) == (None, architectures.NUM_CLASSES)
            name = modelgen.model_filename(width, resolution, arch=arch.name, params=params)
            assert name.startswith(arch.name + ("_k" if arch.tag else "_w")) and f"_{resolution}." in name
            tf.keras.backend.clear_session()


def test_unist_file_names_carry_every_parameter():
    assert modelgen.model_filename(16, 96, arch="unist", params=dict(k=4, central=True, margin=9, depth=5, t=4)) \
        == "unist_k4c_m9_d5_t4_w16_96.tflite"
    assert modelgen.model_filename(8, 64, arch="unist", params=dict(k=3, central=False, margin=0, depth=2, t=2)) \
        == "unist_k3_m0_d2_t2_w8_64.tflite"
    assert modelgen.parse_param_sweep("k=2,3 central=0,1;margin=9", "unist") == \
        {"k": [2, 3], "central": [False, True], "margin": [9]}


def test_unist_grid_and_patch_sizes_follow_eq_1():
    assert [architectures.unist_grid(k) for k in (2, 3, 4, 5)] == [(1, 2), (1, 3), (2, 2), (1, 5)]
    # k = 4: (h/2 + m) x (w/2 + m), corners at the image edges, neighbours overlapping by 2m
    patches = architectures.unist_patches(224, 224, 4, True, 18)
    assert [(p.top, p.left, p.height, p.width) for p in patches] == \
        [(0, 0, 130, 130), (0, 94, 130, 130), (94, 0, 130, 130), (94, 94, 130, 130), (47, 47, 130, 130)]
    # a 1x3 grid: full height (clamped), ceil(w/3) + m wide, spread over the width, no central patch
    patches = architectures.unist_patches(32, 32, 3, False, 4)
    assert [(p.top, p.left, p.height, p.width) for p in patches] == [(0, 0, 32, 15), (0, 8, 32, 15), (0, 17, 32, 15)]


# (k, central, margin) of the tiny models, and their patches' expected (height, width) at 32x32
UNIST_CASES = [((4, True, 3), (19, 19), 5), ((2, False, 0), (32, 16), 2)]


@pytest.mark.parametrize("params, patch_shape, patches", UNIST_CASES)
def test_unist_cuts_patches_into_independent_tunnels_summed_before_one_dense_head(params, patch_shape, patches):
    from harness.frontend.tflite_import import load_model_bytes, supported_ops
    k, central, margin = params
    model = architectures.unist(tf, (32, 32, 3), 4, k=k, central=central, margin=margin, depth=2, t=2)
    crops = [l for l in model.layers if isinstance(l, L.Cropping2D)]
    assert len(crops) == patches
    assert {tuple(l.output.shape[1:3]) for l in crops} == {patch_shape}
    stems = [l for l in model.layers if l.name.endswith("_stem_conv")]
    assert len(stems) == patches and all(l.input is c.output for l, c in zip(stems, crops))   # one tunnel each
    summed = model.get_layer("tunnel_sum")
    pools = [l for l in model.layers if isinstance(l, L.GlobalAveragePooling2D)]
    assert [id(t) for t in summed.input] == [id(l.output) for l in pools] and len(pools) == patches
    dense = [l for l in model.layers if isinstance(l, L.Dense)]
    assert [l.name for l in dense] == ["predictions"] and dense[0].input is summed.output
    calibration = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    graph = load_model_bytes(modelgen.convert_int8(tf, model, calibration))
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("STRIDED_SLICE") == patches and kinds.count("FULLY_CONNECTED") == 1
    assert kinds.count("MEAN") == patches
    assert set(kinds) <= supported_ops()
    tf.keras.backend.clear_session()
