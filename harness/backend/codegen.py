"""Plan -> C: the generated part of the firmware.

Writes, into one folder:
  fb_model.h    sizes of the input, output and arena, and the model's entry points
  fb_model.c    one static arena of exactly the planned size and the op sequence,
                each op a call of a runtime kernel on views at planned offsets
  weights.bin   every constant (weights, biases, requantization multipliers and
                shifts) in one aligned blob, placed in flash with `.incbin`
                (compiles in a blink where a multi-MB C initialiser takes minutes)

Files are rewritten only when their content changes, so builds stay cached.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np

from harness.errors import FusebenchError
from harness.frontend.graph import Graph, Op
from harness.schedules.plan import Plan
from harness.targets.protocol import INPUT_READ_FAILED


class WeightBlob:
    """Constant arrays packed into one aligned byte blob, deduplicated."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self._seen: dict[bytes, int] = {}

    def add(self, array: np.ndarray, align: int = 8) -> int:
        data = np.ascontiguousarray(array).tobytes()
        key = hashlib.sha1(data).digest() + bytes([np.asarray(array).dtype.itemsize])
        if key in self._seen:
            return self._seen[key]
        pad = (-self.size) % align
        if pad:
            self.chunks.append(bytes(pad))
            self.size += pad
        offset = self.size
        self.chunks.append(data)
        self.size += len(data)
        self._seen[key] = offset
        return offset

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


_C_TYPES = {"int8": "int8_t", "int32": "int32_t", "float64": "double", "int16": "int16_t"}


