"""Stage geometry: which part of every tensor a tile of a fused stage needs.

A fused stage (Deutel et al.; msf-CNN) computes consecutive layers tile by
tile: it reads its input map(s) whole and writes its output map whole, but
every tensor *inside* it only ever exists as a small tile buffer. For each tile
of the stage output (the anchor), the region of every inner tensor it needs is
found by walking the layers backwards (receptive fields, strides, padding).
Tiling is separable: a region is a row interval times a column interval, each
found by a 1-D walk (`axis_receptive`), so one numpy walk prices many tile
sizes at once (the msf search) and builds the exact tile tables of the chosen
ones (`StageGeometry.schedule` -> `harness.schedules.stages.TiledStage`).

The halo that neighbouring tiles share is either recomputed (`recompute`,
any tile shape) or, for row bands, kept in a line buffer (`linebuffer`: rows
still needed by the next band are moved to the top of their buffer and only
new rows are computed; `LineWalk`). Both are exact; they differ in RAM and MACs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from harness.backend.lowering import KernelCall, lower_op, map_hwc
from harness.errors import FusebenchError
from harness.frontend.graph import Graph, Op
from harness.schedules.stages import TiledStage

# How a kernel's input window follows from its output window (its table
# entry's `window`, harness.backend.kernels): the kernels with one of these run
# on tiles; a MEAN over H and W may end a stage too.
TILE_WINDOWS = ("conv", "pad", "elementwise")


def tileable(call: KernelCall) -> bool:
    """Can this kernel call compute a window of its output from windows of its inputs?"""
    return call.spec.window in TILE_WINDOWS and call.spec.takes_windows


def first_tileable_op(graph: Graph, calls: Optional[dict[int, KernelCall]] = None) -> int:
    """Where a network's first stage can start: after the edge ops that run on
    whole tensors (a QUANTIZE of uint8 or float pixels, a TRANSPOSE of an NCHW
    input); the graph's length when no op tiles."""
    for op in graph.ops:
        call = (calls or {}).get(op.index)
        if call is None and op.kind != "RESHAPE":
            try:
                call = lower_op(graph, op)
            except FusebenchError:
                continue
        if call is not None and tileable(call):
            return op.index
    return len(graph.ops)
MODES = ("recompute", "linebuffer")      # how a tiled stage treats the halo

Region = tuple[int, int, int, int]          # y0, y1, x0, x1 (half-open)


