"""The `fused` variant: the early inverted residual blocks (and, where it
helps, the first convolution) fused into stages computed tile by tile
(Deutel et al.), the rest layer by layer.

Every split of the first blocks into stages is tried, each stage with its
best tile setting within a per-stage limit on recomputed MACs; the schedule
with the smallest arena wins (ties: fewer MACs). Stages that are not the
bottleneck then get the cheapest tiling that keeps the arena.

A graph with parallel branches (UNIST's patch tunnels, in the branch-by-branch
op order the registry also plans) has several chains of blocks: each chain's
first blocks are searched in turn with the other chains' stages held, twice
round, so every tunnel gets its own early stages.
"""
from __future__ import annotations

from typing import Optional

from harness.errors import FusebenchError
from harness.frontend.graph import Graph
from harness.schedules.geometry import (MODES, StageGeometry, block_op_ranges, first_tileable_op, fusable_block_ranges,
                                        stage_live_bytes)
from harness.schedules.plan import Note, least_arena_plan, plan_schedule
from harness.schedules.registry import NotApplicable, Option, Schedule, percent, stream_windows_option, text, yes_no
from harness.schedules.stages import TiledStage

DEFAULT_MAX_OVERHEAD = 0.15     # the fused-layer paper's latency budget: about 14 % more work per stage

TILE_CANDIDATES = (1, 2, 4, 8, 16)


def best_schedule(geometry: StageGeometry, max_overhead: float,
                  tiles: Optional[tuple[int, int]] = None, mode: Optional[str] = None) -> TiledStage:
    """The tile setting of one stage with the least live bytes whose extra MACs
    stay within `max_overhead` (a fraction of the stage's own MACs); ties go to
    fewer MACs. `tiles`/`mode` pin the choice."""
    graph = geometry.graph
    allowed = stage_options(geometry, max_overhead, tiles, mode)
    return min(allowed, key=lambda s: (stage_live_bytes(graph, s), s.macs))


def stage_options(geometry: StageGeometry, max_overhead: float,
                  tiles: Optional[tuple[int, int]] = None, mode: Optional[str] = None) -> list[TiledStage]:
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


def block_chains(ranges: list[list[int]]) -> list[list[int]]:
    """Block indices grouped into chains: runs of blocks each starting right
    after the previous one ends (a model's backbone; each of UNIST's tunnels)."""
    chains: list[list[int]] = []
    for i, ops in enumerate(ranges):
        if chains and ops[0] == ranges[i - 1][-1] + 1:
            chains[-1].append(i)
        else:
            chains.append([i])
    return chains


def _stem_start(graph: Graph, first_op: int, after: int) -> int:
    """The first of the tileable ops right before `first_op` (a chain's stem, which
    the first stage may take in), not before op `after` + 1."""
    from harness.backend.lowering import lower_op
    from harness.schedules.geometry import tileable
    start = first_op
    while start - 1 > after:
        op = graph.ops[start - 1]
        try:
            ok = op.kind != "RESHAPE" and tileable(lower_op(graph, op)) and \
                len(graph.tensors[op.outputs[0]].shape) == 4
        except FusebenchError:
            ok = False
        if not ok:
            break
        start -= 1
    return start


MULTI_CHAIN_SEARCH_BLOCKS = 3    # first blocks searched per chain when there are several