def _write_if_changed(path: Path, content: bytes) -> None:
    if path.exists() and path.read_bytes() == content:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def _view_dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(h, w, c) of a batch-1 tensor: NHWC maps, or [1, N] vectors as 1x1xN."""
    if len(shape) == 4:
        if shape[0] != 1:
            raise FusebenchError(f"batch size {shape[0]} is not supported (batch 1 only)")
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    n = int(np.prod(shape))
    return 1, 1, n


class _Emitter:
    def __init__(self, graph: Graph, plan: Plan, tables: bool = True):
        self.graph = graph
        self.plan = plan
        self.tables = tables          # emit the optimized kernels' prepared tables
        self.blob = WeightBlob()
        self.lines: list[str] = []

    def const(self, array: np.ndarray) -> str:
        """C expression for a constant array in the blob."""
        array = np.asarray(array)
        ctype = _C_TYPES[array.dtype.name]
        offset = self.blob.add(array, align=max(8, array.dtype.itemsize))
        return f"((const {ctype} *)(fb_weights + {offset}))"

    def arena(self, tensor: int) -> str:
        return f"(fb_arena + {self.plan.allocation_of(tensor).offset})"

    def dims(self, tensor: int) -> tuple[int, int, int]:
        """(h, w, c) of a tensor as a view sees it."""
        return _view_dims(self.graph.tensors[tensor].shape)

    def view(self, name: str, tensor: int) -> str:
        h, w, c = _view_dims(self.graph.tensors[tensor].shape)
        return (f"fb_view {name} = {{ {self.arena(tensor)}, 0, 0, {h}, {w}, {c}, {w * c}, {h}, {w} }};")

    def scratch(self, step: int) -> str:
        a = self.plan.scratch_of(step)
        return f"(fb_arena + {a.offset})" if a is not None else "(int8_t *)0"

    @staticmethod
    def struct(ctype: str, name: str, fields: dict) -> str:
        inits = ", ".join(f".{k} = {int(v)}" for k, v in fields.items())
        return f"static const {ctype} {name} = {{ {inits} }};"

    def step(self, step: int, op: Op, call, view=None, scratch: Optional[str] = None) -> list[str]:
        """C statements of one step; `call` is the op's lowering.KernelCall.
        `view(name, tensor, role)` declares a fb_view (default: the whole map in
        the arena); role is 'in' or 'out'; fused stages pass windows on tile buffers."""
        view = view or (lambda name, tensor, role: self.view(name, tensor))
        scratch_expr = scratch if scratch is not None else self.scratch(step)
        k = call.kernel
        p = call.params
        a = call.arrays
        out = [f"/* step {step}: op {op.index} {op.kind} -> {self.graph.tensors[op.outputs[0]].name[:60]} */"]
        ins, outs = call.inputs, call.outputs
        if k in ("fb_conv_s8", "fb_dw_conv_s8"):
            conv_fields = {f: p[f] for f in ("input_offset", "output_offset", "stride_h", "stride_w",
                                             "dilation_h", "dilation_w", "pad_top", "pad_left",
                                             "act_min", "act_max")}
            if k == "fb_conv_s8":
                out.append(self.struct("fb_conv_params", "prm", conv_fields))
            else:
                inits = ", ".join(f".{f} = {int(v)}" for f, v in conv_fields.items())
                out.append(f"static const fb_dw_conv_params prm = {{ .conv = {{ {inits} }}, "
                           f".depth_multiplier = {int(p['depth_multiplier'])} }};")
            out.append(self.struct("fb_filter_dims", "fd", {f: p[f] for f in ("out_c", "kh", "kw", "in_c")}))
            # the optimized kernels' tables, prepared at build time, in flash (8-byte aligned)
            prepared = (self.const(a["prepared"]) if self.tables and a.get("prepared") is not None
                        else "(const void *)0")
            out.append(f"const fb_channel_quant q = {{ {self.const(a['multiplier'])}, {self.const(a['shift'])}, "
                       f"{prepared} }};")
            out.append(view("in", ins[0], "in"))
            out.append(view("out", outs[0], "out"))
            bias = self.const(a["bias"]) if a.get("bias") is not None else "(const int32_t *)0"
            out.append(f"st = {k}(&prm, &q, &in, &fd, {self.const(a['filter'])}, {bias}, &out, "
                       f"{scratch_expr});")
        elif k == "fb_add_s8":
            out.append(self.struct("fb_add_params", "prm", p))
            out.append(view("a", ins[0], "elementwise"))
            out.append(view("b", ins[1], "elementwise"))
            out.append(view("out", outs[0], "out"))
            out.append("st = fb_add_s8(&prm, &a, &b, &out);")
        elif k == "fb_mean_s8":
            out.append(self.struct("fb_mean_params", "prm", p))
            out.append(self.view("in", ins[0]))
            out.append(f"st = fb_mean_s8(&prm, &in, {self.arena(outs[0])});")
        elif k == "fb_avgpool_s8":
            out.append(self.struct("fb_pool_params", "prm", p))
            out.append(view("in", ins[0], "in"))
            out.append(view("out", outs[0], "out"))
            out.append("st = fb_avgpool_s8(&prm, &in, &out);")
        elif k == "fb_fully_connected_s8":
            out.append(self.struct("fb_fc_params", "prm", p))
            bias = self.const(a["bias"]) if a.get("bias") is not None else "(const int32_t *)0"
            out.append(f"st = fb_fully_connected_s8(&prm, {self.const(a['effective_scale'])}, "
                       f"{self.arena(ins[0])}, {self.const(a['filter'])}, {bias}, {self.arena(outs[0])});")
        elif k == "fb_softmax_s8":
            out.append(self.struct("fb_softmax_params", "prm", p))
            out.append(f"st = fb_softmax_s8(&prm, {self.arena(ins[0])}, {self.arena(outs[0])});")
        elif k == "fb_pad_s8":
            out.append(self.struct("fb_pad_params", "prm", p))
            out.append(view("in", ins[0], "in"))
            out.append(view("out", outs[0], "out"))
            out.append("st = fb_pad_s8(&prm, &in, &out);")
        elif k == "fb_requantize_s8":
            out.append(self.struct("fb_requantize_params", "prm", p))
            out.append(f"st = fb_requantize_s8(&prm, {self.arena(ins[0])}, {self.arena(outs[0])});")
        elif k == "fb_copy_s8":
            src, dst = self.arena(ins[0]), self.arena(outs[0])
            if src == dst:
                return out + ["st = FB_OK; /* RESHAPE: output shares its input's bytes */"]
            out.append(f"st = fb_copy_s8({src}, {dst}, {self.graph.tensors[outs[0]].nbytes});")
        else:
            raise FusebenchError(f"code generator has no template for kernel {k} (op {op.index} {op.kind})")
        return out


def generate_sources(graph: Graph, plan: Plan, board=None, out_dir: Optional[Path] = None,
                     lower=None) -> list[Path]:
    """Write fb_model.h, fb_model.c and weights.bin for `plan` into out_dir."""
    from harness.backend.lowering import lower_op
    lower = lower or lower_op
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The prepared tables serve only the optimized kernels: a build with the
    # portable ones (no DSP core, or FB_KERNELS=portable) leaves them out of flash.
    tables = True
    if board is not None:
        from harness.backend.build import kernel_defines
        tables = "-DFB_KERNELS_DSP=1" in kernel_defines(board)
    em = _Emitter(graph, plan, tables)
    body: list[str] = []
    for step in plan.steps:
        op = graph.ops[step.op]
        stage = plan.stage_at(op.index)
        if stage is not None:
            if op.index != stage.ops[0]:
                continue
            stmts = stage.emit(em, graph, plan, plan.stages.index(stage), lower)
            done = [plan.steps[i].index for i in stage.ops]   # the whole stage is timed on its first step
        else:
            stmts = em.step(step.index, op, lower(graph, op))
            stmts.append("if (st != FB_OK) return (int)st;")
            done = [step.index]
        body.append("    {")
        body.extend(f"        {s}" for s in stmts)
        body.extend(f"        fb_layer_done({d});" for d in done)
        body.append("    }")
    blob = em.blob.bytes()
    input_expr = ("(int8_t *)0" if plan.input_streamed
                  else f"fb_arena + {plan.allocation_of(graph.inputs[0]).offset}")
    weights_path = (out_dir / "weights.bin").resolve()
    in_t, out_t = graph.input, graph.output
    header = f"""/* Generated by fusebench from {graph.name} ({plan.variant}); do not edit. */
