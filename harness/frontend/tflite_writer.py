"""Write `.tflite` files in Python, without TensorFlow.

Writes the flatbuffer with the `flatbuffers` package and the flatc-generated
builder functions of the `tflite` package: `ModelBuilder` (tensors, ops,
options) and one options writer per builtin options table. Used to re-emit a
model (harness.frontend.resize) and, in the tests, to make single-op models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import flatbuffers
import numpy as np
import tflite


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

def table_options(table: str, **fields) -> OptionsFn:
    """A builtin-options table, e.g. table_options("Softmax", Beta=1.0): calls
    tflite.<table>OptionsStart, <table>OptionsAdd<Field> per field, End."""
    def fn(b):
        getattr(tflite, f"{table}OptionsStart")(b)
        for field, value in fields.items():
            getattr(tflite, f"{table}OptionsAdd{field}")(b, value)
        return getattr(tflite, f"{table}OptionsEnd")(b)
    return fn


def conv_options(stride: tuple[int, int], padding: str, dilation: tuple[int, int], activation: str) -> OptionsFn:
    return table_options("Conv2D", Padding=_PADDING[padding], StrideH=stride[0], StrideW=stride[1],
                    DilationHFactor=dilation[0], DilationWFactor=dilation[1],
                    FusedActivationFunction=_ACTIVATION[activation])


def depthwise_options(stride: tuple[int, int], padding: str, dilation: tuple[int, int],
                      depth_multiplier: int, activation: str) -> OptionsFn:
    return table_options("DepthwiseConv2D", Padding=_PADDING[padding], StrideH=stride[0], StrideW=stride[1],
                    DilationHFactor=dilation[0], DilationWFactor=dilation[1], DepthMultiplier=depth_multiplier,
                    FusedActivationFunction=_ACTIVATION[activation])


def pool_options(filter_hw: tuple[int, int], stride: tuple[int, int], padding: str, activation: str) -> OptionsFn:
    return table_options("Pool2D", Padding=_PADDING[padding], StrideH=stride[0], StrideW=stride[1],
                    FilterHeight=filter_hw[0], FilterWidth=filter_hw[1],
                    FusedActivationFunction=_ACTIVATION[activation])


def add_options(activation: str) -> OptionsFn:
    return table_options("Add", FusedActivationFunction=_ACTIVATION[activation])


def fc_options(activation: str, keep_num_dims: bool) -> OptionsFn:
    return table_options("FullyConnected", FusedActivationFunction=_ACTIVATION[activation], KeepNumDims=keep_num_dims)


def softmax_options(beta: float) -> OptionsFn:
    return table_options("Softmax", Beta=beta)


def reducer_options(keep_dims: bool) -> OptionsFn:
    return table_options("Reducer", KeepDims=keep_dims)


def reshape_options(new_shape: Sequence[int]) -> OptionsFn:
    def fn(b):
        vec = b.CreateNumpyVector(np.asarray(new_shape, dtype=np.int32))   # before the table starts
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, vec)
        return tflite.ReshapeOptionsEnd(b)
    return fn
