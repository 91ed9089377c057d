"""The backbones of the re-implementation report beside MobileNetV2, as Keras
models (the `models` extra): EfficientNet-Lite0-style, MobileNetV3-Small-style,
ShuffleNetV2-style and MobileNetV1-style, each with a 10-class head.

Each builder takes (tf, input_shape, width) and returns a Keras model whose
output is the softmax scores; `tools.modelgen` trains, converts and ships them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

NUM_CLASSES = 10


def _make_divisible(v: float, divisor: int = 8) -> int:
    """The reference implementations' channel rounding (never below 90% of v)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _head(tf, x, name: str):
    """Global average pooling and a softmax Dense layer, as Keras' include_top."""
    layers = tf.keras.layers
    pooled = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    return layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(pooled)


def _bn(tf, name: str):
    return tf.keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=name)


# -- EfficientNet-Lite0: MBConv (3x3 and 5x5 depthwise), ReLU6, no squeeze-excite, a fixed
# 32-channel stem and 1280-channel head (EfficientNet-Lite keeps both when it scales) ----

# (expansion, kernel, stride, output channels, repeats) of EfficientNet-B0 / Lite0
EFFICIENTNET_LITE0_BLOCKS = (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
)


def efficientnet_lite(tf, input_shape: tuple, width: float):
    layers = tf.keras.layers
    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.ReLU(6.0, name="stem_relu")(_bn(tf, "stem_bn")(x))
    block = 0
    for t, k, s, c, n in EFFICIENTNET_LITE0_BLOCKS:
        out_c = _make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            in_c = x.shape[-1]
            y = x
            p = f"block{block}_"
            if t != 1:
                y = layers.Conv2D(in_c * t, 1, use_bias=False, name=p + "expand")(y)
                y = layers.ReLU(6.0, name=p + "expand_relu")(_bn(tf, p + "expand_bn")(y))
            y = layers.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False, name=p + "dw")(y)
            y = layers.ReLU(6.0, name=p + "dw_relu")(_bn(tf, p + "dw_bn")(y))
            y = layers.Conv2D(out_c, 1, use_bias=False, name=p + "project")(y)
            y = _bn(tf, p + "project_bn")(y)
            x = layers.Add(name=p + "add")([x, y]) if stride == 1 and in_c == out_c else y
            block += 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(_bn(tf, "head_bn")(x))
    return tf.keras.Model(inputs, _head(tf, x, "head"), name=f"efficientnet_lite_{width:g}")


# -- MobileNetV3-Small: hard-swish, squeeze-and-excite gated by a hard sigmoid, 5x5 depthwise --

# (kernel, expansion channels, output channels, squeeze-excite, activation, stride), Howard et al. Table 2
MOBILENETV3_SMALL_BLOCKS = (
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1),
)


def _hard_sigmoid(tf, x, name: str):
    layers = tf.keras.layers
    shifted = layers.Rescaling(1.0, offset=3.0, name=name + "_plus3")(x)
    return layers.Rescaling(1.0 / 6.0, name=name + "_div6")(layers.ReLU(6.0, name=name + "_relu6")(shifted))


def _activation(tf, x, kind: str, name: str):
    layers = tf.keras.layers
    if kind == "relu":
        return layers.ReLU(name=name)(x)
    return layers.Multiply(name=name)([x, _hard_sigmoid(tf, x, name + "_gate")])


def mobilenetv3_small(tf, input_shape: tuple, width: float):
    layers = tf.keras.layers
    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _activation(tf, _bn(tf, "stem_bn")(x), "hswish", "stem_act")
    for block, (k, exp, c, se, act, s) in enumerate(MOBILENETV3_SMALL_BLOCKS):
        in_c = x.shape[-1]
        exp_c, out_c = _make_divisible(exp * width), _make_divisible(c * width)
        p = f"block{block}_"
        y = x
        if block:                                   # the first block's depthwise runs on the stem
            y = layers.Conv2D(exp_c, 1, use_bias=False, name=p + "expand")(y)
            y = _activation(tf, _bn(tf, p + "expand_bn")(y), act, p + "expand_act")
        y = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=p + "dw")(y)
        y = _activation(tf, _bn(tf, p + "dw_bn")(y), act, p + "dw_act")
        if se:
            squeezed = layers.GlobalAveragePooling2D(keepdims=True, name=p + "se_pool")(y)
            squeezed = layers.Conv2D(_make_divisible(y.shape[-1] / 4), 1, name=p + "se_reduce")(squeezed)
            squeezed = layers.ReLU(name=p + "se_relu")(squeezed)
            squeezed = layers.Conv2D(y.shape[-1], 1, name=p + "se_expand")(squeezed)
            y = layers.Multiply(name=p + "se_scale")([y, _hard_sigmoid(tf, squeezed, p + "se_gate")])
        y = layers.Conv2D(out_c, 1, use_bias=False, name=p + "project")(y)
        y = _bn(tf, p + "project_bn")(y)
        x = layers.Add(name=p + "add")([x, y]) if s == 1 and in_c == out_c else y
    x = layers.Conv2D(_make_divisible(576 * width), 1, use_bias=False, name="head_conv")(x)
    x = _activation(tf, _bn(tf, "head_bn")(x), "hswish", "head_act")
    return tf.keras.Model(inputs, _head(tf, x, "head"), name=f"mobilenetv3_small_{width:g}")


