"""The `reordered` variant: bottleneck reordering (Lee et al., Section 3.3).

An inverted residual block runs one expansion channel at a time: the 1x1
expansion of channel i, its depthwise, then its contribution through the
projection weights of channel i into int32 accumulators of the block output
(fb_bottleneck_s8). Only one channel of the expanded and depthwise maps ever
exists, so the block's memory no longer grows with the expansion ratio.

What it really takes: an int8 output cannot hold partial sums, so the output
needs 32-bit accumulators until the last channel. For the whole output that is
4x the output's own bytes (the paper's Eq. 3 counts the output at its int8
size); computed in bands of output rows, only a band of accumulators is live,
at the price of recomputing the expansion rows neighbouring bands share. The
plan shows both figures and takes the banded one: the smallest band whose
extra MACs stay within the limit (default 15 % of the block's MACs).

A block is reordered only where that lowers the block's own peak.

Channels go one per pass, or four where mid_c allows (channel_block 4): the
optimized Cortex-M kernels then reuse each unpacked input word for four
expansion rows, run the depthwise four channels per word and update each
int32 accumulator once per four channels, for 4x the depthwise band and
expansion rows (plus the pass's widened filters) in scratch. A block gets
channel block 4 unless that raises the plan's arena above the one with
channel block 1 everywhere.
"""
from __future__ import annotations

from typing import Optional

from harness.errors import FusebenchError
from harness.frontend.graph import Graph
from harness.schedules.geometry import block_op_ranges
from harness.backend.lowering import (bottleneck_base_macs, bottleneck_channel_blocks, bottleneck_dims,
                                     bottleneck_macs, bottleneck_scratch_bytes, lower_op)
from harness.backend.hostrt import planned_kernels
from harness.schedules.plan import Note, Plan, plan_schedule
from harness.schedules.order import best_layer_by_layer_arena
from harness.schedules.registry import NotApplicable, Option, Schedule, percent, stream_windows_option, whole_number
from harness.schedules.stages import ReorderedBlock
from harness.schedules.unfused import plan_layer_by_layer

DEFAULT_MAX_OVERHEAD = 0.15     # extra MACs per block that the smallest band may cost


def reordered_stage(graph: Graph, ops: list[int], band_rows: int, calls=None,
                    channel_block: int = 1) -> ReorderedBlock:
    """One block run by fb_bottleneck_s8 with bands of `band_rows` output rows,
    `channel_block` expansion channels per pass."""
    block_calls = [(calls or {}).get(i) or lower_op(graph, graph.ops[i]) for i in ops]
    d = bottleneck_dims(block_calls)
    band_rows = max(1, min(int(band_rows), d.out_h))
    block_in = block_calls[0].inputs[0]
    block_out = graph.ops[ops[-1]].outputs[0]
    return ReorderedBlock(
        ops=list(ops), inputs=[block_in], output=block_out,
        inner=[graph.ops[i].outputs[0] for i in ops[:-1]], band_rows=band_rows,
        macs=bottleneck_macs(d, band_rows), base_macs=bottleneck_base_macs(d),
        scratch_bytes=bottleneck_scratch_bytes(d, band_rows, channel_block), channel_block=channel_block,
        outputs=[block_out])


def _with_channel_blocks(graph: Graph, stages: list[ReorderedBlock], calls, stream_input: bool) -> list[ReorderedBlock]:
    """Each stage with the largest channel block whose plan's arena is not above
    the arena with channel block 1 everywhere (block by block, in order). Only
    the DSP kernels run four channels faster: a plan for the portable kernels
    alone (RISC-V) keeps one channel per pass, which is also the least scratch."""
    if "dsp" not in planned_kernels():
        return list(stages)
    limit = plan_schedule(graph, stages, variant="reordered", stream_windows=stream_input).arena_bytes
    chosen = list(stages)
    for k, st in enumerate(stages):
        for block in reversed(bottleneck_channel_blocks([calls[i] for i in st.ops])):
            if block == st.channel_block:
                break
            trial = chosen[:k] + [reordered_stage(graph, st.ops, st.band_rows, calls, block)] + chosen[k + 1:]
            if plan_schedule(graph, trial, variant="reordered", stream_windows=stream_input).arena_bytes <= limit:
                chosen = trial
                break
    return chosen

def _block_peak(plan: Plan, ops: list[int]) -> int:
    return max(s.live_bytes for s in plan.steps if s.op in ops)


