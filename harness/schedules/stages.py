"""Stages: runs of consecutive ops that a plan schedules as one unit.

A plan (harness.schedules.plan) runs every op layer by layer except the ops of
its stages. Each stage kind knows its own arena buffers, how to describe
itself, and how to run: it emits its C (for harness.backend.codegen) and runs
on the host (for harness.backend.hostrt). A new way of executing a group of
layers is one new kind here plus the planner that makes it.

  TiledStage      layers computed tile by tile (fused, msf, patch):
                  inner tensors exist only as tile buffers
  ReorderedBlock  an inverted residual block run one (or four) expansion
                  channels at a time by fb_bottleneck_s8 (reordered)
  WindowRead      a STRIDED_SLICE of the streamed graph input: the window is
                  read from the host row by row, the image never whole (UNIST's
                  input segmentation: one patch at a time)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from harness.errors import FusebenchError
from harness.frontend.graph import Graph


class Stage(ABC):
    """What every stage kind has: its ops (consecutive), the tensors it reads
    whole (`inputs`) and writes whole (`outputs`, `output` the main one), the
    tensors that never exist whole (`inner`), MACs as scheduled and as layer
    by layer, and one scratch buffer its kernels share."""

    kind: ClassVar[str]
    # Defaults of the features only some kinds have.
    streamed: int = -1               # the graph input, read piecewise while the stage runs
    acc_bytes: int = 0               # int32 accumulators of a tile-wise global MEAN
    inplace: tuple = ()              # (input tensor, lead): the output overlays that input

    ops: list[int]
    inputs: list[int]
    output: int
    outputs: list[int]
    inner: list[int]
    macs: int
    base_macs: int
    scratch_bytes: int

    @property
    def extra_macs(self) -> int:
        return self.macs - self.base_macs

    def arena_buffers(self) -> list[tuple[str, int]]:
        """The stage's own arena buffers, (name suffix, bytes), live through all its
        steps; the plan calls them s<k>.<suffix>."""
        return [("scratch", self.scratch_bytes)] if self.scratch_bytes else []

    def buffer_descriptions(self) -> list[str]:
        """Each arena buffer as `invoke plan` lists it (after the stage's s<k>.)."""
        return [f"{suffix} {size} B" for suffix, size in self.arena_buffers()]

    @abstractmethod
    def describe(self, graph: Graph) -> str:
        """One line for `invoke plan`."""

    @abstractmethod
    def emit(self, em, graph: Graph, plan, k: int, lower) -> list[str]:
        """The C statements that run stage `k` of `plan` (em: the code
        generator's emitter; lower: op -> KernelCall)."""

    @abstractmethod
    def run_host(self, graph: Graph, tensors: dict[int, np.ndarray], lower, kernels: str) -> None:
        """Run the stage with the host runtime, reading its inputs from
        `tensors` and adding its outputs to it."""

    def to_dict(self) -> dict:
        return dict(asdict(self), kind=self.kind)


def stage_from_dict(d: dict) -> Stage:
    """The inverse of Stage.to_dict (plans saved as JSON)."""
    d = dict(d)
    kind = d.pop("kind", TiledStage.kind)
    kinds = {cls.kind: cls for cls in (TiledStage, ReorderedBlock, WindowRead)}
    if kind not in kinds:
        raise FusebenchError(f"unknown stage kind {kind!r} in a saved plan")
    return kinds[kind](**d)


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / max(whole, 1):.1f}%"


