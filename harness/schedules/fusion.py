"""Fused stages: consecutive layers computed tile by tile (Deutel et al.; msf-CNN).

A fused stage reads its input map(s) whole and writes its output map whole,
but every tensor *inside* it (the wide expanded map of an inverted residual
block, the depthwise output, ...) only ever exists as a small tile buffer.
For each tile of the stage output, the region of every inner tensor it needs
is found by walking the layers backwards (receptive fields, strides, padding);
each layer then runs the SAME runtime kernel as the layer-by-layer schedule on
that region (fb_view windows), so kernel speed-ups carry over.

The halo that neighbouring tiles share is either recomputed (`recompute`,
any tile shape) or, for full-width row strips, kept: rows still needed by the
next strip are moved to the top of their buffer and only new rows are
computed (`linebuffer`; with tiles narrower than the map, each column band
is walked top to bottom and only its column halo is recomputed). Both are
exact; they differ in RAM and MACs.

Everything here is geometry and accounting, computed once on the host: the
code generator turns a stage into a loop over a constant table of regions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from harness.errors import FusebenchError
from harness.frontend.graph import Graph, Op
from harness.backend.lowering import KernelCall, lower_op, map_hwc

WINDOW_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "AVERAGE_POOL_2D")
MODES = ("recompute", "linebuffer")      # tiled stages; "reordered" stages are harness.schedules.reordered's

Region = tuple[int, int, int, int]          # y0, y1, x0, x1 (half-open)


@dataclass
class FusedStage:
    ops: list[int]                      # op indices, consecutive in execution order
    inputs: list[int]                   # tensors read whole from the arena
    output: int                         # the tensor the tiles are cut from (the anchor)
    inner: list[int]                    # tensors that live only as tile buffers
    mode: str                           # 'recompute' | 'linebuffer'
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
    # dies in the stage, starting `lead` bytes before it (see inplace_offset).
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

    @property
    def n_tiles(self) -> int:
        return len(self.row_table) * len(self.col_table)

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = [self.output]

    @property
    def buffer_bytes(self) -> int:
        return sum(r * c * ch for _, r, c, ch in self.buffers)

    @property
    def extra_macs(self) -> int:
        return self.macs - self.base_macs

    def describe(self, graph: Graph) -> str:
        first, last = graph.ops[self.ops[0]], graph.ops[self.ops[-1]]
        if self.mode == "reordered":
            return (f"ops {first.index}-{last.index} ({len(self.ops)} layers), one expansion channel at a "
                    f"time, {self.tile_h}-row output bands, scratch {self.scratch_bytes} B, extra MACs "
                    f"{self.extra_macs} ({100.0 * self.extra_macs / max(self.base_macs, 1):.1f}%)")
        oh, ow, _ = map_hwc(graph.tensors[self.output].shape)
        tile = f"{self.tile_h}x{'full' if self.tile_w >= ow else self.tile_w}"
        extras = (" input streamed," if self.streamed >= 0 else "") + (" mean accumulated," if self.acc_bytes else "")
        return (f"ops {first.index}-{last.index} ({len(self.ops)} layers), {self.mode} tiles {tile} "
                f"({self.n_tiles} tiles),{extras} buffers {self.buffer_bytes + self.acc_bytes} B, "
                f"extra MACs {self.extra_macs} ({100.0 * self.extra_macs / max(self.base_macs, 1):.1f}%)")


def axis_receptive(call: KernelCall, axis: int, lo, hi, size: int, clip: bool = True):
    """Rows (axis 0) or columns (axis 1) of the (first) input map of `call` that
    computing output rows/cols [lo, hi) reads, clipped to [0, size) (unless
    `clip` is false: line walks carry rows outside the map). Works on numpy
    arrays (many intervals at once); empty intervals come out lo >= hi.

    Tiling is separable: a tile's region of every tensor is the product of its
    row interval and its column interval, so both the tile tables and the
    search's cost model are built from these 1-D walks."""
    p = call.params
    if call.kernel in ("fb_conv_s8", "fb_dw_conv_s8", "fb_avgpool_s8"):
        if axis == 0:
            k = p["kh"] if "kh" in p else p["filter_h"]
            s, pad, d = p["stride_h"], p["pad_top"], p.get("dilation_h", 1)
        else:
            k = p["kw"] if "kw" in p else p["filter_w"]
            s, pad, d = p["stride_w"], p["pad_left"], p.get("dilation_w", 1)
        a = lo * s - pad
        b = (hi - 1) * s - pad + (k - 1) * d + 1
    elif call.kernel == "fb_pad_s8":
        pad = p["pad_top"] if axis == 0 else p["pad_left"]
        a, b = lo - pad, hi - pad
    elif call.kernel == "fb_add_s8":
        a, b = lo, hi
    else:
        raise FusebenchError(f"{call.kernel} cannot run on tiles")
    if not clip:
        return a, b
    return np.maximum(a, 0), np.minimum(b, size)


