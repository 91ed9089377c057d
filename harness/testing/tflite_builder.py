"""Build small int8 `.tflite` models in Python, without TensorFlow.

Writes the flatbuffer with the `flatbuffers` package and the flatc-generated
builder functions of the `tflite` package. `ModelBuilder` is the generic part
(tensors, ops, options); the functions below make the single-op models the
kernel tests compare against LiteRT: each returns the model bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import flatbuffers
import numpy as np
import tflite

from .. import quant

_TYPES = {"int8": tflite.TensorType.INT8, "int32": tflite.TensorType.INT32,
          "float32": tflite.TensorType.FLOAT32, "int64": tflite.TensorType.INT64,
          "uint8": tflite.TensorType.UINT8}
_PADDING = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}
_ACTIVATION = {"NONE": tflite.ActivationFunctionType.NONE, "RELU": tflite.ActivationFunctionType.RELU,
               "RELU6": tflite.ActivationFunctionType.RELU6,
               "RELU_N1_TO_1": tflite.ActivationFunctionType.RELU_N1_TO_1}

OptionsFn = Callable[[flatbuffers.Builder], int]


@dataclass(frozen=True)
class Q:
    """Per-tensor quantization of an activation."""
    scale: float
    zero_point: int


@dataclass
class _TensorSpec:
    shape: tuple[int, ...]
    dtype: str
    name: str
    scales: Optional[np.ndarray]
    zero_points: Optional[np.ndarray]
    axis: int
    data: Optional[bytes]
    shape_signature: Optional[tuple[int, ...]] = None


@dataclass
class _OpSpec:
    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: Optional[OptionsFn]


class ModelBuilder:
    """Collects tensors and ops, then writes one subgraph as a TFL3 flatbuffer."""

    def __init__(self) -> None:
        self.tensors: list[_TensorSpec] = []
        self.ops: list[_OpSpec] = []

    def tensor(self, shape: Sequence[int], dtype: str = "int8", q: Optional[Q] = None, *,
               scales: Optional[Sequence[float]] = None, zero_points: Optional[Sequence[int]] = None,
               axis: int = 0, data: Optional[np.ndarray] = None, name: Optional[str] = None,
               shape_signature: Optional[Sequence[int]] = None) -> int:
        """Add a tensor; `q` for per-tensor, `scales`/`zero_points` for per-axis
        quantization; `data` makes it a constant. Returns its index."""
        if q is not None:
            scales, zero_points = [q.scale], [q.zero_point]
        sc = np.asarray(scales, dtype=np.float32) if scales is not None else None
        zp = (np.asarray(zero_points, dtype=np.int64) if zero_points is not None
              else (np.zeros(sc.size, dtype=np.int64) if sc is not None else None))
        raw = None
        if data is not None:
            arr = np.asarray(data, dtype=dtype)
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise ValueError(f"data of {arr.size} values for shape {list(shape)}")
            raw = arr.tobytes()
        self.tensors.append(_TensorSpec(tuple(int(d) for d in shape), dtype,
                                        name or f"t{len(self.tensors)}", sc, zp, axis, raw,
                                        tuple(shape_signature) if shape_signature else None))
        return len(self.tensors) - 1

    def op(self, code: int, inputs: Sequence[int], outputs: Sequence[int],
           options_type: int = 0, options: Optional[OptionsFn] = None) -> None:
        self.ops.append(_OpSpec(int(code), list(inputs), list(outputs), options_type, options))

    def build(self, inputs: Sequence[int], outputs: Sequence[int], description: str = "fusebench test",
              subgraph_copies: int = 1) -> bytes:
        """The model bytes; `subgraph_copies` > 1 repeats the subgraph (to test
        the importer's refusal of multi-subgraph models)."""
        b = flatbuffers.Builder(1024)
        # buffers: 0 is the conventional empty buffer, then one per constant tensor
        buffer_offsets = [self._buffer(b, None)]
        tensor_buffer = []
        for t in self.tensors:
            if t.data is None:
                tensor_buffer.append(0)
            else:
                tensor_buffer.append(len(buffer_offsets))
                buffer_offsets.append(self._buffer(b, t.data))
        tensor_offsets = [self._tensor(b, t, buf) for t, buf in zip(self.tensors, tensor_buffer)]
        codes = sorted({o.code for o in self.ops})
        op_offsets = [self._operator(b, o, codes.index(o.code)) for o in self.ops]
        code_offsets = []
        for code in codes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offsets.append(tflite.OperatorCodeEnd(b))

        name = b.CreateString("main")
        tensors_vec = self._offset_vector(b, tflite.SubGraphStartTensorsVector, tensor_offsets)
        ops_vec = self._offset_vector(b, tflite.SubGraphStartOperatorsVector, op_offsets)
        in_vec = b.CreateNumpyVector(np.asarray(inputs, dtype=np.int32))
        out_vec = b.CreateNumpyVector(np.asarray(outputs, dtype=np.int32))
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, in_vec)
        tflite.SubGraphAddOutputs(b, out_vec)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, name)
        subgraph = tflite.SubGraphEnd(b)

        subgraphs_vec = self._offset_vector(b, tflite.ModelStartSubgraphsVector,
                                            [subgraph] * subgraph_copies)
        codes_vec = self._offset_vector(b, tflite.ModelStartOperatorCodesVector, code_offsets)
        buffers_vec = self._offset_vector(b, tflite.ModelStartBuffersVector, buffer_offsets)
        desc = b.CreateString(description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buffers_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    # -- flatbuffer pieces ---------------------------------------------------------------
    @staticmethod
    def _offset_vector(b: flatbuffers.Builder, start: Callable, offsets: list[int]) -> int:
        start(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    @staticmethod
    def _buffer(b: flatbuffers.Builder, data: Optional[bytes]) -> int:
        vec = None
        if data is not None:
            b.StartVector(1, len(data), 16)      # 16-byte aligned like the converter
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        return tflite.BufferEnd(b)

    @staticmethod
    def _tensor(b: flatbuffers.Builder, t: _TensorSpec, buffer_index: int) -> int:
        quant_off = None
        if t.scales is not None:
            scale_vec = b.CreateNumpyVector(t.scales.astype(np.float32))
            zp_vec = b.CreateNumpyVector(t.zero_points.astype(np.int64))
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale_vec)
            tflite.QuantizationParametersAddZeroPoint(b, zp_vec)
            tflite.QuantizationParametersAddQuantizedDimension(b, t.axis)
            quant_off = tflite.QuantizationParametersEnd(b)
        shape_vec = b.CreateNumpyVector(np.asarray(t.shape, dtype=np.int32))
        signature_vec = (b.CreateNumpyVector(np.asarray(t.shape_signature, dtype=np.int32))
                         if t.shape_signature else None)
        name = b.CreateString(t.name)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_vec)
        tflite.TensorAddType(b, _TYPES[t.dtype])
        tflite.TensorAddBuffer(b, buffer_index)
        tflite.TensorAddName(b, name)
        if quant_off is not None:
            tflite.TensorAddQuantization(b, quant_off)
        if signature_vec is not None:
            tflite.TensorAddShapeSignature(b, signature_vec)
        return tflite.TensorEnd(b)

    @staticmethod
    def _operator(b: flatbuffers.Builder, o: _OpSpec, opcode_index: int) -> int:
        options = o.options(b) if o.options is not None else None
        in_vec = b.CreateNumpyVector(np.asarray(o.inputs, dtype=np.int32))
        out_vec = b.CreateNumpyVector(np.asarray(o.outputs, dtype=np.int32))
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode_index)
        tflite.OperatorAddInputs(b, in_vec)
        tflite.OperatorAddOutputs(b, out_vec)
        if options is not None:
            tflite.OperatorAddBuiltinOptionsType(b, o.options_type)
            tflite.OperatorAddBuiltinOptions(b, options)
        return tflite.OperatorEnd(b)


