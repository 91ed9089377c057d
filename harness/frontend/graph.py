"""The graph IR: what a `.tflite` file becomes after import.

Small and typed on purpose: every later stage (planner, code generator, host
runner) reads only these classes, never the flatbuffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import math

import numpy as np


@dataclass
class Quant:
    """Affine int8 quantization: real = scale * (q - zero_point).

    `scale` and `zero_point` have one entry per tensor, or one per channel
    along `axis` (per-channel weights)."""
    scale: np.ndarray          # float32, shape (1,) or (channels,)
    zero_point: np.ndarray     # int64, same shape as scale
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                 # numpy dtype name: 'int8', 'int32', 'float32', ...
    quant: Optional[Quant] = None
    data: Optional[np.ndarray] = None   # constant buffer (weights, biases), else None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        # math.prod, not np.prod: the planners ask this thousands of times per plan
        return math.prod(int(d) for d in self.shape) * np.dtype(self.dtype).itemsize

    @property
    def scale(self) -> float:
        assert self.quant is not None and not self.quant.per_channel
        return float(self.quant.scale[0])

    @property
    def zero_point(self) -> int:
        assert self.quant is not None
        return int(self.quant.zero_point[0])


@dataclass
class Op:
    """One operator in execution order.

    `kind` is the TFLite builtin name (CONV_2D, DEPTHWISE_CONV_2D, ...).
    `options` holds the builtin options as plain values:
      stride_h, stride_w, dilation_h, dilation_w, padding ('SAME'|'VALID'),
      activation ('NONE'|'RELU'|'RELU6'|'RELU_N1_TO_1'), depth_multiplier,
      filter_h, filter_w (pools), axes (MEAN), keep_dims, beta (SOFTMAX),
      new_shape (RESHAPE), paddings (PAD, as ((top,bottom),(left,right),...)).
    Absent optional inputs (e.g. FULLY_CONNECTED without bias) are -1 in `inputs`.
    """
    index: int
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)
    # The op's index in the .tflite file (what Netron shows); differs from
    # `index` once ops folded into constants at import are gone.
    file_index: int = -1

    def __post_init__(self) -> None:
        if self.file_index < 0:
            self.file_index = self.index


@dataclass
class Block:
    """An inverted residual block: 1x1 expansion (absent when the expansion
    ratio is 1), an optional explicit PAD (Keras pads stride-2 blocks with a
    ZeroPadding2D layer), depthwise, 1x1 projection and an optional residual
    ADD. Values are op indices.

    `activations` are separate activation ops (HARD_SWISH after a convolution
    with no fused activation, as MobileNetV3 exports them); `se` is a
    squeeze-and-excite branch between the depthwise and the projection: the
    whole-map MEAN, its 1x1 convolutions and gate, and the MUL that scales the
    depthwise map (the last op of `se`)."""
    expand: Optional[int]
    depthwise: int
    project: int
    add: Optional[int] = None
    pad: Optional[int] = None
    activations: list[int] = field(default_factory=list)
    se: list[int] = field(default_factory=list)

    @property
    def ops(self) -> list[int]:
        named = [i for i in (self.expand, self.pad, self.depthwise, self.project, self.add) if i is not None]
        return sorted(named + self.activations + self.se)

    @property
    def fusable_ops(self) -> list[int]:
        """The ops a tiled stage may hold: all of them, or, with a squeeze-and-
        excite branch, those up to the depthwise's output (its activation
        included). The squeeze is a mean over the whole depthwise map, so no
        gated pixel exists before the last depthwise pixel does: the MEAN is
        a fusion boundary and the stage ends there."""
        if not self.se:
            return self.ops
        return [i for i in self.ops if i < self.se[0]]


@dataclass
class Graph:
    name: str
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    blocks: list[Block] = field(default_factory=list)
    source: str = ""             # the file it was read from ("" when built in memory)
    digest: str = ""             # sha1 of the file's bytes (builds of different files never mix)
    # Facts of an op that do not change with the op order (e.g. its kernel's
    # scratch bytes), by (what, op kind, inputs, outputs, options); the planners
    # ask for them thousands of times. Shared by the graph in other op orders
    # (dataclasses.replace keeps the same dict), never compared or printed.
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def producer(self, tensor_index: int) -> Optional[Op]:
        for op in self.ops:
            if tensor_index in op.outputs:
                return op
        return None

    def consumers(self, tensor_index: int) -> list[Op]:
        return [op for op in self.ops if tensor_index in op.inputs]

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        """The first output (the only one, but for a detector's heads)."""
        return self.tensors[self.outputs[0]]

    # A graph may have several outputs (a detector's box and score heads), all of
    # one dtype. Everything past the graph (references, the device, the host
    # runner, result rows) handles them as one flat array: each output flattened,
    # joined in the subgraph's output order.
    @property
    def output_dtype(self) -> str:
        return self.output.dtype

    @property
    def output_bytes(self) -> int:
        """Bytes of all outputs together (what the device sends)."""
        return sum(self.tensors[t].nbytes for t in self.outputs)

    @property
    def output_values(self) -> int:
        return self.output_bytes // np.dtype(self.output_dtype).itemsize

    def split_outputs(self, joined: np.ndarray) -> list[np.ndarray]:
        """The joined flat outputs back as one array per output, in its own shape."""
        joined = np.asarray(joined).reshape(-1)
        if joined.size != self.output_values:
            raise ValueError(f"{joined.size} output values, the graph has {self.output_values}")
        parts, at = [], 0
        for t in self.outputs:
            shape = self.tensors[t].shape
            n = int(np.prod(shape, dtype=np.int64))
            parts.append(joined[at:at + n].reshape(shape))
            at += n
        return parts

    def activation_tensors(self) -> list[int]:
        """Non-constant tensors that some op reads or writes: what the arena holds."""
        seen: list[int] = []
        for op in self.ops:
            for t in op.inputs + op.outputs:
                if t >= 0 and not self.tensors[t].is_const and t not in seen:
                    seen.append(t)
        return seen

    def macs(self, op: Op) -> int:
        """Multiply-accumulates of one op (0 for ops without weights)."""
        out = self.tensors[op.outputs[0]].shape
        if op.kind == "CONV_2D":
            w = self.tensors[op.inputs[1]].shape          # O, H, W, I
            return int(np.prod(out)) * w[1] * w[2] * w[3]
        if op.kind == "DEPTHWISE_CONV_2D":
            w = self.tensors[op.inputs[1]].shape          # 1, H, W, C*M
            return int(np.prod(out)) * w[1] * w[2]
        if op.kind == "FULLY_CONNECTED":
            w = self.tensors[op.inputs[1]].shape          # O, I
            batches = int(np.prod(out)) // w[0]
            return batches * w[0] * w[1]
        return 0
