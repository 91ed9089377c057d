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

from harness.backend.cstructs import struct as cstruct
from harness.backend.kernels import Const, Flat, FlatList, Params, Quant, Scalar, Scratch, View
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


_C_TYPES = {"int8": "int8_t", "int32": "int32_t", "float64": "double", "int16": "int16_t", "uint8": "uint8_t",
            "float32": "float"}


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

    @staticmethod
    def scratch_decl(name: str, offset: int, size: int) -> str:
        """A fb_scratch of `size` planned bytes at `offset` in the arena
        (static: a constant in flash, nothing built on the stack per call)."""
        return f"static const fb_scratch {name} = {{ fb_arena + {offset}, {size} }};"

    @staticmethod
    def struct(ctype: str, name: str, fields: dict) -> str:
        """`static const <ctype> <name> = { .field = value, ... };` for a struct
        of int32 values (nested structs as nested initialisers)."""
        return f"static const {ctype} {name} = {{ {', '.join(_int_inits(ctype, fields))} }};"

    def initialiser(self, ctype: str, values) -> str:
        """The C initialiser of a value tree (KernelCall.struct_values):
        designated fields in struct order for a dict (absent fields are not
        written: zero), positional for a tuple; arrays go into the weight blob,
        None is a null pointer of the field's type."""
        decl = cstruct(ctype)
        if isinstance(values, tuple):
            items = zip((f.name for f in decl.fields), values)
            return "{ " + ", ".join(self._value(decl.field(k), v) for k, v in items) + " }"
        return "{ " + ", ".join(self.field_inits(ctype, values)) + " }"

    def field_inits(self, ctype: str, values: dict) -> list[str]:
        return [f".{f.name} = {self._value(f, values[f.name])}" for f in cstruct(ctype).fields if f.name in values]

    def _value(self, f, value) -> str:
        if f.is_struct:
            return self.initialiser(f.ctype, value)
        if f.pointer:
            if value is None:
                return f"({f.c_decl})0"
            if isinstance(value, int):
                return str(value)
            return self.const(value)
        return str(int(value))

    def step(self, step: int, op: Op, call, view=None, scratch: Optional[str] = None) -> list[str]:
        """C statements of one step; `call` is the op's lowering.KernelCall.
        `view(name, tensor, role)` declares a fb_view (default: the whole map in
        the arena); role is 'in', 'elementwise' or 'out' (kernels.View); fused
        stages pass windows on tile buffers. `scratch`: a C expression of the
        `const fb_scratch *` to pass (default: the step's own planned scratch)."""
        out = [f"/* step {step}: op {op.index} {op.kind} -> {self.graph.tensors[op.outputs[0]].name[:60]} */"]
        spec = call.spec
        if spec.skip_when_aliased:
            src, dst = self.arena(call.inputs[0]), self.arena(call.outputs[0])
            if src == dst:
                return out + [f"st = FB_OK; /* {op.kind}: output shares its input's bytes */"]
        if scratch is None and spec.buffer_size is not None:
            a = self.plan.scratch_of(step)
            if a is not None and a.size > 0:
                out.append(self.scratch_decl("scratch", a.offset, a.size))
                scratch = "&scratch"
        return out + self.call(call, view, scratch)

    def call(self, call, view=None, scratch: Optional[str] = None) -> list[str]:
        """The declarations and the call statement of one KernelCall, from its
        kernel's table entry (harness.backend.kernels): parameter structs, then
        the channel quantization, then the views, each in argument order; then
        `st = kernel(args);`. `scratch`: the `const fb_scratch *` expression
        (None: a null pointer, no scratch)."""
        view = view or (lambda name, tensor, role: self.view(name, tensor))
        spec = call.spec
        self._place_constants(call)
        decls = []
        for arg in spec.of_role(Params):
            values = call.struct_values(arg)
            if cstruct(arg.struct).has_pointers:       # pointers into the blob: one field a line
                decls += [f"const {arg.struct} {arg.name} = {{",
                          *(f"    {x}," for x in self.field_inits(arg.struct, values)), "};"]
            else:
                decls.append(self.struct(arg.struct, arg.name, values))
        for arg in spec.of_role(Quant):
            # the optimized kernels' tables, prepared at build time, in flash (8-byte aligned)
            a = call.arrays
            prepared = (self.const(a["prepared"]) if self.tables and a.get("prepared") is not None
                        else "(const void *)0")
            decls.append(f"const fb_channel_quant {arg.name} = {{ {self.const(a['multiplier'])}, "
                         f"{self.const(a['shift'])}, {prepared} }};")
        for arg in spec.of_role(View):
            tensor = call.outputs[0] if arg.input is None else call.inputs[arg.input]
            decls.append(self.view(arg.name, tensor) if arg.role == "whole" else view(arg.name, tensor, arg.role))
        for arg in spec.of_role(FlatList):
            # the inputs' addresses in the arena: a constant table (flash)
            pointers = ", ".join(self.arena(t) for t in call.inputs[arg.first:])
            decls.append(f"static const int8_t *const {arg.name}[] = {{ {pointers} }};")
        exprs = []
        for arg in spec.args:
            if isinstance(arg, (Params, Quant, View)):
                exprs.append(f"&{arg.name}")
            elif isinstance(arg, Flat):
                expr = self.arena(call.outputs[0] if arg.input is None else call.inputs[arg.input])
                # uint8 / float32 tensors at the model's edges (arena offsets are 16-byte aligned)
                exprs.append(expr if arg.dtype == "int8" else f"({_C_TYPES[arg.dtype]} *){expr}")
            elif isinstance(arg, FlatList):
                exprs.append(arg.name)
            elif isinstance(arg, Const):
                value = call.arrays.get(arg.name)
                if value is None and not arg.optional:
                    raise FusebenchError(f"{call.kernel} (op {call.op_index}) has no {arg.name} array")
                exprs.append(f"(const {_C_TYPES[arg.dtype]} *)0" if value is None else self.const(value))
            elif isinstance(arg, Scalar):
                exprs.append(str(int(call.params[arg.name])))
            elif isinstance(arg, Scratch):
                exprs.append(scratch or "(const fb_scratch *)0")
        return decls + [f"st = {spec.name}({', '.join(exprs)});"]


    def _place_constants(self, call) -> None:
        """Put the call's constants into the blob in the order the call holds
        them (call.arrays; a params value tree in insertion order), before any
        is written: the blob's layout is the lowering's choice, not the order
        of the C text."""
        spec = call.spec
        used = {a.name for a in spec.of_role(Const)}
        if spec.of_role(Quant):
            used |= {"multiplier", "shift"} | ({"prepared"} if self.tables else set())
        for key in call.arrays:                       # iterating the keys computes no tables
            if key in used and call.arrays.get(key) is not None:
                self.const(call.arrays[key])

        def walk(value) -> None:
            if isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, tuple):
                for v in value:
                    walk(v)
            elif isinstance(value, np.ndarray):
                self.const(value)
        for arg in spec.of_role(Params):
            if arg.name in call.trees:
                walk(call.trees[arg.name])


