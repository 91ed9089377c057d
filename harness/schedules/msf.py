"""The `msf` variant: multi-stage fusion search (msf-CNN).

The network is a chain of op boundaries 0..N. An edge from boundary i to j is
one way to run ops i..j-1: layer by layer (j = i + 1), or fused into one stage
computed tile by tile with a tile size and an overlap mode (harness.schedules.geometry).
Each edge has a peak RAM, everything live while it runs (whole stage inputs
and outputs, tile buffers, scratch, MEAN accumulators, and tensors that only
pass by, such as a residual block input kept for a later add), and a MAC count
with recomputation. A path from 0 to N is a complete schedule: its peak is the
largest edge peak, its cost the sum of edge MACs. A label-setting walk over
the DAG keeps, at every boundary, the Pareto set of (peak, MACs) of the paths
reaching it; at N that set is the whole front, which answers both questions
msf-CNN asks: the least peak for a MAC limit, the least MACs for a RAM budget.
Layer by layer (all j = i + 1) and the `fused` schedule are paths too.

Cost model. Tiling is separable (harness.schedules.geometry.axis_receptive): the region of
a tensor that a tile needs is the product of a row interval and a column
interval, each found by a 1-D walk back from the anchor (the stage's last map).
So for one anchor a single walk per axis, over all tile sizes at once (numpy),
prices every stage that ends there, whatever its start: buffers are the
largest interval products, MACs the sums of interval lengths (line buffers
count only new rows). The exact tile tables are built only for the chosen
stages, from the same walks, and tests check that both agree.

With `stream_input` (the default) the first stage reads the input image tile
by tile from the host (fb_model_read_input) instead of holding it whole, as
the published msf-CNN figures assume; the input then never counts in RAM. An input that only slices read (UNIST's
input segmentation) is streamed as windows instead, one patch per slice
(stages.WindowRead). For a graph with branches the registry also plans the
search in branch-by-branch op orders (harness.schedules.order), so each
tunnel is a chain the search can cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from harness.errors import FusebenchError
from harness.schedules.geometry import (MODES, LineWalk, tileable, StageGeometry, anchor_may_overlay, axis_receptive, bands,
                     inplace_offsets, interval_hull, is_global_mean, line_bands)
from harness.frontend.graph import Graph
from harness.backend.lowering import lower_op, map_hwc
from harness.schedules.stages import window_reads
from harness.schedules.plan import ARENA_ALIGNMENT, Plan, kernel_scratch, lifetimes, plan_schedule
from harness.schedules.registry import Option, Schedule, byte_size, percent, yes_no

TILE_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)   # per axis, plus the whole extent
MAX_STAGE_OPS = 40                                  # longest stage the search considers
REALIZE_CANDIDATES = 4                              # front points tried when packing the arena


def _align(n):
    if isinstance(n, int):                     # plain ints stay plain (and fast)
        return (n + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT
    return (np.asarray(n) + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT


@dataclass(frozen=True)
class Edge:
    """One way to run ops [start, end): layer by layer or one fused stage."""
    start: int
    end: int
    mode: str                 # 'layer' | 'recompute' | 'linebuffer'
    tile_h: int
    tile_w: int
    peak_bytes: int           # everything live while it runs (16-byte aligned buffers)
    macs: int                 # with recomputation
    work: int = 0             # MACs the kernels execute (partial quads of the DSP conv included)

    def describe(self) -> str:
        if self.mode == "layer":
            return f"op {self.start} layer by layer"
        return f"ops {self.start}-{self.end - 1} {self.mode} {self.tile_h}x{self.tile_w}"


@dataclass
class FusionPath:
    """A path through the DAG: the edges, its peak RAM and MACs."""
    edges: list[Edge]
    peak_bytes: int
    macs: int


class _AxisBands:
    """Anchor bands for every tile size along one axis, concatenated so that one
    numpy walk serves them all; segment k holds the bands of sizes[k]. With
    `lead_in` they are line bands (geometry.line_bands)."""

    def __init__(self, extent: int, sizes: tuple[int, ...], lead_in: bool = False):
        self.extent = extent
        self.sizes = sorted({min(s, extent) for s in sizes} | {extent})
        starts, ends, seg = [], [], []
        for k, s in enumerate(self.sizes):
            b0, b1 = line_bands(extent, s) if lead_in else bands(extent, s)
            starts.append(b0)
            ends.append(b1)
            seg.append(np.full(len(b0), k))
        self.lo, self.hi = np.concatenate(starts), np.concatenate(ends)
        self.seg = np.concatenate(seg)
        self.first = np.searchsorted(self.seg, np.arange(len(self.sizes)))
        self.is_first = np.zeros(len(self.lo), bool)
        self.is_first[self.first] = True

    def summaries(self, lo: np.ndarray, hi: np.ndarray, size: int):
        """Tiles computed afresh, per tile size: largest interval, sum of lengths,
        whether the intervals cover [0, size), how many bands compute something."""
        length = np.maximum(hi - lo, 0)
        prev_hi = np.concatenate(([-1], hi[:-1]))
        gap = (lo > np.where(self.is_first, 0, prev_hi)) & (length > 0)
        ends = np.maximum.reduceat(hi, self.first)
        covered = (np.add.reduceat(gap.astype(np.int64), self.first) == 0) & (ends >= size) & \
            (np.minimum.reduceat(np.where(length > 0, lo, size), self.first) == 0)
        return self._sums(length, length, covered)

    def line_summaries(self, rows, size: int):
        """Line buffers (LineWalk.rows), per tile size: the same four figures."""
        _, buffer_rows, _, count = rows
        return self._sums(buffer_rows, count, np.add.reduceat(count, self.first) == size)

    def _sums(self, buffer_len, count, covered):
        # bands that compute something, by their length modulo 4 (see _QUAD_WASTE)
        residues = _ONE_HOT4[count % 4] * (count > 0)[:, None]
        return (np.maximum.reduceat(buffer_len, self.first), np.add.reduceat(count, self.first), covered,
                np.add.reduceat(residues, self.first, axis=0))


# The DSP convolution computes output pixels four at a time; a tile's last 3
# pixels take a quad (one pixel's work wasted), its last 1 or 2 a one- or
# two-pixel loop that costs about as much per pixel as 2.5 and 1.5 pixels of a
# quad: priced as TAIL_WASTE[n % 4] more pixels. A tile's n is its rows times
# its columns, so the waste of every tile pair follows from the two lengths modulo 4.
TAIL_WASTE = (0, 2, 1, 1)
_QUAD_WASTE = np.array([[TAIL_WASTE[(i * j) % 4] for j in range(4)] for i in range(4)], np.int64)


_ONE_HOT4 = np.eye(4, dtype=np.int64)


class FusionSpace:
    """Every edge of the DAG for one graph, priced; the front and its queries."""

    def __init__(self, graph: Graph, stream_input: bool = True, max_stage_ops: int = MAX_STAGE_OPS,
                 tile_sizes: tuple[int, ...] = TILE_SIZES):
        self.graph = graph
        self.stream_input = stream_input
        self.max_stage_ops = max_stage_ops
        self.tile_sizes = tile_sizes
        self.n = len(graph.ops)
        self.base_macs = sum(graph.macs(op) for op in graph.ops)
        self.calls = {}
        for op in graph.ops:
            if op.kind != "RESHAPE":
                self.calls[op.index] = lower_op(graph, op)
        life, self.aliases = lifetimes(graph)
        self.tensors = sorted(life)
        self.first = np.array([life[t][0] for t in self.tensors])
        self.last = np.array([life[t][1] for t in self.tensors])
        self.size = _align(np.array([graph.tensors[t].nbytes for t in self.tensors]))
        outputs = {self.aliases.get(t, t) for t in graph.outputs}
        self.is_output = np.array([t in outputs for t in self.tensors])
        inputs = {self.aliases.get(t, t) for t in graph.inputs}
        self.is_input = np.array([t in inputs for t in self.tensors])
        self.input = self.aliases.get(graph.inputs[0], graph.inputs[0])
        self.input_row = self.tensors.index(self.input)
        self.row_of = {t: r for r, t in enumerate(self.tensors)}
        readers = [op.index for op in graph.consumers(graph.inputs[0])]
        self.input_last_reader = max(readers) if readers else -1
        # An input read only by slices (UNIST's patches) is streamed window by
        # window (stages.WindowRead): it then never takes arena bytes.
        if stream_input and window_reads(graph):
            self.size[self.input_row] = 0
        self.edges: dict[int, list[Edge]] = {i: [] for i in range(self.n)}
        self._layer_edges()
        self._stage_edges()

    # -- pricing ---------------------------------------------------------------------------

    def _whole_bytes(self, i: int, j: int, inner: np.ndarray) -> int:
        """Whole tensors in the arena while ops [i, j) run: live then, not inner."""
        live = (self.first <= j - 1) & (self.last >= i) & ~inner
        return int(self.size[live].sum())

    def _inner(self, row: int, i: int, j: int) -> bool:
        """_inner_mask(i, j)[row], for one tensor."""
        return bool(i <= self.first[row] <= j - 1 and self.last[row] <= j - 1 and not self.is_output[row]
                    and not self.is_input[row])

    def _inner_mask(self, i: int, j: int) -> np.ndarray:
        return (self.first >= i) & (self.first <= j - 1) & (self.last <= j - 1) & ~self.is_output & ~self.is_input

    def _layer_edges(self) -> None:
        none = np.zeros(len(self.tensors), bool)
        for op in self.graph.ops:
            k = op.index
            scratch = int(_align(kernel_scratch(self.graph, op)))
            peak = self._whole_bytes(k, k + 1, none) + scratch
            self.edges[k].append(Edge(k, k + 1, "layer", 0, 0, peak, self.graph.macs(op), self.graph.macs(op)))

    def _tileable(self, k: int) -> bool:
        op = self.graph.ops[k]
        return k in self.calls and tileable(self.calls[k]) and len(self.graph.tensors[op.outputs[0]].shape) == 4

    def _stage_edges(self) -> None:
        """Every fused stage, priced. Per anchor (a stage's last map) one walk back
        over the ops, for all tile sizes at once: rows as recomputed tiles need
        them, columns, and rows as line buffers need them (geometry.LineWalk).
        Stopping the walk at op i prices the stages [i, anchor]."""
        g = self.graph
        for a in range(self.n):
            if not self._tileable(a):
                continue
            anchor = g.ops[a].outputs[0]
            ah, aw, _ = map_hwc(g.tensors[anchor].shape)
            ybands, xbands = _AxisBands(ah, self.tile_sizes), _AxisBands(aw, self.tile_sizes)
            ylines = _AxisBands(ah, self.tile_sizes, lead_in=True)
            need = {anchor: ((ybands.lo, ybands.hi), (xbands.lo, xbands.hi))}
            lines = LineWalk(anchor, ylines.lo, ylines.hi, ylines.is_first, ah)
            price = _StagePrice(len(ybands.sizes), len(xbands.sizes))
            reduce = a + 1 < self.n and is_global_mean(g, g.ops[a + 1]) and \
                [op.index for op in g.consumers(anchor)] == [a + 1]
            heights = {}
            ends = (a + 1, a + 2) if reduce else (a + 1,)
            # per stage end j, the tile buffers of the stage's inner maps and whether the
            # tiles cover its other maps, summed as the walk adds ops (a map's kind does
            # not depend on where the stage starts)
            running = {j: ({m: np.zeros((len(ybands.sizes), len(xbands.sizes)), np.int64) for m in MODES},
                           {m: np.ones((len(ybands.sizes), len(xbands.sizes)), bool) for m in MODES})
                       for j in ends}

            for k in range(a, max(-1, a - self.max_stage_ops), -1):
                if not self._tileable(k):
                    break
                op = g.ops[k]
                out = op.outputs[0]
                call = self.calls[k]
                if out not in need:
                    break                      # nothing in the stage reads it: not a stage
                shape = map_hwc(g.tensors[out].shape)
                ysums = {"recompute": ybands.summaries(*need[out][0], shape[0]),
                         "linebuffer": ylines.line_summaries(lines.rows(out), shape[0])}
                price.add_op(out, g.macs(op) // (shape[0] * shape[1]), shape[2], ysums,
                             xbands.summaries(*need[out][1], shape[1]), int(call.scratch_bytes),
                             op.kind == "CONV_2D")
                buffers, covers = price.tensors[out]
                row = self.row_of[self.aliases.get(out, out)]
                for j, (buf, ok) in running.items():
                    if self._inner(row, k, j):
                        for m in MODES:
                            buf[m] += buffers[m]
                    elif out != anchor:        # written whole: the tiles must cover it
                        for m in MODES:
                            ok[m] &= covers[m]
                for t in call.inputs:
                    in_shape = map_hwc(g.tensors[t].shape)
                    heights[t] = in_shape[0]
                    rngs = []
                    for axis in (0, 1):
                        rng = axis_receptive(call, axis, *need[out][axis], in_shape[axis])
                        rngs.append(interval_hull(need[t][axis], rng) if t in need else rng)
                    need[t] = rngs
                lines.add_op(call, out, heights)
                for j in ends:
                    if j - k < 2 and j == a + 1 and not (k == 0 and self.stream_input):
                        continue               # one op alone: layer by layer is the same
                    self._add_stage(k, j, a, (ybands, xbands, ylines), need, lines, price, running[j])

    def _add_stage(self, i: int, j: int, a: int, axes, need, lines, price: "_StagePrice", sums) -> None:
        """Price stage [i, j) (anchor a) for every tile size and mode; `sums`: the
        running tile-buffer bytes and coverage of its maps."""
        g = self.graph
        ybands, xbands, ylines = axes
        anchor = g.ops[a].outputs[0]
        inner_mask = self._inner_mask(i, j)
        buf = {m: b.copy() for m, b in sums[0].items()}
        ok = sums[1]
        if i == 0 and self.stream_input and self.input_last_reader < j:
            inner_mask = inner_mask.copy()
            inner_mask[self.input_row] = True
            h, w, c = map_hwc(g.tensors[self.input].shape)
            cols = xbands.summaries(*need[self.input][1], w)[0]
            buf["recompute"] += _align(c * np.outer(ybands.summaries(*need[self.input][0], h)[0], cols))
            rows = ylines.line_summaries(lines.rows(self.input), h)[0]
            buf["linebuffer"] += _align(c * np.outer(rows, cols))
        extra = int(_align(price.scratch))
        if j == a + 2:                        # ends in the global MEAN: its accumulators
            extra = max(extra, int(_align(kernel_scratch(g, g.ops[a + 1]))))
            extra += int(_align(4 * map_hwc(g.tensors[anchor].shape)[2]))
        whole = self._whole_bytes(i, j, inner_mask) + extra
        saved = self._inplace_savings(i, j, a, axes, need, lines, inner_mask)
        for m in MODES:
            buf[m][:, -1] -= saved[m]          # in place: full-width strips only
        # every (tile height, tile width, mode), in that order (ties keep the first)
        valid = np.stack([ok[m] for m in MODES], axis=-1)
        valid[-1, :, MODES.index("linebuffer")] = False            # lines need several bands
        keep = np.flatnonzero(valid)
        if not len(keep):
            return
        peaks = whole + np.stack([buf[m] for m in MODES], axis=-1).ravel()[keep]
        macs = np.stack([price.macs[m] for m in MODES], axis=-1).ravel()[keep]
        work = np.stack([price.work[m] for m in MODES], axis=-1).ravel()[keep]
        order = _pareto_order(peaks, macs, work)
        nx, nm = valid.shape[1], len(MODES)
        for flat, peak, mac, wrk in zip(keep[order].tolist(), peaks[order].tolist(), macs[order].tolist(),
                                        work[order].tolist()):
            y, x, m = flat // (nx * nm), flat // nm % nx, flat % nm
            self.edges[i].append(Edge(i, j, MODES[m], ybands.sizes[y], xbands.sizes[x], peak, mac, wrk))

    def _inplace_savings(self, i: int, j: int, a: int, axes, need, lines, inner_mask) -> dict:
        """Bytes saved per tile height and mode when the stage's output overlays
        its largest input that dies in it (geometry.inplace_offset; full-width
        strips run top to bottom)."""
        g = self.graph
        ybands, _, ylines = axes
        ny = len(ybands.sizes)
        saved = {m: np.zeros(ny, np.int64) for m in MODES}
        if j != a + 1:
            return saved
        anchor = g.ops[a].outputs[0]
        dying = (self.first < max(i, 1)) | (self.is_input & ~inner_mask)
        dying &= (self.last >= i) & (self.last <= j - 1) & ~self.is_output & ~inner_mask
        rows = [r for r in np.nonzero(dying)[0] if len(g.tensors[self.tensors[r]].shape) == 4
                and self.tensors[r] in need]
        if not rows:
            return saved
        t = self.tensors[max(rows, key=lambda r: (self.size[r], -r))]
        last = g.ops[a]
        _, aw, ac = map_hwc(g.tensors[anchor].shape)
        _, tw, tc = map_hwc(g.tensors[t].shape)
        in_bytes, out_bytes = g.tensors[t].nbytes, g.tensors[anchor].nbytes
        whole_pair = int(_align(in_bytes) + _align(out_bytes))
        _, _, c0, count = lines.rows(anchor)
        per_mode = {"recompute": (ybands, need[anchor][0][1], need[t][0][0]),
                    "linebuffer": (ylines, c0 + count, lines.rows(t)[0])}
        # whether the last op may overlay t depends on the lead only through lead == 0
        may_at_zero, may_later = anchor_may_overlay(g, last, t, 0), anchor_may_overlay(g, last, t, 16)
        for m, (axis_bands, out_hi, in_lo) in per_mode.items():
            leads = inplace_offsets(out_hi, in_lo, axis_bands.seg, axis_bands.first, aw * ac, tw * tc)
            footprint = np.maximum(in_bytes + leads, out_bytes)       # inplace_footprint, per height
            may = np.where(leads == 0, may_at_zero, may_later) & (footprint < in_bytes + out_bytes)
            saved[m] = np.where(may, np.maximum(0, whole_pair - _align(footprint)), 0)
        return saved

    # -- the walk over the DAG ---------------------------------------------------------------

    def front(self) -> list[FusionPath]:
        """Every Pareto-optimal schedule (peak RAM against MACs), least peak first."""
        if not hasattr(self, "_front"):
            self._front = self._walk()
        return self._front

    def _walk(self) -> list[FusionPath]:
        """Label-setting over boundaries 0..N: at each boundary the Pareto set of
        (peak, MACs) of the paths reaching it, with back pointers."""
        n = self.n
        edge_list = [e for i in range(n) for e in self.edges[i]]
        by_start: dict[int, list[int]] = {i: [] for i in range(n)}
        for k, e in enumerate(edge_list):
            by_start[e.start].append(k)
        incoming: list[list] = [[] for _ in range(n + 1)]
        # per boundary: peaks, macs, previous boundary's label index, edge index
        labels: list = [None] * (n + 1)
        labels[0] = (np.zeros(1, np.int64), np.zeros(1, np.int64), np.full(1, -1), np.full(1, -1))
        for i in range(n + 1):
            if i > 0:
                if not incoming[i]:
                    continue
                p, m, src, edge = (np.concatenate([c[f] for c in incoming[i]]) for f in range(4))
                keep = np.nonzero(_pareto_mask(p, m))[0]
                labels[i] = (p[keep], m[keep], src[keep], edge[keep])
                incoming[i] = []
            if i == n:
                break
            p0, m0, _, _ = labels[i]
            rows = np.arange(len(p0))
            for k in by_start[i]:
                e = edge_list[k]
                incoming[e.end].append((np.maximum(p0, e.peak_bytes), m0 + e.macs, rows,
                                        np.full(len(p0), k)))
        if labels[n] is None:
            raise FusebenchError(f"{self.graph.name}: no schedule covers the whole network")
        schedules = []
        for k in np.argsort(labels[n][0], kind="stable"):
            node, idx, path = n, int(k), []
            while node > 0:
                e = edge_list[int(labels[node][3][idx])]
                path.append(e)
                idx, node = int(labels[node][2][idx]), e.start
            schedules.append(FusionPath(edges=path[::-1], peak_bytes=int(labels[n][0][k]),
                                      macs=int(labels[n][1][k])))
        return schedules

    def cheapest(self, max_peak: int, max_macs: float, prefer: str = "work") -> Optional[FusionPath]:
        """Among schedules whose every edge peaks within `max_peak` and whose MACs
        stay within `max_macs`: the least executed work (prefer='work'; then MACs)
        or the fewest MACs (prefer='macs'; then work). Stages that are not the
        bottleneck thus get the tiling that runs fastest, not the smallest one."""
        n = self.n
        labels: list[list] = [[] for _ in range(n + 1)]
        labels[0] = [(0, 0, None, None)]          # (macs, work, previous label, edge)
        for i in range(n):
            # every edge into i starts before i: its label set is complete, prune it
            labels[i] = _pareto_sum(labels[i])
            for e in self.edges[i]:
                if e.peak_bytes <= max_peak:
                    labels[e.end].extend((lab[0] + e.macs, lab[1] + (e.work or e.macs), lab, e)
                                         for lab in labels[i])
        labels[n] = _pareto_sum(labels[n])
        final = [lab for lab in (labels[n] or []) if lab[0] <= max_macs]
        if not final:
            return None
        key = (lambda lab: (lab[1], lab[0])) if prefer == "work" else (lambda lab: (lab[0], lab[1]))
        best = min(final, key=key)
        edges, lab = [], best
        while lab[3] is not None:
            edges.append(lab[3])
            lab = lab[2]
        edges.reverse()
        return FusionPath(edges=edges, peak_bytes=max(e.peak_bytes for e in edges), macs=best[0])

    # -- from a path to a plan ---------------------------------------------------------------

    def lighten(self, schedule: FusionPath, plan: Plan, max_arena: float, max_macs: float,
                min_saving: float = 0.01) -> Plan:
        """`plan` (realized `schedule`) with single stages swapped for same-span
        options that execute less work, as long as the packed arena stays within
        `max_arena` and the MACs within `max_macs`. For when the least-work
        schedule as a whole packs worse: most stages are not the bottleneck, and
        one of them (typically the tail, tiled finely) may cost far more work
        than it needs to. Only swaps saving `min_saving` of the work are tried."""
        edges = list(schedule.edges)
        total_work = sum(e.work or e.macs for e in edges)
        macs = schedule.macs
        for k in sorted(range(len(edges)), key=lambda k: -(edges[k].work or edges[k].macs)):
            e = edges[k]
            options = sorted((o for o in self.edges[e.start] if o.end == e.end and o.peak_bytes <= schedule.peak_bytes
                              and (o.work or o.macs) < (e.work or e.macs) - min_saving * total_work
                              and macs - e.macs + o.macs <= max_macs),
                             key=lambda o: (o.work or o.macs, o.peak_bytes))
            for o in options[:3]:
                trial = edges[:k] + [o] + edges[k + 1:]
                trial_plan = self.realize(FusionPath(trial, schedule.peak_bytes, macs - e.macs + o.macs))
                if trial_plan.arena_bytes <= max_arena:
                    edges, plan, macs = trial, trial_plan, macs - e.macs + o.macs
                    break
        return plan

    def realize(self, schedule: FusionPath, variant: str = "msf") -> Plan:
        stages = []
        for e in schedule.edges:
            if e.mode == "layer":
                continue
            geo = StageGeometry(self.graph, list(range(e.start, e.end)), self.calls,
                                stream_input=self.stream_input)
            stages.append(geo.schedule(e.tile_h, e.tile_w, e.mode))
        return plan_schedule(self.graph, stages, variant=variant, stream_windows=self.stream_input)


class _StagePrice:
    """Running totals of a stage as its walk adds ops, per overlap mode: MACs
    and executed work per tile setting, and per produced tensor its tile-buffer
    bytes and whether the tiles cover it."""

    def __init__(self, ny: int, nx: int):
        self.macs = {m: np.zeros((ny, nx), np.int64) for m in MODES}   # with recomputation
        self.work = {m: np.zeros((ny, nx), np.int64) for m in MODES}   # what the kernels execute
        self.tensors: dict[int, tuple[dict, dict]] = {}
        self.scratch = 0

    def add_op(self, out: int, pixel_macs: int, channels: int, ysums: dict, xsums, scratch: int,
               quads: bool) -> None:
        mx, tx, cx, bx = xsums
        buffers, covers = {}, {}
        for m, (my, ty, cy, by) in ysums.items():
            self.macs[m] += pixel_macs * np.outer(ty, tx)
            self.work[m] += pixel_macs * np.outer(ty, tx)
            if quads:                           # the rest of each tile's last quad of pixels
                self.work[m] += pixel_macs * (by @ _QUAD_WASTE @ bx.T)
            buffers[m] = _align(channels * np.outer(my, mx))
            covers[m] = np.outer(cy, cx)
        self.tensors[out] = (buffers, covers)
        self.scratch = max(self.scratch, scratch)


def _pareto_mask(peaks: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """True for points no other point beats on both peak and MACs (first of equals)."""
    order = np.lexsort((macs, peaks))
    best = np.minimum.accumulate(macs[order])
    keep_sorted = np.ones(len(order), bool)
    keep_sorted[1:] = macs[order][1:] < best[:-1]
    keep = np.zeros(len(order), bool)
    keep[order[keep_sorted]] = True
    return keep


def _pareto_sum(labels: list[tuple]) -> list[tuple]:
    """Labels no other label beats on both MACs and work (first two fields)."""
    keep, best_work = [], None
    for lab in sorted(labels, key=lambda lab: (lab[0], lab[1])):
        if best_work is None or lab[1] < best_work:
            keep.append(lab)
            best_work = lab[1]
    return keep


def _pareto_order(peaks: np.ndarray, macs: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Indices of the options of one edge no other option beats on peak, MACs and
    executed work (the first of equals), by peak, then MACs, then work. Sorted so,
    an option is beaten exactly when an earlier one has no more MACs and no more
    work (a few hundred options: the all-pairs test is cheapest in numpy)."""
    order = np.lexsort((np.arange(len(peaks)), work, macs, peaks))
    m, w = macs[order], work[order]
    earlier = np.tri(len(order), k=-1, dtype=bool)
    beaten = ((m[None, :] <= m[:, None]) & (w[None, :] <= w[:, None]) & earlier).any(axis=1)
    return order[~beaten]


# -- the `msf` variant ----------------------------------------------------------------------

APP_STATIC_RESERVE = 2048     # the measurement app's own static data beside the arena


def board_arena_budget(board) -> int:
    """Arena bytes a board leaves once the stack and the app's static data are placed."""
    return board.ram.size - board.stack_bytes - APP_STATIC_RESERVE


def _kib(n: int) -> str:
    return f"{n} B ({n / 1024:.1f} KiB)"


def plan_msf(graph: Graph, max_overhead: Optional[float] = None, ram_budget: Optional[int] = None,
             board=None, stream_input: bool = True, space: Optional[FusionSpace] = None) -> Plan:
    """The `msf` schedule.

    ram_budget (bytes): the fewest MACs whose arena fits it (then the least
    executed work).
    max_overhead (fraction of the network's MACs): the least arena within it.
    Neither: the least arena at the fewest MACs that fit `board` (without a
    board: at the fewest MACs of all)."""
    if max_overhead is not None and max_overhead < 0:
        raise FusebenchError("--max-overhead must not be negative")
    if ram_budget is not None and ram_budget <= 0:
        raise FusebenchError("--ram-budget must be positive")
    space = space or FusionSpace(graph, stream_input=stream_input)
    front = space.front()
    smallest = front[0]

    def overhead(s) -> str:
        return f"{100.0 * (s.macs / space.base_macs - 1):.1f}% extra MACs"

    budget = ram_budget
    limit = float("inf") if max_overhead is None else space.base_macs * (1 + max_overhead) + 1e-6
    if budget is None and max_overhead is None and board is not None:
        # The least RAM at the least overhead that fits the board: the front's
        # point with the fewest MACs among those that fit, then as below.
        fits = [s for s in front if s.peak_bytes <= board_arena_budget(board)]
        if fits:
            max_overhead = min(s.macs for s in fits) / space.base_macs - 1
            limit = min(s.macs for s in fits) + 1e-6
        else:
            budget = board_arena_budget(board)      # nothing fits: say so below
    if budget is not None:
        # The fewest MACs within the budget; the packed arena may exceed the
        # predicted peak by fragmentation: then ask again with less.
        target = budget
        for _ in range(2 * REALIZE_CANDIDATES):
            s = space.cheapest(target, limit, prefer="macs")
            if s is None:
                break
            plan = space.realize(s)
            if plan.arena_bytes <= budget:
                return plan
            target = min(target - (plan.arena_bytes - budget), s.peak_bytes - ARENA_ALIGNMENT)
        for s in front[:REALIZE_CANDIDATES]:          # last resort: the least peaks themselves
            if s.macs <= limit and s.peak_bytes <= budget:
                plan = space.realize(s)
                if plan.arena_bytes <= budget:
                    return plan
        where = f"the {board.name} arena budget" if ram_budget is None and board is not None else "the budget"
        within = "" if max_overhead is None else f" within {100 * max_overhead:g}% extra MACs"
        raise FusebenchError(f"{graph.name}: no msf schedule fits {where} of {_kib(budget)}{within}; "
                             f"the smallest possible peak is {_kib(smallest.peak_bytes)} "
                             f"(at {overhead(smallest)})")
    if max_overhead is None:
        limit = min(s.macs for s in front) + 1e-6
    # The least peak within the limit (the front point, packed). Schedules with
    # the same peak differ in how fast their other stages run: the one with the
    # least executed work is taken if it packs into the same arena; failing
    # that, the front point's slowest stages are swapped one by one.
    point = next(s for s in front if s.macs <= limit)
    best = space.realize(point)
    best_work = sum(e.work or e.macs for e in point.edges)
    allowed = best.arena_bytes
    target = point.peak_bytes
    for _ in range(REALIZE_CANDIDATES):
        s = space.cheapest(target, limit, prefer="work")
        if s is None or sum(e.work or e.macs for e in s.edges) >= best_work:
            break
        plan = space.realize(s)
        if plan.arena_bytes <= allowed:
            return plan
        target -= plan.arena_bytes - int(allowed)
    return space.lighten(point, best, allowed, limit)


SCHEDULE = Schedule(
    name="msf", order=30,
    runs="msf-CNN's multi-stage fusion: the whole network, input to pooled vector, cut into stages by a "
         "search; each stage fused tile by tile (or a single layer)",
    ram="the largest stage: its whole input and output, tile buffers, scratch, and tensors that pass by "
        "(a residual kept for a later add)",
    plan=lambda graph, board=None, **options: plan_msf(graph, board=board, **options),
    options=(
        Option("max_overhead", percent, "limit on the whole network's extra MACs, in percent: the least RAM "
                                        "within it (default: the fewest MACs that fit --board)"),
        Option("ram_budget", byte_size, "RAM budget for the arena, e.g. 64K: the fewest MACs within it "
                                        "(default: what fits --board)"),
        Option("stream_input", yes_no,
               "read the input tile by tile (patch by patch when only slices read it) from the host instead "
               "of holding it (default on; "
               "--no-stream-input turns it off)", switch=True, default=True),
    ))
