"""The calling convention of every C runtime kernel, written once.

One Kernel entry per C kernel of fb_runtime.h: its arguments in C order, each
by role. A lowered call (harness.backend.lowering.KernelCall) names its kernel
and carries the values (params, constant arrays, tensors); the C emitter
(harness.backend.codegen) and the host runner (harness.backend.hostrt) both
walk the entry's arguments and turn each role into C text or a ctypes object,
with no per-kernel code. The struct layouts come from fb_runtime.h itself
(harness.backend.cstructs).

Roles:
  Params(struct, name)    const <struct> *: the call's params, by field name
                          (nested structs' fields in place), or the call's own
                          value tree (struct_values, e.g. fb_bottleneck_params)
  Quant()                 const fb_channel_quant *: arrays multiplier, shift and
                          the prepared tables (arrays["prepared"], optional)
  View(name, role, input) fb_view * on input `input` (its index in the call's
                          inputs) or on the output (input None); role says what a
                          tiled schedule passes: 'in' (a window holding the
                          receptive field), 'elementwise' (the window computed),
                          'out' (the window computed), 'whole' (always the whole map)
  Flat(input, dtype)      T * to a whole tensor: input k, or the output (None); T is
                          int8_t unless dtype says otherwise (uint8, float32: the
                          model's edges, e.g. QUANTIZE's float input)
  FlatList(first)         const int8_t *const *: an array of pointers to the whole
                          tensors of the call's inputs first, first + 1, ... (all the
                          rest; a kernel with a variable number of inputs, e.g.
                          CONCATENATION)
  Const(key, dtype)       const T * into the weight blob: call.arrays[key]
                          (optional: absent is a null pointer)
  Scalar(key)             int32_t call.params[key]
  Scratch()               const fb_scratch *: the call's scratch, call.scratch_bytes
                          bytes; a kernel that takes it has fb_<name>_buffer_size(),
                          which takes the kernel's arguments but Const, Flat and
                          Scratch (fb_runtime.h)

Besides its arguments an entry says whether the kernel has prepared tables
(conv, depthwise), how its input window follows from an output window (for
tiling), and whether it is a no-op when its input and output share memory
(RESHAPE).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Union

from harness.backend.cstructs import struct
from harness.errors import FusebenchError


@dataclass(frozen=True)
class Params:
    struct: str
    name: str


@dataclass(frozen=True)
class Quant:
    name: str = "q"


VIEW_ROLES = ("in", "elementwise", "out", "whole")


@dataclass(frozen=True)
class View:
    name: str
    role: str
    input: Optional[int] = None          # None: the output

    def __post_init__(self) -> None:
        assert self.role in VIEW_ROLES, self.role


FLAT_DTYPES = ("int8", "uint8", "float32")


@dataclass(frozen=True)
class Flat:
    input: Optional[int] = None          # None: the output
    dtype: str = "int8"                  # numpy dtype name of the tensor's values

    def __post_init__(self) -> None:
        assert self.dtype in FLAT_DTYPES, self.dtype

    @property
    def name(self) -> str:
        return "output" if self.input is None else f"input{self.input}"


@dataclass(frozen=True)
class FlatList:
    first: int = 0                       # the call's inputs from this one on

    @property
    def name(self) -> str:
        return f"inputs{self.first}_on"


@dataclass(frozen=True)
class Const:
    name: str                            # the key in call.arrays
    dtype: str                           # numpy dtype name: int8, int32, float32, float64
    optional: bool = False


@dataclass(frozen=True)
class Scalar:
    name: str                            # the key in call.params


@dataclass(frozen=True)
class Scratch:
    name: str = "scratch"


Arg = Union[Params, Quant, View, Flat, FlatList, Const, Scalar, Scratch]

# How the input window a kernel reads follows from the output window it
# computes (lowering.receptive_window): 'conv' (kernel size, stride, dilation,
# padding), 'pad' (shifted by the padding), 'elementwise' (the same window),
# 'whole' (the whole input).
WINDOW_KINDS = ("conv", "pad", "elementwise", "whole")


@dataclass(frozen=True)
class Kernel:
    name: str                            # the C function
    args: tuple[Arg, ...]                # in C order
    # Prepared tables (conv, depthwise): fb_<name>_prepare() takes the kernel's
    # arguments but views and scratch, then the tables; fb_<name>_prepared_size()
    # these arguments. Empty: no prepared tables.
    prepared: tuple[str, ...] = ()
    # fb_<name>_buffer_size reads the prepared tables' header (tables that leave
    # the layer to the portable code need less): sizes then compute the tables.
    size_reads_tables: bool = False
    window: str = "whole"
    skip_when_aliased: bool = False      # Flat input == Flat output: nothing to do
    # Its output may overlay its input (the same address): it writes each
    # output element after reading its input element, and no wider.
    in_place: bool = False

    def __post_init__(self) -> None:
        names = [a.name for a in self.args]
        assert len(set(names)) == len(names), f"{self.name}: argument names {names} repeat"
        assert all(n in names for n in self.prepared), f"{self.name}: argument names"
        assert self.window in WINDOW_KINDS, self.window

    @property
    def buffer_size(self) -> Optional[str]:
        """fb_<name>_buffer_size, the C function that sizes its scratch (None: it takes none)."""
        return self.name + "_buffer_size" if any(isinstance(a, Scratch) for a in self.args) else None

    @property
    def size_args(self) -> tuple[Arg, ...]:
        """The arguments of fb_<name>_buffer_size: the kernel's but data pointers and scratch."""
        return tuple(a for a in self.args if not isinstance(a, (Const, Flat, FlatList, Scratch)))

    def arg(self, name: str) -> Arg:
        for a in self.args:
            if a.name == name:
                return a
        raise KeyError(f"{self.name} has no argument {name!r}")

    def of_role(self, role: type) -> list:
        return [a for a in self.args if isinstance(a, role)]

    @cached_property
    def param_fields(self) -> tuple[str, ...]:
        """The keys of a call's params: every Params struct's int32 fields
        (flattened, in order), then the scalars."""
        fields: list[str] = []
        for a in self.args:
            if isinstance(a, Params):
                fields.extend(struct(a.struct).flat_fields())
            elif isinstance(a, Scalar):
                fields.append(a.name)
        return tuple(fields)

    def dtype_of(self, input: Optional[int]) -> str:
        """The dtype of the kernel's input k (None: its output): its Flat's
        dtype, else int8 (views are int8 maps)."""
        for a in self.args:
            if isinstance(a, Flat) and a.input == input:
                return a.dtype
        return "int8"

    @property
    def takes_windows(self) -> bool:
        """Its views may be windows (else they are whole maps, if any)."""
        return any(isinstance(a, View) and a.role != "whole" for a in self.args)