# -- options ----------------------------------------------------------------------------------

def _options(table: str, **fields) -> OptionsFn:
    """A builtin-options table, e.g. _options("Softmax", Beta=1.0): calls
    tflite.<table>OptionsStart, <table>OptionsAdd<Field> per field, End."""
    def fn(b):
        getattr(tflite, f"{table}OptionsStart")(b)
        for field, value in fields.items():
            getattr(tflite, f"{table}OptionsAdd{field}")(b, value)
        return getattr(tflite, f"{table}OptionsEnd")(b)
    return fn


def conv_options(stride: tuple[int, int], padding: str, dilation: tuple[int, int], activation: str) -> OptionsFn:
    return _options("Conv2D", Padding=_PADDING[padding], StrideH=stride[0], StrideW=stride[1],
                    DilationHFactor=dilation[0], DilationWFactor=dilation[1],
                    FusedActivationFunction=_ACTIVATION[activation])


def depthwise_options(stride: tuple[int, int], padding: str, dilation: tuple[int, int],
                      depth_multiplier: int, activation: str) -> OptionsFn:
    return _options("DepthwiseConv2D", Padding=_PADDING[padding], StrideH=stride[0], StrideW=stride[1],
                    DilationHFactor=dilation[0], DilationWFactor=dilation[1], DepthMultiplier=depth_multiplier,
                    FusedActivationFunction=_ACTIVATION[activation])


