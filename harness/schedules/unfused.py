"""The `unfused` variant: layer by layer, like TensorFlow Lite Micro.

Every op reads and writes whole tensors in one static arena planned offline:
tensor lifetimes from the op order, offsets by a greedy first fit, largest
tensor first (harness.schedules.plan.plan_schedule with no stages).
"""
from __future__ import annotations

from harness.frontend.graph import Graph
from harness.schedules.plan import Plan, ScratchFn, kernel_scratch, plan_schedule
from harness.schedules.registry import Schedule


def plan_layer_by_layer(graph: Graph, scratch: ScratchFn = kernel_scratch, variant: str = "unfused",
                        stream_windows: bool = False) -> Plan:
    return plan_schedule(graph, [], scratch=scratch, variant=variant, stream_windows=stream_windows)


SCHEDULE = Schedule(
    name="unfused", order=10,
    runs="layer by layer, like TFLite Micro: every op reads and writes whole tensors in one static arena "
         "planned offline (greedy first fit, largest first)",
    ram="the largest pair of live tensors: in MobileNetV2 the 6x expansion of the first blocks",
    plan=lambda graph, board=None: plan_layer_by_layer(graph), other_orders=False)
