"""PNG plots of plans and bench results (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.schedules.plan import Plan  # noqa: E402

KIB = 1024.0


def plot_memory_profile(plans: Sequence[Plan], path: Path, ram_bytes: Optional[dict[str, int]] = None,
                        title: Optional[str] = None) -> Path:
    """Live bytes at every step (the papers' per-layer memory profile), one line
    per plan/variant, with the planned arena and each board's RAM as lines."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for plan in plans:
        xs = [s.index for s in plan.steps]
        ys = [s.live_bytes / KIB for s in plan.steps]
        line, = ax.step(xs, ys, where="mid", label=f"{plan.variant}: live tensors")
        ax.axhline(plan.arena_bytes / KIB, color=line.get_color(), linestyle=":",
                   label=f"{plan.variant}: planned arena {plan.arena_bytes / KIB:.1f} KiB")
    for board, ram in (ram_bytes or {}).items():
        ax.axhline(ram / KIB, color="black", linestyle="--", linewidth=1)
        ax.text(0, ram / KIB, f" {board} RAM {ram / KIB:.0f} KiB", va="bottom", fontsize=8)
    plan0 = plans[0]
    ticks = [s.index for s in plan0.steps]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{s.index} {s.kind[:7]}" for s in plan0.steps], rotation=90, fontsize=6)
    ax.set_ylabel("live memory (KiB)")
    ax.set_xlabel("step (op in execution order)")
    ax.set_title(title or f"Per-layer live memory: {plan0.model}")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_bench_bars(summary, path: Path, column: str, ylabel: str, scale: float = 1.0,
                    title: str = "", ram_lines: bool = False) -> Path:
    """Grouped bars: one group per (model, board), one bar per variant."""
    import numpy as np
    import pandas as pd
    groups = list(dict.fromkeys(zip(summary["model"], summary["board"])))
    variants = list(dict.fromkeys(summary["variant"]))
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4.5))
    for i, variant in enumerate(variants):
        vals, needed, why = [], [], []
        for model, board in groups:
            sel = summary[(summary["model"] == model) & (summary["board"] == board)
                          & (summary["variant"] == variant)]
            v = sel[column].iloc[0] if len(sel) else None
            vals.append(float(v) / scale if v is not None and not pd.isna(v) else 0.0)
            why.append("does not fit" if len(sel) and "does_not_fit" in sel and sel["does_not_fit"].iloc[0]
                       else "n/a")
            n = sel["ram_bytes_needed"].iloc[0] if len(sel) and "ram_bytes_needed" in sel else None
            needed.append(float(n) / scale if ram_lines and n is not None and not pd.isna(n) else 0.0)
        xs = np.arange(len(groups)) + (i - (len(variants) - 1) / 2) * width
        bars = ax.bar(xs, vals, width, label=variant)
        for x, v, n, w in zip(xs, vals, needed, why):
            if v:
                ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
            elif n:   # did not link: show what it would need, hatched
                ax.bar(x, n, width, fill=False, hatch="//", edgecolor=bars.patches[0].get_facecolor())
                ax.text(x, n, f"needs {n:.0f}\ndoes not fit", ha="center", va="bottom", fontsize=7)
            else:
                ax.text(x, 0, w, ha="center", va="bottom", fontsize=7, rotation=90 if w != "n/a" else 0)
    if ram_lines:
        for j, (model, board) in enumerate(groups):
            sel = summary[(summary["model"] == model) & (summary["board"] == board)]
            known = pd.to_numeric(sel["ram_bytes_available"], errors="coerce").dropna()
            if known.empty:
                continue
            ram = float(known.iloc[0]) / scale
            ax.hlines(ram, j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1)
            ax.text(j, ram, f"{board} RAM", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{m}\n{b}" for m, b in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