@dataclass
class TiledStage(Stage):
    """Consecutive layers computed tile by tile (harness.schedules.geometry
    builds it): every op runs the same kernel as layer by layer, on windows of
    tile buffers (inner tensors) or of the whole maps (stage inputs, outputs)."""

    kind: ClassVar[str] = "tiled"

    ops: list[int]                      # op indices, consecutive in execution order
    inputs: list[int]                   # tensors read whole from the arena
    output: int                         # the tensor the tiles are cut from (the anchor)
    inner: list[int]                    # tensors that live only as tile buffers
    mode: str                           # 'recompute' | 'linebuffer' (geometry.MODES)
    tile_h: int                         # tile size in anchor pixels
    tile_w: int
    buffers: list[list[int]]            # [tensor, rows, cols, channels] per inner tensor
    row_table: list[list[int]]          # one entry per row band, see the layout below
    col_table: list[list[int]]          # one entry per column band
    macs: int                           # MACs of the stage as scheduled (with recomputation)
    base_macs: int                      # MACs of the same layers run layer by layer
    scratch_bytes: int                  # one scratch buffer shared by the stage's kernels
    # Tensors written whole into the arena: the last layer's output, and any
    # inner tensor also used after the stage (e.g. a residual block's input).
    outputs: list[int] = field(default_factory=list)
    # The graph input when it is streamed: read through fb_model_read_input
    # tile by tile into a buffer (it is then the first entry of `inner`); -1: none.
    streamed: int = -1
    # A stage ending in a global MEAN: the anchor is a tile buffer whose tiles
    # are summed into int32 accumulators; 0 for other stages.
    acc_bytes: int = 0
    # In place: [input tensor, lead] when the output overlays a stage input that
    # dies in the stage, starting `lead` bytes before it (see geometry.inplace_offset).
    inplace: list = field(default_factory=list)
    # The tiles are the product of row bands and column bands; each band's entry
    # holds, for every inner tensor (in `inner` order), the buffer's origin and
    # present extent along that axis (row entries also the rows to keep from the
    # band above: keep_from, keep); then for every op the part of its output it
    # computes (a MEAN: the part of the anchor it adds); then, when the input is
    # streamed, the part of the input to read. Row entry: [origin_y, rows,
    # keep_from, keep] per inner tensor + [y0, h] per op (+ [y0, h]); column
    # entry: [origin_x, cols] per inner tensor + [x0, w] per op (+ [x0, w]).
    # Tiles run column band by column band, top to bottom within each.

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = [self.output]

    @property
    def n_tiles(self) -> int:
        return len(self.row_table) * len(self.col_table)

    @property
    def buffer_bytes(self) -> int:
        return sum(r * c * ch for _, r, c, ch in self.buffers)

    def arena_buffers(self) -> list[tuple[str, int]]:
        own = [(f"t{t}", rows * cols * ch) for t, rows, cols, ch in self.buffers]
        if self.acc_bytes:
            own.append(("acc", self.acc_bytes))
        return own + super().arena_buffers()

    def buffer_descriptions(self) -> list[str]:
        dims = {f"t{t}": f"{r}x{c}x{ch} = " for t, r, c, ch in self.buffers}
        return [f"{suffix} {dims.get(suffix, '')}{size} B" for suffix, size in self.arena_buffers()]

    def describe(self, graph: Graph) -> str:
        from harness.backend.lowering import map_hwc
        first, last = graph.ops[self.ops[0]], graph.ops[self.ops[-1]]
        _, ow, _ = map_hwc(graph.tensors[self.output].shape)
        tile = f"{self.tile_h}x{'full' if self.tile_w >= ow else self.tile_w}"
        extras = (" input streamed," if self.streamed >= 0 else "") + (" mean accumulated," if self.acc_bytes else "")
        return (f"ops {first.index}-{last.index} ({len(self.ops)} layers), {self.mode} tiles {tile} "
                f"({self.n_tiles} tiles),{extras} buffers {self.buffer_bytes + self.acc_bytes} B, "
                f"extra MACs {self.extra_macs} ({_percent(self.extra_macs, self.base_macs)})")

    # -- C ----------------------------------------------------------------------------------

    def emit(self, em, graph: Graph, plan, k: int, lower) -> list[str]:
        """A loop over the tile table; each op runs the same kernel as layer by
        layer, on windows of tile buffers (inner tensors) or of whole maps in
        the arena (stage inputs and outputs)."""
        n_inner, n_ops = len(self.inner), len(self.ops)
        lines = [f"/* fused stage {k}: {self.describe(graph)} */"]
        for name, table in (("rows_tab", self.row_table), ("cols_tab", self.col_table)):
            if any(abs(v) > 32767 for row in table for v in row):
                raise FusebenchError("fused stage tile table does not fit int16")
            flat = ", ".join("{" + ", ".join(str(v) for v in row) + "}" for row in table)
            lines.append(f"static const int16_t {name}[{len(table)}][{len(table[0])}] = {{ {flat} }};")
        # Column j of the row entry (ry) / column entry (cx) for inner tensor j, op k, the input read.
        ry_in = {t: 4 * j for j, t in enumerate(self.inner)}
        cx_in = {t: 2 * j for j, t in enumerate(self.inner)}
        geometry = {}
        for t, rows, cols, ch in self.buffers:
            a = plan.stage_buffer(k, t)
            h, w, _ = em.dims(t)
            geometry[t] = (a.offset, cols * ch, ch, h, w)
            lines.append(f"int8_t *const buf{t} = fb_arena + {a.offset}; /* {rows} x {cols} x {ch} */")
        scratch = None                                   # one fb_scratch shared by the stage's kernels
        if self.scratch_bytes:
            lines.append(em.scratch_decl("scratch", plan.stage_buffer(k, None).offset, self.scratch_bytes))
            scratch = "&scratch"
        if self.acc_bytes:
            acc_channels = self.acc_bytes // 4
            lines.append(f"int32_t *const acc = (int32_t *)(fb_arena + {plan.stage_buffer(k, 'acc').offset});")
            lines.append(f"fb_mean_acc_reset(acc, {acc_channels});")
        lines.append(f"for (int band_x = 0; band_x < {len(self.col_table)}; band_x++) {{")
        lines.append("const int16_t *cx = cols_tab[band_x];")
        lines.append(f"for (int band_y = 0; band_y < {len(self.row_table)}; band_y++) {{")
        lines.append("    const int16_t *ry = rows_tab[band_y];")
        for t in self.inner:
            c = ry_in[t]
            if any(row[c + 3] for row in self.row_table):          # a line buffer: it keeps rows
                stride = geometry[t][1]
                lines.append(f"    if (ry[{c + 3}]) memmove(buf{t}, buf{t} + ry[{c + 2}] * {stride}, "
                             f"(size_t)ry[{c + 3}] * {stride});  /* keep rows the next band shares */")
        if self.streamed >= 0:
            # The input arrives row segment by row segment, straight into its tile buffer.
            t = self.streamed
            ry_r, cx_r = 4 * n_inner + 2 * n_ops, 2 * n_inner + 2 * n_ops
            _, stride, ch, h, w = geometry[t]
            lines += [f"    if (cx[{cx_r + 1}] > 0) for (int y = ry[{ry_r}]; y < ry[{ry_r}] + ry[{ry_r + 1}]; y++) {{",
                      f"        if (fb_model_read_input((uint32_t)((y * {w} + cx[{cx_r}]) * {ch}),",
                      f"                buf{t} + (y - ry[{ry_in[t]}]) * {stride} + (cx[{cx_r}] - cx[{cx_in[t]}]) * {ch},",
                      f"                (uint32_t)(cx[{cx_r + 1}] * {ch})) != 0)",
                      "            return FB_MODEL_ERR_INPUT;",
                      "    }"]
        for j, i in enumerate(self.ops):
            op = graph.ops[i]
            call = lower(graph, op)
            oy, ox = 4 * n_inner + 2 * j, 2 * n_inner + 2 * j     # this op's computed rows / columns

            def view(name, tensor, role, oy=oy, ox=ox):
                if role == "in" and tensor in geometry:           # present window of a tile buffer
                    _, stride, ch, h, w = geometry[tensor]
                    cy, cc = ry_in[tensor], cx_in[tensor]
                    return (f"fb_view {name} = {{ buf{tensor}, ry[{cy}], cx[{cc}], ry[{cy + 1}], cx[{cc + 1}], "
                            f"{ch}, {stride}, {h}, {w} }};")
                if role == "in":                                  # a whole map in the arena
                    return em.view(name, tensor)
                # output, or an elementwise input: the window this op computes
                if tensor in geometry:
                    _, stride, ch, h, w = geometry[tensor]
                    cy, cc = ry_in[tensor], cx_in[tensor]
                    base = f"buf{tensor} + (ry[{oy}] - ry[{cy}]) * {stride} + (cx[{ox}] - cx[{cc}]) * {ch}"
                else:
                    h, w, ch = em.dims(tensor)
                    stride = w * ch
                    base = f"{em.arena(tensor)} + (ry[{oy}] * {w} + cx[{ox}]) * {ch}"
                return (f"fb_view {name} = {{ {base}, ry[{oy}], cx[{ox}], ry[{oy + 1}], cx[{ox + 1}], "
                        f"{ch}, {stride}, {h}, {w} }};")

            if self.acc_bytes and i == self.ops[-1]:
                # the global MEAN: add this tile of its input to the per-channel sums
                stmts = [f"/* step {plan.steps[i].index}: op {op.index} MEAN, tile by tile */",
                         view("in", self.output, "elementwise"),
                         "st = fb_mean_acc_s8(&in, acc);"]
            else:
                stmts = em.step(plan.steps[i].index, op, call, view=view, scratch=scratch or "(const fb_scratch *)0")
            lines.append(f"    if (ry[{oy + 1}] > 0 && cx[{ox + 1}] > 0) {{")
            lines.extend(f"        {x}" for x in stmts)
            lines.append("        if (st != FB_OK) return (int)st;")
            lines.append("    }")
        lines.append("}")
        lines.append("}")
        if self.acc_bytes:
            op = graph.ops[self.ops[-1]]
            call = lower(graph, op)
            h, w, c = em.dims(self.output)
            lines.append(em.struct("fb_mean_params", "mean_prm", call.params))
            lines.append(f"st = fb_mean_finish_s8(&mean_prm, {h * w}, {c}, acc, {em.arena(op.outputs[0])});")
            lines.append("if (st != FB_OK) return (int)st;")
        return lines

    # -- host -------------------------------------------------------------------------------

    def run_host(self, graph: Graph, tensors: dict[int, np.ndarray], lower, kernels: str) -> None:
        """The tiles in the C loop's order, each op on the window the table says
        it computes, reading whole host tensors: checks that the tables cover
        every output and that each window's receptive field is enough."""
        from harness.backend.hostrt import run_op
        from harness.backend.lowering import map_hwc, receptive_window
        n_inner = len(self.inner)
        if self.streamed >= 0 and self.streamed not in tensors:
            raise FusebenchError(f"stage ops {self.ops[0]}-{self.ops[-1]}: no streamed input given")
        produced = {}
        for i in self.ops:
            out = graph.ops[i].outputs[0]
            produced[out] = np.zeros(map_hwc(graph.tensors[out].shape), np.int8)
        mean_op = graph.ops[self.ops[-1]] if self.acc_bytes else None
        written = {t: np.zeros(a.shape[:2], bool) for t, a in produced.items()}

        def whole(t):
            if t in produced:
                return produced[t]
            return tensors[t].reshape(map_hwc(graph.tensors[t].shape))

        for cx in self.col_table:
            for ry in self.row_table:
                for j, i in enumerate(self.ops):
                    if mean_op is not None and i == self.ops[-1]:
                        continue                              # the MEAN runs once on the whole anchor
                    y0, h = ry[4 * n_inner + 2 * j], ry[4 * n_inner + 2 * j + 1]
                    x0, w = cx[2 * n_inner + 2 * j], cx[2 * n_inner + 2 * j + 1]
                    if h <= 0 or w <= 0:
                        continue
                    call = lower(graph, graph.ops[i])
                    window = (y0, x0, h, w)
                    ins = [whole(t) for t in call.inputs]
                    reads = ([window] * len(ins) if call.spec.window == "elementwise"
                             else [receptive_window(call, window)])
                    for t, (wy, wx, wh, ww) in zip(call.inputs, reads):
                        if t in written and not written[t][wy:wy + wh, wx:wx + ww].all():
                            raise FusebenchError(f"stage ops {self.ops[0]}-{self.ops[-1]}: op {i} reads "
                                                 f"tensor {t} before the tiles computed it")
                    out = graph.ops[i].outputs[0]
                    (result,) = run_op(call, ins, output_window=window, input_windows=reads, kernels=kernels)
                    res = result.reshape(produced[out].shape)
                    produced[out][y0:y0 + h, x0:x0 + w] = res[y0:y0 + h, x0:x0 + w]
                    written[out][y0:y0 + h, x0:x0 + w] = True
        for t in self.outputs:
            if mean_op is not None and t == mean_op.outputs[0]:
                continue
            if not written[t].all():
                raise FusebenchError(f"stage ops {self.ops[0]}-{self.ops[-1]}: the tiles leave part of "
                                     f"tensor {t} uncomputed")
            tensors[t] = produced[t].reshape(graph.tensors[t].shape)
        if mean_op is not None:
            call = lower(graph, mean_op)
            (tensors[mean_op.outputs[0]],) = run_op(call, [produced[self.output]], kernels=kernels)


