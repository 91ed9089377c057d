"""PNG plots of plans and bench results (matplotlib, no display needed).

Every plot gives a variant the same colour and the same place: the
schedule registry's order (unfused first), whatever order the jobs finished in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.schedules.plan import Plan  # noqa: E402

KIB = 1024.0

# Short op names for the x axis of a memory profile (the TFLite names do not fit).
OP_LABELS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "fc", "ADD": "add",
             "MUL": "mul", "MEAN": "mean", "SOFTMAX": "softmax", "RESHAPE": "reshape", "PAD": "pad",
             "AVERAGE_POOL_2D": "avgpool", "MAX_POOL_2D": "maxpool", "STRIDED_SLICE": "slice",
             "CONCATENATION": "concat", "TRANSPOSE": "transpose", "HARD_SWISH": "hswish", "LOGISTIC": "sigmoid",
             "QUANTIZE": "quantize", "DEQUANTIZE": "dequantize", "RESIZE_NEAREST_NEIGHBOR": "resize"}


def variant_order(variants: Iterable[str]) -> list[str]:
    """The variants in the registry's order; unknown names after, as given."""
    from harness.schedules import schedule_names
    known = schedule_names()
    given = list(dict.fromkeys(variants))
    return [v for v in known if v in given] + [v for v in given if v not in known]


def variant_color(variant: str):
    """One colour per variant, the same in every plot of every run."""
    from harness.schedules import schedule_names
    names = schedule_names()
    palette = plt.get_cmap("tab10").colors
    index = names.index(variant) if variant in names else len(names) + sum(map(ord, variant))
    return palette[index % len(palette)]


def op_label(kind: str) -> str:
    """`CONV_2D@s0` -> `conv@s0`."""
    op, _, stage = kind.partition("@")
    return OP_LABELS.get(op, op.lower()) + (f"@{stage}" if stage else "")


def _legend_outside(ax, handles=None) -> None:
    """The legend right of the axes, where it covers no bar and no RAM line."""
    extra = {"handles": handles} if handles is not None else {}
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **extra)


def plot_memory_profile(plans: Sequence[Plan], path: Path, ram_bytes: Optional[dict[str, int]] = None,
                        title: Optional[str] = None) -> Path:
    """Live bytes at every step (the papers' per-layer memory profile), one line
    per plan/variant, with the planned arena and each board's RAM as lines."""
    order = variant_order(p.variant for p in plans)
    plans = sorted(plans, key=lambda p: order.index(p.variant))
    fig, ax = plt.subplots(figsize=(12, 4.8))
    for plan in plans:
        color = variant_color(plan.variant)
        xs = [s.index for s in plan.steps]
        ys = [s.live_bytes / KIB for s in plan.steps]
        ax.step(xs, ys, where="mid", color=color, label=f"{plan.variant}: live tensors")
        ax.axhline(plan.arena_bytes / KIB, color=color, linestyle=":",
                   label=f"{plan.variant}: planned arena {plan.arena_bytes / KIB:.1f} KiB")
    for board, ram in (ram_bytes or {}).items():
        ax.axhline(ram / KIB, color="black", linestyle="--", linewidth=1)
        ax.text(0, ram / KIB, f" {board} RAM {ram / KIB:.0f} KiB", va="bottom", fontsize=8)
    plan0 = plans[0]
    steps = plan0.steps
    every = max(1, len(steps) // 120)          # at most ~120 labels: they stay readable
    ax.set_xticks([s.index for s in steps][::every])
    ax.set_xticklabels([f"{s.index} {op_label(s.kind)}" for s in steps][::every], rotation=90, fontsize=6)
    ax.set_ylabel("live memory (KiB)")
    ax.set_xlabel(f"step (op in the execution order of {plan0.variant})")
    ax.set_title(title or f"Per-layer live memory: {plan0.model}")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_bench_bars(summary, path: Path, column: str, ylabel: str, scale: float = 1.0, unit: str = "",
                    title: str = "", needed_column: Optional[str] = None,
                    available_column: Optional[str] = None, available_label: str = "RAM") -> Path:
    """Grouped bars: one group per (model, board), one bar per variant. A
    variant that does not fit shows, hatched, what it would need
    (`needed_column`) when the build said; `available_column` draws the
    board's limit over each group."""
    import numpy as np
    import pandas as pd

    def number(sel, col):
        if col is None or not len(sel) or col not in sel:
            return None
        v = pd.to_numeric(sel[col], errors="coerce").iloc[0]
        return None if pd.isna(v) else float(v)

    groups = list(dict.fromkeys(zip(summary["model"], summary["board"])))
    variants = variant_order(summary["variant"])
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(groups) + 3.5), 4.8))
    for i, variant in enumerate(variants):
        color = variant_color(variant)
        xs = np.arange(len(groups)) + (i - (len(variants) - 1) / 2) * width
        for x, (model, board) in zip(xs, groups):
            sel = summary[(summary["model"] == model) & (summary["board"] == board)
                          & (summary["variant"] == variant)]
            value = number(sel, column)
            if value is not None:
                ax.bar(x, value / scale, width, color=color)
                ax.text(x, value / scale, f"{value / scale:.1f}", ha="center", va="bottom", fontsize=7)
                continue
            does_not_fit = len(sel) and "does_not_fit" in sel and bool(sel["does_not_fit"].iloc[0])
            needed = number(sel, needed_column) if does_not_fit else None
            if needed is not None:
                ax.bar(x, needed / scale, width, fill=False, hatch="//", edgecolor=color)
                ax.text(x, needed / scale, f"needs {needed / scale:.0f} {unit}\ndoes not fit".strip(),
                        ha="center", va="bottom", fontsize=7)
            else:
                why = "does not fit" if does_not_fit else "n/a"
                ax.text(x, 0, why, ha="center", va="bottom", fontsize=7, rotation=90)
    if available_column:
        for j, (model, board) in enumerate(groups):
            sel = summary[(summary["model"] == model) & (summary["board"] == board)]
            known = pd.to_numeric(sel[available_column], errors="coerce").dropna() \
                if available_column in sel else pd.Series(dtype=float)
            if known.empty:
                continue
            limit = float(known.iloc[0]) / scale
            ax.hlines(limit, j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1)
            ax.text(j, limit, f"{board} {available_label} {limit:.0f} {unit}".rstrip(), ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{m}\n{b}" for m, b in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch
    _legend_outside(ax, [Patch(color=variant_color(v), label=v) for v in variants])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