def plan_fused(graph: Graph, max_overhead: Optional[float] = None, blocks: Optional[str] = None,
               tile=None, mode: Optional[str] = None, first_conv: Optional[bool] = None,
               search_blocks: int = 6, variant: str = "fused", stream_input: bool = True):
    """The `fused` schedule: the early inverted residual blocks (and, if it
    helps, the first convolution) fused into stages computed tile by tile.

    By default every split of the first `search_blocks` blocks into stages is
    tried, each stage with its best tile setting; the schedule with the smallest
    arena wins (ties: fewer MACs). `blocks`, `tile`, `mode` and `first_conv`
    pin those choices; `max_overhead` (fraction) bounds each stage's extra MACs;
    `stream_input` streams a segmented input window by window."""
    limit = DEFAULT_MAX_OVERHEAD if max_overhead is None else float(max_overhead)
    if limit < 0:
        raise FusebenchError("--max-overhead must not be negative")
    tile_hw = parse_tile(tile)
    if mode is not None and mode not in MODES:
        raise FusebenchError(f"--mode '{mode}': expected one of {', '.join(MODES)}")
    ranges = block_op_ranges(graph)
    fusable = fusable_block_ranges(graph)
    if not ranges:
        raise NotApplicable("fused", graph.name, "it has no inverted residual blocks or depthwise-pointwise "
                            "pairs to fuse")
    calls = {}
    cache: dict[tuple, Optional[list[TiledStage]]] = {}

    def options_for(lo: int, hi: int, with_conv: bool) -> Optional[list[TiledStage]]:
        key = (lo, hi, with_conv)
        if key not in cache:
            if any(boundary for _, boundary in fusable[lo:hi]):
                cache[key] = None       # a squeeze-and-excite inside: its MEAN ends a stage
                return None
            ops = [i for r in ranges[lo:hi] for i in r] + fusable[hi][0]
            if with_conv:
                ops = list(range(stem_of[lo], ops[0])) + ops
            try:
                geo = StageGeometry(graph, ops, calls)
                calls.update(geo.calls)
                cache[key] = stage_options(geo, limit, tile_hw, mode)
            except FusebenchError:
                cache[key] = None       # not a valid stage (e.g. ops between blocks)
        return cache[key]

    def stage_for(lo: int, hi: int, with_conv: bool) -> Optional[TiledStage]:
        options = options_for(lo, hi, with_conv)
        if options is None:
            return None
        return min(options, key=lambda s: (stage_live_bytes(graph, s), s.macs))

    chains = block_chains(ranges)
    # Each chain's stem: the ops before its first block, after the edge ops (a
    # QUANTIZE of the pixels) or the previous chain.
    stem_of = {}
    for c, chain in enumerate(chains):
        after = ranges[chains[c - 1][-1]][-1] if c else first_tileable_op(graph) - 1
        stem_of[chain[0]] = _stem_start(graph, ranges[chain[0]][0], after)

    def conv_options(first: int) -> list[bool]:
        """Whether a stage starting at block `first` may take its chain's stem in."""
        if ranges[first][0] <= stem_of.get(first, ranges[first][0]):
            return [False]
        return [first_conv] if first_conv is not None else [True, False]

    def splits(first: int, groups) -> list[list[TiledStage]]:
        """The stages of these groups of blocks (indices from `first`), with and without the stem."""
        found = []
        for with_conv in conv_options(first + groups[0][0]):
            stages = [stage_for(first + lo, first + hi, with_conv and i == 0) for i, (lo, hi) in enumerate(groups)]
            if all(s is not None for s in stages):
                found.append(stages)
        return found

    def chain_candidates(chain: list[int], n_blocks: int) -> list[list[TiledStage]]:
        """Every split of the chain's first blocks into stages."""
        n = min(n_blocks, len(chain))
        return [stages for k in range(1, n + 1) for groups in _partitions(k) for stages in splits(chain[0], groups)]

    def plan_of(stages):
        plan = plan_schedule(graph, stages, variant=variant, stream_windows=stream_input)
        return (plan.arena_bytes, plan.macs, len(stages)), plan

    best = None
    if blocks:
        for stages in splits(0, parse_blocks(blocks, len(ranges))):
            found = plan_of(stages)
            if best is None or found[0] < best[0]:
                best = found
    elif len(chains) == 1:
        found = least_arena_plan(graph, chain_candidates(chains[0], search_blocks),
                                 tiebreak=lambda plan, stages: (plan.macs, len(stages)),
                                 variant=variant, stream_windows=stream_input)
        if found is not None:
            best = (found[0][:3], found[1])
    else:
        # Several chains (tunnels): first every chain split alike, as symmetric
        # tunnels only lower the peak together; then chain by chain, the
        # others' stages held, to let each keep the cheapest split that holds it.
        n = min(search_blocks, MULTI_CHAIN_SEARCH_BLOCKS)
        chosen: list[list[TiledStage]] = [[] for _ in chains]
        for k in range(1, n + 1):
            for groups in _partitions(k):
                for with_conv in ([first_conv] if first_conv is not None else [True, False]):
                    alike = []
                    for chain in chains:
                        if groups[-1][1] >= len(chain):
                            alike.append([])
                            continue
                        options = [st for st in splits(chain[0], groups) if bool(st[0].ops[0] < ranges[chain[0]][0])
                                   == (with_conv and conv_options(chain[0]) != [False])]
                        alike.append(options[0] if options else [])
                    if not any(alike):
                        continue
                    found = plan_of([s for stages in alike for s in stages])
                    if best is None or found[0] < best[0]:
                        best, chosen = found, alike
        for c, chain in enumerate(chains):
            held = [s for d, stages in enumerate(chosen) if d != c for s in stages]
            scored = [(plan_of(held + stages), stages) for stages in [[]] + chain_candidates(chain, n)]
            found, stages = min(scored, key=lambda item: item[0][0])
            if best is None or found[0] <= best[0]:
                best, chosen[c] = found, stages
        if best is not None and not any(isinstance(st, TiledStage) for st in best[1].stages):
            best = None
    if best is None:
        if blocks:
            raise FusebenchError(f"{graph.name}: no valid fused stage for blocks {blocks}")
        raise NotApplicable("fused", graph.name, "no split of its blocks into stages is valid here (in this op "
                            "order no block's ops run back to back, or no stage lowers the arena)")
    # Stages that are not the bottleneck need not be as small: give each the
    # cheapest tiling that keeps the arena where it is.
    plan = best[1]
    stages = list(plan.stages)
    for k, st in enumerate(stages):
        if not isinstance(st, TiledStage):
            continue                          # a window read of a streamed input
        key = next(key for key, opts in cache.items() if opts and st in opts)
        for option in sorted(cache[key], key=lambda s: (s.macs, stage_live_bytes(graph, s))):
            if option.macs >= st.macs:
                break
            trial = plan_schedule(graph, stages[:k] + [option] + stages[k + 1:], variant=variant,
                                  stream_windows=stream_input)
            if trial.arena_bytes <= plan.arena_bytes:
                stages[k], plan = option, trial
                break
    cut = [ranges[i] for i, (ops, boundary) in enumerate(fusable)
           if boundary and any(ops[-1] in st.ops for st in stages)]
    if cut:
        plan.notes.append(Note(
            "fused-se-boundary",
            "squeeze-and-excite blocks end their stage at the depthwise output (ops "
            + ", ".join(f"{r[0]}-{r[-1]}" for r in cut) + "): the squeeze is a mean over the whole "
            "depthwise map, so that map is stored whole; the squeeze, gate and projection run layer by layer "
            "(accumulating the mean tile by tile would save the map only by computing the stage twice)",
            dict(blocks=[[r[0], r[-1]] for r in cut])))
    return plan


SCHEDULE = Schedule(
    name="fused", order=20,
    runs="the early inverted residual blocks (and the first convolution when it helps) run as *fused "
         "stages*, tile by tile (Deutel et al.): the wide expanded maps only ever exist as tile buffers",
    ram="a stage's whole input and output, plus its tile buffers and one shared scratch",
    plan=lambda graph, board=None, **options: plan_fused(graph, **options),
    options=(
        Option("max_overhead", percent,
               f"limit on each stage's extra (recomputed) MACs, in percent of its own MACs "
               f"(default {100 * DEFAULT_MAX_OVERHEAD:g})"),
        Option("blocks", text, "inverted residual blocks per stage, e.g. 0-3 or 0-1,2-4 (default: searched)"),
        Option("tile", text, "tile HxW in stage-output pixels, or H for row strips (default: searched)"),
        Option("mode", text, f"{' or '.join(MODES)} for the tile overlap (default: searched)"),
        Option("first_conv", yes_no, "yes or no: fuse the ops before the first block into the first "
                                     "stage (default: searched)"),
        stream_windows_option(),
    ))
