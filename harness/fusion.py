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
computed (`linebuffer`). Both are exact; they differ in RAM and MACs.

Everything here is geometry and accounting, computed once on the host: the
code generator turns a stage into a loop over a constant table of regions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import FusebenchError
from .graph import Graph, Op
from .lowering import KernelCall, lower_op, map_hwc

WINDOW_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "AVERAGE_POOL_2D")
MODES = ("recompute", "linebuffer")

Region = tuple[int, int, int, int]          # y0, y1, x0, x1 (half-open)


@dataclass
class FusedStage:
    ops: list[int]                      # op indices, consecutive in execution order
    inputs: list[int]                   # tensors read whole from the arena
    output: int                         # tensor written whole into the arena
    inner: list[int]                    # tensors that live only as tile buffers
    mode: str                           # 'recompute' | 'linebuffer'
    tile_h: int                         # tile size in stage-output pixels
    tile_w: int
    buffers: list[list[int]]            # [tensor, rows, cols, channels] per inner tensor
    table: list[list[int]]              # one row per tile, see TABLE_LAYOUT
    macs: int                           # MACs of the stage as scheduled (with recomputation)
    base_macs: int                      # MACs of the same layers run layer by layer
    scratch_bytes: int                  # one scratch buffer shared by the stage's kernels
    # A tile-table row: for each inner tensor (in `inner` order) the buffer's map
    # origin, present extent, and the rows to keep from the previous tile
    # [origin_y, origin_x, rows, cols, keep_from_row, keep_rows]; then for each op
    # the output region it computes [y0, x0, h, w] (h == 0: nothing new).

    @property
    def buffer_bytes(self) -> int:
        return sum(r * c * ch for _, r, c, ch in self.buffers)

    @property
    def extra_macs(self) -> int:
        return self.macs - self.base_macs

    def describe(self, graph: Graph) -> str:
        first, last = graph.ops[self.ops[0]], graph.ops[self.ops[-1]]
        oh, ow, _ = map_hwc(graph.tensors[self.output].shape)
        tile = f"{self.tile_h}x{'full' if self.tile_w >= ow else self.tile_w}"
        return (f"ops {first.index}-{last.index} ({len(self.ops)} layers), {self.mode} tiles {tile} "
                f"({len(self.table)} tiles), buffers {self.buffer_bytes} B, "
                f"extra MACs {self.extra_macs} ({100.0 * self.extra_macs / max(self.base_macs, 1):.1f}%)")


def _receptive(call: KernelCall, region: Region, in_hw: tuple[int, int]) -> Optional[Region]:
    """Rows/cols of the (first) input map that computing `region` of the output reads."""
    y0, y1, x0, x1 = region
    p = call.params
    H, W = in_hw
    if call.kernel in ("fb_conv_s8", "fb_dw_conv_s8", "fb_avgpool_s8"):
        kh, kw = (p["kh"], p["kw"]) if "kh" in p else (p["filter_h"], p["filter_w"])
        dh, dw = p.get("dilation_h", 1), p.get("dilation_w", 1)
        ly = y0 * p["stride_h"] - p["pad_top"]
        hy = (y1 - 1) * p["stride_h"] - p["pad_top"] + (kh - 1) * dh + 1
        lx = x0 * p["stride_w"] - p["pad_left"]
        hx = (x1 - 1) * p["stride_w"] - p["pad_left"] + (kw - 1) * dw + 1
    elif call.kernel == "fb_pad_s8":
        ly, hy = y0 - p["pad_top"], y1 - p["pad_top"]
        lx, hx = x0 - p["pad_left"], x1 - p["pad_left"]
    elif call.kernel == "fb_add_s8":
        ly, hy, lx, hx = y0, y1, x0, x1
    else:
        raise FusebenchError(f"{call.kernel} cannot run on tiles")
    ly, lx, hy, hx = max(ly, 0), max(lx, 0), min(hy, H), min(hx, W)
    if ly >= hy or lx >= hx:
        return None
    return ly, hy, lx, hx


def _union(a: Optional[Region], b: Optional[Region]) -> Optional[Region]:
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


