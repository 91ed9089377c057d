"""Re-emit a `.tflite` at another square input resolution, with the SAME int8
weights and quantization parameters (no TensorFlow).

The backbones are fully convolutional up to their global pool, so only the
activation shapes change; they are propagated op by op exactly as TFLite
computes them (a RESHAPE that keeps [1, H, W] in front, as ShuffleNet's
channel shuffle, follows the new H and W; one that flattens must see the
same size). Used by `invoke resolution` to find the largest input each
schedule fits: RAM and bit-exactness depend on shapes, not on accuracy (the
quantization ranges stay those calibrated at the original resolution).
"""
from __future__ import annotations

import numpy as np
import tflite

from harness.frontend import quant
from harness.errors import FusebenchError
from harness.frontend.graph import Graph
from harness.frontend import tflite_writer as tb

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


def _resized_reshape(x_old, x_new, y_old) -> tuple[int, ...]:
    """A RESHAPE's output at the new resolution: [1, H, W, ...] keeps the
    input's new H and W; any other reshape must see the same size."""
    if len(x_old) >= 3 and len(y_old) >= 3 and tuple(y_old[:3]) == tuple(x_old[:3]):
        return tuple(x_new[:3]) + tuple(y_old[3:])
    if int(np.prod(x_new)) != int(np.prod(x_old)):
        raise FusebenchError("a RESHAPE sees a resolution-dependent input; the model is not fully "
                             "convolutional up to its pool")
    return tuple(y_old)


def resized_shapes(graph: Graph, resolution: int) -> dict[int, tuple[int, ...]]:
    from harness.backend.lowering import strided_slice_indices
    shapes = {t.index: tuple(t.shape) for t in graph.tensors}
    n, _, _, c = graph.input.shape
    shapes[graph.inputs[0]] = (n, resolution, resolution, c)
    for op in graph.ops:
        x = shapes[op.inputs[0]]
        y = op.outputs[0]
        old = graph.tensors[y].shape
        o = op.options
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = graph.tensors[op.inputs[1]].shape
            h2, w2 = _out_hw(op, x[1:3], w[1], w[2])
            shapes[y] = (1, h2, w2, old[3])
        elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            h2, w2 = _out_hw(op, x[1:3], o["filter_h"], o["filter_w"])
            shapes[y] = (1, h2, w2, old[3])
        elif op.kind == "PAD":
            p = o["paddings"]
            shapes[y] = tuple(d + a + b for d, (a, b) in zip(x, p))
        elif op.kind in ("ADD", "MUL"):
            shapes[y] = tuple(int(d) for d in np.broadcast_shapes(*(shapes[t] for t in op.inputs)))
        elif op.kind == "CONCATENATION":
            axis = int(o.get("axis", 0)) % len(x)
            shapes[y] = tuple(sum(shapes[t][axis] for t in op.inputs) if d == axis else x[d]
                              for d in range(len(x)))
        elif op.kind == "TRANSPOSE":
            perm = [int(a) for a in graph.tensors[op.inputs[1]].data.reshape(-1)]
            shapes[y] = tuple(x[a] for a in perm)
        elif op.kind == "STRIDED_SLICE":
            begin, end, strides = (graph.tensors[t].data.reshape(-1) for t in op.inputs[1:4])
            old_x = graph.tensors[op.inputs[0]].shape
            masks = [int(o.get(k, 0)) for k in ("begin_mask", "end_mask", "shrink_axis_mask")]
            before = strided_slice_indices(old_x, begin, end, strides, *masks)
            after = strided_slice_indices(x, begin, end, strides, *masks)
            for d in range(len(x)):         # an axis that changes size must be taken whole
                if x[d] != old_x[d] and (before[0][d], before[1][d], before[2][d]) != (0, old_x[d], 1):
                    raise FusebenchError(f"op {op.index} STRIDED_SLICE cuts a resolution-dependent axis")
            shapes[y] = tuple(after[3])
        elif op.kind == "MEAN":
            shapes[y] = old                   # (1, C) or (1, 1, 1, C): independent of H, W
        elif op.kind in _SAME_SHAPE_OPS:      # model edges and elementwise activations
            shapes[y] = x
        elif op.kind == "RESHAPE":
            shapes[y] = _resized_reshape(graph.tensors[op.inputs[0]].shape, x, old)
        elif op.kind in ("FULLY_CONNECTED", "SOFTMAX"):
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
    data = {t.index: t.data for t in graph.tensors}
    for op in graph.ops:                  # a RESHAPE's shape operand follows its new output
        if op.kind == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] >= 0:
            data[op.inputs[1]] = np.asarray(shapes[op.outputs[0]], dtype=np.int32)
    m = tb.ModelBuilder()
    for t in graph.tensors:
        q = t.quant
        m.tensor(shapes[t.index], t.dtype,
                 scales=None if q is None else q.scale, zero_points=None if q is None else q.zero_point,
                 axis=0 if q is None else q.axis, data=data[t.index], name=t.name)
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
            m.op(_OP.RESHAPE, op.inputs, op.outputs, _OPT.ReshapeOptions,
                 tb.reshape_options(shapes[op.outputs[0]]))
        elif op.kind == "MAX_POOL_2D":
            m.op(_OP.MAX_POOL_2D, op.inputs, op.outputs, _OPT.Pool2DOptions,
                 tb.pool_options((o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"]),
                                 o["padding"], o["activation"]))
        elif op.kind == "MUL":
            m.op(_OP.MUL, op.inputs, op.outputs, _OPT.MulOptions,
                 tb.table_options("Mul", FusedActivationFunction=tb._ACTIVATION[o["activation"]]))
        elif op.kind == "CONCATENATION":
            m.op(_OP.CONCATENATION, op.inputs, op.outputs, _OPT.ConcatenationOptions,
                 tb.table_options("Concatenation", Axis=int(o["axis"]),
                                  FusedActivationFunction=tb._ACTIVATION[o["activation"]]))
        elif op.kind == "TRANSPOSE":
            m.op(_OP.TRANSPOSE, op.inputs, op.outputs, _OPT.TransposeOptions, tb.table_options("Transpose"))
        elif op.kind == "STRIDED_SLICE":
            m.op(_OP.STRIDED_SLICE, op.inputs, op.outputs, _OPT.StridedSliceOptions,
                 tb.table_options("StridedSlice", BeginMask=int(o["begin_mask"]), EndMask=int(o["end_mask"]),
                                  ShrinkAxisMask=int(o["shrink_axis_mask"]),
                                  EllipsisMask=int(o["ellipsis_mask"]), NewAxisMask=int(o["new_axis_mask"]),
                                  Offset=bool(o["offset"])))
        elif op.kind in _SAME_SHAPE_OPS:
            options_table, options = _SAME_SHAPE_OPS[op.kind]
            m.op(getattr(_OP, op.kind), op.inputs, op.outputs, options_table, options)
        else:
            raise FusebenchError(f"cannot re-emit op {op.index} {op.kind}")
    return m.build(graph.inputs, graph.outputs, description=f"{graph.name} resized to {resolution}")
