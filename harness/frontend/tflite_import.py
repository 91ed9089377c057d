"""`.tflite` flatbuffer -> graph IR (harness.frontend.graph).

Reads the file with the flatc-generated `tflite` package and checks, with a
clear error for each, everything later stages rely on: one subgraph, static
shapes, int8 activations, and only the ops the runtime implements.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import tflite

from harness.errors import FusebenchError
from harness.frontend.graph import Block, Graph, Op, Quant, Tensor


# Ops folded into constants at import when their result is known then.
FOLDABLE_OPS = {"SHAPE", "PACK", "STRIDED_SLICE", "CONCATENATION", "RESHAPE", "CAST"}

# The model's edges: (input dtypes, output dtypes) the runtime's QUANTIZE and
# DEQUANTIZE kernels take; every other op is int8 in and out.
EDGE_DTYPES = {"QUANTIZE": (("float32", "uint8", "int8"), ("int8",)), "DEQUANTIZE": (("int8",), ("float32",))}

_DTYPES = {
    tflite.TensorType.FLOAT32: "float32", tflite.TensorType.INT32: "int32",
    tflite.TensorType.UINT8: "uint8", tflite.TensorType.INT64: "int64",
    tflite.TensorType.INT16: "int16", tflite.TensorType.INT8: "int8",
    tflite.TensorType.BOOL: "bool", tflite.TensorType.FLOAT16: "float16",
}
_PADDING = {tflite.Padding.SAME: "SAME", tflite.Padding.VALID: "VALID"}
_ACTIVATION = {
    tflite.ActivationFunctionType.NONE: "NONE", tflite.ActivationFunctionType.RELU: "RELU",
    tflite.ActivationFunctionType.RELU_N1_TO_1: "RELU_N1_TO_1",
    tflite.ActivationFunctionType.RELU6: "RELU6", tflite.ActivationFunctionType.TANH: "TANH",
    tflite.ActivationFunctionType.SIGN_BIT: "SIGN_BIT",
}
_OPCODE_NAMES = tflite.BUILTIN_OPCODE2NAME


# Ops the importer rewrites into supported ones: SPLIT / SPLIT_V along one axis
# become one STRIDED_SLICE per output (ShuffleNet's channel split).
REWRITTEN_OPS = {"SPLIT", "SPLIT_V"}


def supported_ops() -> set[str]:
    """The ops a model may hold: those the lowering has a kernel call for, and
    those the importer rewrites into them."""
    from harness.backend.lowering import LOWERINGS
    return set(LOWERINGS) | REWRITTEN_OPS


def load_model(path: str | Path) -> Graph:
    """Import a `.tflite` file; any problem is a FusebenchError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FusebenchError(f"{path}: cannot read model file ({exc.strerror})") from None
    graph = load_model_bytes(data, str(path))
    graph.source = str(path.resolve())
    return graph