def axis_receptive(call: KernelCall, axis: int, lo, hi, size: int, clip: bool = True):
    """Rows (axis 0) or columns (axis 1) of the (first) input map of `call` that
    computing output rows/cols [lo, hi) reads, clipped to [0, size) (unless
    `clip` is false: line walks carry rows outside the map). Works on numpy
    arrays (many intervals at once); empty intervals come out lo >= hi.

    Tiling is separable: a tile's region of every tensor is the product of its
    row interval and its column interval, so both the tile tables and the
    search's cost model are built from these 1-D walks."""
    p = call.params
    window = call.spec.window
    if window == "conv":
        if axis == 0:
            k = p["kh"] if "kh" in p else p["filter_h"]
            s, pad, d = p["stride_h"], p["pad_top"], p.get("dilation_h", 1)
        else:
            k = p["kw"] if "kw" in p else p["filter_w"]
            s, pad, d = p["stride_w"], p["pad_left"], p.get("dilation_w", 1)
        a = lo * s - pad
        b = (hi - 1) * s - pad + (k - 1) * d + 1
    elif window == "pad":
        pad = p["pad_top"] if axis == 0 else p["pad_left"]
        a, b = lo - pad, hi - pad
    elif window == "elementwise":
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
        self._rows: dict[int, tuple] = {}      # rows() per tensor, until add_op changes it

    def __contains__(self, t: int) -> bool:
        return t in self.U

    def _computed(self, t: int):
        L, U = self.L[t], self.U[t]
        prev_u = np.where(self.first, L, np.concatenate(([0], U[:-1])))
        return np.maximum(L, prev_u), U

    def rows(self, t: int):
        """Clipped, per band: buffer origin, buffer rows, first computed row, rows computed."""
        if t not in self._rows:
            n = self.height[t]
            # minimum/maximum rather than np.clip: a tenth of its call overhead on these short arrays
            c0, c1 = (np.minimum(np.maximum(x, 0), n) for x in self._computed(t))
            o0, o1 = np.minimum(np.maximum(self.L[t], 0), n), np.minimum(np.maximum(self.U[t], 0), n)
            self._rows[t] = (o0, np.maximum(o1 - o0, 0), c0, np.maximum(c1 - c0, 0))
        return self._rows[t]

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
            self._rows.pop(t, None)


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
        self.calls = {i: (calls[i] if calls and i in calls else lower_op(graph, graph.ops[i]))
                      for i in self.ops}
        for i in self.tile_ops:
            if not tileable(self.calls[i]) or len(graph.tensors[graph.ops[i].outputs[0]].shape) != 4:
                raise FusebenchError(f"op {i} ({graph.ops[i].kind}) cannot be part of a fused stage "
                                     "(only ops computed window by window, and a global MEAN last)")
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
        self._sides: dict[tuple, tuple] = {}     # _row_side / _col_side per tile size (tables shared, read-only)

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

    def schedule(self, tile_h: int, tile_w: int, mode: str = "recompute") -> TiledStage:
        if mode not in MODES:
            raise FusebenchError(f"unknown overlap mode '{mode}' ({', '.join(MODES)})")
        oh, ow, _ = self.shape[self.anchor]
        tile_h, tile_w = max(1, min(tile_h, oh)), max(1, min(tile_w, ow))
        # Tiling is separable: the row side depends on (tile_h, mode) only and the
        # column side on tile_w only, so a search over tile sizes builds each once.
        band_rows, row_table, row_sums = self._row_side(tile_h, mode)
        xs, col_table, col_sums = self._col_side(tile_w)
        produced = [self.graph.ops[i].outputs[0] for i in self.tile_ops]
        for t in self.outputs:
            if t in produced and t != self.anchor:
                r = band_rows.get(t)
                covered = r is not None and t in xs and _covers(r[2], r[2] + r[3], self.shape[t][0]) \
                    and _covers(*xs[t], self.shape[t][1])
                if not covered:
                    raise FusebenchError(f"ops {self.ops[0]}-{self.ops[-1]}: tiles do not cover "
                                         f"tensor {t}, which is used after the stage")
        if row_table is None or col_table is None:
            raise FusebenchError(f"ops {self.ops[0]}-{self.ops[-1]}: a map of the stage is not needed "
                                 "by its last layer")
        n_x = len(col_table)
        macs = sum(rows * cols * self.pixel_macs.get(i, 0) for i, rows, cols in zip(self.ops, row_sums, col_sums))
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
        return TiledStage(ops=self.ops, inputs=self.inputs, output=self.anchor, inner=self.inner,
                          mode=mode, tile_h=tile_h, tile_w=tile_w, buffers=buffers,
                          row_table=row_table, col_table=col_table,
                          macs=macs, base_macs=self.base_macs, scratch_bytes=self.scratch_bytes,
                          outputs=self.outputs, streamed=self.streamed, acc_bytes=self.acc_bytes,
                          inplace=inplace)

    def _targets(self) -> list[int]:
        """The tensors each op writes per tile (the anchor for ops with no MACs of their own)."""
        targets = [self.anchor if i not in self.pixel_macs else self.graph.ops[i].outputs[0] for i in self.ops]
        return targets + ([self.streamed] if self.streamed >= 0 else [])

    def _row_side(self, tile_h: int, mode: str):
        """Per row band and tensor: buffer origin and rows, first row computed and
        how many; the row table; per op the rows its tiles compute in all."""
        key = ("rows", tile_h, mode)
        if key in self._sides:
            return self._sides[key]
        oh = self.shape[self.anchor][0]
        if mode == "recompute":
            ys = self.axis_needs(0, *bands(oh, tile_h))
            band_rows = {t: (lo, np.maximum(hi - lo, 0), lo, np.maximum(hi - lo, 0)) for t, (lo, hi) in ys.items()}
        else:
            walk = self.line_walk(tile_h)
            band_rows = {t: walk.rows(t) for t in walk.U}
            busy = np.any([r[3] > 0 for r in band_rows.values()], axis=0)
            begin = int(np.argmax(busy))    # lead-in bands in which nothing happens yet are left out
            band_rows = {t: tuple(x[begin:] for x in r) for t, r in band_rows.items()}
        targets = self._targets()
        if any(t not in band_rows for t in self.inner + targets):
            # a map the anchor does not need: schedule() refuses the stage (tiles do not cover it)
            self._sides[key] = (band_rows, None, None)
            return self._sides[key]
        rows_of = {t: [r.tolist() for r in band_rows[t]] for t in set(self.inner + targets)}
        row_table: list[list[int]] = []
        for a in range(len(band_rows[self.anchor][0])):
            row: list[int] = []
            for t in self.inner:
                origin, count = rows_of[t][0][a], rows_of[t][1][a]
                keep_from = keep = 0
                if a > 0 and mode == "linebuffer":
                    prev_origin = rows_of[t][0][a - 1]
                    keep = max(0, prev_origin + rows_of[t][1][a - 1] - origin)
                    keep_from = origin - prev_origin if keep else 0
                row += [origin, count, keep_from, keep]
            for t in targets:
                row += [rows_of[t][2][a], rows_of[t][3][a]]
            row_table.append(row)
        n_in = len(self.inner)
        sums = [sum(r[4 * n_in + 2 * k + 1] for r in row_table) for k in range(len(self.ops))]
        self._sides[key] = (band_rows, row_table, sums)
        return self._sides[key]

    def _col_side(self, tile_w: int):
        """Per column band and tensor: the interval; the column table; per op the
        columns its tiles compute in all."""
        key = ("cols", tile_w)
        if key in self._sides:
            return self._sides[key]
        xs = self.axis_needs(1, *bands(self.shape[self.anchor][1], tile_w))
        if any(t not in xs for t in self.inner + self._targets()):
            self._sides[key] = (xs, None, None)
            return self._sides[key]
        cols_of = {t: (xs[t][0].tolist(), xs[t][1].tolist()) for t in xs}
        col_table: list[list[int]] = []
        for b in range(len(xs[self.anchor][0])):
            row = []
            for t in self.inner + self._targets():
                x0 = cols_of[t][0][b]
                row += [x0, max(0, cols_of[t][1][b] - x0)]
            col_table.append(row)
        n_in = len(self.inner)
        sums = [sum(c[2 * n_in + 2 * k + 1] for c in col_table) for k in range(len(self.ops))]
        self._sides[key] = (xs, col_table, sums)
        return self._sides[key]

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


