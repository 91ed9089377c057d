"""The C runtime on the host: compiled with gcc into a shared library, called via ctypes.

This runs exactly the kernels the firmware runs, on numpy arrays, so a whole
model can be checked against LiteRT in seconds before any emulator:

    run_op(call, inputs)            one KernelCall (harness.backend.lowering) on whole maps
    run_op(call, inputs, output_window=(y0, x0, h, w), input_windows=[...])
                                    the same kernel on a window, reading its input
                                    through a separate window buffer (tile tests)
    run_graph(graph, x)             every op in order -> the model output
    prepare_tables(kernel, params, arrays)
                                    a conv/depthwise layer's prepared tables, computed by
                                    the runtime's own fb_*_prepare() (harness.backend.lowering
                                    stores them in flash next to the weights)
    run_bottleneck(calls, x, band_rows)
                                    a whole inverted residual block ([expand,] depthwise,
                                    project[, add] calls) in one fb_bottleneck_s8 call:
                                    one expansion channel at a time, bands of output rows

Two builds of the same sources exist (`kernels=`): "portable", the reference
C99 kernels, and "dsp", the optimized Cortex-M4/M7 kernels (fb_*_dsp.c)
compiled with -DFB_HOST_DSP=1 on a plain-C emulation of the DSP intrinsics
(firmware/runtime/include/fb_acle_host.h), so the code the boards run is
tested byte for byte on the host too. Each library is built once per source
version into build/host/<hash>/.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from ctypes import POINTER, Structure, c_double, c_int8, c_int32, c_void_p
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from harness import paths
from harness.errors import FusebenchError
from harness.paths import FIRMWARE_DIR
from harness.frontend.graph import Graph
from harness.backend.lowering import (ADD_PARAM_FIELDS, CONV_PARAM_FIELDS, FC_PARAM_FIELDS, FILTER_DIM_FIELDS,
                       MEAN_PARAM_FIELDS, PAD_PARAM_FIELDS, POOL_PARAM_FIELDS, REQUANTIZE_PARAM_FIELDS,
                       SOFTMAX_PARAM_FIELDS, VIEW_KERNELS, KernelCall, bottleneck_parts, lower_op, map_hwc)

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
PREPARED_HEADER_BYTES = 16             # fb_prepared_header: tag, fast, out_c, taps


# -- ctypes mirrors of fb_runtime.h ------------------------------------------------------

def _int32_struct(name: str, fields: Sequence[str]) -> type[Structure]:
    return type(name, (Structure,), {"_fields_": [(f, c_int32) for f in fields]})


class FbView(Structure):
    _fields_ = [("data", POINTER(c_int8))] + [
        (f, c_int32) for f in ("y0", "x0", "h", "w", "c", "row_stride", "full_h", "full_w")]


class FbChannelQuant(Structure):
    _fields_ = [("multiplier", POINTER(c_int32)), ("shift", POINTER(c_int32)), ("prepared", c_void_p)]


FbConvParams = _int32_struct("FbConvParams", CONV_PARAM_FIELDS)
FbFilterDims = _int32_struct("FbFilterDims", FILTER_DIM_FIELDS)


class FbDwConvParams(Structure):
    _fields_ = [("conv", FbConvParams), ("depth_multiplier", c_int32)]


FbAddParams = _int32_struct("FbAddParams", ADD_PARAM_FIELDS)
FbMeanParams = _int32_struct("FbMeanParams", MEAN_PARAM_FIELDS)
FbPoolParams = _int32_struct("FbPoolParams", POOL_PARAM_FIELDS)
FbFcParams = _int32_struct("FbFcParams", FC_PARAM_FIELDS)
FbSoftmaxParams = _int32_struct("FbSoftmaxParams", SOFTMAX_PARAM_FIELDS)
FbPadParams = _int32_struct("FbPadParams", PAD_PARAM_FIELDS)
FbRequantizeParams = _int32_struct("FbRequantizeParams", REQUANTIZE_PARAM_FIELDS)



class FbBottleneckParams(Structure):
    _fields_ = [("has_expand", c_int32),
                ("expand", FbConvParams), ("expand_q", FbChannelQuant),
                ("expand_filter", POINTER(c_int8)), ("expand_bias", POINTER(c_int32)),
                ("dw", FbDwConvParams), ("dw_q", FbChannelQuant),
                ("dw_filter", POINTER(c_int8)), ("dw_bias", POINTER(c_int32)),
                ("project", FbConvParams), ("project_q", FbChannelQuant),
                ("project_filter", POINTER(c_int8)), ("project_bias", POINTER(c_int32)),
                ("has_residual", c_int32), ("add", FbAddParams)] + [
                (f, c_int32) for f in ("in_c", "mid_c", "out_c", "kh", "kw", "band_rows")]


# The kernels' parameter structs are plain int32 fields, so their layout (and
# that of the prepared tables: int32/int16/int8 values) is the same on the host
# and on Cortex-M; both are little-endian.
for _struct, _fields in ((FbConvParams, CONV_PARAM_FIELDS), (FbFilterDims, FILTER_DIM_FIELDS),
                         (FbDwConvParams, CONV_PARAM_FIELDS + ("depth_multiplier",))):
    assert ctypes.sizeof(_struct) == 4 * len(_fields), _struct
assert sys.byteorder == "little", "prepared tables are computed in the target's (little-endian) byte order"

_P = POINTER
_SIGNATURES = {
    "fb_conv_s8": [_P(FbConvParams), _P(FbChannelQuant), _P(FbView), _P(FbFilterDims), _P(c_int8),
                   _P(c_int32), _P(FbView), _P(c_int8)],
    "fb_conv_s8_buffer_size": [_P(FbFilterDims), _P(FbView), _P(FbView)],
    "fb_dw_conv_s8": [_P(FbDwConvParams), _P(FbChannelQuant), _P(FbView), _P(FbFilterDims),
                      _P(c_int8), _P(c_int32), _P(FbView), _P(c_int8)],
    "fb_dw_conv_s8_buffer_size": [_P(FbFilterDims), _P(FbView), _P(FbView)],
    "fb_conv_s8_buffer_size_prepared": [_P(FbFilterDims), _P(FbView), _P(FbView)],
    "fb_dw_conv_s8_buffer_size_prepared": [_P(FbFilterDims), _P(FbView), _P(FbView)],
    "fb_conv_s8_prepared_size": [_P(FbFilterDims)],
    "fb_dw_conv_s8_prepared_size": [_P(FbFilterDims)],
    "fb_conv_s8_prepare": [_P(FbConvParams), _P(FbChannelQuant), _P(FbFilterDims), _P(c_int8), _P(c_int32),
                           c_void_p],
    "fb_dw_conv_s8_prepare": [_P(FbDwConvParams), _P(FbChannelQuant), _P(FbFilterDims), _P(c_int8),
                              _P(c_int32), c_void_p],
    "fb_add_s8": [_P(FbAddParams), _P(FbView), _P(FbView), _P(FbView)],
    "fb_bottleneck_s8": [_P(FbBottleneckParams), _P(FbView), _P(FbView), _P(c_int8)],
    "fb_bottleneck_s8_buffer_size": [_P(FbBottleneckParams), _P(FbView), _P(FbView)],
    "fb_mean_s8": [_P(FbMeanParams), _P(FbView), _P(c_int8)],
    "fb_avgpool_s8": [_P(FbPoolParams), _P(FbView), _P(FbView)],
    "fb_fully_connected_s8": [_P(FbFcParams), _P(c_double), _P(c_int8), _P(c_int8), _P(c_int32),
                              _P(c_int8)],
    "fb_softmax_s8": [_P(FbSoftmaxParams), _P(c_int8), _P(c_int8)],
    "fb_pad_s8": [_P(FbPadParams), _P(FbView), _P(FbView)],
    "fb_requantize_s8": [_P(FbRequantizeParams), _P(c_int8), _P(c_int8)],
    "fb_copy_s8": [_P(c_int8), _P(c_int8), c_int32],
    "fb_multiply_by_quantized_multiplier": [c_int32, c_int32, c_int32],
    "fb_requant_reference_batch": [c_int32, c_int32, c_int32, _P(c_int32), c_int32, _P(c_int32)],
}
_DSP_SIGNATURES = {
    "fb_requant_fast_batch": [c_int32, c_int32, c_int32, c_int32, _P(c_int32), c_int32, _P(c_int32)],
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
        raise FusebenchError(f"host C compiler '{compiler}' not found: install gcc "
                             "(apt-get install gcc) or set CC")
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


# -- prepared tables ----------------------------------------------------------------------

def _conv_structs(kernel: str, params: dict[str, int]):
    dims = FbFilterDims(*(params[f] for f in FILTER_DIM_FIELDS))
    conv = FbConvParams(*(params[f] for f in CONV_PARAM_FIELDS))
    return (conv if kernel == "fb_conv_s8" else FbDwConvParams(conv, params["depth_multiplier"])), dims


def _conv_constants(arrays: dict[str, np.ndarray]):
    """multiplier, shift, filter, bias (or None) as contiguous arrays of the C types."""
    bias = arrays.get("bias")
    return (np.ascontiguousarray(arrays["multiplier"], dtype=np.int32),
            np.ascontiguousarray(arrays["shift"], dtype=np.int32),
            np.ascontiguousarray(arrays["filter"], dtype=np.int8),
            None if bias is None else np.ascontiguousarray(bias, dtype=np.int32))


def prepare_tables(kernel: str, params: dict[str, int], arrays: dict[str, np.ndarray],
                   kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """The prepared tables of a conv ("fb_conv_s8") or depthwise ("fb_dw_conv_s8")
    layer, computed by the runtime's fb_*_prepare() (every build compiles it and
    gives the same bytes), as int32 words in the target's byte order: the whole
    tables when the optimized kernel takes the layer, else only the 16-byte
    header (fast == 0), which is all a kernel reads then."""
    if kernel not in ("fb_conv_s8", "fb_dw_conv_s8"):
        raise FusebenchError(f"{kernel} has no prepared tables")
    lib = library(kernels)
    cparams, dims = _conv_structs(kernel, params)
    mult, shift, filt, bias = _conv_constants(arrays)
    size = int(getattr(lib, kernel + "_prepared_size")(ctypes.byref(dims)))
    if size < PREPARED_HEADER_BYTES:
        raise FusebenchError(f"{kernel}: no prepared tables for filter dims "
                             f"{[params[f] for f in FILTER_DIM_FIELDS]}")
    tables = np.zeros(-(-size // 4), dtype=np.int32)      # numpy data is at least 16-byte aligned
    q = FbChannelQuant(_ptr(mult, c_int32), _ptr(shift, c_int32), None)
    status = getattr(lib, kernel + "_prepare")(ctypes.byref(cparams), ctypes.byref(q), ctypes.byref(dims),
                                               _ptr(filt), None if bias is None else _ptr(bias, c_int32),
                                               tables.ctypes.data)
    _check(kernel + "_prepare", status)
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
           prepared: bool = True) -> list[np.ndarray]:
    """Run one kernel call on numpy int8 arrays (the activation inputs, in
    `call.inputs` order) and return its outputs.

    With `output_window`, only that window of the output map is computed, into
    `out` if given (else into zeros). With `input_windows`, each input is handed
    to the kernel as a copy of just that window (rows `row_padding` bytes apart),
    so the kernel must find everything it reads there. `kernels` picks the
    portable or the DSP build of the runtime. Conv and depthwise get the call's
    prepared tables (arrays["prepared"]) and call.scratch_bytes of scratch, as in
    the firmware; prepared=False passes NULL tables and *_buffer_size() bytes of
    scratch instead. A kernel that needs more scratch than that, or writes past
    it, is an error."""
    return _run_op(call, inputs, output_window=output_window, input_windows=input_windows,
                   row_padding=row_padding, out=out, kernels=kernels, prepared=prepared)[0]


def scratch_high_water(call: KernelCall, inputs: list[np.ndarray], *, kernels: str = DEFAULT_KERNELS,
                       prepared: bool = True, **window_args) -> int:
    """How many leading bytes of its scratch the kernel writes (the highest
    written byte + 1) on these inputs: two runs on scratch filled with different
    bytes, so a written byte shows in at least one of them."""
    top = 0
    for fill in (_SCRATCH_FILL, 0xC3):
        _, scratch = _run_op(call, inputs, kernels=kernels, prepared=prepared, scratch_fill=fill, **window_args)
        if scratch is not None:
            written = np.flatnonzero(scratch != fill)
            top = max(top, int(written[-1]) + 1 if written.size else 0)
    return top


def _run_op(call: KernelCall, inputs: list[np.ndarray], *, output_window: Optional[Window] = None,
            input_windows: Optional[list[Window]] = None, row_padding: int = 0,
            out: Optional[np.ndarray] = None, kernels: str = DEFAULT_KERNELS, prepared: bool = True,
            scratch_fill: int = _SCRATCH_FILL) -> tuple[list[np.ndarray], Optional[np.ndarray]]:
    lib = library(kernels)
    if len(inputs) != len(call.inputs):
        raise FusebenchError(f"{call.kernel} takes {len(call.inputs)} inputs, got {len(inputs)}")
    arrays = []
    for array, shape in zip(inputs, call.input_shapes):
        array = np.ascontiguousarray(array)
        if array.dtype != np.int8 or array.size != int(np.prod(shape, dtype=np.int64)):
            raise FusebenchError(f"{call.kernel}: input must be int8 of shape {list(shape)}, "
                                 f"got {array.dtype} {list(array.shape)}")
        arrays.append(array)
    out_shape = call.output_shapes[0]
    output = np.zeros(out_shape, dtype=np.int8) if out is None else out
    if output.dtype != np.int8 or not output.flags.c_contiguous or output.size != int(np.prod(out_shape)):
        raise FusebenchError(f"{call.kernel}: output buffer must be contiguous int8 {list(out_shape)}")

    scratch = None
    if call.kernel in VIEW_KERNELS:
        scratch = _run_view_kernel(lib, call, arrays, output, output_window, input_windows, row_padding,
                                   prepared, scratch_fill)
    else:
        if output_window is not None or input_windows is not None:
            raise FusebenchError(f"{call.kernel} works on whole tensors, not windows")
        _run_flat_kernel(lib, call, arrays, output)
    return [output], scratch


def _scratch(size: int, fill: int) -> np.ndarray:
    """`size` bytes of scratch plus a guard, filled with `fill`, 4-byte aligned
    (numpy's allocations are)."""
    buf = np.full(size + _SCRATCH_GUARD, fill, dtype=np.uint8)
    assert buf.ctypes.data % 8 == 0
    return buf


def _run_view_kernel(lib, call: KernelCall, arrays: list[np.ndarray], output: np.ndarray,
                     output_window: Optional[Window], input_windows: Optional[list[Window]],
                     row_padding: int, prepared: bool, scratch_fill: int) -> Optional[np.ndarray]:
    """Runs the kernel; returns its scratch (bytes, without the guard) or None."""
    maps = [a.reshape(map_hwc(s)) for a, s in zip(arrays, call.input_shapes)]
    out_map = output.reshape(map_hwc(call.output_shapes[0]))
    keep = []                                   # buffers the views point into
    if input_windows is None:
        in_views = [_map_view(m) for m in maps]
    else:
        in_views = []
        for m, window in zip(maps, input_windows):
            buf, view = _staged(m, window, row_padding)
            keep.append(buf)
            in_views.append(view)
    staged_out = output_window is not None or row_padding > 0
    if staged_out:
        window = output_window or (0, 0, out_map.shape[0], out_map.shape[1])
        out_buf, out_view = _staged(out_map, window, row_padding)
        out_buf[:, :window[3] * out_map.shape[2]] = _SENTINEL
    else:
        out_view = _map_view(out_map)

    p = call.params
    scratch = None
    if call.kernel in ("fb_conv_s8", "fb_dw_conv_s8"):
        params, dims = _conv_structs(call.kernel, p)
        tables = call.arrays.get("prepared") if prepared else None
        size_fn = getattr(lib, call.kernel + ("_buffer_size_prepared" if tables is not None else "_buffer_size"))
        needed = size_fn(ctypes.byref(dims), ctypes.byref(in_views[0]), ctypes.byref(out_view))
        if tables is not None:
            tables = np.ascontiguousarray(tables)
            size = call.scratch_bytes
            if needed > size:
                raise FusebenchError(f"{call.kernel} needs {needed} scratch bytes, lowering said {size}")
        else:
            size = needed
        mult, shift, filt, bias = _conv_constants(call.arrays)
        keep += [mult, shift, filt, bias]
        q = FbChannelQuant(_ptr(mult, c_int32), _ptr(shift, c_int32),
                           None if tables is None else tables.ctypes.data)
        # no scratch at all is a null pointer, as in the generated code
        scratch = _scratch(size, scratch_fill) if size > 0 else None
        status = getattr(lib, call.kernel)(ctypes.byref(params), ctypes.byref(q),
                                           ctypes.byref(in_views[0]), ctypes.byref(dims),
                                           _ptr(filt), None if bias is None else _ptr(bias, c_int32),
                                           ctypes.byref(out_view),
                                           None if scratch is None else _ptr(scratch))
        if scratch is not None and np.any(scratch[size:] != scratch_fill):
            raise FusebenchError(f"{call.kernel} wrote past its {size} bytes of scratch")
    elif call.kernel == "fb_add_s8":
        params = FbAddParams(*(p[f] for f in ADD_PARAM_FIELDS))
        status = lib.fb_add_s8(ctypes.byref(params), ctypes.byref(in_views[0]),
                               ctypes.byref(in_views[1]), ctypes.byref(out_view))
    elif call.kernel == "fb_avgpool_s8":
        params = FbPoolParams(*(p[f] for f in POOL_PARAM_FIELDS))
        status = lib.fb_avgpool_s8(ctypes.byref(params), ctypes.byref(in_views[0]), ctypes.byref(out_view))
    elif call.kernel == "fb_pad_s8":
        params = FbPadParams(*(p[f] for f in PAD_PARAM_FIELDS))
        status = lib.fb_pad_s8(ctypes.byref(params), ctypes.byref(in_views[0]), ctypes.byref(out_view))
    else:
        raise FusebenchError(f"unknown view kernel {call.kernel}")
    _check(call.kernel, status)

    if staged_out:
        y0, x0, h, w = out_view.y0, out_view.x0, out_view.h, out_view.w
        c = out_map.shape[2]
        if row_padding and np.any(out_buf[:, w * c:] != _SENTINEL):
            raise FusebenchError(f"{call.kernel} wrote outside its output window")
        out_map[y0:y0 + h, x0:x0 + w, :] = out_buf[:, :w * c].reshape(h, w, c)
    return None if scratch is None else scratch[:len(scratch) - _SCRATCH_GUARD]


def _run_flat_kernel(lib, call: KernelCall, arrays: list[np.ndarray], output: np.ndarray) -> None:
    p = call.params
    x = arrays[0]
    if call.kernel == "fb_mean_s8":
        params = FbMeanParams(*(p[f] for f in MEAN_PARAM_FIELDS))
        status = lib.fb_mean_s8(ctypes.byref(params), ctypes.byref(_map_view(x.reshape(
            map_hwc(call.input_shapes[0])))), _ptr(output))
    elif call.kernel == "fb_fully_connected_s8":
        params = FbFcParams(*(p[f] for f in FC_PARAM_FIELDS))
        scale = np.ascontiguousarray(call.arrays["effective_scale"], dtype=np.float64)
        filt = np.ascontiguousarray(call.arrays["filter"], dtype=np.int8)
        bias = call.arrays.get("bias")
        bias_arr = np.ascontiguousarray(bias, dtype=np.int32) if bias is not None else None
        status = lib.fb_fully_connected_s8(ctypes.byref(params), _ptr(scale, c_double), _ptr(x),
                                           _ptr(filt), _ptr(bias_arr, c_int32) if bias is not None else None,
                                           _ptr(output))
    elif call.kernel == "fb_softmax_s8":
        params = FbSoftmaxParams(*(p[f] for f in SOFTMAX_PARAM_FIELDS))
        status = lib.fb_softmax_s8(ctypes.byref(params), _ptr(x), _ptr(output))
    elif call.kernel == "fb_requantize_s8":
        params = FbRequantizeParams(*(p[f] for f in REQUANTIZE_PARAM_FIELDS))
        status = lib.fb_requantize_s8(ctypes.byref(params), _ptr(x), _ptr(output))
    elif call.kernel == "fb_copy_s8":
        status = lib.fb_copy_s8(_ptr(x), _ptr(output), p["size"])
    else:
        raise FusebenchError(f"unknown kernel {call.kernel}")
    _check(call.kernel, status)


# -- inverted residual blocks (fb_bottleneck_s8) -------------------------------------------

def bottleneck_struct(calls: Sequence[KernelCall], band_rows: int) -> tuple[FbBottleneckParams, list]:
    """The fb_bottleneck_params of a block from its lowered calls ([expand,]
    depthwise, project[, add]; harness.backend.lowering.bottleneck_parts), and the
    arrays its pointers point into (keep them alive while the struct is used).
    An ADD that adds (projection, block input) gets its input fields swapped:
    the kernel's input 1 is the block input."""
    expand, dw, project, add = bottleneck_parts(calls)
    keep: list = []

    def stage(call: Optional[KernelCall]):
        if call is None:
            return FbChannelQuant(None, None, None), None, None
        mult, shift, filt, bias = _conv_constants(call.arrays)
        keep.extend([mult, shift, filt, bias])
        return (FbChannelQuant(_ptr(mult, c_int32), _ptr(shift, c_int32), None), _ptr(filt),
                None if bias is None else _ptr(bias, c_int32))

    params = FbBottleneckParams()
    params.has_expand = int(expand is not None)
    if expand is not None:
        params.expand = FbConvParams(*(expand.params[f] for f in CONV_PARAM_FIELDS))
    params.expand_q, params.expand_filter, params.expand_bias = stage(expand)
    params.dw, _ = _conv_structs("fb_dw_conv_s8", dw.params)
    params.dw_q, params.dw_filter, params.dw_bias = stage(dw)
    params.project = FbConvParams(*(project.params[f] for f in CONV_PARAM_FIELDS))
    params.project_q, params.project_filter, params.project_bias = stage(project)
    params.has_residual = int(add is not None)
    if add is not None:
        a = dict(add.params)
        if add.inputs[0] != (expand or dw).inputs[0]:          # ADD(projection, block input)
            for f in ("offset", "multiplier", "shift"):
                a["input1_" + f], a["input2_" + f] = a["input2_" + f], a["input1_" + f]
        params.add = FbAddParams(*(a[f] for f in ADD_PARAM_FIELDS))
    params.in_c = map_hwc((expand or dw).input_shapes[0])[2]
    params.mid_c = dw.params["out_c"]
    params.out_c = project.params["out_c"]
    params.kh, params.kw = dw.params["kh"], dw.params["kw"]
    params.band_rows = band_rows
    return params, keep


def _bottleneck_maps(calls: Sequence[KernelCall]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The block's input and output tensor shapes."""
    expand, dw, project, add = bottleneck_parts(calls)
    return (expand or dw).input_shapes[0], (add or project).output_shapes[0]


def bottleneck_buffer_size(calls: Sequence[KernelCall], band_rows: int, kernels: str = DEFAULT_KERNELS) -> int:
    """fb_bottleneck_s8_buffer_size() for the block (0 for unusable arguments)."""
    params, _ = bottleneck_struct(calls, band_rows)
    in_shape, out_shape = _bottleneck_maps(calls)
    in_map = np.zeros(map_hwc(in_shape), np.int8)
    out_map = np.zeros(map_hwc(out_shape), np.int8)
    return int(library(kernels).fb_bottleneck_s8_buffer_size(
        ctypes.byref(params), ctypes.byref(_map_view(in_map)), ctypes.byref(_map_view(out_map))))


def run_bottleneck(calls: Sequence[KernelCall], block_input: np.ndarray, band_rows: int, *,
                   row_padding: int = 0, kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """Run a whole inverted residual block with fb_bottleneck_s8 (one expansion
    channel at a time, output in bands of band_rows rows) on the block input
    and return its output (the shape of the last call's output). `calls` are
    the block's lowered ops ([expand,] depthwise, project[, add]). The kernel
    gets exactly fb_bottleneck_s8_buffer_size() bytes of scratch; writing past
    them is an error. row_padding > 0 hands input and output over in buffers
    whose rows are that many bytes longer (sentinel-filled; a write there is
    an error)."""
    return _run_bottleneck(calls, block_input, band_rows, row_padding=row_padding, kernels=kernels)[0]


def bottleneck_scratch_high_water(calls: Sequence[KernelCall], block_input: np.ndarray, band_rows: int, *,
                                  kernels: str = DEFAULT_KERNELS) -> int:
    """How many leading bytes of its scratch fb_bottleneck_s8 writes (see
    scratch_high_water)."""
    top = 0
    for fill in (_SCRATCH_FILL, 0xC3):
        _, scratch = _run_bottleneck(calls, block_input, band_rows, kernels=kernels, scratch_fill=fill)
        written = np.flatnonzero(scratch != fill)
        top = max(top, int(written[-1]) + 1 if written.size else 0)
    return top


def _run_bottleneck(calls: Sequence[KernelCall], block_input: np.ndarray, band_rows: int, *,
                    row_padding: int = 0, kernels: str = DEFAULT_KERNELS,
                    scratch_fill: int = _SCRATCH_FILL) -> tuple[np.ndarray, np.ndarray]:
    lib = library(kernels)
    params, keep = bottleneck_struct(calls, band_rows)
    in_shape, out_shape = _bottleneck_maps(calls)
    x = np.ascontiguousarray(block_input)
    if x.dtype != np.int8 or x.size != int(np.prod(in_shape, dtype=np.int64)):
        raise FusebenchError(f"fb_bottleneck_s8: input must be int8 of shape {list(in_shape)}, "
                             f"got {x.dtype} {list(x.shape)}")
    in_map = x.reshape(map_hwc(in_shape))
    out_map = np.zeros(map_hwc(out_shape), np.int8)
    oh, ow, oc = out_map.shape
    in_buf, in_view = _staged(in_map, (0, 0, in_map.shape[0], in_map.shape[1]), row_padding)
    out_buf, out_view = _staged(out_map, (0, 0, oh, ow), row_padding)
    out_buf[:, :ow * oc] = _SENTINEL
    size = lib.fb_bottleneck_s8_buffer_size(ctypes.byref(params), ctypes.byref(in_view), ctypes.byref(out_view))
    if size <= 0:
        raise FusebenchError(f"fb_bottleneck_s8_buffer_size() is {size}: the kernel refuses these arguments "
                             f"(band_rows {band_rows})")
    scratch = _scratch(size, scratch_fill)
    status = lib.fb_bottleneck_s8(ctypes.byref(params), ctypes.byref(in_view), ctypes.byref(out_view),
                                  _ptr(scratch))
    _check("fb_bottleneck_s8", status)
    if np.any(scratch[size:] != scratch_fill):
        raise FusebenchError(f"fb_bottleneck_s8 wrote past its {size} bytes of scratch")
    if row_padding and np.any(out_buf[:, ow * oc:] != _SENTINEL):
        raise FusebenchError("fb_bottleneck_s8 wrote outside its output rows")
    if not np.array_equal(in_buf[:, :in_map.shape[1] * in_map.shape[2]].reshape(in_map.shape), in_map):
        raise FusebenchError("fb_bottleneck_s8 modified its input")
    del keep
    return out_buf[:, :ow * oc].reshape(out_shape).copy(), scratch[:size]


# -- whole graphs ---------------------------------------------------------------------------

def run_graph_tensors(graph: Graph, x: np.ndarray, kernels: str = DEFAULT_KERNELS) -> dict[int, np.ndarray]:
    """Run every op in order on the host; every activation tensor by index."""
    x = np.asarray(x)
    inp = graph.input
    if x.dtype != np.int8:
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
    """The model output for input `x`, computed by the C kernels on the host."""
    return run_graph_tensors(graph, x, kernels)[graph.outputs[0]]


def run_plan(graph: Graph, plan, x: np.ndarray, kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """The model output for input `x` as `plan` schedules it: layer-by-layer
    ops with run_op, each stage by its own run_host (harness.schedules.stages),
    so a schedule's tile tables or reordered blocks are checked on the host
    without building its C."""
    tensors = {graph.inputs[0]: np.ascontiguousarray(np.asarray(x, np.int8).reshape(graph.input.shape))}
    for op in graph.ops:
        stage = plan.stage_at(op.index)
        if stage is not None:
            if op.index == stage.ops[0]:
                stage.run_host(graph, tensors, lower_op, kernels)
            continue
        call = lower_op(graph, op)
        (tensors[call.outputs[0]],) = run_op(call, [tensors[t] for t in call.inputs], kernels=kernels)
    return tensors[graph.outputs[0]]