def interval_hull(a, b):
    """Interval hull of two interval arrays, ignoring empty ones (lo >= hi)."""
    (alo, ahi), (blo, bhi) = a, b
    a_empty, b_empty = alo >= ahi, blo >= bhi
    lo = np.where(a_empty, blo, np.where(b_empty, alo, np.minimum(alo, blo)))
    hi = np.where(a_empty, bhi, np.where(b_empty, ahi, np.maximum(ahi, bhi)))
    return lo, hi


def bands(extent: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, extent, size, dtype=np.int64)
    return starts, np.minimum(starts + size, extent)


def line_bands(extent: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor row bands of a line-buffered stage: `size` rows each, led in by
    bands over rows before the map (as many as the map has), see LineWalk."""
    lead = -(-extent // size) * size
    starts = np.arange(-lead, extent, size, dtype=np.int64)
    return starts, np.minimum(starts + size, extent)


class LineWalk:
    """Rows of a line-buffered stage, walked back from the anchor one op at a
    time, for many bands at once (numpy arrays, one entry per band).

    In every band each tensor is brought up to row U, the highest row its
    consumers read in that band, computing only its new rows (from the
    previous band's U on); L is the lowest row its consumers read, so rows
    below it can go.

    Rows are carried unclipped, so bands over anchor rows before the map (the
    lead-in of line_bands) ask each tensor for what its consumers will need
    first, at the anchor's pace: the pipeline fills gradually instead of the
    first band computing the whole receptive field of the first anchor row
    (which would set every buffer's size). `first` marks the first band of
    each band sequence (several tile sizes may be walked at once)."""

    def __init__(self, anchor: int, lo: np.ndarray, hi: np.ndarray, first: np.ndarray, height: int):
        self.first = first
        self.L = {anchor: lo}
        self.U = {anchor: hi}
        self.height = {anchor: height}

    def __contains__(self, t: int) -> bool:
        return t in self.U

    def _computed(self, t: int):
        L, U = self.L[t], self.U[t]
        prev_u = np.where(self.first, L, np.concatenate(([0], U[:-1])))
        return np.maximum(L, prev_u), U

    def rows(self, t: int):
        """Clipped, per band: buffer origin, buffer rows, first computed row, rows computed."""
        n = self.height[t]
        c0, c1 = (np.clip(x, 0, n) for x in self._computed(t))
        o0, o1 = np.clip(self.L[t], 0, n), np.clip(self.U[t], 0, n)
        return o0, np.maximum(o1 - o0, 0), c0, np.maximum(c1 - c0, 0)

    def add_op(self, call: KernelCall, out: int, heights: dict[int, int]) -> None:
        """Walk back through the op producing `out`: what it reads of its inputs."""
        c0, c1 = self._computed(out)
        for t in call.inputs:
            # unclipped, a depends on c0 alone and b on c1 alone: right even for
            # bands that compute nothing (c1 <= c0)
            a, b = axis_receptive(call, 0, c0, c1, 0, clip=False)
            if t in self.U:
                a, b = np.minimum(self.L[t], a), np.maximum(self.U[t], b)
            self.L[t], self.U[t] = a, b
            self.height[t] = heights[t]


def is_global_mean(graph: Graph, op: Op) -> bool:
    """MEAN over H and W of a 4-D map (what a tile-wise accumulation computes)."""
    if op.kind != "MEAN":
        return False
    shape = graph.tensors[op.inputs[0]].shape
    axes = sorted(int(a) % 4 for a in (op.options.get("axes") or []))
    return len(shape) == 4 and axes == [1, 2]


class StageGeometry:
    """The fixed part of a candidate stage: its ops, their calls, its tensors.

    Stage tensors are of three kinds: inputs (read whole from the arena),
    outputs (written whole into the arena: the last layer's output and any
    tensor also used after the stage) and inner tensors (tile buffers only).
    With `stream_input` the graph input, when the stage is its only reader, is
    an inner tensor too: read from the host tile by tile. A stage may end with
    a global MEAN, which then sums the tiles of its input map."""

    def __init__(self, graph: Graph, ops: list[int], calls: Optional[dict[int, KernelCall]] = None,
                 stream_input: bool = False):
        self.graph = graph
        self.ops = list(ops)
        if not ops or self.ops != list(range(ops[0], ops[0] + len(ops))):
            raise FusebenchError(f"a fused stage must be consecutive ops, got {ops}")
        last = graph.ops[self.ops[-1]]
        self.reduce = len(self.ops) > 1 and is_global_mean(graph, last)
        self.tile_ops = self.ops[:-1] if self.reduce else self.ops
        for i in self.tile_ops:
            op = graph.ops[i]
            if op.kind not in WINDOW_KINDS:
                raise FusebenchError(f"op {i} ({op.kind}) cannot be part of a fused stage "
                                     f"(tileable: {', '.join(WINDOW_KINDS)}, and a global MEAN last)")
        self.calls = {i: (calls[i] if calls and i in calls else lower_op(graph, graph.ops[i]))
                      for i in self.ops}
        inside = set(self.ops)
        produced = [graph.ops[i].outputs[0] for i in self.ops]
        self.inputs = []
        for i in self.ops:
            for t in self.calls[i].inputs:
                if t not in produced and t not in self.inputs:
                    self.inputs.append(t)
        escaping = [t for t in produced
                    if t in graph.outputs or any(op.index not in inside for op in graph.consumers(t))]
        self.anchor = graph.ops[self.tile_ops[-1]].outputs[0]
        if self.reduce:
            if escaping != [last.outputs[0]] or last.inputs[0] != self.anchor:
                raise FusebenchError(f"ops {self.ops[0]}-{self.ops[-1]}: the MEAN must be the only "
                                     "use of the last map")
        elif self.anchor not in escaping:
            raise FusebenchError(f"ops {self.ops[0]}-{self.ops[-1]}: the last layer's output is unused")
        self.outputs = escaping
        self.streamed = -1
        if stream_input and graph.inputs and graph.inputs[0] in self.inputs and all(
                op.index in inside for op in graph.consumers(graph.inputs[0])):
            self.streamed = graph.inputs[0]
            self.inputs.remove(self.streamed)
        self.inner = ([self.streamed] if self.streamed >= 0 else []) + [
            t for t in produced if t not in escaping]
        self.shape = {t: map_hwc(graph.tensors[t].shape)
                      for t in self.inner + self.inputs + self.outputs + [self.anchor]}
        self.pixel_macs = {}
        for i in self.tile_ops:
            oh, ow, _ = self.shape[graph.ops[i].outputs[0]]
            self.pixel_macs[i] = graph.macs(graph.ops[i]) // (oh * ow)
        self.base_macs = sum(graph.macs(graph.ops[i]) for i in self.ops)
        self.scratch_bytes = max(c.scratch_bytes for c in self.calls.values())
        self.acc_bytes = 4 * self.shape[self.anchor][2] if self.reduce else 0
        if len(self.tile_ops) == 1 and self.streamed < 0 and not self.reduce:
            raise FusebenchError(f"op {self.ops[0]} alone gains nothing from tiles")

    def line_walk(self, tile_h: int) -> LineWalk:
        """The rows every stage tensor needs, band by band, with line buffers."""
        oh = self.shape[self.anchor][0]
        lo, hi = line_bands(oh, tile_h)
        first = np.zeros(len(lo), bool)
        first[0] = True
        walk = LineWalk(self.anchor, lo, hi, first, oh)
        heights = {t: shape[0] for t, shape in self.shape.items()}
        for i in reversed(self.tile_ops):
            out = self.graph.ops[i].outputs[0]
            if out in walk:
                walk.add_op(self.calls[i], out, heights)
        return walk

    def axis_needs(self, axis: int, lo: np.ndarray, hi: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Interval of every stage tensor along `axis` that anchor intervals [lo, hi)
        (tiles computed afresh) need."""
        need = {self.anchor: (lo, hi)}
        for i in reversed(self.tile_ops):
            call = self.calls[i]
            out = self.graph.ops[i].outputs[0]
            if out not in need:
                continue
            out_lo, out_hi = need[out]
            for t in call.inputs:
                rng = axis_receptive(call, axis, out_lo, out_hi, self.shape[t][axis])
                need[t] = interval_hull(need[t], rng) if t in need else rng
        return need

    def needs(self, out_region: Region) -> dict[int, Region]:
        """Region (y0, y1, x0, x1) of every stage tensor needed for `out_region` of the anchor."""
        y0, y1, x0, x1 = out_region
        ys = self.axis_needs(0, np.array([y0]), np.array([y1]))
        xs = self.axis_needs(1, np.array([x0]), np.array([x1]))
        regions = {}
        for t in ys:
            (a, b), (c, d) = ys[t], xs[t]
            if a[0] < b[0] and c[0] < d[0]:
                regions[t] = (int(a[0]), int(b[0]), int(c[0]), int(d[0]))
        return regions

    def schedule(self, tile_h: int, tile_w: int, mode: str = "recompute") -> FusedStage:
        if mode not in MODES:
            raise FusebenchError(f"unknown overlap mode '{mode}' ({', '.join(MODES)})")
        oh, ow, _ = self.shape[self.anchor]
        tile_h, tile_w = max(1, min(tile_h, oh)), max(1, min(tile_w, ow))
        xs = self.axis_needs(1, *bands(ow, tile_w))
        # Per row band and tensor: buffer origin and rows, first row computed and how many.
        if mode == "recompute":
            ys = self.axis_needs(0, *bands(oh, tile_h))
            band_rows = {t: (lo, np.maximum(hi - lo, 0), lo, np.maximum(hi - lo, 0)) for t, (lo, hi) in ys.items()}
        else:
            walk = self.line_walk(tile_h)
            band_rows = {t: walk.rows(t) for t in walk.U}
            busy = np.any([r[3] > 0 for r in band_rows.values()], axis=0)
            begin = int(np.argmax(busy))    # lead-in bands in which nothing happens yet are left out
            band_rows = {t: tuple(x[begin:] for x in r) for t, r in band_rows.items()}
        produced = [self.graph.ops[i].outputs[0] for i in self.tile_ops]
        for t in self.outputs:
            if t in produced and t != self.anchor:
                r = band_rows.get(t)
                covered = r is not None and t in xs and _covers(r[2], r[2] + r[3], self.shape[t][0]) \
                    and _covers(*xs[t], self.shape[t][1])
                if not covered:
                    raise FusebenchError(f"ops {self.ops[0]}-{self.ops[-1]}: tiles do not cover "
                                         f"tensor {t}, which is used after the stage")
        n_y, n_x = len(band_rows[self.anchor][0]), len(xs[self.anchor][0])
        # The tile table is separable too: one row per row band, one per column band.
        targets = [self.anchor if i not in self.pixel_macs else self.graph.ops[i].outputs[0] for i in self.ops]
        if self.streamed >= 0:
            targets.append(self.streamed)
        row_table: list[list[int]] = []
        for a in range(n_y):
            row: list[int] = []
            for t in self.inner:
                origin, count = int(band_rows[t][0][a]), int(band_rows[t][1][a])
                keep_from = keep = 0
                if a > 0 and mode == "linebuffer":
                    prev_origin = int(band_rows[t][0][a - 1])
                    keep = max(0, prev_origin + int(band_rows[t][1][a - 1]) - origin)
                    keep_from = origin - prev_origin if keep else 0
                row += [origin, count, keep_from, keep]
            for t in targets:
                row += [int(band_rows[t][2][a]), int(band_rows[t][3][a])]
            row_table.append(row)
        col_table: list[list[int]] = []
        for b in range(n_x):
            row = []
            for t in self.inner + targets:
                x0 = int(xs[t][0][b])
                row += [x0, max(0, int(xs[t][1][b]) - x0)]
            col_table.append(row)
        n_in = len(self.inner)
        macs = 0
        for k, i in enumerate(self.ops):
            rows = sum(r[4 * n_in + 2 * k + 1] for r in row_table)
            cols = sum(c[2 * n_in + 2 * k + 1] for c in col_table)
            macs += rows * cols * self.pixel_macs.get(i, 0)
        buffers = [[t, int(np.max(band_rows[t][1])),
                    int(np.max(np.maximum(xs[t][1] - xs[t][0], 0))), self.shape[t][2]] for t in self.inner]
        inplace = []
        if n_x == 1 and (t := self.inplace_candidate()) is not None:
            out_hi = band_rows[self.anchor][2] + band_rows[self.anchor][3]
            lead = inplace_offset(out_hi, band_rows[t][0], self._row_bytes(self.anchor), self._row_bytes(t))
            in_bytes, out_bytes = self.graph.tensors[t].nbytes, self.graph.tensors[self.anchor].nbytes
            if inplace_footprint(in_bytes, out_bytes, lead) < in_bytes + out_bytes and \
                    anchor_may_overlay(self.graph, self.graph.ops[self.tile_ops[-1]], t, lead):
                inplace = [t, lead]
        return FusedStage(ops=self.ops, inputs=self.inputs, output=self.anchor, inner=self.inner,
                          mode=mode, tile_h=tile_h, tile_w=tile_w, buffers=buffers,
                          row_table=row_table, col_table=col_table,
                          macs=macs, base_macs=self.base_macs, scratch_bytes=self.scratch_bytes,
                          outputs=self.outputs, streamed=self.streamed, acc_bytes=self.acc_bytes,
                          inplace=inplace)

    def _row_bytes(self, t: int) -> int:
        return self.shape[t][1] * self.shape[t][2]

    def inplace_candidate(self) -> Optional[int]:
        """The largest whole input that dies in this stage (the output may overlay it)."""
        if self.reduce:
            return None
        last = self.ops[-1]
        dying = [t for t in self.inputs
                 if t not in self.graph.outputs and len(self.graph.tensors[t].shape) == 4
                 and all(op.index <= last for op in self.graph.consumers(t))]
        return max(dying, key=lambda t: self.graph.tensors[t].nbytes, default=None)


def inplace_offset(out_hi: np.ndarray, in_lo: np.ndarray, out_row_bytes: int, in_row_bytes: int) -> int:
    """How many bytes before its input a stage output must start to overlay it
    (16-aligned, >= 0) when full-width row bands run top to bottom: after band
    a writes output rows up to out_hi[a], later bands read input rows from
    min(in_lo[a+1:]) on, so only bytes before that may be overwritten:
    out_hi[a] * out_row_bytes - lead <= min(in_lo[a+1:]) * in_row_bytes."""
    n = len(out_hi)
    if n < 2:
        return 0
    later_lo = np.minimum.accumulate(in_lo[::-1])[::-1]       # min over bands a..end
    need = out_hi[:-1] * out_row_bytes - later_lo[1:] * in_row_bytes
    lead = max(0, int(need.max()))
    return (lead + 15) // 16 * 16


def anchor_may_overlay(graph: Graph, last: Op, t: int, lead: int) -> bool:
    """May a stage's last op write over input `t` (lead bytes early)? It writes
    while it reads, so it may read the overlaid input only element by element
    at the very same bytes: an ADD of equal shapes, no lead."""
    if t not in last.inputs:
        return True
    same = map_hwc(graph.tensors[t].shape) == map_hwc(graph.tensors[last.outputs[0]].shape)
    return last.kind == "ADD" and lead == 0 and same


def inplace_footprint(in_bytes: int, out_bytes: int, lead: int) -> int:
    """Bytes an output overlaying its input `lead` bytes early takes with it."""
    return max(in_bytes + lead, out_bytes)


def _covers(lo: np.ndarray, hi: np.ndarray, size: int) -> bool:
    """Do the intervals [lo, hi) together cover [0, size)?"""
    order = np.argsort(lo, kind="stable")
    reach = 0
    for a, b in zip(lo[order], hi[order]):
        if a >= b:
            continue
        if a > reach:
            return False
        reach = max(reach, int(b))
    return reach >= size


def stage_live_bytes(graph: Graph, stage: FusedStage) -> int:
    """Bytes a stage needs while it runs: its whole inputs and output, tile
    buffers and scratch (not counting tensors live across it from elsewhere)."""
    whole = sum(graph.tensors[t].nbytes for t in set(stage.inputs + stage.outputs))
    return whole + stage.buffer_bytes + stage.scratch_bytes + stage.acc_bytes


def block_op_ranges(graph: Graph) -> list[list[int]]:
    """The op indices of each inverted residual block, in order (contiguous)."""
    ranges = []
    for b in graph.blocks:
        ops = sorted(b.ops)
        if ops == list(range(ops[0], ops[-1] + 1)):
            ranges.append(ops)
    return ranges


TILE_CANDIDATES = (1, 2, 4, 8, 16)


def best_schedule(geometry: StageGeometry, max_overhead: float,
                  tiles: Optional[tuple[int, int]] = None, mode: Optional[str] = None) -> FusedStage:
    """The tile setting of one stage with the least live bytes whose extra MACs
    stay within `max_overhead` (a fraction of the stage's own MACs); ties go to
    fewer MACs. `tiles`/`mode` pin the choice."""
    graph = geometry.graph
    allowed = stage_options(geometry, max_overhead, tiles, mode)
    return min(allowed, key=lambda s: (stage_live_bytes(graph, s), s.macs))


def stage_options(geometry: StageGeometry, max_overhead: float,
                  tiles: Optional[tuple[int, int]] = None, mode: Optional[str] = None) -> list[FusedStage]:
    """Every tile setting of a stage within the overhead limit (at least the cheapest one)."""
    oh, ow, _ = geometry.shape[geometry.anchor]
    options = []
    modes = [mode] if mode else list(MODES)
    for m in modes:
        if tiles:
            sizes = [tiles]
        elif m == "linebuffer":
            sizes = [(h, ow) for h in TILE_CANDIDATES if h <= oh]
        else:
            sizes = [(h, w) for h in TILE_CANDIDATES + (oh,) for w in TILE_CANDIDATES + (ow,)
                     if h <= oh and w <= ow and not (h == oh and w == ow)]
        options += [geometry.schedule(h, w, m) for h, w in sorted(set(sizes))]
    allowed = [s for s in options if s.extra_macs <= max_overhead * max(s.base_macs, 1)]
    return allowed or [min(options, key=lambda s: s.macs)]


DEFAULT_MAX_OVERHEAD = 0.15     # the fused-layer paper's latency budget: about 14 % more work


def parse_blocks(spec: str, n_blocks: int) -> list[tuple[int, int]]:
    """'0-3' or '0-1,2-4' -> [(0, 1), (2, 4)] (inclusive block indices)."""
    groups = []
    for part in spec.split(","):
        part = part.strip()
        try:
            lo, hi = (int(v) for v in part.split("-")) if "-" in part else (int(part), int(part))
        except ValueError:
            raise FusebenchError(f"--blocks '{spec}': expected ranges like 0-3 or 0-1,2-4") from None
        if not 0 <= lo <= hi < n_blocks:
            raise FusebenchError(f"--blocks '{spec}': the model has blocks 0-{n_blocks - 1}")
        groups.append((lo, hi))
    for (a, b), (c, d) in zip(groups, groups[1:]):
        if c != b + 1:
            raise FusebenchError(f"--blocks '{spec}': stages must be consecutive, non-overlapping ranges")
    return groups


def parse_tile(spec) -> Optional[tuple[int, int]]:
    if spec in (None, ""):
        return None
    try:
        parts = [int(v) for v in str(spec).lower().split("x")]
    except ValueError:
        raise FusebenchError(f"--tile '{spec}': expected H or HxW, e.g. 4x8") from None
    if len(parts) == 1:
        parts = [parts[0], 1 << 30]        # a row strip
    if len(parts) != 2 or min(parts) < 1:
        raise FusebenchError(f"--tile '{spec}': expected H or HxW with positive sizes")
    return parts[0], parts[1]


def _partitions(n: int):
    """All ways to cut blocks 0..n-1 into consecutive groups."""
    for cuts in range(1 << (n - 1)):
        groups, start = [], 0
        for i in range(n - 1):
            if cuts >> i & 1:
                groups.append((start, i))
                start = i + 1
        groups.append((start, n - 1))
        yield groups


def plan_fused(graph: Graph, max_overhead: Optional[float] = None, blocks: Optional[str] = None,
               tile=None, mode: Optional[str] = None, first_conv: Optional[bool] = None,
               search_blocks: int = 6, variant: str = "fused"):
    """The `fused` schedule: the early inverted residual blocks (and, if it
    helps, the first convolution) fused into stages computed tile by tile.

    By default every split of the first `search_blocks` blocks into stages is
    tried, each stage with its best tile setting; the schedule with the smallest
    arena wins (ties: fewer MACs). `blocks`, `tile`, `mode` and `first_conv`
    pin those choices; `max_overhead` (fraction) bounds each stage's extra MACs."""
    from harness.schedules.plan import plan_schedule

    limit = DEFAULT_MAX_OVERHEAD if max_overhead is None else float(max_overhead)
    if limit < 0:
        raise FusebenchError("--max-overhead must not be negative")
    tile_hw = parse_tile(tile)
    if mode is not None and mode not in MODES:
        raise FusebenchError(f"--mode '{mode}': expected one of {', '.join(MODES)}")
    ranges = block_op_ranges(graph)
    if not ranges:
        raise FusebenchError(f"{graph.name}: no inverted residual blocks to fuse")
    calls = {}
    cache: dict[tuple, Optional[list[FusedStage]]] = {}

    def options_for(lo: int, hi: int, with_conv: bool) -> Optional[list[FusedStage]]:
        key = (lo, hi, with_conv)
        if key not in cache:
            ops = [i for r in ranges[lo:hi + 1] for i in r]
            if with_conv:
                ops = list(range(0, ops[0])) + ops
            try:
                geo = StageGeometry(graph, ops, calls)
                calls.update(geo.calls)
                cache[key] = stage_options(geo, limit, tile_hw, mode)
            except FusebenchError:
                cache[key] = None       # not a valid stage (e.g. ops between blocks)
        return cache[key]

    def stage_for(lo: int, hi: int, with_conv: bool) -> Optional[FusedStage]:
        options = options_for(lo, hi, with_conv)
        if options is None:
            return None
        return min(options, key=lambda s: (stage_live_bytes(graph, s), s.macs))

    first_block_start = ranges[0][0]
    conv_options = [False] if first_block_start == 0 else (
        [first_conv] if first_conv is not None else [True, False])
    if blocks:
        candidates = [parse_blocks(blocks, len(ranges))]
    else:
        n = min(search_blocks, len(ranges))
        candidates = [g for k in range(1, n + 1) for g in _partitions(k)]
    best = None
    for groups in candidates:
        for with_conv in conv_options:
            stages = [stage_for(lo, hi, with_conv and i == 0) for i, (lo, hi) in enumerate(groups)]
            if any(s is None for s in stages):
                continue
            plan = plan_schedule(graph, stages, variant=variant)
            key = (plan.arena_bytes, plan.macs, len(stages))
            if best is None or key < best[0]:
                best = (key, plan)
    if best is None:
        raise FusebenchError(f"{graph.name}: no valid fused stage for blocks {blocks or 'any'}")
    # Stages that are not the bottleneck need not be as small: give each the
    # cheapest tiling that keeps the arena where it is.
    plan = best[1]
    stages = list(plan.stages)
    for k, st in enumerate(stages):
        key = next(key for key, opts in cache.items() if opts and st in opts)
        for option in sorted(cache[key], key=lambda s: (s.macs, stage_live_bytes(graph, s))):
            if option.macs >= st.macs:
                break
            trial = plan_schedule(graph, stages[:k] + [option] + stages[k + 1:], variant=variant)
            if trial.arena_bytes <= plan.arena_bytes:
                stages[k], plan = option, trial
                break
    return plan
