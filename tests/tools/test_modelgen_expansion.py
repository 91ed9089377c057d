"""MobileNetV2 at other expansion ratios (tools.modelgen.mobilenetv2_backbone).

Builds Keras graphs only (no training, no conversion)."""
from __future__ import annotations

import pytest

from tools import modelgen

tf = pytest.importorskip("tensorflow")

ALPHA = 0.35
SHAPE = (64, 64, 3)


def _output_shape(layer) -> tuple:
    return tuple(layer.output.shape)


def _describe(layer) -> tuple:
    """Class, name (inputs are auto-named), output shape, weight shapes and the
    rest of the config (padding, strides, epsilon, ...: ZeroPadding2D's
    (0, 1) and (1, 1) give the same output shape on even sizes)."""
    name = "" if isinstance(layer, tf.keras.layers.InputLayer) else layer.name
    config = {k: v for k, v in layer.get_config().items() if k != "name"}
    return (type(layer).__name__, name, _output_shape(layer), [tuple(w.shape) for w in layer.weights],
            repr(config))


@pytest.fixture(scope="module")
def keras_reference():
    model = tf.keras.applications.MobileNetV2(input_shape=SHAPE, alpha=ALPHA, weights=None,
                                              include_top=False)
    yield [_describe(l) for l in model.layers]
    tf.keras.backend.clear_session()


def _expand_channels(model) -> dict[int, int]:
    """block id -> output channels of its 1x1 expand conv (blocks 1..16)."""
    return {int(l.name.split("_")[1]): _output_shape(l)[-1]
            for l in model.layers if l.name.endswith("_expand")}


def test_expansion_6_matches_keras_applications(keras_reference):
    ours = modelgen.mobilenetv2_backbone(tf, SHAPE, ALPHA, 6)
    assert [_output_shape(l) for l in ours.layers] == [described[2] for described in keras_reference]
    # Same layers in the same order with the same weights: the builder is Keras' network.
    assert [_describe(l) for l in ours.layers] == keras_reference


@pytest.mark.parametrize("t", [2, 8])
def test_expanded_channel_counts(t):
    model = modelgen.mobilenetv2_backbone(tf, SHAPE, ALPHA, t)
    expand = _expand_channels(model)
    assert sorted(expand) == list(range(1, 17))       # block 0 keeps t = 1: no expand conv
    # Width 0.35: block 0 projects to _make_divisible(int(16 * 0.35), 8) = 8 channels.
    assert expand[1] == 8 * t
    # Every expand conv is t x its block's input channels.
    by_name = {l.name: l for l in model.layers}
    for block_id, channels in expand.items():
        block_input = by_name[f"block_{block_id}_expand"].input
        assert channels == t * block_input.shape[-1]
    assert modelgen.block_expansions(t) == [1] + [t] * 16
    # The rest of the network (projections, spatial sizes, last conv) is unchanged.
    assert [_output_shape(by_name[f"block_{b}_project"]) for b in range(1, 17)] == \
        [_output_shape(l) for l in modelgen.mobilenetv2_backbone(tf, SHAPE, ALPHA, 6).layers
         if l.name.endswith("_project") and l.name.startswith("block_")]
    assert _output_shape(model.layers[-1]) == (None, 2, 2, 1280)
    tf.keras.backend.clear_session()


def test_file_names_and_cache_keys():
    assert modelgen.model_filename(0.35, 64) == "mobilenetv2_w035_64.tflite"
    assert modelgen.model_filename(0.35, 64, 6) == "mobilenetv2_w035_64.tflite"
    assert modelgen.model_filename(0.35, 64, 2) == "mobilenetv2_w035_64_t2.tflite"
    full = modelgen.TrainConfig(width=0.35)
    assert full.cache_stem == "mobilenetv2_w035_seed0"          # the existing cache stays valid
    assert modelgen.TrainConfig(width=0.35, expansion=8).cache_stem == "mobilenetv2_w035_t8_seed0"
    short = modelgen.TrainConfig(width=0.35, expansion=2, training="short", train_resolutions=(64,))
    assert short.cache_stem == "mobilenetv2_w035_t2_seed0_short64"
    assert modelgen.TrainConfig(width=0.35, training="short", train_resolutions=(64,)).cache_stem \
        != full.cache_stem