def pool_options(filter_hw: tuple[int, int], stride: tuple[int, int], padding: str, activation: str) -> OptionsFn:
    return _options("Pool2D", Padding=_PADDING[padding], StrideH=stride[0], StrideW=stride[1],
                    FilterHeight=filter_hw[0], FilterWidth=filter_hw[1],
                    FusedActivationFunction=_ACTIVATION[activation])


def add_options(activation: str) -> OptionsFn:
    return _options("Add", FusedActivationFunction=_ACTIVATION[activation])


def fc_options(activation: str, keep_num_dims: bool) -> OptionsFn:
    return _options("FullyConnected", FusedActivationFunction=_ACTIVATION[activation], KeepNumDims=keep_num_dims)


def softmax_options(beta: float) -> OptionsFn:
    return _options("Softmax", Beta=beta)


def reducer_options(keep_dims: bool) -> OptionsFn:
    return _options("Reducer", KeepDims=keep_dims)


def reshape_options(new_shape: Sequence[int]) -> OptionsFn:
    def fn(b):
        vec = b.CreateNumpyVector(np.asarray(new_shape, dtype=np.int32))   # before the table starts
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, vec)
        return tflite.ReshapeOptionsEnd(b)
    return fn


# -- single-op models -----------------------------------------------------------------------

_OP = tflite.BuiltinOperator
_OPT = tflite.BuiltinOptions


