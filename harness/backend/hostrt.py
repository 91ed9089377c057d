"""The C runtime on the host: compiled with gcc into a shared library, called via ctypes.

This runs exactly the kernels the firmware runs, on numpy arrays, so a whole
model can be checked against LiteRT in seconds before any emulator:

    run_op(call, inputs)            one KernelCall (harness.backend.lowering) on whole maps
    run_op(call, inputs, output_window=(y0, x0, h, w), input_windows=[...])
                                    the same kernel on a window, reading its input
                                    through a separate window buffer (tile tests)
    run_graph(graph, x)             every op in order -> the model output (x and the result in
                                    the model's input and output dtypes: int8, or uint8 /
                                    float32 at QUANTIZE / DEQUANTIZE edges)
    buffer_size(call, kernels)      the kernel's fb_*_buffer_size() for a call in one build
    planned_scratch_bytes(call)     the most any build needs (the lowering's scratch_bytes)
    prepare_tables(kernel, params, arrays)
                                    a conv/depthwise layer's prepared tables, computed by
                                    the runtime's own fb_*_prepare() (harness.backend.lowering
                                    stores them in flash next to the weights)
    run_bottleneck(calls, x, band_rows, channel_block=1)
                                    a whole inverted residual block ([expand,] depthwise,
                                    project[, add] calls) in one fb_bottleneck_s8 call:
                                    1 or 4 expansion channels at a time, bands of output rows

Every call is run by interpreting its kernel's entry in harness.backend.kernels
(arguments by role); the ctypes structs are read from fb_runtime.h
(harness.backend.cstructs), so a new kernel needs no code here.

Two builds of the same sources exist (`kernels=`): "portable", the reference
C99 kernels, and "dsp", the optimized Cortex-M4/M7 kernels (fb_*_dsp.c)
compiled with -DFB_HOST_DSP=1 on a plain-C emulation of the DSP intrinsics
(firmware/runtime/include/fb_acle_host.h), so the code the boards run is
tested byte for byte on the host too. Each library is built once per source
version into build/host/<hash>/.
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from ctypes import POINTER, c_double, c_int8, c_int32, c_void_p
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from harness import paths
from harness.errors import FusebenchError
from harness.paths import FIRMWARE_DIR
from harness.frontend.graph import Graph
from harness.backend.cstructs import ctypes_struct, fill
from harness.backend.kernels import KERNELS, Arg, Const, Flat, FlatList, Params, Quant, Scalar, Scratch, View, kernel
from harness.backend.lowering import KernelCall, bottleneck_call, lower_op, map_hwc

RUNTIME_DIR = FIRMWARE_DIR / "runtime"
BUILD_DIR = paths.BUILD_DIR / "host"
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared")
KERNEL_SETS = ("portable", "dsp")
DEFAULT_KERNELS = "portable"        # the reference; tests run both
_KERNEL_FLAGS = {"portable": (), "dsp": ("-DFB_HOST_DSP=1",)}

Window = tuple[int, int, int, int]     # y0, x0, h, w in map coordinates
_SENTINEL = 0x5A                       # fills row padding of staged buffers to catch stray writes
_SCRATCH_FILL = 0x3C                   # fills scratch: junk contents catch reads before writes
_SCRATCH_GUARD = 16                    # bytes past the scratch a kernel must not touch


# -- ctypes mirrors of fb_runtime.h (derived from the header: harness.backend.cstructs) ----

FbView = ctypes_struct("fb_view")
FbChannelQuant = ctypes_struct("fb_channel_quant")
FbConvParams = ctypes_struct("fb_conv_params")
FbDwConvParams = ctypes_struct("fb_dw_conv_params")
FbFilterDims = ctypes_struct("fb_filter_dims")
FbBottleneckParams = ctypes_struct("fb_bottleneck_params")
FbScratch = ctypes_struct("fb_scratch")
PREPARED_HEADER_BYTES = ctypes.sizeof(ctypes_struct("fb_prepared_header"))   # tag, fast, out_c, taps

# The prepared tables hold int32/int16/int8 values in the byte order of the
# machine that prepared them; the host and Cortex-M are both little-endian.
assert sys.byteorder == "little", "prepared tables are computed in the target's (little-endian) byte order"

_DTYPE_CTYPES = {"int8": c_int8, "uint8": ctypes.c_uint8, "int16": ctypes.c_int16, "int32": c_int32,
                 "float32": ctypes.c_float, "float64": c_double}
_C_DTYPES = {"int8_t": "int8", "uint8_t": "uint8", "int16_t": "int16", "int32_t": "int32", "float": "float32",
             "double": "float64"}


def _argtype(arg: Arg):
    """The ctypes type of one kernel argument, by its role."""
    if isinstance(arg, Params):
        return POINTER(ctypes_struct(arg.struct))
    if isinstance(arg, Quant):
        return POINTER(FbChannelQuant)
    if isinstance(arg, View):
        return POINTER(FbView)
    if isinstance(arg, Flat):
        return POINTER(_DTYPE_CTYPES[arg.dtype])
    if isinstance(arg, FlatList):
        return POINTER(POINTER(c_int8))
    if isinstance(arg, Scratch):
        return POINTER(FbScratch)
    if isinstance(arg, Const):
        return POINTER(_DTYPE_CTYPES[arg.dtype])
    if isinstance(arg, Scalar):
        return c_int32
    raise TypeError(arg)


def _kernel_signatures() -> dict[str, list]:
    """Every kernel's, size function's and prepare function's argument types,
    from the kernel table."""
    sig = {}
    for spec in KERNELS.values():
        sig[spec.name] = [_argtype(a) for a in spec.args]
        if spec.buffer_size is not None:
            sig[spec.buffer_size] = [_argtype(a) for a in spec.size_args]
        if spec.prepared:
            # fb_<kernel>_prepare: the kernel's arguments but views and scratch, then the tables
            sig[spec.name + "_prepare"] = [_argtype(a) for a in spec.args
                                           if not isinstance(a, (View, Scratch))] + [c_void_p]
            sig[spec.name + "_prepared_size"] = [_argtype(spec.arg(n)) for n in spec.prepared]
    return sig


_SIGNATURES = dict(_kernel_signatures(), **{
    "fb_multiply_by_quantized_multiplier": [c_int32, c_int32, c_int32],
    "fb_requant_reference_batch": [c_int32, c_int32, c_int32, POINTER(c_int32), c_int32, POINTER(c_int32)],
})
_DSP_SIGNATURES = {
    "fb_requant_fast_batch": [c_int32, c_int32, c_int32, c_int32, POINTER(c_int32), c_int32, POINTER(c_int32)],
}
_STATUS = {0: "FB_OK", -1: "FB_ERR_ARG", -2: "FB_ERR_SCRATCH"}


# -- building and loading ----------------------------------------------------------------

def runtime_sources() -> list[Path]:
    return sorted((RUNTIME_DIR / "src").glob("*.c"))


def _check_kernels(kernels: str) -> None:
    if kernels not in KERNEL_SETS:
        raise FusebenchError(f"unknown kernel set {kernels!r} (expected one of {', '.join(KERNEL_SETS)})")


def _compile_flags(kernels: str) -> tuple[str, ...]:
    return HOST_CFLAGS + _KERNEL_FLAGS[kernels]


def _source_hash(compiler: str, kernels: str) -> str:
    h = hashlib.sha256()
    h.update(" ".join((compiler,) + _compile_flags(kernels)).encode())
    for path in runtime_sources() + sorted((RUNTIME_DIR / "include").glob("*.h")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_library(kernels: str = DEFAULT_KERNELS) -> Path:
    """Compile the runtime (one kernel set) into build/host/<hash>/libfbruntime.so (cached)."""
    _check_kernels(kernels)
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        raise FusebenchError(f"host C compiler '{compiler}' not found (planning sizes scratch with the C runtime "
                             "built for the host): install gcc (apt-get install gcc; scripts/setup.sh does) or set CC")
    target = BUILD_DIR / _source_hash(compiler, kernels) / "libfbruntime.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build under a temporary name, then rename: parallel test workers never see half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [compiler, *_compile_flags(kernels), "-I", str(RUNTIME_DIR / "include"), "-o", tmp,
           *[str(p) for p in runtime_sources()]]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
        raise FusebenchError(f"compiling the runtime for the host failed: {first}")
    os.replace(tmp, target)
    return target


_LIBS: dict[str, ctypes.CDLL] = {}


def library(kernels: str = DEFAULT_KERNELS) -> ctypes.CDLL:
    """The host runtime library with the `kernels` set ("portable" or "dsp")."""
    _check_kernels(kernels)
    lib = _LIBS.get(kernels)
    if lib is None:
        lib = ctypes.CDLL(str(build_library(kernels)))
        signatures = dict(_SIGNATURES, **(_DSP_SIGNATURES if kernels == "dsp" else {}))
        for name, argtypes in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = c_int32
        lib.fb_runtime_kernels.argtypes = []
        lib.fb_runtime_kernels.restype = ctypes.c_char_p
        built = lib.fb_runtime_kernels().decode()
        if built != kernels:
            raise FusebenchError(f"host runtime built as {kernels!r} dispatches to {built!r} kernels")
        _LIBS[kernels] = lib
    return lib


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """The C runtime's requantization helper (for tests against harness.frontend.quant)."""
    return int(library().fb_multiply_by_quantized_multiplier(x, multiplier, shift))