def inplace_offsets(out_hi: np.ndarray, in_lo: np.ndarray, seg: np.ndarray, first: np.ndarray,
                    out_row_bytes: int, in_row_bytes: int) -> np.ndarray:
    """inplace_offset() of every band sequence at once: band a of the concatenated
    arrays belongs to sequence seg[a], which starts at first[seg[a]] (the msf
    search walks all tile heights together)."""
    n = len(out_hi)
    # a suffix minimum that restarts at each sequence: lift sequence k by k * big,
    # so a later sequence never lowers an earlier one's minimum
    big = 2 * (int(np.abs(in_lo).max(initial=0)) + 1)
    lifted = in_lo.astype(np.int64) + seg * big
    later_lo = np.minimum.accumulate(lifted[::-1])[::-1] - seg * big
    need = np.full(n, -1, np.int64)
    same = seg[1:] == seg[:-1]                     # band a has a later band in its sequence
    need[:-1] = np.where(same, out_hi[:-1].astype(np.int64) * out_row_bytes - later_lo[1:] * in_row_bytes, -1)
    lead = np.maximum(np.maximum.reduceat(need, first), 0)
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


def stage_live_bytes(graph: Graph, stage: TiledStage) -> int:
    """Bytes a stage needs while it runs: its whole inputs and output, tile
    buffers and scratch (not counting tensors live across it from elsewhere)."""
    whole = sum(graph.tensors[t].nbytes for t in set(stage.inputs + stage.outputs))
    return whole + stage.buffer_bytes + stage.scratch_bytes + stage.acc_bytes


def _contiguous_blocks(graph: Graph):
    return [b for b in graph.blocks if b.ops == list(range(b.ops[0], b.ops[-1] + 1))]


def block_op_ranges(graph: Graph) -> list[list[int]]:
    """The op indices of each inverted residual block, in order (contiguous)."""
    return [b.ops for b in _contiguous_blocks(graph)]


def fusable_block_ranges(graph: Graph) -> list[tuple[list[int], bool]]:
    """Per block of block_op_ranges(): the ops a tiled stage may hold, and
    whether a stage must end there (a squeeze-and-excite's whole-map MEAN
    follows; see Block.fusable_ops)."""
    return [(b.fusable_ops, bool(b.se)) for b in _contiguous_blocks(graph)]
