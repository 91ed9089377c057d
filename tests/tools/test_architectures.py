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
        for width, resolution in arch.models:
            model = modelgen.build_model(tf, width, resolution, 0.9, arch=arch.name)
            assert tuple(model.output.shape) == (None, architectures.NUM_CLASSES)
            assert modelgen.model_filename(width, resolution, arch=arch.name).startswith(arch.name + "_w")
            tf.keras.backend.clear_session()