def load_model_bytes(data: bytes, name: str = "<model>") -> Graph:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise FusebenchError(f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        return _Importer(data, name).run()
    except FusebenchError:
        raise
    except Exception as exc:  # flatbuffer offsets pointing outside a truncated/corrupted file
        raise FusebenchError(
            f"{name}: truncated or corrupted TFLite file ({type(exc).__name__}: {exc})") from None


class _Importer:
    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name
        self.model = tflite.Model.GetRootAsModel(data, 0)

    def fail(self, msg: str) -> FusebenchError:
        return FusebenchError(f"{self.name}: {msg}")

    def run(self) -> Graph:
        n_sub = self.model.SubgraphsLength()
        if n_sub != 1:
            raise self.fail(f"has {n_sub} subgraphs; fusebench supports models with exactly one")
        sg = self.model.Subgraphs(0)
        tensors = [self.tensor(sg.Tensors(i), i) for i in range(sg.TensorsLength())]
        ops = []
        for i in range(sg.OperatorsLength()):
            op = self.op(sg.Operators(i), i, tensors)
            for one in (op if isinstance(op, list) else [] if op is None else [op]):   # None: folded
                one.index = len(ops)
                ops.append(one)
        inputs = [int(i) for i in sg.InputsAsNumpy()]
        outputs = [int(i) for i in sg.OutputsAsNumpy()]
        if len(inputs) != 1 or not outputs:
            raise self.fail(f"has {len(inputs)} inputs and {len(outputs)} outputs; "
                            "fusebench supports one input and one or more outputs")
        self.check_outputs(tensors, inputs, outputs)
        graph = Graph(name=Path(self.name).stem, tensors=tensors, ops=ops,
                      inputs=inputs, outputs=outputs, digest=hashlib.sha1(self.data).hexdigest())
        self.check_int8(graph)
        graph.blocks = find_inverted_residual_blocks(graph)
        return graph

    # -- tensors ---------------------------------------------------------------
    def tensor(self, t: "tflite.Tensor", index: int) -> Tensor:
        name = (t.Name() or b"").decode("utf-8", "replace")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if not t.ShapeIsNone() else ()
        if not t.ShapeSignatureIsNone():
            signature = [int(d) for d in t.ShapeSignatureAsNumpy()]
            # A dynamic batch (-1 in dim 0) is what Keras exports; it runs as batch 1.
            if any(d < 0 for d in signature[1:]):
                raise self.fail(f"tensor {index} '{name}' has a dynamic shape {signature}; "
                                "fusebench needs static shapes")
        if any(d < 0 for d in shape):
            raise self.fail(f"tensor {index} '{name}' has a dynamic shape {list(shape)}")
        ttype = t.Type()
        if ttype not in _DTYPES:
            raise self.fail(f"tensor {index} '{name}' has unsupported type {ttype}")
        dtype = _DTYPES[ttype]
        quant = None
        q = t.Quantization()
        if q is not None and not q.ScaleIsNone() and q.ScaleLength() > 0:
            zp = q.ZeroPointAsNumpy() if not q.ZeroPointIsNone() else np.zeros(q.ScaleLength())
            quant = Quant(scale=np.asarray(q.ScaleAsNumpy(), dtype=np.float32),
                          zero_point=np.asarray(zp, dtype=np.int64),
                          axis=int(q.QuantizedDimension()))
        data = self.buffer(t.Buffer(), dtype, shape, index, name)
        return Tensor(index=index, name=name, shape=shape, dtype=dtype, quant=quant, data=data)

    def buffer(self, buffer_index: int, dtype: str, shape: tuple, index: int,
               name: str) -> Optional[np.ndarray]:
        if buffer_index >= self.model.BuffersLength():
            raise self.fail(f"tensor {index} '{name}' refers to missing buffer {buffer_index}")
        buf = self.model.Buffers(buffer_index)
        if buf is None:
            return None
        if buf.Offset() > 1:   # large models keep buffers after the flatbuffer
            start, size = buf.Offset(), buf.Size()
            if start + size > len(self.data):
                raise self.fail(f"buffer {buffer_index} lies beyond the end of the file (truncated)")
            raw = np.frombuffer(self.data, dtype=np.uint8, count=size, offset=start)
        elif buf.DataLength() > 0:
            raw = buf.DataAsNumpy()
        else:
            return None
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if raw.size != expected:
            raise self.fail(f"tensor {index} '{name}': buffer holds {raw.size} bytes, "
                            f"shape {list(shape)} of {dtype} needs {expected}")
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape).copy()

    # -- operators -------------------------------------------------------------
    def op(self, o: "tflite.Operator", index: int, tensors: list[Tensor]) -> Optional[Op] | list[Op]:
        opcode = self.model.OperatorCodes(o.OpcodeIndex())
        code = max(int(opcode.BuiltinCode()), int(opcode.DeprecatedBuiltinCode()))
        kind = _OPCODE_NAMES.get(code, f"builtin code {code}")
        if code == tflite.BuiltinOperator.CUSTOM:
            kind = f"CUSTOM ({(opcode.CustomCode() or b'?').decode()})"
        inputs = [int(i) for i in o.InputsAsNumpy()] if not o.InputsIsNone() else []
        outputs = [int(i) for i in o.OutputsAsNumpy()]
        for t in inputs + outputs:
            if t >= len(tensors):
                raise self.fail(f"op {index} ({kind}) refers to missing tensor {t}")
        if kind in FOLDABLE_OPS and len(outputs) == 1 and self.fold(o, kind, index, inputs, outputs[0], tensors):
            return None
        supported = supported_ops()
        if kind in REWRITTEN_OPS:
            return self.split(o, kind, index, inputs, outputs, tensors)
        if kind not in supported:
            raise self.fail(f"op {index} is {kind}, which fusebench does not support "
                            f"(supported: {', '.join(sorted(supported))})")
        return Op(index=index, kind=kind, inputs=inputs, outputs=outputs, file_index=index,
                  options=self.options(o, kind, index, inputs, tensors))

    # -- SPLIT / SPLIT_V as slices -----------------------------------------------
    def split(self, o, kind: str, index: int, inputs: list[int], outputs: list[int],
              tensors: list[Tensor]) -> list[Op]:
        """One STRIDED_SLICE per output, its begin/end/strides new int32
        constants appended to `tensors` (the slices read the same input)."""
        x_index, axis_index = (inputs[1], inputs[0]) if kind == "SPLIT" else (inputs[0], inputs[2])
        axis_t = tensors[axis_index]
        if axis_t.data is None or axis_t.data.size != 1:
            raise self.fail(f"op {index} ({kind}) has a non-constant axis")
        x = tensors[x_index]
        rank = len(x.shape)
        axis = int(axis_t.data.reshape(-1)[0])
        if not -rank <= axis < rank:
            raise self.fail(f"op {index} ({kind}) splits axis {axis} of a rank-{rank} tensor")
        axis %= rank
        sizes = [int(tensors[t].shape[axis]) for t in outputs]
        if sum(sizes) != x.shape[axis]:
            raise self.fail(f"op {index} ({kind}): outputs along axis {axis} ({sizes}) do not add up to "
                            f"{x.shape[axis]}")
        ops, start = [], 0
        for k, (t, size) in enumerate(zip(outputs, sizes)):
            begin = [start if d == axis else 0 for d in range(rank)]
            end = [start + size if d == axis else int(x.shape[d]) for d in range(rank)]
            consts = []
            for what, values in (("begin", begin), ("end", end), ("strides", [1] * rank)):
                tensors.append(Tensor(index=len(tensors), name=f"{kind.lower()}{index}_{k}_{what}", shape=(rank,),
                                      dtype="int32", data=np.asarray(values, dtype=np.int32)))
                consts.append(len(tensors) - 1)
            ops.append(Op(index=index, kind="STRIDED_SLICE", inputs=[x_index] + consts, outputs=[t],
                          file_index=index, options=dict(begin_mask=0, end_mask=0, shrink_axis_mask=0,
                                                         ellipsis_mask=0, new_axis_mask=0, offset=False)))
            start += size
        return ops

    # -- constant shape arithmetic ---------------------------------------------
    def fold(self, o, kind: str, index: int, inputs: list[int], output: int, tensors: list[Tensor]) -> bool:
        """Evaluate an op whose result is known at import (the shape arithmetic
        converters emit around RESHAPE: SHAPE of a static tensor, and PACK,
        STRIDED_SLICE, CONCATENATION, RESHAPE, CAST of constants): its output
        becomes a constant and the op goes. False when it must run."""
        given = [tensors[t] for t in inputs if t >= 0]
        if kind == "SHAPE":
            value = np.asarray(given[0].shape, dtype=tensors[output].dtype)
        elif not given or not all(t.is_const for t in given):
            return False
        else:
            data = [t.data for t in given]
            table = o.BuiltinOptions()

            def parse(cls):
                opts = cls()
                if table is not None:
                    opts.Init(table.Bytes, table.Pos)
                return opts if table is not None else None

            if kind == "PACK":
                p = parse(tflite.PackOptions)
                value = np.stack(data, axis=int(p.Axis()) if p else 0)
            elif kind == "CONCATENATION":
                p = parse(tflite.ConcatenationOptions)
                value = np.concatenate(data, axis=int(p.Axis()) if p else 0)
            elif kind == "RESHAPE" or kind == "CAST":
                value = data[0]
            elif kind == "STRIDED_SLICE":
                value = self.strided_slice(parse(tflite.StridedSliceOptions), *data[:4], index)
            else:
                return False
        out = tensors[output]
        value = np.asarray(value).astype(out.dtype).reshape(out.shape) if out.shape or value.size == 1 \
            else np.asarray(value).astype(out.dtype)
        if out.shape and value.size != int(np.prod(out.shape, dtype=np.int64)):
            raise self.fail(f"op {index} ({kind}) folds to {value.size} values; its output holds "
                            f"{int(np.prod(out.shape))}")
        out.data = value
        return True

    def strided_slice(self, p, x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray,
                      index: int) -> np.ndarray:
        """TFLite's STRIDED_SLICE on a constant (begin, end, shrink-axis masks)."""
        begin_mask = int(p.BeginMask()) if p else 0
        end_mask = int(p.EndMask()) if p else 0
        shrink = int(p.ShrinkAxisMask()) if p else 0
        if p and (p.EllipsisMask() or p.NewAxisMask()):
            raise self.fail(f"op {index} (STRIDED_SLICE) uses ellipsis or new-axis masks, which "
                            "fusebench does not fold")
        offset = bool(p.Offset()) if p and hasattr(p, "Offset") else False
        slices = []
        for axis, (b, e, st) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist())):
            if shrink >> axis & 1:
                slices.append(int(b))
                continue
            b = None if begin_mask >> axis & 1 else int(b)
            e = None if end_mask >> axis & 1 else (int(b or 0) + int(e) if offset else int(e))
            slices.append(slice(b, e, int(st)))
        return np.asarray(x)[tuple(slices)]

    def options(self, o, kind: str, index: int, inputs: list[int],
                tensors: list[Tensor]) -> dict:
        table = o.BuiltinOptions()

        def parse(cls):
            opts = cls()
            if table is not None:
                opts.Init(table.Bytes, table.Pos)
                return opts
            return None

        def act(code: int) -> str:
            a = _ACTIVATION.get(code, str(code))
            if a not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
                raise self.fail(f"op {index} ({kind}) has unsupported fused activation {a}")
            return a

        def filtered(p) -> dict:          # CONV_2D and DEPTHWISE_CONV_2D share these
            return dict(padding=_PADDING[p.Padding()], stride_h=p.StrideH(), stride_w=p.StrideW(),
                        dilation_h=p.DilationHFactor(), dilation_w=p.DilationWFactor(),
                        activation=act(p.FusedActivationFunction()))

        if kind == "CONV_2D":
            return filtered(parse(tflite.Conv2DOptions))
        if kind == "DEPTHWISE_CONV_2D":
            p = parse(tflite.DepthwiseConv2DOptions)
            return dict(filtered(p), depth_multiplier=p.DepthMultiplier())
        if kind == "AVERAGE_POOL_2D":
            p = parse(tflite.Pool2DOptions)
            return dict(padding=_PADDING[p.Padding()], stride_h=p.StrideH(), stride_w=p.StrideW(),
                        filter_h=p.FilterHeight(), filter_w=p.FilterWidth(),
                        activation=act(p.FusedActivationFunction()))
        if kind == "ADD":
            p = parse(tflite.AddOptions)
            return dict(activation=act(p.FusedActivationFunction()) if p else "NONE")
        if kind == "FULLY_CONNECTED":
            p = parse(tflite.FullyConnectedOptions)
            return dict(activation=act(p.FusedActivationFunction()) if p else "NONE",
                        keep_num_dims=bool(p.KeepNumDims()) if p else False)
        if kind == "SOFTMAX":
            p = parse(tflite.SoftmaxOptions)
            return dict(beta=float(p.Beta()) if p else 1.0)
        if kind == "MEAN":
            p = parse(tflite.ReducerOptions)
            axes_t = tensors[inputs[1]]
            if axes_t.data is None:
                raise self.fail(f"op {index} (MEAN) has non-constant axes")
            rank = len(tensors[inputs[0]].shape)
            axes = sorted(int(a) % rank for a in axes_t.data.reshape(-1))
            return dict(axes=axes, keep_dims=bool(p.KeepDims()) if p else False)
        if kind == "PAD":
            pads_t = tensors[inputs[1]]
            if pads_t.data is None:
                raise self.fail(f"op {index} (PAD) has non-constant paddings")
            return dict(paddings=[tuple(int(v) for v in row) for row in pads_t.data.reshape(-1, 2)])
        if kind == "RESHAPE":
            return dict(new_shape=list(tensors[o.OutputsAsNumpy()[0]].shape))
        # -- layout, broadcast and pooling ops (TRANSPOSE takes its perm from input 1)
        if kind == "MAX_POOL_2D":
            p = parse(tflite.Pool2DOptions)
            return dict(padding=_PADDING[p.Padding()], stride_h=p.StrideH(), stride_w=p.StrideW(),
                        filter_h=p.FilterHeight(), filter_w=p.FilterWidth(),
                        activation=act(p.FusedActivationFunction()))
        if kind == "MUL":
            p = parse(tflite.MulOptions)
            return dict(activation=act(p.FusedActivationFunction()) if p else "NONE")
        if kind == "CONCATENATION":
            p = parse(tflite.ConcatenationOptions)
            return dict(axis=int(p.Axis()) if p else 0,
                        activation=act(p.FusedActivationFunction()) if p else "NONE")
        if kind == "STRIDED_SLICE":
            p = parse(tflite.StridedSliceOptions)
            return dict(begin_mask=int(p.BeginMask()) if p else 0, end_mask=int(p.EndMask()) if p else 0,
                        shrink_axis_mask=int(p.ShrinkAxisMask()) if p else 0,
                        ellipsis_mask=int(p.EllipsisMask()) if p else 0,
                        new_axis_mask=int(p.NewAxisMask()) if p else 0,
                        offset=bool(p.Offset()) if p else False)
        if kind == "RESIZE_NEAREST_NEIGHBOR":
            p = parse(tflite.ResizeNearestNeighborOptions)
            return dict(align_corners=bool(p.AlignCorners()) if p else False,
                        half_pixel_centers=bool(p.HalfPixelCenters()) if p else False)
        return {}

    # -- checks ----------------------------------------------------------------
    def check_outputs(self, tensors: list[Tensor], inputs: list[int], outputs: list[int]) -> None:
        """Several outputs travel as one joined byte string, so they must be
        distinct activations of one dtype."""
        if len(set(outputs)) != len(outputs):
            raise self.fail("names one tensor as two of its outputs")
        for t in outputs:
            if tensors[t].is_const or t in inputs:
                raise self.fail(f"output tensor {t} '{tensors[t].name}' is a constant or the input, "
                                "not computed by the model")
        dtypes = sorted({tensors[t].dtype for t in outputs})
        if len(dtypes) > 1:
            raise self.fail(f"has outputs of several types ({', '.join(dtypes)}); "
                            "fusebench needs all outputs of one type")

    def check_int8(self, graph: Graph) -> None:
        """Every activation the runtime touches must be int8 with a per-tensor
        quantization; float32 or uint8 only at QUANTIZE/DEQUANTIZE edges (the
        dtypes EDGE_DTYPES lists; the lowering checks their quantization)."""
        for op in graph.ops:
            if op.kind in EDGE_DTYPES:
                ins, outs = EDGE_DTYPES[op.kind]
                x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
                if x.dtype not in ins or y.dtype not in outs:
                    raise self.fail(f"op {op.index} {op.kind} from {x.dtype} to {y.dtype} is not supported "
                                    "(fusebench runs QUANTIZE from float32, uint8 or int8 to int8 and "
                                    "DEQUANTIZE from int8 to float32, at the model's edges)")
                continue
            for t_index in [op.inputs[0]] + op.outputs:
                t = graph.tensors[t_index]
                if t.dtype != "int8":
                    what = "a float model" if t.dtype.startswith("float") else f"{t.dtype} activations"
                    raise self.fail(
                        f"is {what} (op {op.index} {op.kind}, tensor '{t.name}' is {t.dtype}); "
                        "fusebench needs a full-integer int8 model (TFLite converter with "
                        "representative_dataset and TFLITE_BUILTINS_INT8)")
                if t.quant is None or t.quant.per_channel:
                    raise self.fail(f"tensor '{t.name}' of op {op.index} {op.kind} lacks a "
                                    "per-tensor int8 quantization")
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                w = graph.tensors[op.inputs[1]]
                if w.dtype != "int8" or w.data is None or w.quant is None:
                    raise self.fail(f"op {op.index} {op.kind}: weights must be constant int8 "
                                    f"with quantization (got {w.dtype})")
                if len(op.inputs) > 2 and op.inputs[2] >= 0:
                    b = graph.tensors[op.inputs[2]]
                    if b.dtype != "int32" or b.data is None:
                        raise self.fail(f"op {op.index} {op.kind}: bias must be constant int32 "
                                        f"(got {b.dtype})")