def plan_reordered(graph: Graph, max_overhead: Optional[float] = None, band_rows: Optional[int] = None,
                   stream_input: bool = True) -> Plan:
    """Every inverted residual block whose peak drops when it runs one expansion
    channel at a time, and whose layer-by-layer peak is above the model's, does
    so; the rest runs layer by layer."""
    limit = DEFAULT_MAX_OVERHEAD if max_overhead is None else float(max_overhead)
    if limit < 0:
        raise FusebenchError("--max-overhead must not be negative")
    if band_rows is not None and int(band_rows) < 1:
        raise FusebenchError("--band-rows must be at least 1")
    calls = {op.index: lower_op(graph, op) for op in graph.ops if op.kind != "RESHAPE"}
    base = plan_layer_by_layer(graph, stream_windows=stream_input)
    stages: list[ReorderedBlock] = []
    notes = []
    for ops in block_op_ranges(graph):
        try:
            d = bottleneck_dims([calls[i] for i in ops])
        except FusebenchError:
            continue                    # not a shape the kernel runs (e.g. an explicit PAD)
        if band_rows is not None:
            band = min(int(band_rows), d.out_h)
        else:
            base_macs = bottleneck_base_macs(d)
            band = next((b for b in range(1, d.out_h + 1)
                         if bottleneck_macs(d, b) <= base_macs * (1 + limit)), d.out_h)
        stage = reordered_stage(graph, ops, band, calls)
        trial = plan_schedule(graph, stages + [stage], variant="reordered", stream_windows=stream_input)
        before, after = _block_peak(base, ops), _block_peak(trial, ops)
        whole_acc, band_acc = 4 * d.out_h * d.out_w * d.out_c, 4 * band * d.out_w * d.out_c
        if after < before:
            stages.append(stage)
            extra = 100.0 * (stage.macs / stage.base_macs - 1)
            notes.append(Note("reordered-block",
                              f"ops {ops[0]}-{ops[-1]} (x{d.mid_c // d.in_c if d.in_c else 0} expansion): "
                              f"{before} -> {after} B, {band}-row bands, accumulators {band_acc} B "
                              f"(whole output: {whole_acc} B), extra MACs {extra:.1f}%",
                              dict(ops=[ops[0], ops[-1]], peak_before=before, peak_after=after, band_rows=band,
                                   accumulator_bytes=band_acc, whole_output_accumulator_bytes=whole_acc,
                                   extra_macs_percent=round(extra, 3))))
    if not stages:
        raise NotApplicable("reordered", graph.name, "no inverted residual block has a lower peak one channel "
                            "at a time")
    plan = plan_schedule(graph, stages, variant="reordered", stream_windows=stream_input)
    # A block whose layer-by-layer peak is already below the model's peak buys
    # no RAM by running one channel at a time, only recomputed MACs and the
    # per-channel loop: it runs layer by layer unless that raises the arena.
    needed = [n.data["peak_before"] > plan.arena_bytes for n in notes]
    if not all(needed):
        kept = [s for s, keep in zip(stages, needed) if keep]
        leaner = plan_schedule(graph, kept, variant="reordered", stream_windows=stream_input) if kept else base
        if leaner.arena_bytes <= plan.arena_bytes:
            if not kept:
                raise NotApplicable("reordered", graph.name,
                                    f"reordering no block lowers the model's peak ({base.arena_bytes} B "
                                    f"layer by layer is set outside the blocks that gain)")
            declined = [n for n, keep in zip(notes, needed) if not keep]
            stages, notes, plan = kept, [n for n, keep in zip(notes, needed) if keep], leaner
            plan.notes.append(Note("reordered-declined",
                                   f"layer by layer, already below the model's peak of {plan.arena_bytes} B: "
                                   + ", ".join(f"ops {n.data['ops'][0]}-{n.data['ops'][1]} "
                                               f"({n.data['peak_before']} B)" for n in declined),
                                   dict(blocks=[n.data["ops"] for n in declined])))
    # On a graph with branches, layer by layer in another op order may already
    # be below this (UNIST's tunnels run one at a time): then reordering buys nothing.
    best = best_layer_by_layer_arena(graph, stream_input) if len(graph.ops) > 1 else base.arena_bytes
    if plan.arena_bytes >= best:
        raise NotApplicable("reordered", graph.name,
                            f"its best plan here ({plan.arena_bytes} B) is not below layer by layer in the best "
                            f"op order ({best} B)")
    # four channels per pass where that keeps the arena (fast on the DSP kernels)
    blocked = _with_channel_blocks(graph, stages, calls, stream_input)
    if any(b.channel_block != s.channel_block for b, s in zip(blocked, stages)):
        kept_notes = plan.notes
        stages, plan = blocked, plan_schedule(graph, blocked, variant="reordered", stream_windows=stream_input)
        plan.notes = kept_notes + plan.notes
    plan.notes.append(Note("reordered-blocks", "reordered blocks (block peak before -> after):"))
    for n, st in zip(notes, stages):
        after = _block_peak(plan, st.ops)
        text = n.text.replace(f"-> {n.data['peak_after']} B,", f"-> {after} B,")
        plan.notes.append(Note(n.kind, f"  {text}, channel block {st.channel_block}",
                               dict(n.data, peak_after=after, channel_block=st.channel_block)))
    return plan


SCHEDULE = Schedule(
    name="reordered", order=50,
    runs="bottleneck reordering (Lee et al.): each inverted residual block whose peak drops, and is above the "
         "model's peak otherwise, runs a few expansion channels at a time (`fb_bottleneck_s8`): expand channels "
         "i..i+3 (one where four would raise the arena), their depthwise, and their share of the projection into "
         "int32 accumulators, in bands of output rows (neighbouring bands recompute the expansion rows they share)",
    ram="the block's input and output, four (or one) channels of the expanded and depthwise maps, and a band of "
        "int32 accumulators; the plan shows the accumulators for the whole output (4x its int8 size, which the "
        "paper's Eq. 3 leaves out) beside the banded figure",
    plan=lambda graph, board=None, **options: plan_reordered(graph, **options),
    options=(
        Option("max_overhead", percent,
               f"the band height is the fewest output rows whose recomputed expansion stays within this "
               f"percentage of each block's MACs (default {100 * DEFAULT_MAX_OVERHEAD:g})"),
        Option("band_rows", whole_number, "output rows per band of int32 accumulators (overrides --max-overhead)"),
        stream_windows_option(),
    ))
