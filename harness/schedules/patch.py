"""The `patch` variant: a patch-based first stage (MCUNetV2).

The first, memory-hungry part of the network (ops 0..end) runs patch by patch:
the stage output is cut into an n x n grid, and for each output patch the
whole stage runs on the input patch its receptive field covers (the halo is
recomputed, costing MACs), writing the patch into the stage's output tensor;
the rest runs layer by layer. This is a fused stage in `recompute` mode with
tiles of ceil(H/n) x ceil(W/n) (harness.schedules.geometry), so it calls the same kernels.

The input image is held whole and counted in the peak (MCUNetV2's published
figures leave it out). The stage end is chosen for the least peak, or given;
when no patch schedule beats layer by layer the plan says so (a `patch-no-gain` note).
"""
from __future__ import annotations

from typing import Optional

from harness.errors import FusebenchError
from harness.schedules.geometry import StageGeometry, first_tileable_op
from harness.frontend.graph import Graph
from harness.backend.lowering import lower_op, map_hwc
from harness.schedules.plan import Note, Plan, least_arena_plan
from harness.schedules.registry import NotApplicable, Option, Schedule, text, whole_number
from harness.schedules.unfused import plan_layer_by_layer

GRIDS = (2, 3, 4)


def parse_grid(spec) -> int:
    """'3x3' or '3' -> 3 (square grids only)."""
    text = str(spec).lower().strip()
    parts = text.split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise FusebenchError(f"--patches '{spec}': expected a grid such as 2x2, 3x3 or 4x4") from None
    if len(values) not in (1, 2) or len(set(values)) != 1 or values[0] < 2:
        raise FusebenchError(f"--patches '{spec}': expected a square grid of at least 2x2, e.g. 3x3")
    return values[0]


def patch_stage(graph: Graph, end: int, grid: int, calls=None, start: int = 0):
    """The fused stage ops start..end computed on a grid x grid patch grid (or
    None when they cannot form one stage)."""
    try:
        geo = StageGeometry(graph, list(range(start, end + 1)), calls)
    except FusebenchError:
        return None
    h, w, _ = map_hwc(graph.tensors[geo.anchor].shape)
    if h < grid or w < grid:
        return None
    try:
        return geo.schedule(-(-h // grid), -(-w // grid), "recompute")
    except FusebenchError:
        return None                 # e.g. a residual branch the patches do not cover whole


def plan_patch(graph: Graph, patches=None, patch_end: Optional[int] = None) -> Plan:
    """The patch schedule with the least arena (ties: fewer MACs) over the grids
    and stage ends allowed; the rest of the network layer by layer."""
    grids = [parse_grid(patches)] if patches else list(GRIDS)
    if patch_end is not None and not 0 <= int(patch_end) < len(graph.ops):
        raise FusebenchError(f"--patch-end {patch_end}: the model has ops 0-{len(graph.ops) - 1}")
    calls = {op.index: lower_op(graph, op) for op in graph.ops if op.kind != "RESHAPE"}
    start = first_tileable_op(graph, calls)     # after edge ops such as a QUANTIZE of uint8 pixels
    ends = [int(patch_end)] if patch_end is not None else list(range(start + 1, len(graph.ops)))
    candidates, candidate_grids = [], []
    for end in ends:
        for grid in grids:
            stage = patch_stage(graph, end, grid, calls, start)
            if stage is not None:
                candidates.append([stage])
                candidate_grids.append(grid)
    best = least_arena_plan(graph, candidates, tiebreak=lambda plan, _: (plan.macs,), variant="patch")
    if best is None:
        if patch_end is not None:
            raise FusebenchError(f"{graph.name}: ops {start}-{patch_end} cannot run patch by patch")
        raise NotApplicable("patch", graph.name, "no first stage of its ops can run patch by patch (its first "
                            "maps are not tileable or smaller than the grids)")
    plan, grid = best[1], candidate_grids[best[2]]
    st = plan.stages[0]
    unfused = plan_layer_by_layer(graph)
    extra = 100.0 * (plan.macs / plan.base_macs - 1)
    n_y, n_x = len(st.row_table), len(st.col_table)
    plan.notes.append(Note("patch-stage", f"patch-based: ops {st.ops[0]}-{st.ops[-1]} in {n_y}x{n_x} patches "
                           f"(--patches {grid}x{grid}), {extra:.1f}% extra MACs (halo recomputed); the input "
                           f"({graph.input.nbytes} B) is counted",
                           dict(start=st.ops[0], end=st.ops[-1], grid=grid, patches=[n_y, n_x], extra_macs_percent=round(extra, 3),
                                input_bytes=graph.input.nbytes)))
    if plan.arena_bytes >= unfused.arena_bytes:
        plan.notes.append(Note("patch-no-gain", f"NOTE: its peak {plan.arena_bytes} B is not below layer by "
                               f"layer ({unfused.arena_bytes} B): patch-based does not help this model",
                               dict(arena_bytes=plan.arena_bytes, unfused_arena_bytes=unfused.arena_bytes)))
    return plan


SCHEDULE = Schedule(
    name="patch", order=40,
    runs="MCUNetV2's patch-based first stage: ops 0..end run patch by patch on an n x n grid, each patch "
         "recomputing its halo; the rest layer by layer",
    ram="the stage's whole input (the image is counted, unlike MCUNetV2's figures) and output plus one "
        "patch of every inner tensor; the plan says so when this is not below layer by layer",
    plan=lambda graph, board=None, **options: plan_patch(graph, **options),
    options=(
        Option("patches", text, "the patch grid, 2x2, 3x3 or 4x4 (default: the best of them)"),
        Option("patch_end", whole_number, "last op of the patch-based stage (default: the least peak)"),
    ))
