"""The `ordered` variant: layer by layer, in the op order with the lowest peak.

For graphs with parallel branches (UNIST's patch tunnels, ShuffleNet's two
paths, detection heads): harness.schedules.order finds the topological order
of the ops with the fewest live bytes at its worst step, and the arena is
planned for that order as for `unfused`. With `stream_input` (the default),
an input read only by slices (UNIST's input segmentation) is streamed: each
patch is read from the host as a window (stages.WindowRead) and the image is
never whole in the arena. The plan is kept only when its arena is below
`unfused`'s, and its notes give the arena in file order, with the streamed
windows, and in the chosen order; otherwise the variant is not-applicable.
"""
from __future__ import annotations

from harness.frontend.graph import Graph
from harness.schedules.order import best_order, in_order, order_key
from harness.schedules.plan import Note, Plan, plan_schedule
from harness.schedules.registry import NotApplicable, Schedule, stream_windows_option
from harness.schedules.stages import window_reads


def plan_ordered(graph: Graph, stream_input: bool = True) -> Plan:
    streamed = stream_input and bool(window_reads(graph))
    choice = best_order(graph, streamed_input=streamed)
    search = (f"{'exact' if choice.exact else 'heuristic'} search over {choice.searched_sets} sets of run ops")
    if choice.is_file_order and not streamed:
        raise NotApplicable("ordered", graph.name,
                            f"no other op order lowers the live bytes ({choice.file_peak_bytes} B in file order; "
                            f"{search})")
    file_plan = plan_schedule(graph, [], variant="ordered")
    ordered_graph = in_order(graph, choice.order)
    plan = plan_schedule(ordered_graph, [], variant="ordered", stream_windows=streamed)
    reads = plan.stages
    if plan.arena_bytes >= file_plan.arena_bytes:
        raise NotApplicable("ordered", graph.name,
                            f"neither another op order nor streamed windows lower the arena "
                            f"({file_plan.arena_bytes} B in file order, {plan.arena_bytes} B otherwise; {search})")
    if not choice.is_file_order:
        plan.op_order = order_key(ordered_graph)
    moved = sum(1 for k, o in enumerate(choice.order) if o != k)
    streamed_file = (plan_schedule(graph, [], variant="ordered", stream_windows=True).arena_bytes
                     if streamed else None)
    middle = f", {streamed_file} B with the input streamed as {len(reads)} windows" if streamed else ""
    plan.notes.append(Note(
        "op-order",
        f"op order: arena {file_plan.arena_bytes} B in file order{middle}, {plan.arena_bytes} B in the chosen "
        f"order (live bytes {choice.file_peak_bytes} -> {choice.peak_bytes} B; {moved} of {len(choice.order)} "
        f"ops moved; {search})",
        dict(file_order_arena_bytes=file_plan.arena_bytes, streamed_file_order_arena_bytes=streamed_file,
             arena_bytes=plan.arena_bytes, file_order_live_bytes=choice.file_peak_bytes,
             live_bytes=choice.peak_bytes, exact=choice.exact, searched_sets=choice.searched_sets,
             ops_moved=moved, windows=len(reads))))
    return plan


SCHEDULE = Schedule(
    name="ordered", order=15,
    runs="layer by layer as `unfused`, in the topological op order with the fewest live bytes (a shortest "
         "path over the sets of ops already run: exact for a few branches, a beam search beyond); an input "
         "read only by slices (UNIST's patches) is read from the host one window at a time; not-applicable "
         "when neither lowers the arena (chains)",
    ram="as `unfused`, but one branch's tensors at a time where the file order interleaves branches, and only "
        "the patch being read of a segmented input; the plan gives the file order's arena beside it",
    plan=lambda graph, board=None, **options: plan_ordered(graph, **options),
    options=(stream_windows_option(),),
    other_orders=False)
