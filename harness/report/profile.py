"""`invoke profile`: where a bench run's instructions went, per kernel kind (and per layer)."""
from __future__ import annotations

from typing import Optional


def profile_command(run: str = "results/latest", board: Optional[str] = None, model: Optional[str] = None,
                    variant: str = "unfused", layers: bool = False) -> None:
    """MACs per instruction of every kernel kind against the DSP extension's
    limit of 2 (one SMLAD = 2 MACs), from a bench run's layers.csv."""
    from pathlib import Path

    import pandas as pd

    from harness.errors import FusebenchError
    path = Path(run) / "layers.csv"
    if not path.is_file():
        raise FusebenchError(f"no {path}: run `invoke bench` first or pass --run <results folder>")
    rows = pd.read_csv(path)
    rows = rows[rows["variant"] == variant]
    if board:
        rows = rows[rows["board"] == board]
    if model:
        rows = rows[rows["model"] == model]
    if rows.empty:
        raise FusebenchError(f"{path} has no layers for variant={variant} board={board or 'any'} "
                             f"model={model or 'any'}")
    pd.set_option("display.width", 160)
    for (b, m), group in rows.groupby(["board", "model"]):
        group = group[group["input"] == group["input"].iloc[0]]        # one input is enough
        kinds = group.groupby("kind").agg(layers=("step", "count"), macs=("macs", "sum"),
                                          instructions=("instructions", "sum"))
        total = int(kinds["instructions"].sum())
        kinds["share"] = (kinds["instructions"] / total).map("{:.1%}".format)
        kinds["macs_per_instruction"] = (kinds["macs"] / kinds["instructions"]).round(3)
        kinds["of_limit_2"] = (kinds["macs_per_instruction"] / 2).map("{:.0%}".format)
        kinds = kinds.sort_values("instructions", ascending=False)
        print(f"\n{b} {m} ({variant}): {total:,} instructions, "
              f"{group['macs'].sum() / total:.3f} MACs/instruction")
        print(kinds.to_string())
        if layers:
            print(group[["step", "op", "kind", "macs", "instructions", "macs_per_instruction"]]
                  .to_string(index=False))
