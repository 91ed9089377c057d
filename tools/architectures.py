"""The backbones of the re-implementation report beside MobileNetV2, as Keras
models (the `models` extra): EfficientNet-Lite0-style, MobileNetV3-Small-style,
ShuffleNetV2-style and MobileNetV1-style, each with a 10-class head; and
UNIST-style patch-tunnel networks (Lee, Park, Lee), shipped in models/unist/.

Each builder takes (tf, input_shape, width, **params) and returns a Keras model
whose output is the softmax scores (only UNIST has params: k, central, margin,
depth, t); `tools.modelgen` trains, converts and ships them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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


# -- UNIST (Lee, Park, Lee: input segmentation, patch tunneling): k (+1 central) image
# patches, each through its own small MobileNetV2-style tunnel, features summed before
# one Dense head. (Bottleneck reordering is an execution order, not a layer: the
# harness's schedules decide it, so the Keras graph is the plain network.) ------------------

UNIST_KS = (2, 3, 4, 5)
# The shipped UNIST parameters that `unist` reads besides width (the tunnel channels).
UNIST_DEFAULT_PARAMS = {"k": 4, "central": True, "margin": 9, "depth": 5, "t": 4}
UNIST_MIN_MAP = 4           # tunnels stop downsampling once their map is this small


def unist_grid(k: int) -> tuple[int, int]:
    """The k patches as a rows x cols grid: rows is the largest divisor of k not
    above sqrt(k), so k = 4 is the paper's 2x2 and a prime k is a row of
    vertical strips (k = 2 -> 1x2, 3 -> 1x3, 5 -> 1x5)."""
    if k not in UNIST_KS:
        raise ValueError(f"UNIST k must be one of {UNIST_KS} (got {k})")
    rows = max(d for d in range(1, k + 1) if k % d == 0 and d * d <= k)
    return rows, k // rows


@dataclass(frozen=True)
class Patch:
    """One input patch: its top-left corner and size in the input image."""
    name: str
    top: int
    left: int
    height: int
    width: int


def _spread(extent: int, size: int, count: int) -> list[int]:
    """`count` starts of `size`-long windows spread evenly over `extent`, the
    first at 0 and the last at the far edge (neighbours overlap by the margins)."""
    if count == 1:
        return [(extent - size) // 2]
    return [round(i * (extent - size) / (count - 1)) for i in range(count)]


def unist_patches(height: int, width: int, k: int, central: bool, margin: int) -> list[Patch]:
    """Eq. (1) of the paper on a grid: every patch is (h/rows + m) x (w/cols + m)
    (the cell rounded up, plus the margin, clamped to the image), the grid's
    patches in row-major order touching the image edges, then the optional
    central patch of the same size centred in the image. For k = 4 this is the
    paper's (h/sqrt(k) + m_h) x (w/sqrt(k) + m_w): two neighbours overlap by 2m."""
    if margin < 0:
        raise ValueError(f"UNIST margin must be >= 0 (got {margin})")
    rows, cols = unist_grid(k)
    ph = min(height, -(-height // rows) + margin)
    pw = min(width, -(-width // cols) + margin)
    patches = [Patch(f"patch{r}{c}", top, left, ph, pw)
               for r, top in enumerate(_spread(height, ph, rows))
               for c, left in enumerate(_spread(width, pw, cols))]
    if central:
        patches.append(Patch("central", (height - ph) // 2, (width - pw) // 2, ph, pw))
    return patches


def unist_blocks(patch_size: int, depth: int, width: int, t: int) -> list[tuple[int, int, int]]:
    """(expansion, stride, output channels) of a tunnel's bottleneck blocks.

    After the stride-2 stem, block 0 is MobileNetV2's first block (no expansion)
    but with stride 2, so no t-times expansion ever runs at the stem's full map
    (that tensor alone would be t x the stem output). Then odd blocks downsample
    and double the channels while the map is above UNIST_MIN_MAP; even blocks
    keep the shape and get the residual ADD."""
    side = -(-patch_size // 2)                 # after the stem (SAME padding)
    blocks, channels = [], width
    for i in range(depth):
        if i == 0:
            stride, expansion = 2, 1
        else:
            stride, expansion = (2 if i % 2 == 1 and side > UNIST_MIN_MAP else 1), t
            channels *= stride
        side = -(-side // stride)
        blocks.append((expansion, stride, channels))
    return blocks


def _unist_tunnel(tf, x, patch: Patch, depth: int, width: int, t: int):
    """One patch tunnel: stem conv, bottlenecks, global average pool."""
    layers = tf.keras.layers
    p = patch.name + "_"
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name=p + "stem_conv")(x)
    x = layers.ReLU(6.0, name=p + "stem_relu")(_bn(tf, p + "stem_bn")(x))
    for i, (expansion, stride, out_c) in enumerate(unist_blocks(min(patch.height, patch.width), depth, width, t)):
        b = f"{p}block{i}_"
        in_c = x.shape[-1]
        y = x
        if expansion != 1:
            y = layers.Conv2D(in_c * expansion, 1, use_bias=False, name=b + "expand")(y)
            y = layers.ReLU(6.0, name=b + "expand_relu")(_bn(tf, b + "expand_bn")(y))
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=b + "dw")(y)
        y = layers.ReLU(6.0, name=b + "dw_relu")(_bn(tf, b + "dw_bn")(y))
        y = layers.Conv2D(out_c, 1, use_bias=False, name=b + "project")(y)
        y = _bn(tf, b + "project_bn")(y)
        x = layers.Add(name=b + "add")([x, y]) if stride == 1 and in_c == out_c else y
    return layers.GlobalAveragePooling2D(name=p + "pool")(x)


def unist(tf, input_shape: tuple, width: float, k: int = UNIST_DEFAULT_PARAMS["k"],
          central: bool = UNIST_DEFAULT_PARAMS["central"], margin: int = UNIST_DEFAULT_PARAMS["margin"],
          depth: int = UNIST_DEFAULT_PARAMS["depth"], t: int = UNIST_DEFAULT_PARAMS["t"]):
    """UNIST-style network; `width` is the tunnels' stem channels (an integer).

    Each patch is cut by Cropping2D (one STRIDED_SLICE in the .tflite) straight
    from the input, and has its own tunnel; the k (+1) pooled features are
    summed (one ADD per extra tunnel) and feed the one softmax Dense layer."""
    layers = tf.keras.layers
    height, image_width = input_shape[:2]
    if int(width) != width or width < 1 or depth < 1 or t < 1:
        raise ValueError(f"UNIST width, depth and t must be positive integers (got {width}, {depth}, {t})")
    inputs = layers.Input(shape=input_shape)
    features = []
    for patch in unist_patches(height, image_width, k, central, margin):
        crop = ((patch.top, height - patch.top - patch.height),
                (patch.left, image_width - patch.left - patch.width))
        x = layers.Cropping2D(crop, name=patch.name + "_crop")(inputs)
        features.append(_unist_tunnel(tf, x, patch, depth, int(width), t))
    summed = layers.Add(name="tunnel_sum")(features)
    scores = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(summed)
    return tf.keras.Model(inputs, scores, name=f"unist_{unist_tag(width, dict(k=k, central=central, margin=margin, depth=depth, t=t))}")


def unist_tag(width: float, params: dict) -> str:
    """The file-name part of a UNIST model, e.g. k4c_m9_d5_t4_w16 (`c`: with the
    central patch)."""
    p = {**UNIST_DEFAULT_PARAMS, **params}
    return f"k{p['k']}{'c' if p['central'] else ''}_m{p['margin']}_d{p['depth']}_t{p['t']}_w{int(width)}"


# The shipped UNIST models (width = stem channels, resolution, params): an STM32F4-sized
# one at 96x96 (k = 4 + central, margin 9: 57x57 patches), and the paper's default
# segmentation at its ImageNet resolution (224x224, k = 4 + central, margin 18: 130x130).
UNIST_MODELS = (
    (16, 96, {"k": 4, "central": True, "margin": 9, "depth": 5, "t": 4}),
    (16, 224, {"k": 4, "central": True, "margin": 18, "depth": 6, "t": 4}),
)


UNIST_NOTES = (
    "UNIST files are named `unist_k<k>[c]_m<margin>_d<depth>_t<t>_w<width>_<px>` (`c`: with the central",
    "patch). Input segmentation (Lee, Park, Lee, Sec. 3.1): the k patches form a rows x cols grid, rows",
    "the largest divisor of k not above sqrt(k) (k = 4: 2x2; 2, 3, 5: 1x2, 1x3, 1x5 vertical strips);",
    "each patch is (ceil(h/rows) + m) x (ceil(w/cols) + m), clamped to the image, the grid's patches",
    "touching the image edges (for k = 4 the paper's (h/2 + m) x (w/2 + m), neighbours overlapping by",
    "2m); the central patch has the same size, centred. Each patch is a STRIDED_SLICE of the input.",
    "Patch tunneling (Sec. 3.2): per patch a 3x3 stride-2 stem conv (`width` channels, ReLU6), then",
    "`depth` MobileNetV2 bottlenecks (1x1 expand by t, ReLU6, 3x3 depthwise, ReLU6, 1x1 project,",
    "residual ADD when the shape is kept; block 0 has no expansion and stride 2, odd blocks halve the map",
    f"and double the channels while it is above {UNIST_MIN_MAP}x{UNIST_MIN_MAP}), then a global average pool; the",
    "k (+1) pooled features are summed (ADD) before the one softmax Dense layer. Bottleneck reordering",
    "(Sec. 3.3) is an execution order, not a layer: the files are the plain networks.",
    "`unist_k4c_m18_d6_t4_w16_224` has the paper's default segmentation at its resolution (k = 4 +",
    "central, margin 18, 130x130 patches); `unist_k4c_m9_d5_t4_w16_96` the same at 96x96 with the",
    "paper's other default margin, 9 (57x57 patches), for the STM32F4. Regenerate them with",
    "`invoke models --arch unist`; a parameter sweep with e.g. `invoke models --arch unist",
    "--resolution 96 --params \"k=2,3,4,5 central=0,1 margin=0,9\"` (into build/sweeps/unist/).",
)


@dataclass(frozen=True)
class Architecture:
    name: str                     # the file-name prefix
    build: Callable               # (tf, input_shape, width, **params) -> Keras model with its softmax head
    # The shipped models: (width, resolution) pairs, or (width, resolution, params)
    # with keyword arguments of `build` (see `shipped`).
    models: tuple[tuple, ...]
    describe: str
    # The file-name part naming width and params (default: modelgen's w<width*100>).
    tag: Callable[[float, dict], str] | None = None
    folder: str = "architectures"            # models/<folder>/ gets the shipped files
    # The parameters `tag` and `build` know, with their types (for `--params`).
    param_types: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()              # lines for the generated README


    def shipped(self) -> list[tuple[float, int, dict]]:
        """The shipped models as (width, resolution, params)."""
        return [(m[0], m[1], dict(m[2]) if len(m) > 2 else {}) for m in self.models]


ARCHITECTURES = {a.name: a for a in (
    Architecture("efficientnet_lite", efficientnet_lite, ((0.5, 128), (0.35, 96)),
                 "EfficientNet-Lite0-style: MBConv with 3x3 and 5x5 depthwise, ReLU6, no squeeze-excite"),
    Architecture("mobilenetv3_small", mobilenetv3_small, ((0.75, 96),),
                 "MobileNetV3-Small-style: hard-swish, squeeze-and-excite with a hard-sigmoid gate, 5x5 depthwise"),
    Architecture("shufflenetv2", shufflenetv2, ((0.5, 96),),
                 "ShuffleNetV2-style: channel split, concatenation, channel shuffle by reshape/transpose"),
    Architecture("mobilenetv1", mobilenetv1, ((0.25, 96),),
                 "MobileNetV1 0.25-style: a depthwise-separable chain without residuals"),
    Architecture("unist", unist, UNIST_MODELS,
                 "UNIST-style (Lee, Park, Lee): the input cut into k patches (+ a central one) with "
                 "overlapping margins, one MobileNetV2-bottleneck tunnel per patch, tunnel features summed "
                 "before one Dense head; width = the tunnels' stem channels",
                 tag=unist_tag, folder="unist",
                 param_types={"k": int, "central": bool, "margin": int, "depth": int, "t": int},
                 notes=UNIST_NOTES),
)}