@dataclass
class ReorderedBlock(Stage):
    """An inverted residual block ([expand,] depthwise, project[, add]) run by
    fb_bottleneck_s8: `channel_block` expansion channels at a time (1 or 4),
    the output in bands of `band_rows` rows of int32 accumulators
    (harness.schedules.reordered)."""

    kind: ClassVar[str] = "reordered"

    ops: list[int]
    inputs: list[int]                   # the block input
    output: int                         # the block output
    inner: list[int]                    # the expanded and depthwise maps (never whole)
    band_rows: int                      # output rows per band of accumulators
    macs: int                           # with the expansion rows bands recompute
    base_macs: int
    scratch_bytes: int                  # fb_bottleneck_s8_buffer_size()
    channel_block: int = 1              # expansion channels per pass (1, or 4: the fast DSP kernel)
    outputs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = [self.output]

    def describe(self, graph: Graph) -> str:
        first, last = graph.ops[self.ops[0]], graph.ops[self.ops[-1]]
        per_pass = "one expansion channel" if self.channel_block == 1 else f"{self.channel_block} expansion channels"
        return (f"ops {first.index}-{last.index} ({len(self.ops)} layers), {per_pass} at a "
                f"time, {self.band_rows}-row output bands, scratch {self.scratch_bytes} B, extra MACs "
                f"{self.extra_macs} ({_percent(self.extra_macs, self.base_macs)})")

    def emit(self, em, graph: Graph, plan, k: int, lower) -> list[str]:
        from harness.backend.lowering import bottleneck_call
        call = bottleneck_call([lower(graph, graph.ops[i]) for i in self.ops], self.band_rows, self.channel_block)
        lines = [f"/* reordered block s{k}: {self.describe(graph)} */"]
        scratch = None
        if self.scratch_bytes:
            lines.append(em.scratch_decl("scratch", plan.stage_buffer(k, None).offset, self.scratch_bytes))
            scratch = "&scratch"
        return lines + em.call(call, scratch=scratch) + ["if (st != FB_OK) return (int)st;"]

    def run_host(self, graph: Graph, tensors: dict[int, np.ndarray], lower, kernels: str) -> None:
        from harness.backend.hostrt import run_bottleneck
        calls = [lower(graph, graph.ops[i]) for i in self.ops]
        tensors[self.output] = run_bottleneck(calls, tensors[self.inputs[0]], self.band_rows, kernels=kernels,
                                              channel_block=self.channel_block)