KERNELS: dict[str, Kernel] = {k.name: k for k in (
    Kernel("fb_conv_s8",
           (Params("fb_conv_params", "prm"), Quant(), View("in", "in", 0), Params("fb_filter_dims", "fd"),
            Const("filter", "int8"), Const("bias", "int32", optional=True), View("out", "out"), Scratch()),
           prepared=("fd",), size_reads_tables=True, window="conv"),
    Kernel("fb_dw_conv_s8",
           (Params("fb_dw_conv_params", "prm"), Quant(), View("in", "in", 0), Params("fb_filter_dims", "fd"),
            Const("filter", "int8"), Const("bias", "int32", optional=True), View("out", "out"), Scratch()),
           prepared=("fd",), window="conv"),
    Kernel("fb_add_s8",
           (Params("fb_add_params", "prm"), View("a", "elementwise", 0), View("b", "elementwise", 1),
            View("out", "out")), window="elementwise"),
    Kernel("fb_mean_s8", (Params("fb_mean_params", "prm"), View("in", "whole", 0), Flat())),
    Kernel("fb_avgpool_s8", (Params("fb_pool_params", "prm"), View("in", "in", 0), View("out", "out")),
           window="conv"),
    Kernel("fb_pad_s8", (Params("fb_pad_params", "prm"), View("in", "in", 0), View("out", "out")),
           window="pad"),
    Kernel("fb_fully_connected_s8",
           (Params("fb_fc_params", "prm"), Const("effective_scale", "float64"), Flat(0), Const("filter", "int8"),
            Const("bias", "int32", optional=True), Flat())),
    Kernel("fb_softmax_s8", (Params("fb_softmax_params", "prm"), Flat(0), Flat())),
    Kernel("fb_requantize_s8", (Params("fb_requantize_params", "prm"), Flat(0), Flat()), in_place=True),
    # Model edges: float32 / uint8 input, float32 output (scale: the int8 side's, float32)
    Kernel("fb_requantize_u8_s8", (Params("fb_requantize_params", "prm"), Flat(0, "uint8"), Flat()), in_place=True),
    Kernel("fb_quantize_f32_s8",
           (Params("fb_quantize_params", "prm"), Const("scale", "float32"), Flat(0, "float32"), Flat()),
           in_place=True),
    Kernel("fb_dequantize_s8_f32",
           (Params("fb_dequantize_params", "prm"), Const("scale", "float32"), Flat(0), Flat(None, "float32"))),
    # Elementwise activations: LOGISTIC (a 256-entry table), HARD_SWISH
    # elementwise on windows: they tile (MobileNetV3's hard-swish inside fused stages)
    Kernel("fb_lut_s8", (Const("table", "int8"), View("in", "elementwise", 0), View("out", "out")),
           window="elementwise", in_place=True),
    Kernel("fb_hard_swish_s8", (Params("fb_hard_swish_params", "prm"), View("in", "elementwise", 0),
                                View("out", "out")), window="elementwise", in_place=True),
    Kernel("fb_copy_s8", (Flat(0), Flat(), Scalar("size")), skip_when_aliased=True),
    # A whole inverted residual block; its params are the call's own value tree
    # (lowering.bottleneck_call builds it from the block's lowered calls).
    Kernel("fb_bottleneck_s8",
           (Params("fb_bottleneck_params", "prm"), View("in", "whole", 0), View("out", "whole"), Scratch())),
    # -- layout, broadcast and reduction kernels (fb_layout.c, fb_maxpool.c, fb_mul.c, fb_reduce.c)
    Kernel("fb_transpose_s8", (Params("fb_transpose_params", "prm"), Const("in_shape", "int32"),
                               Const("perm", "int32"), Flat(0), Flat())),
    Kernel("fb_strided_slice_s8", (Params("fb_strided_slice_params", "prm"), Const("in_shape", "int32"),
                                   Const("start", "int32"), Const("stop", "int32"), Const("stride", "int32"),
                                   Flat(0), Flat())),
    Kernel("fb_concatenation_s8", (Params("fb_concat_params", "prm"), Const("copy_bytes", "int32"), FlatList(0),
                                   Flat())),
    Kernel("fb_resize_nearest_s8", (Const("rows", "int32"), Const("cols", "int32"), View("in", "whole", 0),
                                    View("out", "whole"))),
    Kernel("fb_maxpool_s8", (Params("fb_pool_params", "prm"), View("in", "in", 0), View("out", "out")),
           window="conv"),
    Kernel("fb_mul_s8", (Params("fb_mul_params", "prm"), Const("shape1", "int32"), Const("shape2", "int32"),
                         Const("out_shape", "int32"), Flat(0), Flat(1), Flat())),
    Kernel("fb_reduce_mean_s8", (Params("fb_reduce_mean_params", "prm"), Const("in_shape", "int32"), Flat(0),
                                 Flat())),
)}


def kernel(name: str) -> Kernel:
    spec = KERNELS.get(name)
    if spec is None:
        raise FusebenchError(f"no kernel description for {name} (harness/backend/kernels.py)")
    return spec