def _int_inits(ctype: str, values: dict) -> list[str]:
    inits = []
    for f in cstruct(ctype).fields:
        if f.pointer:
            raise FusebenchError(f"{ctype}.{f.name} is a pointer: not a static parameter struct")
        v = values[f.name]
        inits.append(f".{f.name} = " + ("{ " + ", ".join(_int_inits(f.ctype, v)) + " }" if f.is_struct else str(int(v))))
    return inits


def generate_sources(graph: Graph, plan: Plan, board=None, out_dir: Optional[Path] = None,
                     lower=None) -> list[Path]:
    """Write fb_model.h, fb_model.c and weights.bin for `plan` into out_dir."""
    from harness.backend.lowering import lower_op
    from harness.schedules.order import executed_graph
    lower = lower or lower_op
    graph = executed_graph(graph, plan)
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
    in_t = graph.input
    outs = [graph.tensors[t] for t in graph.outputs]
    out_text = ", ".join(f"{t.dtype} {list(t.shape)}" for t in outs)
    out_offsets = ", ".join(str(plan.allocation_of(t.index).offset) for t in outs)
    out_sizes = ", ".join(str(t.nbytes) for t in outs)
    header = f"""/* Generated by fusebench from {graph.name} ({plan.variant}); do not edit. */
#ifndef FB_MODEL_H
#define FB_MODEL_H
#include <stdint.h>

/* input {in_t.dtype} {list(in_t.shape)}, output{"s" if len(outs) > 1 else ""} {out_text}: the bytes
 * of those values (little-endian), whatever their type. FB_OUTPUT_BYTES counts
 * every output: the host reads them joined, in this order. */
#define FB_INPUT_BYTES  {in_t.nbytes}
#define FB_OUTPUT_BYTES {graph.output_bytes}
#define FB_NUM_OUTPUTS  {len(outs)}
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
/* Output `index` (0 .. FB_NUM_OUTPUTS-1), fb_model_output_bytes[index] bytes. */
const int8_t *fb_model_output(int index);
extern const uint32_t fb_model_output_bytes[FB_NUM_OUTPUTS];
int fb_model_run(void);
/* Streamed input: copies `len` bytes of the flat NHWC input, from byte
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
static const uint32_t output_offsets[FB_NUM_OUTPUTS] = {{{out_offsets}}};
const uint32_t fb_model_output_bytes[FB_NUM_OUTPUTS] = {{{out_sizes}}};
const int8_t *fb_model_output(int index) {{ return fb_arena + output_offsets[index]; }}

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