def requantize_batch(acc: np.ndarray, multiplier: int, shift: int, output_offset: int,
                     fast: bool = False) -> Optional[np.ndarray]:
    """MultiplyByQuantizedMultiplier(acc) + output_offset (int32, unclamped) for
    every value of `acc`: the reference arithmetic, or with fast=True the
    optimized kernels' single-rounding form (None where it does not apply to
    these parameters and accumulators)."""
    acc = np.ascontiguousarray(acc, dtype=np.int32)
    out = np.empty_like(acc)
    if fast:
        max_abs = int(np.abs(acc.astype(np.int64)).max()) if acc.size else 0
        if max_abs > 2**31 - 1:
            return None
        ok = library("dsp").fb_requant_fast_batch(multiplier, shift, output_offset, max_abs,
                                                  _ptr(acc, c_int32), acc.size, _ptr(out, c_int32))
        return out if ok else None
    library().fb_requant_reference_batch(multiplier, shift, output_offset, _ptr(acc, c_int32), acc.size,
                                         _ptr(out, c_int32))
    return out


# -- call arguments as ctypes objects -----------------------------------------------------

def _array_pointer(value, dtype: str, keep: list):
    """A pointer to `value` as a contiguous array of `dtype` (kept alive in `keep`)."""
    array = np.ascontiguousarray(value, dtype=dtype)
    keep.append(array)
    return _ptr(array, _DTYPE_CTYPES[dtype])