ACTIVATION_OPS = ("HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "LOGISTIC", "TANH")


def find_inverted_residual_blocks(graph: Graph) -> list[Block]:
    """Group [1x1 expand [-> activation] ->] [PAD ->] depthwise [-> activation]
    [-> squeeze-and-excite] -> 1x1 project [-> ADD] chains."""

    def only_consumer(tensor: int) -> Optional[Op]:
        users = graph.consumers(tensor)
        return users[0] if len(users) == 1 else None

    def is_pointwise(op: Optional[Op]) -> bool:
        if op is None or op.kind != "CONV_2D":
            return False
        w = graph.tensors[op.inputs[1]].shape
        return w[1] == 1 and w[2] == 1 and op.options["stride_h"] == 1 and op.options["stride_w"] == 1

    def activation_of(op: Op) -> Optional[Op]:
        """The separate activation op that alone reads `op`'s output."""
        user = only_consumer(op.outputs[0])
        return user if user is not None and user.kind in ACTIVATION_OPS else None

    def producing_activation(tensor: int) -> tuple[Optional[Op], int]:
        """(the activation op making `tensor`, the tensor it reads) or (None, tensor)."""
        src = graph.producer(tensor)
        if src is not None and src.kind in ACTIVATION_OPS and only_consumer(src.outputs[0]) is not None:
            return src, src.inputs[0]
        return None, tensor

    def squeeze_excite(x: int) -> Optional[list[Op]]:
        """The SE branch on map `x`: a MEAN over H and W of x whose result only
        feeds ops ending in one MUL of x by the gate; its ops, MUL last."""
        users = graph.consumers(x)
        if len(users) != 2:
            return None
        mean = next((u for u in users if u.kind == "MEAN"), None)
        mul = next((u for u in users if u.kind == "MUL"), None)
        if mean is None or mul is None or sorted(mean.options.get("axes", ())) != [1, 2] \
                or not mean.options.get("keep_dims"):
            return None
        gate_inputs = [t for t in mul.inputs if t != x]
        if len(gate_inputs) != 1:
            return None
        branch, frontier = [], [gate_inputs[0]]
        while frontier:                   # walk back from the gate to the MEAN
            t = frontier.pop()
            op = graph.producer(t)
            if op is None or op in branch or op.index < mean.index:
                return None
            branch.append(op)
            if op is not mean:
                frontier += [i for i in op.inputs if i >= 0 and not graph.tensors[i].is_const]
        inside = {op.index for op in branch} | {mul.index}
        if any(u.index not in inside for op in branch for u in graph.consumers(op.outputs[0])):
            return None                   # a branch tensor is also read elsewhere
        return sorted(branch, key=lambda op: op.index) + [mul]

    blocks = []
    claimed: set[int] = set()          # ops already in a block: in a chain of depthwise and
    for dw in graph.ops:               # pointwise layers (MobileNetV1) a pointwise is the projection
        if dw.kind != "DEPTHWISE_CONV_2D":   # of one block, never also the next one's expansion
            continue
        pad = expand = expand_act = None
        src = graph.producer(dw.inputs[0])
        if src is not None and src.kind == "PAD" and only_consumer(src.outputs[0]) is dw:
            pad = src
        act, before_act = producing_activation((pad or dw).inputs[0])
        candidate = graph.producer(before_act)
        if is_pointwise(candidate) and only_consumer(candidate.outputs[0]) in (dw, pad, act) \
                and candidate.index not in claimed:
            expand, expand_act = candidate, act
        dw_act = activation_of(dw)
        x = (dw_act or dw).outputs[0]
        se = squeeze_excite(x)
        project = only_consumer(se[-1].outputs[0]) if se else only_consumer(x)
        if not is_pointwise(project):
            continue
        block_input = (expand or pad or dw).inputs[0]
        add = None
        project_user = only_consumer(project.outputs[0])
        if (project_user is not None and project_user.kind == "ADD"
                and block_input in project_user.inputs):
            add = project_user
        blocks.append(Block(expand=expand.index if expand else None, depthwise=dw.index,
                            project=project.index, add=add.index if add else None,
                            pad=pad.index if pad else None,
                            activations=[a.index for a in (expand_act, dw_act) if a is not None],
                            se=[op.index for op in se or []]))
        claimed.update(blocks[-1].ops)
    return blocks