#ifndef FB_MODEL_H
#define FB_MODEL_H
#include <stdint.h>

#define FB_INPUT_BYTES  {in_t.nbytes}
#define FB_OUTPUT_BYTES {out_t.nbytes}
#define FB_ARENA_BYTES  {plan.arena_bytes}
#define FB_NUM_LAYERS   {len(plan.steps)}
#define FB_WEIGHT_BYTES {len(blob)}
/* 1: the input never sits whole in the arena; the model reads it tile by tile
 * through fb_model_read_input() and fb_model_input() is a null pointer. */
#define FB_INPUT_STREAMED {int(plan.input_streamed)}
#define FB_MODEL_ERR_INPUT ({INPUT_READ_FAILED})   /* fb_model_read_input() failed */

extern int8_t fb_arena[];
extern const char fb_model_name[];
extern const char fb_model_variant[];
int8_t *fb_model_input(void);
const int8_t *fb_model_output(void);
int fb_model_run(void);
/* Streamed input: copies `len` bytes of the flat NHWC int8 input, from byte
 * `offset` on, to `dst`; 0 on success. Implemented by whoever runs the model. */
int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len);
/* Called after every layer; the default does nothing, the app may time layers. */
void fb_layer_done(int layer_index);

#endif
"""
    source = f"""/* Generated by fusebench from {graph.name} ({plan.variant}); do not edit.
 * weights.bin sha1 {hashlib.sha1(blob).hexdigest()} ({len(blob)} bytes)
 * planned arena {plan.arena_bytes} bytes, lower bound {plan.lower_bound_bytes} bytes */
#include <string.h>
#include "fb_model.h"
#include "fb_runtime.h"

/* All constants in one blob in flash (read-only data). */
__asm__(".section .rodata.fb_weights, \\"a\\"\\n"
        ".balign 16\\n"
        ".global fb_weights\\n"
        "fb_weights:\\n"
        ".incbin \\"{weights_path}\\"\\n"
        ".previous\\n");
extern const int8_t fb_weights[];

int8_t fb_arena[FB_ARENA_BYTES] __attribute__((aligned(16)));
const char fb_model_name[] = "{graph.name}";
const char fb_model_variant[] = "{plan.variant}";

int8_t *fb_model_input(void) {{ return {input_expr}; }}
const int8_t *fb_model_output(void) {{ return fb_arena + {plan.allocation_of(graph.outputs[0]).offset}; }}

__attribute__((weak)) void fb_layer_done(int layer_index) {{ (void)layer_index; }}

int fb_model_run(void)
{{
    fb_status st;
{chr(10).join(body)}
    return 0;
}}
"""
    paths = [out_dir / "fb_model.h", out_dir / "fb_model.c", out_dir / "weights.bin"]
    _write_if_changed(paths[0], header.encode())
    _write_if_changed(paths[1], source.encode())
    _write_if_changed(paths[2], blob)
    return paths