def _params_struct(call: KernelCall, arg: Params, keep: list):
    """The ctypes struct of one Params argument, from the call's value tree."""
    def to_pointer(f, value):
        if f.ctype == "void":
            array = np.ascontiguousarray(value)
            keep.append(array)
            return array.ctypes.data
        return _array_pointer(value, _C_DTYPES[f.ctype], keep)
    return fill(arg.struct, call.struct_values(arg), keep, to_pointer)


def _channel_quant(call: KernelCall, keep: list, tables: bool):
    """fb_channel_quant: multiplier, shift and (tables=True) the prepared tables."""
    prepared = call.arrays.get("prepared") if tables else None
    if prepared is not None:
        prepared = np.ascontiguousarray(prepared)
        keep.append(prepared)
    return FbChannelQuant(_array_pointer(call.arrays["multiplier"], "int32", keep),
                          _array_pointer(call.arrays["shift"], "int32", keep),
                          None if prepared is None else prepared.ctypes.data)


def _const_pointer(call: KernelCall, arg: Const, keep: list):
    value = call.arrays.get(arg.name)
    if value is None:
        if not arg.optional:
            raise FusebenchError(f"{call.kernel}: the call has no {arg.name} array")
        return None
    return _array_pointer(value, arg.dtype, keep)


def _shape_view(shape: tuple[int, ...]) -> FbView:
    """A view of a whole map of this shape without data (what size functions read)."""
    h, w, c = map_hwc(shape)
    return FbView(None, 0, 0, h, w, c, w * c, h, w)