@dataclass
class WindowRead(Stage):
    """A STRIDED_SLICE of the graph input (N=1, NHWC, positive strides, the
    channels contiguous) when the input is streamed: its window is read from
    the host through fb_model_read_input, one row segment (or, with a column
    stride, one pixel's channels) at a time, straight into the output. Only
    the patch is in the arena, never the image (harness.schedules.order)."""

    kind: ClassVar[str] = "window"

    ops: list[int]                      # the STRIDED_SLICE
    output: int                         # the patch
    window: list[list[int]]             # [start, stop, step] per axis (N, H, W, C), as LiteRT resolves them
    streamed: int = -1                  # the graph input
    channels: int = 0                   # the input's channels
    inputs: list[int] = field(default_factory=list)
    inner: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    macs: int = 0
    base_macs: int = 0
    scratch_bytes: int = 0

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = [self.output]

    @property
    def reads(self) -> int:
        """fb_model_read_input calls per run."""
        rows = len(range(*self.window[1]))
        return rows if self._whole_rows else rows * len(range(*self.window[2]))

    @property
    def _whole_rows(self) -> bool:
        """Each row of the window is one run of bytes: no column stride, all channels."""
        return self.window[2][2] == 1 and self.window[3][0] == 0 and self.window[3][1] == self.channels

    def describe(self, graph: Graph) -> str:
        (_, _, _), (y0, y1, sy), (x0, x1, sx), (c0, c1, _) = self.window
        step = f" step {sy}x{sx}" if (sy, sx) != (1, 1) else ""
        return (f"op {self.ops[0]} STRIDED_SLICE of the streamed input: rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1}"
                f"{step}, channels {c0}-{c1 - 1}, read from the host in {self.reads} pieces")

    def emit(self, em, graph: Graph, plan, k: int, lower) -> list[str]:
        _, h, w, c = graph.tensors[self.streamed].shape
        (_, _, _), (y0, y1, sy), (x0, x1, sx), (c0, c1, _) = self.window
        lines = [f"/* window read s{k}: {self.describe(graph)} */",
                 f"int8_t *dst = {em.arena(self.output)};",
                 f"for (int y = {y0}; y < {y1}; y += {sy}) {{"]
        if self._whole_rows:               # one segment per row
                n = (x1 - x0) * c
                lines += [f"    if (fb_model_read_input((uint32_t)((y * {w} + {x0}) * {c}), dst, {n}u) != 0)",
                          "        return FB_MODEL_ERR_INPUT;",
                          f"    dst += {n};"]
                return lines + ["}"]
        lines += [f"    for (int x = {x0}; x < {x1}; x += {sx}) {{",
                  f"        if (fb_model_read_input((uint32_t)((y * {w} + x) * {c} + {c0}), dst, {c1 - c0}u) != 0)",
                  "            return FB_MODEL_ERR_INPUT;",
                  f"        dst += {c1 - c0};",
                  "    }", "}"]
        return lines

    def run_host(self, graph: Graph, tensors: dict[int, np.ndarray], lower, kernels: str) -> None:
        if self.streamed not in tensors:
            raise FusebenchError(f"window read of op {self.ops[0]}: no streamed input given")
        x = np.asarray(tensors[self.streamed]).reshape(graph.tensors[self.streamed].shape)
        part = x[tuple(slice(a, b, s) for a, b, s in self.window)]
        tensors[self.output] = np.ascontiguousarray(part).reshape(graph.tensors[self.output].shape)


