"""pandas tables: the per-layer plan profile, bench rows and their summary."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from harness.frontend.graph import Graph
from harness.schedules.plan import Plan
from harness.targets.runners.base import count_column

if TYPE_CHECKING:
    import pandas as pd      # imported where used: `invoke plan` prints without it (0.5 s to import)


def plan_table(graph: Graph, plan: Plan, tflm_arena_bytes: Optional[int] = None) -> pd.DataFrame:
    """One row per step: the op, its shapes, every live buffer with its bytes,
    the live total, and the plan-wide figures beside it."""
    import pandas as pd
    from harness.schedules.order import executed_graph
    executed = executed_graph(graph, plan)
    sizes = {a.name: a.size for a in plan.allocations}
    rows = []
    for s in plan.steps:
        rows.append(dict(
            model=plan.model, variant=plan.variant, step=s.index, op=s.op,
            file_op=executed.ops[s.op].file_index, kind=s.kind,
            input_shapes=" ".join("x".join(map(str, shp)) for shp in s.input_shapes),
            output_shape="x".join(map(str, s.output_shape)),
            macs=s.macs,
            live_tensors=" ".join(f"{n}:{sizes[n]}" for n in s.live),
            live_bytes=s.live_bytes, scratch_bytes=s.scratch_bytes,
            arena_bytes_planned=plan.arena_bytes, lower_bound_bytes=plan.lower_bound_bytes,
            tflm_arena_bytes=tflm_arena_bytes))
    return pd.DataFrame(rows)


def format_plan(graph: Graph, plan: Plan, tflm_arena_bytes: Optional[int],
                tflm_note: str = "", baseline: Optional[Plan] = None) -> str:
    """The plan as `invoke plan` prints it (beside the unfused `baseline`, if given)."""
    from harness.schedules.order import executed_graph
    executed = executed_graph(graph, plan)
    sizes = {a.name: a.size for a in plan.allocations}
    lines = [f"model {plan.model}  variant {plan.variant}  ({len(plan.steps)} steps)"]
    # The baseline's live bytes at the same op (in another op order, not the same step).
    base_at = ({graph.ops[b.op].outputs[0]: b.live_bytes for b in baseline.steps} if baseline else {})
    for k, st in enumerate(plan.stages):
        lines.append(f"  stage s{k}: {st.describe(graph)}")
        lines.append("    buffers: " + (", ".join(f"s{k}.{what}" for what in st.buffer_descriptions()) or "none"))
    base_col = f" {'unfused':>8}" if baseline else ""
    lines.append(f"{'step':>4} {'op':<22} {'in -> out':<28} {'live KiB':>9}{base_col}  live buffers (bytes)")
    for s in plan.steps:
        shapes = ",".join("x".join(map(str, shp[1:] if len(shp) == 4 else shp)) for shp in s.input_shapes)
        out = "x".join(map(str, s.output_shape[1:] if len(s.output_shape) == 4 else s.output_shape))
        live = " ".join(f"{n}:{sizes[n]}" for n in s.live)
        op = executed.ops[s.op]
        base = f" {base_at[op.outputs[0]] / 1024:>8.1f}" if baseline else ""
        kind = s.kind if not plan.op_order else f"{s.kind} #{op.file_index}"   # its index in the file
        lines.append(f"{s.index:>4} {kind:<22} {shapes + ' -> ' + out:<28} "
                     f"{s.live_bytes / 1024:>9.1f}{base}  {live}")
    peak_step = max(plan.steps, key=lambda s: s.live_bytes)
    lines.append("")
    lines.append(f"predicted peak arena ({plan.variant}): {plan.arena_bytes} bytes "
                 f"({plan.arena_bytes / 1024:.1f} KiB)")
    lines.append(f"lower bound (max live bytes, at step {peak_step.index} {peak_step.kind}): "
                 f"{plan.lower_bound_bytes} bytes ({plan.lower_bound_bytes / 1024:.1f} KiB)")
    if baseline is not None:
        lines.append(f"unfused arena: {baseline.arena_bytes} bytes; {plan.variant} uses "
                     f"{100.0 * plan.arena_bytes / baseline.arena_bytes:.1f}% of it at "
                     f"{plan.macs / max(plan.base_macs, 1):.3f}x the MACs "
                     f"({plan.macs - plan.base_macs} recomputed)")
    if len(graph.outputs) > 1:     # a detector's heads: each held from its op to the end of the run
        made = {t: step.index for step in plan.steps for t in executed.ops[step.op].outputs}
        parts = [f"{plan.allocation_of(t).name} '{graph.tensors[t].name}' {graph.tensors[t].nbytes} B from step {made.get(t, '?')}"
                 for t in graph.outputs]
        lines.append(f"{len(graph.outputs)} outputs, {graph.output_bytes} B live to the end: " + ", ".join(parts))
    lines.extend(n.text for n in plan.notes)
    if tflm_arena_bytes is not None:
        lines.append(f"TFLite Micro arena (RecordingMicroAllocator, includes its own "
                     f"bookkeeping): {tflm_arena_bytes} bytes ({tflm_arena_bytes / 1024:.1f} KiB)")
    else:
        lines.append(f"TFLite Micro arena: not available ({tflm_note})")
    return "\n".join(lines)


def _first_known(column: pd.Series):
    known = column.dropna()
    return known.iloc[0] if len(known) else None


def summarize_bench(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (board, model, variant): status counts and the measured figures."""
    import pandas as pd
    out = []
    for (board, model, variant), g in rows.groupby(["board", "model", "variant"], sort=False):
        ok = g[g["status"] == "ok"]
        ran = g[~g["status"].isin(["does-not-fit", "not-applicable"])]
        count_col = "cycles" if g["count_source"].map(count_column).eq("cycles").any() else "instructions"
        labelled = ok[pd.to_numeric(ok["label"], errors="coerce").notna()] if "label" in ok else ok.iloc[0:0]

        def peak(col):
            vals = pd.to_numeric(ok[col], errors="coerce").dropna()
            return int(vals.max()) if len(vals) else None

        median_count = int(pd.to_numeric(ok[count_col]).median()) if len(ok) else None
        clock = _first_known(g["clock_hz"]) if "clock_hz" in g else None
        # Frames per second at the board's clock. From cycles (silicon) it is
        # measured; from an emulator's instruction count it is an estimate at one
        # instruction per cycle (the M7's dual issue runs faster, flash wait
        # states slower), so the two never share a column.
        fps = round(clock / median_count, 2) if clock and median_count else None

        out.append(dict(
            board=board, model=model, variant=variant, runner=g["runner"].iloc[0],
            reference=g["reference"].iloc[0] if "reference" in g else "",
            inputs=g["inputs"].iloc[0] if "inputs" in g else "",
            rows=len(g), **{s.replace("-", "_"): int((g["status"] == s).sum())
                            for s in ("ok", "mismatch", "crash", "timeout", "error", "does-not-fit",
                                      "not-applicable")},
            count_source=(ok["count_source"].iloc[0] if len(ok) else ""),
            **{f"{count_col}_median": median_count},
            fps_estimated_from_instructions=fps if count_col == "instructions" else None,
            fps_measured_from_cycles=fps if count_col == "cycles" else None,
            macs=(int(g["macs"].iloc[0]) if pd.notna(g["macs"].iloc[0]) and g["macs"].iloc[0] != "" else None),
            arena_bytes_planned=g["arena_bytes_planned"].iloc[0],
            arena_bytes_peak=peak("arena_bytes_peak"), stack_bytes_peak=peak("stack_bytes_peak"),
            ram_bytes_total=peak("ram_bytes_total"),
            ram_bytes_needed=(int(pd.to_numeric(g["ram_bytes_needed"], errors="coerce").max())
                              if "ram_bytes_needed" in g and pd.to_numeric(g["ram_bytes_needed"],
                                                                         errors="coerce").notna().any()
                              else None),
            ram_bytes_available=_first_known(g["ram_bytes_available"]),
            flash_bytes=peak("flash_bytes"),
            flash_bytes_needed=(int(pd.to_numeric(g["flash_bytes_needed"], errors="coerce").max())
                                if "flash_bytes_needed" in g and pd.to_numeric(g["flash_bytes_needed"],
                                                                             errors="coerce").notna().any()
                                else None),
            flash_bytes_available=(_first_known(g["flash_bytes_available"]) if "flash_bytes_available" in g
                                   else None),
            top1_accuracy=(float((pd.to_numeric(labelled["top1"]) == pd.to_numeric(labelled["label"])).mean())
                           if len(labelled) else None),
            # Of the rows that ran: a variant that does not fit or apply ran none, so it has no answer.
            all_outputs_match=(None if not len(ran) else bool(len(ok) == len(ran))),
        ))
    return pd.DataFrame(out).convert_dtypes()


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (missing values left empty)."""
    cells = table.astype(object).where(table.notna(), "")
    lines = ["| " + " | ".join(map(str, cells.columns)) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)