def conv2d_model(input_shape: Sequence[int], filters: np.ndarray, filter_scales: Sequence[float],
                 bias: Optional[np.ndarray], in_q: Q, out_q: Q, stride=(1, 1), padding="SAME",
                 dilation=(1, 1), activation="NONE") -> bytes:
    """CONV_2D with OHWI int8 filters (per-channel when len(filter_scales) > 1)."""
    n, h, w, _ = input_shape
    out_c, kh, kw, _ = filters.shape
    oh = quant.output_size(padding, h, kh, stride[0], dilation[0])
    ow = quant.output_size(padding, w, kw, stride[1], dilation[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    f = m.tensor(filters.shape, scales=filter_scales, zero_points=[0] * len(filter_scales),
                 data=filters, name="filter")
    inputs = [x, f]
    if bias is not None:
        inputs.append(m.tensor([out_c], "int32", scales=[in_q.scale * s for s in filter_scales],
                               zero_points=[0] * len(filter_scales), data=bias, name="bias"))
    y = m.tensor([n, oh, ow, out_c], q=out_q, name="output")
    m.op(_OP.CONV_2D, inputs, [y], _OPT.Conv2DOptions, conv_options(stride, padding, dilation, activation))
    return m.build([x], [y])


def depthwise_conv2d_model(input_shape: Sequence[int], filters: np.ndarray, filter_scales: Sequence[float],
                           bias: Optional[np.ndarray], in_q: Q, out_q: Q, stride=(1, 1), padding="SAME",
                           dilation=(1, 1), activation="NONE") -> bytes:
    """DEPTHWISE_CONV_2D with 1 x kh x kw x C*M filters (per-channel along axis 3)."""
    n, h, w, c = input_shape
    _, kh, kw, out_c = filters.shape
    oh = quant.output_size(padding, h, kh, stride[0], dilation[0])
    ow = quant.output_size(padding, w, kw, stride[1], dilation[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, q=in_q, name="input")
    f = m.tensor(filters.shape, scales=filter_scales, zero_points=[0] * len(filter_scales), axis=3,
                 data=filters, name="filter")
    inputs = [x, f]
    if bias is not None:
        inputs.append(m.tensor([out_c], "int32", scales=[in_q.scale * s for s in filter_scales],
                               zero_points=[0] * len(filter_scales), data=bias, name="bias"))
    y = m.tensor([n, oh, ow, out_c], q=out_q, name="output")
    m.op(_OP.DEPTHWISE_CONV_2D, inputs, [y], _OPT.DepthwiseConv2DOptions,
         depthwise_options(stride, padding, dilation, out_c // c, activation))
    return m.build([x], [y])


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
    m.op(_OP.PAD, [x, p], [y], _OPT.PadOptions, _options("Pad"))
    return m.build([x], [y])


def quantize_model(shape: Sequence[int], in_q: Q, out_q: Q, input_dtype: str = "int8") -> bytes:
    """QUANTIZE int8 -> int8 (requantize), or float32 -> int8 with input_dtype='float32'."""
    m = ModelBuilder()
    x = m.tensor(shape, input_dtype, q=in_q if input_dtype == "int8" else None, name="input")
    y = m.tensor(shape, q=out_q, name="output")
    m.op(_OP.QUANTIZE, [x], [y], _OPT.QuantizeOptions,
         _options("Quantize"))
    return m.build([x], [y])


def dequantize_model(shape: Sequence[int], in_q: Q) -> bytes:
    m = ModelBuilder()
    x = m.tensor(shape, q=in_q, name="input")
    y = m.tensor(shape, "float32", name="output")
    m.op(_OP.DEQUANTIZE, [x], [y], _OPT.DequantizeOptions,
         _options("Dequantize"))
    return m.build([x], [y])


def reshape_model(input_shape: Sequence[int], output_shape: Sequence[int], q: Q) -> bytes:
    m = ModelBuilder()
    x = m.tensor(input_shape, q=q, name="input")
    s = m.tensor([len(output_shape)], "int32", data=np.asarray(output_shape, dtype=np.int32), name="shape")
    y = m.tensor(output_shape, q=q, name="output")
    m.op(_OP.RESHAPE, [x, s], [y], _OPT.ReshapeOptions, reshape_options(output_shape))
    return m.build([x], [y])


def inverted_residual_chain_model(rng: np.random.Generator, input_hw: tuple[int, int], in_channels: int,
                                  blocks: Sequence[tuple[int, int, int]], first_conv: Optional[int] = None,
                                  head: Optional[tuple[int, int]] = None) -> bytes:
    """A MobileNetV2-like chain: an optional 3x3 stride-2 first convolution with
    `first_conv` output channels, then inverted residual blocks given as
    (expansion ratio, out channels, depthwise stride); a block with stride 1 and
    equal in/out channels gets the residual ADD. Random int8 weights, per-channel
    scales, random zero points: for fused-stage tests against LiteRT.
    `head` = (channels, classes) adds MobileNetV2's tail: a 1x1 convolution to
    `channels`, a global average (MEAN over H, W) and a fully connected layer."""
    m = ModelBuilder()
    h, w = input_hw

    def act_q() -> Q:
        return Q(float(rng.uniform(0.02, 0.08)), int(rng.integers(-20, 20)))

    def conv(x: int, xq: Q, c_in: int, c_out: int, k: int, stride: int, depthwise: bool,
             relu6: bool, hw: tuple[int, int]) -> tuple[int, Q, tuple[int, int]]:
        oh, ow = ((hw[0] + stride - 1) // stride, (hw[1] + stride - 1) // stride)
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
        act = "RELU6" if relu6 else "NONE"
        if depthwise:
            m.op(_OP.DEPTHWISE_CONV_2D, [x, f, b], [y], _OPT.DepthwiseConv2DOptions,
                 depthwise_options((stride, stride), "SAME", (1, 1), 1, act))
        else:
            m.op(_OP.CONV_2D, [x, f, b], [y], _OPT.Conv2DOptions,
                 conv_options((stride, stride), "SAME", (1, 1), act))
        return y, yq, (oh, ow)

    xq = act_q()
    x = m.tensor([1, h, w, in_channels], q=xq, name="input")
    inp = x
    c = in_channels
    hw = (h, w)
    if first_conv:
        x, xq, hw = conv(x, xq, c, first_conv, 3, 2, False, True, hw)
        c = first_conv
    for expansion, c_out, stride in blocks:
        block_in, block_q = x, xq
        mid = c * expansion
        if expansion != 1:
            x, xq, _ = conv(x, xq, c, mid, 1, 1, False, True, hw)
        x, xq, hw = conv(x, xq, mid, mid, 3, stride, True, True, hw)
        x, xq, _ = conv(x, xq, mid, c_out, 1, 1, False, False, hw)
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
    return m.build([inp], [x])
