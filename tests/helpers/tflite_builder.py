"""Single-op (and small chain) int8 models for the kernel and schedule tests,
written with harness.frontend.tflite_writer: each returns the model bytes."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tflite

from harness.frontend import quant
from harness.frontend.tflite_writer import (Q, ModelBuilder, add_options, conv_options, depthwise_options, table_options,
                                            fc_options, pool_options, reducer_options, reshape_options,
                                            softmax_options)

# -- single-op models -----------------------------------------------------------------------

_OP = tflite.BuiltinOperator
_OPT = tflite.BuiltinOptions


def _filtered_model(code: int, options_table: int, options, input_shape: Sequence[int], filters: np.ndarray,
                    filter_scales: Sequence[float], bias: Optional[np.ndarray], in_q: Q, out_q: Q,
                    out_c: int, stride, padding: str, dilation, filter_axis: int) -> bytes:
    """One CONV_2D or DEPTHWISE_CONV_2D: input, int8 filter (per-channel along
    `filter_axis` when len(filter_scales) > 1), optional int32 bias, output."""
    n, h, w, _ = input_shape
    kh, kw = filters.shape[1:3]
    oh = quant.output_size(padding, h, kh, stride[0], dilation[0])
    ow = quant.output_size(padding, w, kw, stride[1], dilation[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    f = m.tensor(filters.shape, scales=filter_scales, zero_points=[0] * len(filter_scales), axis=filter_axis,
                 data=filters, name="filter")
    inputs = [x, f]
    if bias is not None:
        inputs.append(m.tensor([out_c], "int32", scales=[in_q.scale * s for s in filter_scales],
                               zero_points=[0] * len(filter_scales), data=bias, name="bias"))
    y = m.tensor([n, oh, ow, out_c], q=out_q, name="output")
    m.op(code, inputs, [y], options_table, options)
    return m.build([x], [y])


def conv2d_model(input_shape: Sequence[int], filters: np.ndarray, filter_scales: Sequence[float],
                 bias: Optional[np.ndarray], in_q: Q, out_q: Q, stride=(1, 1), padding="SAME",
                 dilation=(1, 1), activation="NONE") -> bytes:
    """CONV_2D with OHWI int8 filters (per-channel when len(filter_scales) > 1)."""
    return _filtered_model(_OP.CONV_2D, _OPT.Conv2DOptions, conv_options(stride, padding, dilation, activation),
                           input_shape, filters, filter_scales, bias, in_q, out_q, filters.shape[0],
                           stride, padding, dilation, filter_axis=0)


def depthwise_conv2d_model(input_shape: Sequence[int], filters: np.ndarray, filter_scales: Sequence[float],
                           bias: Optional[np.ndarray], in_q: Q, out_q: Q, stride=(1, 1), padding="SAME",
                           dilation=(1, 1), activation="NONE") -> bytes:
    """DEPTHWISE_CONV_2D with 1 x kh x kw x C*M filters (per-channel along axis 3)."""
    out_c = filters.shape[3]
    options = depthwise_options(stride, padding, dilation, out_c // input_shape[3], activation)
    return _filtered_model(_OP.DEPTHWISE_CONV_2D, _OPT.DepthwiseConv2DOptions, options, input_shape, filters,
                           filter_scales, bias, in_q, out_q, out_c, stride, padding, dilation, filter_axis=3)


def add_model(shape: Sequence[int], in1_q: Q, in2_q: Q, out_q: Q, activation="NONE") -> bytes:
    """ADD of two activations of the same shape (inputs 0 and 1)."""
    m = ModelBuilder()
    a = m.tensor(shape, q=in1_q, name="a")
    b = m.tensor(shape, q=in2_q, name="b")
    y = m.tensor(shape, q=out_q, name="output")
    m.op(_OP.ADD, [a, b], [y], _OPT.AddOptions, add_options(activation))
    return m.build([a, b], [y])


def mean_model(input_shape: Sequence[int], in_q: Q, out_q: Q, keep_dims: bool, axes=(1, 2)) -> bytes:
    n, h, w, c = input_shape
    out_shape = [n, 1, 1, c] if keep_dims else [n, c]
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    ax = m.tensor([len(axes)], "int32", data=np.asarray(axes, dtype=np.int32), name="axes")
    y = m.tensor(out_shape, q=out_q, name="output")
    m.op(_OP.MEAN, [x, ax], [y], _OPT.ReducerOptions, reducer_options(keep_dims))
    return m.build([x], [y])


def average_pool_model(input_shape: Sequence[int], q: Q, filter_hw=(2, 2), stride=(2, 2),
                       padding="VALID", activation="NONE", out_q: Optional[Q] = None) -> bytes:
    n, h, w, c = input_shape
    oh = quant.output_size(padding, h, filter_hw[0], stride[0])
    ow = quant.output_size(padding, w, filter_hw[1], stride[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    y = m.tensor([n, oh, ow, c], q=out_q or q, name="output")
    m.op(_OP.AVERAGE_POOL_2D, [x], [y], _OPT.Pool2DOptions, pool_options(filter_hw, stride, padding, activation))
    return m.build([x], [y])


def fully_connected_model(input_shape: Sequence[int], weights: np.ndarray, weight_scales: Sequence[float],
                          bias: Optional[np.ndarray], in_q: Q, out_q: Q, activation="NONE",
                          weight_zero_point: int = 0) -> bytes:
    """FULLY_CONNECTED with [units, depth] int8 weights; per-channel when
    len(weight_scales) > 1. The input is flattened to batches x depth."""
    units, depth = weights.shape
    batches = int(np.prod(input_shape)) // depth
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    wz = [weight_zero_point] * len(weight_scales)
    f = m.tensor(weights.shape, scales=weight_scales, zero_points=wz, data=weights, name="weights")
    inputs = [x, f]
    if bias is not None:
        inputs.append(m.tensor([units], "int32", scales=[in_q.scale * s for s in weight_scales],
                               zero_points=[0] * len(weight_scales), data=bias, name="bias"))
    else:
        inputs.append(-1)
    y = m.tensor([batches, units], q=out_q, name="output")
    m.op(_OP.FULLY_CONNECTED, inputs, [y], _OPT.FullyConnectedOptions, fc_options(activation, False))
    return m.build([x], [y])


def softmax_model(shape: Sequence[int], in_q: Q, beta: float = 1.0) -> bytes:
    """SOFTMAX int8 -> int8 with the output quantization LiteRT requires."""
    m = ModelBuilder()
    x = m.tensor(shape, q=in_q, name="input")
    y = m.tensor(shape, q=Q(1.0 / 256, -128), name="output")
    m.op(_OP.SOFTMAX, [x], [y], _OPT.SoftmaxOptions, softmax_options(beta))
    return m.build([x], [y])


def pad_model(input_shape: Sequence[int], paddings: Sequence[tuple[int, int]], q: Q) -> bytes:
    """PAD with a [4, 2] int32 paddings constant; output quantized like the input."""
    out_shape = [d + lo + hi for d, (lo, hi) in zip(input_shape, paddings)]
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    p = m.tensor([len(paddings), 2], "int32", data=np.asarray(paddings, dtype=np.int32), name="paddings")
    y = m.tensor(out_shape, q=q, name="output")
    m.op(_OP.PAD, [x, p], [y], _OPT.PadOptions, table_options("Pad"))
    return m.build([x], [y])


def quantize_model(shape: Sequence[int], in_q: Q, out_q: Q, input_dtype: str = "int8") -> bytes:
    """QUANTIZE int8 -> int8 (requantize), uint8 -> int8 with input_dtype='uint8'
    (in_q is the uint8 quantization), or float32 -> int8 with input_dtype='float32'
    (in_q is ignored: a float input has none)."""
    m = ModelBuilder()
    x = m.tensor(shape, input_dtype, q=None if input_dtype == "float32" else in_q, name="input")
    y = m.tensor(shape, q=out_q, name="output")
    m.op(_OP.QUANTIZE, [x], [y], _OPT.QuantizeOptions,
         table_options("Quantize"))
    return m.build([x], [y])


def dequantize_model(shape: Sequence[int], in_q: Q) -> bytes:
    m = ModelBuilder()
    x = m.tensor(shape, q=in_q, name="input")
    y = m.tensor(shape, "float32", name="output")
    m.op(_OP.DEQUANTIZE, [x], [y], _OPT.DequantizeOptions,
         table_options("Dequantize"))
    return m.build([x], [y])


# -- elementwise activations and whole models with their edges (float32 / uint8) ------------

def logistic_model(shape: Sequence[int], in_q: Q, out_zero_point: int = -128, out_scale: float = 1.0 / 256) -> bytes:
    """LOGISTIC int8 -> int8 with the output scale LiteRT requires (1/256); LiteRT's
    reference kernel takes any output zero point (the converter writes -128)."""
    m = ModelBuilder()
    x = m.tensor(shape, q=in_q, name="input")
    y = m.tensor(shape, q=Q(out_scale, out_zero_point), name="output")
    m.op(_OP.LOGISTIC, [x], [y])
    return m.build([x], [y])


def hard_swish_model(shape: Sequence[int], in_q: Q, out_q: Q) -> bytes:
    """HARD_SWISH int8 -> int8."""
    m = ModelBuilder()
    x = m.tensor(shape, q=in_q, name="input")
    y = m.tensor(shape, q=out_q, name="output")
    m.op(_OP.HARD_SWISH, [x], [y], _OPT.HardSwishOptions, table_options("HardSwish"))
    return m.build([x], [y])


def edge_model(rng: np.random.Generator, input_dtype: str = "float32", input_hw: tuple[int, int] = (12, 10),
               channels: int = 3, mid: int = 8, classes: int = 5) -> bytes:
    """A small CNN with the edges of real deployments: a float32 (MCUNet's
    export) or uint8 (the STM32 model zoo's) input, QUANTIZE to int8, conv 3x3
    (RELU6) -> depthwise 3x3 stride 2 -> conv 1x1 (a fusable chain) ->
    HARD_SWISH -> conv 1x1 -> MEAN -> FULLY_CONNECTED -> LOGISTIC (float32
    input) or SOFTMAX (uint8 input) -> DEQUANTIZE to a float32 output. The
    uint8 input has zero point 128 and the int8 one 0 at the same scale:
    LiteRT's x ^ 0x80 shortcut."""
    assert input_dtype in ("float32", "uint8")
    SPREAD = 2.0
    m = ModelBuilder()
    h, w = input_hw

    def conv(x: int, xq: Q, c_in: int, c_out: int, k: int, stride: int, depthwise: bool, act: str,
             hw: tuple[int, int]) -> tuple[int, Q, tuple[int, int]]:
        oh, ow = -(-hw[0] // stride), -(-hw[1] // stride)
        wshape = (1, k, k, c_out) if depthwise else (c_out, k, k, c_in)
        scales = rng.uniform(0.002, 0.02, c_out)
        f = m.tensor(wshape, scales=scales, zero_points=[0] * c_out, axis=3 if depthwise else 0,
                     data=rng.integers(-127, 128, wshape, dtype=np.int8))
        b = m.tensor([c_out], "int32", scales=[xq.scale * s for s in scales], zero_points=[0] * c_out,
                     data=rng.integers(-2000, 2000, c_out).astype(np.int32))
        fan_in = k * k * (1 if depthwise else c_in)
        # accumulators of full-range int8 activations: most outputs in range, some clamp
        yq = Q(float(xq.scale * scales.mean() * 127 * np.sqrt(fan_in) / SPREAD), int(rng.integers(-10, 10)))
        y = m.tensor([1, oh, ow, c_out], q=yq)
        if depthwise:
            m.op(_OP.DEPTHWISE_CONV_2D, [x, f, b], [y], _OPT.DepthwiseConv2DOptions,
                 depthwise_options((stride, stride), "SAME", (1, 1), 1, act))
        else:
            m.op(_OP.CONV_2D, [x, f, b], [y], _OPT.Conv2DOptions, conv_options((stride, stride), "SAME", (1, 1), act))
        return y, yq, (oh, ow)

    if input_dtype == "float32":
        inp = m.tensor([1, h, w, channels], "float32", name="input")
        xq = Q(1.0 / 127.5, -1)
    else:
        inp = m.tensor([1, h, w, channels], "uint8", q=Q(1.0 / 128, 128), name="input")
        xq = Q(1.0 / 128, 0)
    x = m.tensor([1, h, w, channels], q=xq, name="quantized")
    m.op(_OP.QUANTIZE, [inp], [x], _OPT.QuantizeOptions, table_options("Quantize"))
    hw = (h, w)
    x, xq, hw = conv(x, xq, channels, mid, 3, 1, False, "RELU6", hw)
    x, xq, hw = conv(x, xq, mid, mid, 3, 2, True, "RELU6", hw)
    x, xq, hw = conv(x, xq, mid, mid, 1, 1, False, "NONE", hw)
    sq = Q(float(xq.scale * rng.uniform(0.5, 1.0)), int(rng.integers(-110, -90)))
    y = m.tensor([1, hw[0], hw[1], mid], q=sq)
    m.op(_OP.HARD_SWISH, [x], [y], _OPT.HardSwishOptions, table_options("HardSwish"))
    x, xq, hw = conv(y, sq, mid, 2 * mid, 1, 1, False, "RELU", hw)
    ax = m.tensor([2], "int32", data=np.asarray([1, 2], dtype=np.int32))
    pq = Q(float(xq.scale * rng.uniform(0.6, 1.0)), int(rng.integers(-10, 10)))
    pooled = m.tensor([1, 2 * mid], q=pq)
    m.op(_OP.MEAN, [x, ax], [pooled], _OPT.ReducerOptions, reducer_options(False))
    scales = rng.uniform(0.002, 0.02, classes)
    f = m.tensor((classes, 2 * mid), scales=scales, zero_points=[0] * classes, axis=0,
                 data=rng.integers(-127, 128, (classes, 2 * mid), dtype=np.int8))
    b = m.tensor([classes], "int32", scales=[pq.scale * s for s in scales], zero_points=[0] * classes,
                 data=rng.integers(-2000, 2000, classes).astype(np.int32))
    lq = Q(float(pq.scale * scales.mean() * 127 * np.sqrt(2 * mid) / SPREAD), int(rng.integers(-10, 10)))
    logits = m.tensor([1, classes], q=lq)
    m.op(_OP.FULLY_CONNECTED, [pooled, f, b], [logits], _OPT.FullyConnectedOptions, fc_options("NONE", False))
    probs = m.tensor([1, classes], q=Q(1.0 / 256, -128))
    if input_dtype == "float32":
        m.op(_OP.LOGISTIC, [logits], [probs])
    else:
        m.op(_OP.SOFTMAX, [logits], [probs], _OPT.SoftmaxOptions, softmax_options(1.0))
    out = m.tensor([1, classes], "float32", name="output")
    m.op(_OP.DEQUANTIZE, [probs], [out], _OPT.DequantizeOptions, table_options("Dequantize"))
    return m.build([inp], [out])


def reshape_model(input_shape: Sequence[int], output_shape: Sequence[int], q: Q) -> bytes:
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    s = m.tensor([len(output_shape)], "int32", data=np.asarray(output_shape, dtype=np.int32), name="shape")
    y = m.tensor(output_shape, q=q, name="output")
    m.op(_OP.RESHAPE, [x, s], [y], _OPT.ReshapeOptions, reshape_options(output_shape))
    return m.build([x], [y])


def inverted_residual_chain_model(rng: np.random.Generator, input_hw: tuple[int, int], in_channels: int,
                                  blocks: Sequence[tuple[int, int, int]], first_conv: Optional[int] = None,
                                  head: Optional[tuple[int, int]] = None, explicit_pad: bool = False,
                                  squeeze_excite: Sequence[int] = (),
                                  detection_head: Optional[tuple[int, int]] = None) -> bytes:
    """A MobileNetV2-like chain: an optional 3x3 stride-2 first convolution with
    `first_conv` output channels, then inverted residual blocks given as
    (expansion ratio, out channels, depthwise stride[, depth multiplier]); a block with stride 1 and
    equal in/out channels gets the residual ADD. Random int8 weights, per-channel
    scales, random zero points: for fused-stage tests against LiteRT.
    `head` = (channels, classes) adds MobileNetV2's tail: a 1x1 convolution to
    `channels`, a global average (MEAN over H, W) and a fully connected layer.
    `explicit_pad` pads every 3x3 layer by one pixel on each side with an
    explicit PAD and runs it VALID, as PyTorch exports do.
    Blocks whose index is in `squeeze_excite` are MobileNetV3's: HARD_SWISH
    ops after the expansion and the depthwise, and a squeeze-and-excite branch
    (MEAN, 1x1 conv + ReLU, 1x1 conv + ReLU6, MUL by a one-valued 1/6, MUL of
    the map by the gate) before the projection.
    `detection_head` = (anchors, classes) ends in a YOLO-style grid head with
    two outputs instead: boxes (1x1 conv to 4 per anchor, [1, H, W, 4A]) and
    scores (1x1 conv, RESHAPE to [1, H*W*A, 1+classes], LOGISTIC)."""
    m = ModelBuilder()
    h, w = input_hw

    def act_q() -> Q:
        return Q(float(rng.uniform(0.02, 0.08)), int(rng.integers(-20, 20)))

    def conv(x: int, xq: Q, c_in: int, c_out: int, k: int, stride: int, depthwise: bool,
             relu6, hw: tuple[int, int]) -> tuple[int, Q, tuple[int, int]]:
        oh, ow = ((hw[0] + stride - 1) // stride, (hw[1] + stride - 1) // stride)
        padding = "SAME"
        if explicit_pad and k > 1:
            pads = m.tensor([4, 2], "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
            padded = m.tensor([1, hw[0] + 2, hw[1] + 2, c_in], q=xq)
            m.op(_OP.PAD, [x, pads], [padded], _OPT.PadOptions, table_options("Pad"))
            x, padding = padded, "VALID"
            oh, ow = (hw[0] + 2 - k) // stride + 1, (hw[1] + 2 - k) // stride + 1
        if depthwise:
            wshape = (1, k, k, c_out)
        else:
            wshape = (c_out, k, k, c_in)
        scales = rng.uniform(0.002, 0.02, c_out)
        fan_in = k * k * (1 if depthwise else c_in)
        weights = rng.integers(-127, 128, wshape, dtype=np.int8)
        f = m.tensor(wshape, scales=scales, zero_points=[0] * c_out, axis=3 if depthwise else 0, data=weights)
        bias = rng.integers(-2000, 2000, c_out).astype(np.int32)
        b = m.tensor([c_out], "int32", scales=[xq.scale * s for s in scales], zero_points=[0] * c_out, data=bias)
        # an output scale that keeps the accumulators mostly in range
        yq = Q(float(xq.scale * scales.mean() * 127 * np.sqrt(fan_in) / 8), int(rng.integers(-10, 10)))
        y = m.tensor([1, oh, ow, c_out], q=yq)
        act = relu6 if isinstance(relu6, str) else "RELU6" if relu6 else "NONE"
        if depthwise:
            m.op(_OP.DEPTHWISE_CONV_2D, [x, f, b], [y], _OPT.DepthwiseConv2DOptions,
                 depthwise_options((stride, stride), padding, (1, 1), c_out // c_in, act))
        else:
            m.op(_OP.CONV_2D, [x, f, b], [y], _OPT.Conv2DOptions,
                 conv_options((stride, stride), padding, (1, 1), act))
        return y, yq, (oh, ow)

    xq = act_q()
    x = m.tensor([1, h, w, in_channels], q=xq, name="input")
    inp = x
    c = in_channels
    hw = (h, w)
    if first_conv:
        x, xq, hw = conv(x, xq, c, first_conv, 3, 2, False, True, hw)
        c = first_conv
    def hard_swish(x: int, xq: Q, shape) -> tuple[int, Q]:
        yq = Q(xq.scale * float(rng.uniform(0.5, 0.9)), int(rng.integers(-40, -10)))
        y = m.tensor(shape, q=yq)
        m.op(_OP.HARD_SWISH, [x], [y], _OPT.HardSwishOptions, table_options("HardSwish"))
        return y, yq

    def squeeze_excite_branch(x: int, xq: Q, c: int, hw) -> tuple[int, Q]:
        ax = m.tensor([2], "int32", data=np.asarray([1, 2], dtype=np.int32))
        sq = Q(xq.scale * float(rng.uniform(0.6, 1.0)), int(rng.integers(-10, 10)))
        s = m.tensor([1, 1, 1, c], q=sq)
        m.op(_OP.MEAN, [x, ax], [s], _OPT.ReducerOptions, reducer_options(True))
        s, sq, _ = conv(s, sq, c, max(c // 4, 1), 1, 1, False, "RELU", (1, 1))
        s, sq, _ = conv(s, sq, max(c // 4, 1), c, 1, 1, False, True, (1, 1))
        sixth_q = Q(1.0 / 6 / 127, 0)
        sixth = m.tensor([1], q=sixth_q, data=np.array([127], np.int8))
        gq = Q(1.0 / 255, -128)                       # the gate's range 0..1
        gate = m.tensor([1, 1, 1, c], q=gq)
        m.op(_OP.MUL, [s, sixth], [gate], _OPT.MulOptions, table_options("Mul"))
        yq = Q(xq.scale * float(rng.uniform(0.4, 0.8)), int(rng.integers(-10, 10)))
        y = m.tensor([1, hw[0], hw[1], c], q=yq)
        m.op(_OP.MUL, [x, gate], [y], _OPT.MulOptions, table_options("Mul"))
        return y, yq

    for index, (expansion, c_out, stride, *multiplier) in enumerate(blocks):
        se = index in squeeze_excite
        act = "NONE" if se else True
        block_in = x
        mid = c * expansion
        if expansion != 1:
            x, xq, _ = conv(x, xq, c, mid, 1, 1, False, act, hw)
            if se:
                x, xq = hard_swish(x, xq, [1, hw[0], hw[1], mid])
        depth = mid * (multiplier[0] if multiplier else 1)       # a depth multiplier > 1 widens the depthwise
        x, xq, hw = conv(x, xq, mid, depth, 3, stride, True, act, hw)
        if se:
            x, xq = hard_swish(x, xq, [1, hw[0], hw[1], depth])
            x, xq = squeeze_excite_branch(x, xq, depth, hw)
        x, xq, _ = conv(x, xq, depth, c_out, 1, 1, False, False, hw)
        if stride == 1 and c_out == c:
            yq = act_q()
            y = m.tensor([1, hw[0], hw[1], c_out], q=yq)
            m.op(_OP.ADD, [block_in, x], [y], _OPT.AddOptions, add_options("NONE"))
            x, xq = y, yq
        c = c_out
    if head:
        channels, classes = head
        x, xq, _ = conv(x, xq, c, channels, 1, 1, False, True, hw)
        ax = m.tensor([2], "int32", data=np.asarray([1, 2], dtype=np.int32))
        pq = Q(xq.scale * float(rng.uniform(0.6, 1.0)), int(rng.integers(-10, 10)))
        pooled = m.tensor([1, channels], q=pq)
        m.op(_OP.MEAN, [x, ax], [pooled], _OPT.ReducerOptions, reducer_options(False))
        scales = rng.uniform(0.002, 0.02, classes)
        f = m.tensor((classes, channels), scales=scales, zero_points=[0] * classes, axis=0,
                     data=rng.integers(-127, 128, (classes, channels), dtype=np.int8))
        b = m.tensor([classes], "int32", scales=[pq.scale * s for s in scales], zero_points=[0] * classes,
                     data=rng.integers(-2000, 2000, classes).astype(np.int32))
        yq = Q(float(pq.scale * scales.mean() * 127 * np.sqrt(channels) / 8), int(rng.integers(-10, 10)))
        y = m.tensor([1, classes], q=yq)
        m.op(_OP.FULLY_CONNECTED, [pooled, f, b], [y], _OPT.FullyConnectedOptions, fc_options("NONE", False))
        x = y
    if detection_head:
        anchors, classes = detection_head
        boxes, _, _ = conv(x, xq, c, 4 * anchors, 1, 1, False, False, hw)
        raw, rq, _ = conv(x, xq, c, anchors * (1 + classes), 1, 1, False, False, hw)
        shape = [1, hw[0] * hw[1] * anchors, 1 + classes]
        flat = m.tensor(shape, q=rq)
        s_t = m.tensor([3], "int32", data=np.asarray(shape, dtype=np.int32))
        m.op(_OP.RESHAPE, [raw, s_t], [flat], _OPT.ReshapeOptions, reshape_options(shape))
        scores = m.tensor(shape, q=Q(1.0 / 256, -128), name="scores")
        m.op(_OP.LOGISTIC, [flat], [scores])
        return m.build([inp], [boxes, scores])
    return m.build([inp], [x])


def resnet_shortcut_model(rng: np.random.Generator, input_hw: tuple[int, int] = (16, 16), channels: int = 8) -> bytes:
    """A ResNet basic block with a strided shortcut (MLPerf Tiny's ResNet-8
    shape): conv 3x3 -> t1; conv 3x3 stride 2 (t1) -> t2; conv 1x1 stride 2
    (t1, the shortcut) -> t3; ADD(t2, t3). The shortcut conv comes after t2 in
    the op order, so a stage ending at it would have to write t2 whole, which
    its tiles (cut from t3) never compute."""
    m = ModelBuilder()
    h, w = input_hw

    def act_q() -> Q:
        return Q(float(rng.uniform(0.02, 0.08)), int(rng.integers(-20, 20)))

    def conv(x, xq, c_in, c_out, k, stride, hw):
        oh, ow = -(-hw[0] // stride), -(-hw[1] // stride)
        scales = rng.uniform(0.002, 0.02, c_out)
        f = m.tensor((c_out, k, k, c_in), scales=scales, zero_points=[0] * c_out,
                     data=rng.integers(-127, 128, (c_out, k, k, c_in), dtype=np.int8))
        b = m.tensor([c_out], "int32", scales=[xq.scale * s for s in scales], zero_points=[0] * c_out,
                     data=rng.integers(-2000, 2000, c_out).astype(np.int32))
        yq = Q(float(xq.scale * scales.mean() * 127 * np.sqrt(k * k * c_in) / 8), int(rng.integers(-10, 10)))
        y = m.tensor([1, oh, ow, c_out], q=yq)
        m.op(_OP.CONV_2D, [x, f, b], [y], _OPT.Conv2DOptions, conv_options((stride, stride), "SAME", (1, 1), "RELU"))
        return y, yq, (oh, ow)

    xq = act_q()
    x = m.tensor([1, h, w, 3], q=xq, name="input")
    t1, q1, hw1 = conv(x, xq, 3, channels, 3, 1, (h, w))
    t2, _, hw2 = conv(t1, q1, channels, 2 * channels, 3, 2, hw1)
    t3, _, _ = conv(t1, q1, channels, 2 * channels, 1, 2, hw1)
    oq = act_q()
    y = m.tensor([1, hw2[0], hw2[1], 2 * channels], q=oq, name="output")
    m.op(_OP.ADD, [t2, t3], [y], _OPT.AddOptions, add_options("RELU"))
    return m.build([x], [y])


# -- layout, broadcast and reduction ops: TRANSPOSE, STRIDED_SLICE, CONCATENATION,
# RESIZE_NEAREST_NEIGHBOR, MAX_POOL_2D, MUL, MEAN over any axes ----------------------------

from harness.frontend.tflite_writer import _ACTIVATION  # noqa: E402  (the writer's activation codes)

def _int32_const(m: ModelBuilder, values, name: str) -> int:
    values = np.asarray(values, dtype=np.int32).reshape(-1)
    return m.tensor([values.size], "int32", data=values, name=name)


def transpose_model(input_shape: Sequence[int], perm: Sequence[int], q: Q, out_q: Optional[Q] = None) -> bytes:
    """TRANSPOSE by a constant perm."""
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    p = _int32_const(m, perm, "perm")
    y = m.tensor([input_shape[a] for a in perm], q=out_q or q, name="output")
    m.op(_OP.TRANSPOSE, [x, p], [y], _OPT.TransposeOptions, table_options("Transpose"))
    return m.build([x], [y])


def strided_slice_model(input_shape: Sequence[int], begin: Sequence[int], end: Sequence[int],
                        strides: Sequence[int], q: Q, begin_mask: int = 0, end_mask: int = 0,
                        shrink_axis_mask: int = 0, ellipsis_mask: int = 0, new_axis_mask: int = 0,
                        output_shape: Optional[Sequence[int]] = None) -> bytes:
    """STRIDED_SLICE of an activation with constant begin/end/strides; the
    output shape as LiteRT resolves it (harness.backend.lowering.strided_slice_indices)
    unless given."""
    if output_shape is None:
        from harness.backend.lowering import strided_slice_indices
        output_shape = strided_slice_indices(input_shape, begin, end, strides, begin_mask, end_mask,
                                             shrink_axis_mask)[3]
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    b, e, s = _int32_const(m, begin, "begin"), _int32_const(m, end, "end"), _int32_const(m, strides, "strides")
    y = m.tensor(output_shape, q=q, name="output")
    m.op(_OP.STRIDED_SLICE, [x, b, e, s], [y], _OPT.StridedSliceOptions,
         table_options("StridedSlice", BeginMask=begin_mask, EndMask=end_mask, ShrinkAxisMask=shrink_axis_mask,
                       EllipsisMask=ellipsis_mask, NewAxisMask=new_axis_mask))
    return m.build([x], [y])


def concatenation_model(input_shapes: Sequence[Sequence[int]], axis: int, q: Q,
                        input_qs: Optional[Sequence[Q]] = None) -> bytes:
    """CONCATENATION of len(input_shapes) model inputs along `axis` (output quantized with q)."""
    m = ModelBuilder()
    xs = [m.tensor(s, q=(input_qs[i] if input_qs else q), name=f"input{i}") for i, s in enumerate(input_shapes)]
    rank = len(input_shapes[0])
    a = axis % rank
    out_shape = list(input_shapes[0])
    out_shape[a] = sum(s[a] for s in input_shapes)
    y = m.tensor(out_shape, q=q, name="output")
    m.op(_OP.CONCATENATION, xs, [y], _OPT.ConcatenationOptions, table_options("Concatenation", Axis=axis))
    return m.build(xs, [y])


def resize_nearest_model(input_shape: Sequence[int], size: tuple[int, int], q: Q, align_corners: bool = False,
                         half_pixel_centers: bool = False) -> bytes:
    """RESIZE_NEAREST_NEIGHBOR of [1, H, W, C] to size = (out_h, out_w)."""
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    s = _int32_const(m, size, "size")
    y = m.tensor([input_shape[0], size[0], size[1], input_shape[3]], q=q, name="output")
    m.op(_OP.RESIZE_NEAREST_NEIGHBOR, [x, s], [y], _OPT.ResizeNearestNeighborOptions,
         table_options("ResizeNearestNeighbor", AlignCorners=align_corners, HalfPixelCenters=half_pixel_centers))
    return m.build([x], [y])


def max_pool_model(input_shape: Sequence[int], q: Q, filter_hw=(2, 2), stride=(2, 2), padding="VALID",
                   activation="NONE") -> bytes:
    n, h, w, c = input_shape
    oh = quant.output_size(padding, h, filter_hw[0], stride[0])
    ow = quant.output_size(padding, w, filter_hw[1], stride[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    y = m.tensor([n, oh, ow, c], q=q, name="output")
    m.op(_OP.MAX_POOL_2D, [x], [y], _OPT.Pool2DOptions, pool_options(filter_hw, stride, padding, activation))
    return m.build([x], [y])


def mul_model(shape1: Sequence[int], shape2: Sequence[int], q1: Q, q2: Q, out_q: Q, activation="NONE") -> bytes:
    """MUL of two model inputs with numpy broadcasting."""
    out_shape = list(np.broadcast_shapes(tuple(shape1), tuple(shape2)))
    m = ModelBuilder()
    a = m.tensor(shape1, q=q1, name="a")
    b = m.tensor(shape2, q=q2, name="b")
    y = m.tensor(out_shape, q=out_q, name="output")
    m.op(_OP.MUL, [a, b], [y], _OPT.MulOptions, table_options("Mul", FusedActivationFunction=_ACTIVATION[activation]))
    return m.build([a, b], [y])


def reduce_mean_model(input_shape: Sequence[int], axes: Sequence[int], in_q: Q, out_q: Q, keep_dims: bool) -> bytes:
    """MEAN over any axes of a tensor of any rank."""
    rank = len(input_shape)
    resolved = {a % rank for a in axes}
    out_shape = [1 if d in resolved else s for d, s in enumerate(input_shape)] if keep_dims else \
        [s for d, s in enumerate(input_shape) if d not in resolved]
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    ax = _int32_const(m, axes, "axes")
    y = m.tensor(out_shape, q=out_q, name="output")
    m.op(_OP.MEAN, [x, ax], [y], _OPT.ReducerOptions, reducer_options(keep_dims))
    return m.build([x], [y])


def scalar_constant_model(kind: str, input_shape: Sequence[int], value: int, in_q: Q, const_q: Q, out_q: Q,
                          activation: str = "NONE", const_first: bool = False, const_shape=(1,)) -> bytes:
    """ADD or MUL of an activation and an int8 constant holding one value (the
    hard-sigmoid of MobileNetV3: relu6(x + 3) * 1/6), the constant first or second."""
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    c = m.tensor(list(const_shape), q=const_q, data=np.full(const_shape, value, np.int8), name="constant")
    y = m.tensor(input_shape, q=out_q, name="output")
    ins = [c, x] if const_first else [x, c]
    if kind == "ADD":
        m.op(_OP.ADD, ins, [y], _OPT.AddOptions, add_options(activation))
    else:
        m.op(_OP.MUL, ins, [y], _OPT.MulOptions, table_options("Mul", FusedActivationFunction=_ACTIVATION[activation]))
    return m.build([x], [y])


def patch_tunnel_model(rng: np.random.Generator, input_hw: tuple[int, int] = (16, 16), patches: int = 3,
                       margin: int = 2, channels: int = 8, depth: int = 2, interleave: bool = True,
                       blocks: int = 0, expansion: int = 4) -> bytes:
    """A UNIST-shaped network in miniature: `patches` overlapping windows of
    the input (STRIDED_SLICE, side by side along the width, `margin` columns
    of overlap), each through its own tunnel of `depth` 3x3 convolutions
    (`channels` wide, the first one stride 2), then `blocks` inverted residual
    blocks (1x1 expansion by `expansion`, 3x3 depthwise, 1x1 projection,
    residual ADD), and a MEAN; the tunnels summed by a chain of ADDs and
    classified by one FULLY_CONNECTED.

    `interleave` writes the ops layer by layer across the tunnels (every
    slice, then every tunnel's first convolution, ...), as a converter may:
    in file order every tunnel's maps are then live together."""
    m = ModelBuilder()
    h, w = input_hw

    def act_q() -> Q:
        return Q(float(rng.uniform(0.02, 0.08)), int(rng.integers(-20, 20)))

    xq = act_q()
    x = m.tensor([1, h, w, 3], q=xq, name="input")
    step = w // patches                   # the last window takes the remainder: none is empty
    windows = [(max(0, k * step - margin), w if k == patches - 1 else min(w, (k + 1) * step + margin))
               for k in range(patches)]
    # Each tunnel as a list of op writers (called in the chosen order) and its result.
    tunnels: list[list] = [[] for _ in windows]
    results: list = [None] * patches

    def slice_op(k, lo, hi):
        def write():
            b, e, s = (_int32_const(m, v, f"p{k}_{n}") for v, n in
                       (([0, 0, lo, 0], "begin"), ([1, h, hi, 3], "end"), ([1, 1, 1, 1], "strides")))
            y = m.tensor([1, h, hi - lo, 3], q=xq, name=f"patch{k}")
            m.op(_OP.STRIDED_SLICE, [x, b, e, s], [y], _OPT.StridedSliceOptions,
                 table_options("StridedSlice", BeginMask=0, EndMask=0, ShrinkAxisMask=0, EllipsisMask=0,
                               NewAxisMask=0))
            results[k] = (y, xq, (h, hi - lo), 3)
        return write

    def conv_op(k, d):
        def write():
            t, tq, (th, tw), c_in = results[k]
            stride = 2 if d == 0 else 1
            oh, ow = -(-th // stride), -(-tw // stride)
            scales = rng.uniform(0.002, 0.02, channels)
            f = m.tensor((channels, 3, 3, c_in), scales=scales, zero_points=[0] * channels,
                         data=rng.integers(-127, 128, (channels, 3, 3, c_in), dtype=np.int8))
            b = m.tensor([channels], "int32", scales=[tq.scale * s for s in scales], zero_points=[0] * channels,
                         data=rng.integers(-2000, 2000, channels).astype(np.int32))
            yq = Q(float(tq.scale * scales.mean() * 127 * np.sqrt(9 * c_in) / 8), int(rng.integers(-10, 10)))
            y = m.tensor([1, oh, ow, channels], q=yq, name=f"tunnel{k}_conv{d}")
            m.op(_OP.CONV_2D, [t, f, b], [y], _OPT.Conv2DOptions, conv_options((stride, stride), "SAME", (1, 1), "RELU"))
            results[k] = (y, yq, (oh, ow), channels)
        return write

    def pointwise(t, tq, hw, c_in, c_out, act, name):
        scales = rng.uniform(0.002, 0.02, c_out)
        f = m.tensor((c_out, 1, 1, c_in), scales=scales, zero_points=[0] * c_out,
                     data=rng.integers(-127, 128, (c_out, 1, 1, c_in), dtype=np.int8))
        b = m.tensor([c_out], "int32", scales=[tq.scale * s for s in scales], zero_points=[0] * c_out,
                     data=rng.integers(-2000, 2000, c_out).astype(np.int32))
        yq = Q(float(tq.scale * scales.mean() * 127 * np.sqrt(c_in) / 8), int(rng.integers(-10, 10)))
        y = m.tensor([1, hw[0], hw[1], c_out], q=yq, name=name)
        m.op(_OP.CONV_2D, [t, f, b], [y], _OPT.Conv2DOptions, conv_options((1, 1), "SAME", (1, 1), act))
        return y, yq

    def block_ops(k, j):
        """The four ops of block j of tunnel k, as writers; the block input is kept for the ADD."""
        state = {}

        def expand():
            t, tq, hw, c = results[k]
            state["input"] = results[k]
            y, yq = pointwise(t, tq, hw, c, c * expansion, "RELU6", f"tunnel{k}_b{j}_expand")
            results[k] = (y, yq, hw, c * expansion)

        def depthwise():
            t, tq, hw, c = results[k]
            scales = rng.uniform(0.002, 0.02, c)
            f = m.tensor((1, 3, 3, c), scales=scales, zero_points=[0] * c, axis=3,
                         data=rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8))
            b = m.tensor([c], "int32", scales=[tq.scale * s for s in scales], zero_points=[0] * c,
                         data=rng.integers(-2000, 2000, c).astype(np.int32))
            yq = Q(float(tq.scale * scales.mean() * 127 * 3 / 8), int(rng.integers(-10, 10)))
            y = m.tensor([1, hw[0], hw[1], c], q=yq, name=f"tunnel{k}_b{j}_dw")
            m.op(_OP.DEPTHWISE_CONV_2D, [t, f, b], [y], _OPT.DepthwiseConv2DOptions,
                 depthwise_options((1, 1), "SAME", (1, 1), 1, "RELU6"))
            results[k] = (y, yq, hw, c)

        def project():
            t, tq, hw, c = results[k]
            y, yq = pointwise(t, tq, hw, c, channels, "NONE", f"tunnel{k}_b{j}_project")
            results[k] = (y, yq, hw, channels)

        def add():
            t, tq, hw, c = results[k]
            x_in, x_q = state["input"][0], state["input"][1]
            yq = act_q()
            y = m.tensor([1, hw[0], hw[1], c], q=yq, name=f"tunnel{k}_b{j}_add")
            m.op(_OP.ADD, [x_in, t], [y], _OPT.AddOptions, add_options("NONE"))
            results[k] = (y, yq, hw, c)

        return [expand, depthwise, project, add]

    def mean_op(k):
        def write():
            t, tq, _, c = results[k]
            ax = _int32_const(m, [1, 2], f"tunnel{k}_axes")
            yq = Q(tq.scale, tq.zero_point)
            y = m.tensor([1, 1, 1, c], q=yq, name=f"tunnel{k}_pool")
            m.op(_OP.MEAN, [t, ax], [y], _OPT.ReducerOptions, reducer_options(True))
            results[k] = (y, yq, (1, 1), c)
        return write

    for k, (lo, hi) in enumerate(windows):
        tunnels[k] = [slice_op(k, lo, hi)] + [conv_op(k, d) for d in range(depth)] + \
            [w for j in range(blocks) for w in block_ops(k, j)] + [mean_op(k)]
    if interleave:
        for layer in range(len(tunnels[0])):
            for k in range(patches):
                tunnels[k][layer]()
    else:
        for k in range(patches):
            for write in tunnels[k]:
                write()
    total, tq = results[0][0], results[0][1]
    for k in range(1, patches):
        sq = act_q()
        s = m.tensor([1, 1, 1, channels], q=sq, name=f"sum{k}")
        m.op(_OP.ADD, [total, results[k][0]], [s], _OPT.AddOptions, add_options("NONE"))
        total, tq = s, sq
    classes = 10
    scales = rng.uniform(0.002, 0.02, classes)
    f = m.tensor((classes, channels), scales=scales, zero_points=[0] * classes,
                 data=rng.integers(-127, 128, (classes, channels), dtype=np.int8))
    b = m.tensor([classes], "int32", scales=[tq.scale * s for s in scales], zero_points=[0] * classes,
                 data=rng.integers(-2000, 2000, classes).astype(np.int32))
    y = m.tensor([1, classes], q=act_q(), name="output")
    m.op(_OP.FULLY_CONNECTED, [total, f, b], [y], _OPT.FullyConnectedOptions, fc_options("NONE", False))
    return m.build([x], [y])