class StageGeometry:
    """The fixed part of a candidate stage: its ops, their calls, its tensors."""

    def __init__(self, graph: Graph, ops: list[int], calls: Optional[dict[int, KernelCall]] = None):
        self.graph = graph
        self.ops = list(ops)
        if not ops or self.ops != list(range(ops[0], ops[0] + len(ops))):
            raise FusebenchError(f"a fused stage must be consecutive ops, got {ops}")
        for i in self.ops:
            op = graph.ops[i]
            if op.kind not in WINDOW_KINDS:
                raise FusebenchError(f"op {i} ({op.kind}) cannot be part of a fused stage "
                                     f"(tileable: {', '.join(WINDOW_KINDS)})")
        self.calls = {i: (calls[i] if calls and i in calls else lower_op(graph, graph.ops[i]))
                      for i in self.ops}
        produced = {graph.ops[i].outputs[0] for i in self.ops}
        inside = set(self.ops)
        self.inputs = []
        for i in self.ops:
            for t in self.calls[i].inputs:
                if t not in produced and t not in self.inputs:
                    self.inputs.append(t)
        escaping = [t for t in produced
                    if t in graph.outputs or any(op.index not in inside for op in graph.consumers(t))]
        if len(escaping) != 1 or escaping[0] != graph.ops[self.ops[-1]].outputs[0]:
            raise FusebenchError(f"ops {self.ops[0]}-{self.ops[-1]} cannot form a fused stage: "
                                 "only the last layer's output may be used outside it")
        self.output = escaping[0]
        self.inner = [graph.ops[i].outputs[0] for i in self.ops[:-1]]
        self.shape = {t: map_hwc(graph.tensors[t].shape) for t in self.inner + self.inputs + [self.output]}
        self.pixel_macs = {}
        for i in self.ops:
            oh, ow, _ = self.shape[graph.ops[i].outputs[0]]
            self.pixel_macs[i] = graph.macs(graph.ops[i]) // (oh * ow)
        self.base_macs = sum(graph.macs(graph.ops[i]) for i in self.ops)
        self.scratch_bytes = max(c.scratch_bytes for c in self.calls.values())

    def needs(self, out_region: Region) -> dict[int, Region]:
        """Region of every stage tensor needed to compute `out_region` of the output."""
        need: dict[int, Optional[Region]] = {self.output: out_region}
        for i in reversed(self.ops):
            call = self.calls[i]
            region = need.get(self.graph.ops[i].outputs[0])
            if region is None:
                continue
            for t in call.inputs:
                h, w, _ = self.shape[t]
                need[t] = _union(need.get(t), _receptive(call, region, (h, w)))
        return {t: r for t, r in need.items() if r is not None}

    def schedule(self, tile_h: int, tile_w: int, mode: str = "recompute") -> FusedStage:
        if mode not in MODES:
            raise FusebenchError(f"unknown overlap mode '{mode}' (recompute or linebuffer)")
        oh, ow, _ = self.shape[self.output]
        tile_h, tile_w = max(1, min(tile_h, oh)), max(1, min(tile_w, ow))
        if mode == "linebuffer":
            tile_w = ow                 # line buffers keep whole rows: full-width strips
        tiles = [(y, min(y + tile_h, oh), x, min(x + tile_w, ow))
                 for y in range(0, oh, tile_h) for x in range(0, ow, tile_w)]
        needs = [self.needs(t) for t in tiles]
        rows = {t: 0 for t in self.inner}
        cols = {t: 0 for t in self.inner}
        table: list[list[int]] = []
        macs = 0
        prev: dict[int, Region] = {}
        for need in needs:
            row: list[int] = []
            compute: dict[int, Region] = {}
            for t in self.inner:
                y0, y1, x0, x1 = need[t]
                keep_from = keep = 0
                c0 = y0
                if mode == "linebuffer" and t in prev and prev[t][1] > y0:
                    keep_from, keep = y0 - prev[t][0], prev[t][1] - y0
                    c0 = prev[t][1]
                rows[t] = max(rows[t], y1 - y0)
                cols[t] = max(cols[t], x1 - x0)
                row += [y0, x0, y1 - y0, x1 - x0, keep_from, keep]
                compute[t] = (c0, y1, x0, x1)
            compute[self.output] = need[self.output]
            for i in self.ops:
                y0, y1, x0, x1 = compute[self.graph.ops[i].outputs[0]]
                h, w = max(0, y1 - y0), max(0, x1 - x0)
                row += [y0, x0, h, w]
                macs += h * w * self.pixel_macs[i]
            prev = need
            table.append(row)
        buffers = [[t, rows[t], cols[t], self.shape[t][2]] for t in self.inner]
        return FusedStage(ops=self.ops, inputs=self.inputs, output=self.output, inner=self.inner,
                          mode=mode, tile_h=tile_h, tile_w=tile_w, buffers=buffers, table=table,
                          macs=macs, base_macs=self.base_macs, scratch_bytes=self.scratch_bytes)


def stage_live_bytes(graph: Graph, stage: FusedStage) -> int:
    """Bytes a stage needs while it runs: its whole inputs and output, tile
    buffers and scratch (not counting tensors live across it from elsewhere)."""
    whole = sum(graph.tensors[t].nbytes for t in set(stage.inputs + [stage.output]))
    return whole + stage.buffer_bytes + stage.scratch_bytes


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
    oh, ow, _ = geometry.shape[geometry.output]
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
    from .plan import plan_schedule

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