def window_reads(graph: Graph, skip: frozenset = frozenset()) -> list[WindowRead]:
    """Window reads for every reader of the graph input, when each one is a
    STRIDED_SLICE (not in `skip`, the ops of other stages) that can read its
    window from the host, the input is int8 and no graph output: the input is
    then streamed. Empty otherwise."""
    from harness.backend.lowering import lower_op

    if len(graph.inputs) != 1:
        return []
    t = graph.inputs[0]
    tensor = graph.tensors[t]
    if tensor.dtype != "int8" or len(tensor.shape) != 4 or tensor.shape[0] != 1 or t in graph.outputs:
        return []
    readers = graph.consumers(t)
    reads = []
    for op in readers:
        if op.kind != "STRIDED_SLICE" or op.index in skip or op.inputs[0] != t or t in op.inputs[1:]:
            return []
        try:
            call = lower_op(graph, op)
        except FusebenchError:
            return []
        window = [[int(a), int(b), int(s)] for a, b, s in zip(call.arrays["start"], call.arrays["stop"],
                                                               call.arrays["stride"])]
        if len(window) != 4 or any(s <= 0 for _, _, s in window) or window[3][2] != 1:
            return []
        reads.append(WindowRead(ops=[op.index], streamed=t, output=op.outputs[0], window=window,
                                channels=int(tensor.shape[3])))
    return reads