# -- ShuffleNetV2: channel split, two branches, concatenation, channel shuffle ----------------

# output channels of stages 2-4 at width 0.5 / 1.0 (Ma et al. Table 5), repeats 4, 8, 4
SHUFFLENETV2_CHANNELS = {0.5: (48, 96, 192), 1.0: (116, 232, 464)}
SHUFFLENETV2_REPEATS = (4, 8, 4)


def _shuffle(tf, x, name: str):
    """Channel shuffle of two groups, as reshape -> transpose -> reshape."""
    h, w, c = x.shape[1:]
    layers = tf.keras.layers
    x = layers.Reshape((h, w, 2, c // 2), name=name + "_split_groups")(x)
    x = layers.Permute((1, 2, 4, 3), name=name + "_swap")(x)
    return layers.Reshape((h, w, c), name=name + "_merge")(x)


def shufflenetv2(tf, input_shape: tuple, width: float):
    layers = tf.keras.layers
    if width not in SHUFFLENETV2_CHANNELS:
        raise ValueError(f"ShuffleNetV2 width must be one of {sorted(SHUFFLENETV2_CHANNELS)}")

    def conv_bn_relu(x, c, name):
        x = layers.Conv2D(c, 1, use_bias=False, name=name)(x)
        return layers.ReLU(name=name + "_relu")(_bn(tf, name + "_bn")(x))

    def dw_bn(x, stride, name):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name)(x)
        return _bn(tf, name + "_bn")(x)

    inputs = layers.Input(shape=input_shape)
    x = layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.ReLU(name="stem_relu")(_bn(tf, "stem_bn")(x))
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (c, n) in enumerate(zip(SHUFFLENETV2_CHANNELS[width], SHUFFLENETV2_REPEATS)):
        for i in range(n):
            p = f"stage{stage}_unit{i}_"
            half = c // 2
            if i == 0:                      # both branches from the whole input, stride 2
                left = conv_bn_relu(dw_bn(x, 2, p + "left_dw"), half, p + "left_pw")
                right = conv_bn_relu(x, half, p + "right_pw1")
            else:                           # channel split: the left half passes through
                in_c = x.shape[-1]
                left = layers.Lambda(lambda t, k=in_c // 2: t[..., :k], name=p + "split_left")(x)
                right = layers.Lambda(lambda t, k=in_c // 2: t[..., k:], name=p + "split_right")(x)
            right = dw_bn(right, 2 if i == 0 else 1, p + "right_dw")
            right = conv_bn_relu(right, half, p + "right_pw2")
            x = _shuffle(tf, layers.Concatenate(name=p + "concat")([left, right]), p + "shuffle")
    x = conv_bn_relu(x, 1024, "head_conv")
    return tf.keras.Model(inputs, _head(tf, x, "head"), name=f"shufflenetv2_{width:g}")


# -- MobileNetV1: depthwise-separable chain, no residuals ---------------------------------------

def mobilenetv1(tf, input_shape: tuple, width: float):
    backbone = tf.keras.applications.MobileNet(input_shape=input_shape, alpha=width, weights=None,
                                               include_top=False)
    return tf.keras.Model(backbone.input, _head(tf, backbone.output, "head"), name=f"mobilenetv1_{width:g}")


@dataclass(frozen=True)
class Architecture:
    name: str                     # the file-name prefix
    build: Callable               # (tf, input_shape, width) -> Keras model with its softmax head
    models: tuple[tuple[float, int], ...]   # the shipped (width, resolution) pairs
    describe: str


ARCHITECTURES = {a.name: a for a in (
    Architecture("efficientnet_lite", efficientnet_lite, ((0.5, 128), (0.35, 96)),
                 "EfficientNet-Lite0-style: MBConv with 3x3 and 5x5 depthwise, ReLU6, no squeeze-excite"),
    Architecture("mobilenetv3_small", mobilenetv3_small, ((0.75, 96),),
                 "MobileNetV3-Small-style: hard-swish, squeeze-and-excite with a hard-sigmoid gate, 5x5 depthwise"),
    Architecture("shufflenetv2", shufflenetv2, ((0.5, 96),),
                 "ShuffleNetV2-style: channel split, concatenation, channel shuffle by reshape/transpose"),
    Architecture("mobilenetv1", mobilenetv1, ((0.25, 96),),
                 "MobileNetV1 0.25-style: a depthwise-separable chain without residuals"),
)}