_SIZES: dict = {}
# Stands in for prepared tables that are not computed yet (tag 0: no kernel
# takes them for its own, so the size is the most it may need).
_TABLES_STAND_IN = np.zeros(PREPARED_HEADER_BYTES // 4, np.int32)


def buffer_size(call: KernelCall, kernels: str = DEFAULT_KERNELS, prepared: bool = True) -> int:
    """The kernel's fb_*_buffer_size() for this call on whole maps in one
    build: with its prepared tables (if it has any), or (prepared=False) with
    none. Calls whose params are plain field values are cached: planners lower
    every op many times."""
    spec = call.spec
    if spec.buffer_size is None:
        return 0
    # The size functions read at most the prepared tables' header (whether the
    # optimized code takes the layer): the call's own where the kernel's size
    # depends on it, else a stand-in (lowering leaves the tables uncomputed).
    tables = prepared and spec.size_reads_tables and "prepared" in call.arrays
    header = (np.ascontiguousarray(call.arrays["prepared"][:PREPARED_HEADER_BYTES // 4], dtype=np.int32)
              if tables else None)
    key = None
    if not call.trees:
        key = (kernels, prepared, call.kernel, tuple(call.params.items()), tuple(call.input_shapes),
               tuple(call.output_shapes), None if header is None else header.tobytes())
        if key in _SIZES:
            return _SIZES[key]
    keep: list = []
    args = []
    for arg in spec.size_args:
        if isinstance(arg, Params):
            args.append(ctypes.byref(_params_struct(call, arg, keep)))
        elif isinstance(arg, Quant):
            q = _channel_quant(call, keep, tables=False)
            if header is not None:
                keep.append(header)
                q.prepared = header.ctypes.data
            else:
                q.prepared = _TABLES_STAND_IN.ctypes.data if prepared and spec.prepared else None
            args.append(ctypes.byref(q))
        elif isinstance(arg, View):
            shape = call.output_shapes[0] if arg.input is None else call.input_shapes[arg.input]
            args.append(ctypes.byref(_shape_view(shape)))
        elif isinstance(arg, Scalar):
            args.append(int(call.params[arg.name]))
    size = int(getattr(library(kernels), spec.buffer_size)(*args))
    if key is not None:
        _SIZES[key] = size
    return size


# The kernel builds a plan is made for: planning_kernels() while a board's plan
# is made (its image runs one build), else every build (a plan for any board).
_PLANNING_KERNELS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("planning_kernels",
                                                                                    default=KERNEL_SETS)


@contextlib.contextmanager
def planning_kernels(kernels: str):
    """Plan for one kernel build ("dsp" or "portable"): the scratch of each call
    is what that build asks for, so a board without the DSP kernels (RISC-V)
    gets no bytes only the DSP kernels would use, and its painted arena is the plan."""
    token = _PLANNING_KERNELS.set((kernels,))
    try:
        yield
    finally:
        _PLANNING_KERNELS.reset(token)


def planned_kernels() -> tuple[str, ...]:
    return _PLANNING_KERNELS.get()


def planned_scratch_bytes(call: KernelCall) -> int:
    """The scratch a plan gives the call: the most the planned builds
    (planning_kernels) need with the call's prepared tables."""
    return max(buffer_size(call, kernels) for kernels in _PLANNING_KERNELS.get())


# -- prepared tables ----------------------------------------------------------------------

def prepare_tables(kernel_name: str, params: dict[str, int], arrays: dict[str, np.ndarray],
                   kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """The prepared tables of a conv ("fb_conv_s8") or depthwise ("fb_dw_conv_s8")
    layer, computed by the runtime's fb_*_prepare() (every build compiles it and
    gives the same bytes), as int32 words in the target's byte order: the whole
    tables when the optimized kernel takes the layer, else only the 16-byte
    header (fast == 0), which is all a kernel reads then."""
    spec = kernel(kernel_name)
    if not spec.prepared:
        raise FusebenchError(f"{kernel_name} has no prepared tables")
    lib = library(kernels)
    call = KernelCall(kernel_name, params, {k: v for k, v in arrays.items() if k != "prepared"}, [], [])
    keep: list = []
    structs = {a.name: _params_struct(call, a, keep) for a in spec.of_role(Params)}
    size = int(getattr(lib, kernel_name + "_prepared_size")(*[ctypes.byref(structs[n]) for n in spec.prepared]))
    if size < PREPARED_HEADER_BYTES:
        raise FusebenchError(f"{kernel_name}: no prepared tables for {[structs[n] for n in spec.prepared]}")
    tables = np.zeros(-(-size // 4), dtype=np.int32)      # numpy data is at least 16-byte aligned
    args = []
    for arg in spec.args:
        if isinstance(arg, Params):
            args.append(ctypes.byref(structs[arg.name]))
        elif isinstance(arg, Quant):
            args.append(ctypes.byref(_channel_quant(call, keep, tables=False)))
        elif isinstance(arg, Const):
            args.append(_const_pointer(call, arg, keep))
    status = getattr(lib, kernel_name + "_prepare")(*args, tables.ctypes.data)
    _check(kernel_name + "_prepare", status)
    if tables[1] == 0:                                     # fast == 0: the header is all there is
        tables = tables[:PREPARED_HEADER_BYTES // 4].copy()
    return tables


# -- views ------------------------------------------------------------------------------

def _ptr(array: np.ndarray, ctype=c_int8, offset_bytes: int = 0):
    return ctypes.cast(array.ctypes.data + offset_bytes, POINTER(ctype))


def _view(buffer: np.ndarray, window: Window, full_h: int, full_w: int, channels: int,
          row_stride: int) -> FbView:
    """A view whose data is buffer[0] = element (window y0, x0, 0)."""
    y0, x0, h, w = window
    return FbView(_ptr(buffer), y0, x0, h, w, channels, row_stride, full_h, full_w)


def _map_view(map_array: np.ndarray, window: Optional[Window] = None) -> FbView:
    """A window of a whole contiguous H x W x C map, in place."""
    full_h, full_w, c = map_array.shape
    y0, x0, h, w = window or (0, 0, full_h, full_w)
    return FbView(_ptr(map_array, offset_bytes=(y0 * full_w + x0) * c), y0, x0, h, w, c,
                  full_w * c, full_h, full_w)


def _staged(map_array: np.ndarray, window: Window, row_padding: int) -> tuple[np.ndarray, FbView]:
    """A copy of one window in its own buffer, rows `row_padding` bytes apart
    beyond w*c (filled with a sentinel), as a fused schedule's tile buffer."""
    full_h, full_w, c = map_array.shape
    y0, x0, h, w = window
    stride = w * c + row_padding
    buf = np.full((h, stride), _SENTINEL, dtype=np.int8)
    buf[:, :w * c] = map_array[y0:y0 + h, x0:x0 + w, :].reshape(h, w * c)
    return buf, _view(buf, window, full_h, full_w, c, stride)


def _check(kernel: str, status: int) -> None:
    if status != 0:
        raise FusebenchError(f"{kernel} returned {_STATUS.get(status, status)}")


# -- running kernel calls -----------------------------------------------------------------

def run_op(call: KernelCall, inputs: list[np.ndarray], *, output_window: Optional[Window] = None,
           input_windows: Optional[list[Window]] = None, row_padding: int = 0,
           out: Optional[np.ndarray] = None, kernels: str = DEFAULT_KERNELS,
           prepared: bool = True, scratch_bytes: Optional[int] = None) -> list[np.ndarray]:
    """Run one kernel call on numpy arrays (the activation inputs, in
    `call.inputs` order: int8, or the dtype of the kernel's Flat argument,
    e.g. float32 for QUANTIZE's input) and return its outputs.

    With `output_window`, only that window of the output map is computed, into
    `out` if given (else into zeros). With `input_windows`, each input is handed
    to the kernel as a copy of just that window (rows `row_padding` bytes apart),
    so the kernel must find everything it reads there; row_padding alone hands
    whole maps over in such buffers. A write outside the output window, or to
    an input, is an error. `kernels` picks the portable or the DSP build of the
    runtime. Conv and depthwise get the call's prepared tables
    (arrays["prepared"]) and call.scratch_bytes of scratch, as in the firmware;
    prepared=False passes NULL tables and the scratch the kernel's size
    function asks for then; scratch_bytes gives it that many bytes instead
    (to test its refusal of too few). A kernel that needs more scratch than it
    gets, or writes past it, is an error."""
    return _run_op(call, inputs, output_window=output_window, input_windows=input_windows,
                   row_padding=row_padding, out=out, kernels=kernels, prepared=prepared,
                   scratch_bytes=scratch_bytes)[0]


def scratch_high_water(call: KernelCall, inputs: list[np.ndarray], *, kernels: str = DEFAULT_KERNELS,
                       prepared: bool = True, **window_args) -> int:
    """How many leading bytes of its scratch the kernel writes (the highest
    written byte + 1) on these inputs: two runs on scratch filled with different
    bytes, so a written byte shows in at least one of them."""
    top = 0
    for fill_byte in (_SCRATCH_FILL, 0xC3):
        _, scratch = _run_op(call, inputs, kernels=kernels, prepared=prepared, scratch_fill=fill_byte,
                             **window_args)
        if scratch is not None:
            written = np.flatnonzero(scratch != fill_byte)
            top = max(top, int(written[-1]) + 1 if written.size else 0)
    return top


def _scratch(size: int, fill_byte: int) -> np.ndarray:
    """`size` bytes of scratch plus a guard, filled with `fill_byte`, 4-byte
    aligned (numpy's allocations are)."""
    buf = np.full(size + _SCRATCH_GUARD, fill_byte, dtype=np.uint8)
    assert buf.ctypes.data % 8 == 0
    return buf


def _run_op(call: KernelCall, inputs: list[np.ndarray], *, output_window: Optional[Window] = None,
            input_windows: Optional[list[Window]] = None, row_padding: int = 0,
            out: Optional[np.ndarray] = None, kernels: str = DEFAULT_KERNELS, prepared: bool = True,
            scratch_fill: int = _SCRATCH_FILL,
            scratch_bytes: Optional[int] = None) -> tuple[list[np.ndarray], Optional[np.ndarray]]:
    """Runs the call; returns its outputs and its scratch (bytes, without the
    guard) or None. Every argument is built from its role in the kernel table."""
    lib = library(kernels)
    spec = call.spec
    if len(inputs) != len(call.inputs):
        raise FusebenchError(f"{call.kernel} takes {len(call.inputs)} inputs, got {len(inputs)}")
    arrays = []
    for k, (array, shape) in enumerate(zip(inputs, call.input_shapes)):
        array = np.ascontiguousarray(array)
        dtype = spec.dtype_of(k)               # int8, or a Flat's dtype (the model's edges)
        if array.dtype != np.dtype(dtype) or array.size != int(np.prod(shape, dtype=np.int64)):
            raise FusebenchError(f"{call.kernel}: input must be {dtype} of shape {list(shape)}, "
                                 f"got {array.dtype} {list(array.shape)}")
        arrays.append(array)
    out_shape = call.output_shapes[0]
    out_dtype = spec.dtype_of(None)
    output = np.zeros(out_shape, dtype=out_dtype) if out is None else out
    if output.dtype != np.dtype(out_dtype) or not output.flags.c_contiguous or \
            output.size != int(np.prod(out_shape)):
        raise FusebenchError(f"{call.kernel}: output buffer must be contiguous {out_dtype} {list(out_shape)}")
    if (output_window is not None or input_windows is not None) and not spec.takes_windows:
        raise FusebenchError(f"{call.kernel} works on whole tensors, not windows")

    keep: list = []                          # arrays the arguments point into
    objs: dict = {}                          # the ctypes objects passed by reference, by argument name
    staged_inputs = []                       # (map, window, buffer) of inputs handed over in their own buffer
    staged_output = None                     # (map, buffer, view)
    # the output as an H x W x C map, for a kernel that writes it through a view (a Flat
    # output may have any shape, e.g. [N, ...] with N > 1)
    out_map = output.reshape(map_hwc(out_shape)) if any(isinstance(a, View) and a.input is None
                                                        for a in spec.args) else None
    for arg in spec.args:
        if isinstance(arg, Params):
            objs[arg.name] = _params_struct(call, arg, keep)
        elif isinstance(arg, Quant):
            objs[arg.name] = _channel_quant(call, keep, prepared)
        elif isinstance(arg, View) and arg.input is not None:
            m = arrays[arg.input].reshape(map_hwc(call.input_shapes[arg.input]))
            window = input_windows[arg.input] if input_windows is not None and arg.role != "whole" else None
            if window is None and row_padding == 0:
                objs[arg.name] = _map_view(m)
            else:
                window = window or (0, 0, m.shape[0], m.shape[1])
                buf, objs[arg.name] = _staged(m, window, row_padding)
                staged_inputs.append((m, window, buf))
        elif isinstance(arg, View):
            window = output_window if arg.role != "whole" else None
            if window is None and row_padding == 0:
                objs[arg.name] = _map_view(out_map)
            else:
                window = window or (0, 0, out_map.shape[0], out_map.shape[1])
                buf, view = _staged(out_map, window, row_padding)
                buf[:, :window[3] * out_map.shape[2]] = _SENTINEL
                objs[arg.name] = view
                staged_output = (buf, view)

    scratch = None
    if spec.buffer_size is not None:
        needed = int(getattr(lib, spec.buffer_size)(*[ctypes.byref(objs[a.name]) if not isinstance(a, Scalar)
                                                      else int(call.params[a.name]) for a in spec.size_args]))
        size = scratch_bytes if scratch_bytes is not None else call.scratch_bytes if prepared else needed
        if needed > size and scratch_bytes is None:
            raise FusebenchError(f"{call.kernel} needs {needed} scratch bytes, lowering said {size}")
        # no scratch at all is a null pointer, as in the generated code
        scratch = _scratch(size, scratch_fill) if size > 0 else None

    args = []
    for arg in spec.args:
        if isinstance(arg, (Params, Quant, View)):
            args.append(ctypes.byref(objs[arg.name]))
        elif isinstance(arg, Flat):
            args.append(_ptr(output if arg.input is None else arrays[arg.input], _DTYPE_CTYPES[arg.dtype]))
        elif isinstance(arg, FlatList):
            pointers = (POINTER(c_int8) * max(len(arrays) - arg.first, 1))(*[_ptr(a) for a in arrays[arg.first:]])
            keep.append(pointers)
            args.append(pointers)
        elif isinstance(arg, Const):
            args.append(_const_pointer(call, arg, keep))
        elif isinstance(arg, Scalar):
            args.append(int(call.params[arg.name]))
        elif isinstance(arg, Scratch):
            if scratch is not None:
                objs[arg.name] = FbScratch(_ptr(scratch), len(scratch) - _SCRATCH_GUARD)
            args.append(None if scratch is None else ctypes.byref(objs[arg.name]))
    _check(call.kernel, getattr(lib, call.kernel)(*args))

    if scratch is not None and np.any(scratch[len(scratch) - _SCRATCH_GUARD:] != scratch_fill):
        raise FusebenchError(f"{call.kernel} wrote past its {len(scratch) - _SCRATCH_GUARD} bytes of scratch")
    for m, (y0, x0, h, w), buf in staged_inputs:
        c = m.shape[2]
        if not np.array_equal(buf[:, :w * c].reshape(h, w, c), m[y0:y0 + h, x0:x0 + w]) or \
                np.any(buf[:, w * c:] != _SENTINEL):
            raise FusebenchError(f"{call.kernel} modified its input")
    if staged_output is not None:
        buf, view = staged_output
        y0, x0, h, w = view.y0, view.x0, view.h, view.w
        c = out_map.shape[2]
        if row_padding and np.any(buf[:, w * c:] != _SENTINEL):
            raise FusebenchError(f"{call.kernel} wrote outside its output window")
        out_map[y0:y0 + h, x0:x0 + w, :] = buf[:, :w * c].reshape(h, w, c)
    del keep
    return [output], None if scratch is None else scratch[:len(scratch) - _SCRATCH_GUARD]


# -- inverted residual blocks (fb_bottleneck_s8) -------------------------------------------

def bottleneck_struct(calls: Sequence[KernelCall], band_rows: int,
                      channel_block: int = 1) -> tuple[FbBottleneckParams, list]:
    """The fb_bottleneck_params of a block from its lowered calls
    (harness.backend.lowering.bottleneck_call), and the arrays its pointers
    point into (keep them alive while the struct is used)."""
    record = bottleneck_call(calls, band_rows, channel_block)
    keep: list = []
    return _params_struct(record, record.spec.arg("prm"), keep), keep


def bottleneck_buffer_size(calls: Sequence[KernelCall], band_rows: int, kernels: str = DEFAULT_KERNELS,
                           channel_block: int = 1) -> int:
    """fb_bottleneck_s8_buffer_size() for the block."""
    return buffer_size(bottleneck_call(calls, band_rows, channel_block), kernels)


def run_bottleneck(calls: Sequence[KernelCall], block_input: np.ndarray, band_rows: int, *,
                   row_padding: int = 0, kernels: str = DEFAULT_KERNELS, channel_block: int = 1) -> np.ndarray:
    """Run a whole inverted residual block with fb_bottleneck_s8 (channel_block
    expansion channels at a time, output in bands of band_rows rows) on the block input
    and return its output (the shape of the last call's output). `calls` are
    the block's lowered ops ([expand,] depthwise, project[, add]). The kernel
    gets exactly fb_bottleneck_s8_buffer_size() bytes of scratch; writing past
    them is an error. row_padding > 0 hands input and output over in buffers
    whose rows are that many bytes longer (sentinel-filled; a write there is
    an error)."""
    (out,) = run_op(bottleneck_call(calls, band_rows, channel_block), [block_input], row_padding=row_padding,
                    kernels=kernels)
    return out


def bottleneck_scratch_high_water(calls: Sequence[KernelCall], block_input: np.ndarray, band_rows: int, *,
                                  kernels: str = DEFAULT_KERNELS, channel_block: int = 1) -> int:
    """How many leading bytes of its scratch fb_bottleneck_s8 writes (see
    scratch_high_water)."""
    return scratch_high_water(bottleneck_call(calls, band_rows, channel_block), [block_input], kernels=kernels)


# -- whole graphs ---------------------------------------------------------------------------

def run_graph_tensors(graph: Graph, x: np.ndarray, kernels: str = DEFAULT_KERNELS) -> dict[int, np.ndarray]:
    """Run every op in order on the host; every activation tensor by index."""
    x = np.asarray(x)
    inp = graph.input
    if x.dtype != np.dtype(inp.dtype):          # int8, or uint8 / float32 at a QUANTIZE edge
        raise FusebenchError(f"input has dtype {x.dtype}; the model's input is {inp.dtype}")
    if x.size != int(np.prod(inp.shape, dtype=np.int64)):
        raise FusebenchError(f"input has {x.size} values, the model expects shape {list(inp.shape)}")
    tensors = {inp.index: np.ascontiguousarray(x.reshape(inp.shape))}
    for op in graph.ops:
        call = lower_op(graph, op)
        missing = [t for t in call.inputs if t not in tensors]
        if missing:
            raise FusebenchError(f"op {op.index} ({op.kind}) reads tensor {missing[0]} before any op writes it")
        (result,) = run_op(call, [tensors[t] for t in call.inputs], kernels=kernels)
        tensors[call.outputs[0]] = result
    return tensors


def run_graph(graph: Graph, x: np.ndarray, kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """The model output for input `x`, computed by the C kernels on the host
    (several outputs: flattened and joined in output order, as the device sends them)."""
    return joined_outputs(graph, run_graph_tensors(graph, x, kernels))


def joined_outputs(graph: Graph, tensors: dict[int, np.ndarray]) -> np.ndarray:
    """The graph's output tensor, or all of them flattened and joined in order."""
    if len(graph.outputs) == 1:
        return tensors[graph.outputs[0]]
    return np.concatenate([tensors[t].reshape(-1) for t in graph.outputs])


def run_plan(graph: Graph, plan, x: np.ndarray, kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """The model output for input `x` as `plan` schedules it: layer-by-layer
    ops with run_op, each stage by its own run_host (harness.schedules.stages),
    so a schedule's tile tables or reordered blocks are checked on the host
    without building its C."""
    from harness.schedules.order import executed_graph
    graph = executed_graph(graph, plan)
    tensors = {graph.inputs[0]: np.ascontiguousarray(np.asarray(x, graph.input.dtype).reshape(graph.input.shape))}
    for op in graph.ops:
        stage = plan.stage_at(op.index)
        if stage is not None:
            if op.index == stage.ops[0]:
                stage.run_host(graph, tensors, lower_op, kernels)
            continue
        call = lower_op(graph, op)
        (tensors[call.outputs[0]],) = run_op(call, [tensors[t] for t in call.inputs], kernels=kernels)
    return joined_outputs(graph, tensors)
