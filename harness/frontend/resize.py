"""Re-emit a `.tflite` at another square input resolution, with the SAME int8
weights and quantization parameters (no TensorFlow).

MobileNetV2 is fully convolutional up to its global pool, so only the
activation shapes change; they are propagated op by op exactly as TFLite
computes them. Used by `invoke resolution` to find the largest input each
schedule fits: RAM and bit-exactness depend on shapes, not on accuracy (the
quantization ranges stay those calibrated at the original resolution).
"""
from __future__ import annotations

import numpy as np
import tflite

from harness.frontend import quant
from harness.errors import FusebenchError
from harness.frontend.graph import Graph
from tests.helpers import tflite_builder as tb

_OP = tflite.BuiltinOperator
_OPT = tflite.BuiltinOptions

# Ops whose output has their input's shape and no options to carry over:
# (builtin options type, options writer) to re-emit them.
_SAME_SHAPE_OPS = {
    "QUANTIZE": (_OPT.QuantizeOptions, tb.table_options("Quantize")),
    "DEQUANTIZE": (_OPT.DequantizeOptions, tb.table_options("Dequantize")),
    "LOGISTIC": (0, None),
    "HARD_SWISH": (_OPT.HardSwishOptions, tb.table_options("HardSwish")),
}


def _out_hw(op, hw, kh, kw):
    o = op.options
    return (quant.output_size(o["padding"], hw[0], kh, o["stride_h"], o.get("dilation_h", 1)),
            quant.output_size(o["padding"], hw[1], kw, o["stride_w"], o.get("dilation_w", 1)))


def resized_shapes(graph: Graph, resolution: int) -> dict[int, tuple[int, ...]]:
    shapes = {t.index: tuple(t.shape) for t in graph.tensors}
    n, _, _, c = graph.input.shape
    shapes[graph.inputs[0]] = (n, resolution, resolution, c)
    for op in graph.ops:
        x = shapes[op.inputs[0]]
        y = op.outputs[0]
        old = graph.tensors[y].shape
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = graph.tensors[op.inputs[1]].shape
            h2, w2 = _out_hw(op, x[1:3], w[1], w[2])
            shapes[y] = (1, h2, w2, old[3])
        elif op.kind == "AVERAGE_POOL_2D":
            h2, w2 = _out_hw(op, x[1:3], op.options["filter_h"], op.options["filter_w"])
            shapes[y] = (1, h2, w2, old[3])
        elif op.kind == "PAD":
            p = op.options["paddings"]
            shapes[y] = tuple(d + a + b for d, (a, b) in zip(x, p))
        elif op.kind in ("ADD", "QUANTIZE"):
            shapes[y] = x
        elif op.kind == "MEAN":
            shapes[y] = old                   # (1, C) or (1, 1, 1, C): independent of H, W
        elif op.kind in _SAME_SHAPE_OPS:      # model edges and elementwise activations
            shapes[y] = x
        elif op.kind in ("FULLY_CONNECTED", "SOFTMAX", "RESHAPE"):
            if int(np.prod(x)) != int(np.prod(graph.tensors[op.inputs[0]].shape)):
                raise FusebenchError(f"op {op.index} {op.kind} sees a resolution-dependent input; "
                                     "the model is not fully convolutional up to its pool")
            shapes[y] = old
        else:
            raise FusebenchError(f"cannot resize through op {op.index} {op.kind}")
    return shapes


def resize_model(graph: Graph, resolution: int) -> bytes:
    """The model's bytes at `resolution` x `resolution`."""
    shapes = resized_shapes(graph, resolution)
    m = tb.ModelBuilder()
    for t in graph.tensors:
        q = t.quant
        m.tensor(shapes[t.index], t.dtype,
                 scales=None if q is None else q.scale, zero_points=None if q is None else q.zero_point,
                 axis=0 if q is None else q.axis, data=t.data, name=t.name)
    for op in graph.ops:
        o = op.options
        if op.kind == "CONV_2D":
            m.op(_OP.CONV_2D, op.inputs, op.outputs, _OPT.Conv2DOptions,
                 tb.conv_options((o["stride_h"], o["stride_w"]), o["padding"],
                                 (o["dilation_h"], o["dilation_w"]), o["activation"]))
        elif op.kind == "DEPTHWISE_CONV_2D":
            m.op(_OP.DEPTHWISE_CONV_2D, op.inputs, op.outputs, _OPT.DepthwiseConv2DOptions,
                 tb.depthwise_options((o["stride_h"], o["stride_w"]), o["padding"],
                                      (o["dilation_h"], o["dilation_w"]), o["depth_multiplier"],
                                      o["activation"]))
        elif op.kind == "ADD":
            m.op(_OP.ADD, op.inputs, op.outputs, _OPT.AddOptions, tb.add_options(o["activation"]))
        elif op.kind == "MEAN":
            m.op(_OP.MEAN, op.inputs, op.outputs, _OPT.ReducerOptions, tb.reducer_options(o["keep_dims"]))
        elif op.kind == "FULLY_CONNECTED":
            m.op(_OP.FULLY_CONNECTED, op.inputs, op.outputs, _OPT.FullyConnectedOptions,
                 tb.fc_options(o["activation"], o.get("keep_num_dims", False)))
        elif op.kind == "SOFTMAX":
            m.op(_OP.SOFTMAX, op.inputs, op.outputs, _OPT.SoftmaxOptions, tb.softmax_options(o["beta"]))
        elif op.kind == "AVERAGE_POOL_2D":
            m.op(_OP.AVERAGE_POOL_2D, op.inputs, op.outputs, _OPT.Pool2DOptions,
                 tb.pool_options((o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"]),
                                 o["padding"], o["activation"]))
        elif op.kind == "PAD":
            m.op(_OP.PAD, op.inputs, op.outputs)
        elif op.kind == "RESHAPE":
            m.op(_OP.RESHAPE, op.inputs, op.outputs, _OPT.ReshapeOptions, tb.reshape_options(o["new_shape"]))
        elif op.kind in _SAME_SHAPE_OPS:
            options_table, options = _SAME_SHAPE_OPS[op.kind]
            m.op(getattr(_OP, op.kind), op.inputs, op.outputs, options_table, options)
        else:
            raise FusebenchError(f"cannot re-emit op {op.index} {op.kind}")
    return m.build(graph.inputs, graph.outputs, description=f"{graph.name} resized to {resolution}")
