"""Compare two bench runs row for row: `python -m tools.compare_runs A B [--ignore COL,...]`.

A and B are run folders (or their bench.csv). Rows are matched on (board,
model, variant, input, run); every other column is compared. Prints one line
per column that differs, with how many rows and the first few values, and
exits 1 when anything differs (or rows are missing on one side)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

KEY = ["board", "model", "variant", "input", "run"]


def load(path: Path) -> pd.DataFrame:
    path = path / "bench.csv" if path.is_dir() else path
    return pd.read_csv(path, dtype=str, keep_default_na=False).set_index(KEY).sort_index()


def differences(a: pd.DataFrame, b: pd.DataFrame, ignore: set[str]) -> list[str]:
    lines = []
    only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
    if len(only_a):
        lines.append(f"{len(only_a)} rows only in the first run, e.g. {'/'.join(map(str, only_a[0]))}")
    if len(only_b):
        lines.append(f"{len(only_b)} rows only in the second run, e.g. {'/'.join(map(str, only_b[0]))}")
    common = a.index.intersection(b.index)
    for column in sorted((set(a.columns) | set(b.columns)) - ignore):
        if column not in a.columns or column not in b.columns:
            lines.append(f"column {column} only in the {'first' if column in a.columns else 'second'} run")
            continue
        x, y = a.loc[common, column], b.loc[common, column]
        differ = x != y
        if differ.any():
            rows = x[differ].index[:3]
            shown = "; ".join(f"{'/'.join(map(str, r[:3]))}: {x[r]} -> {y[r]}" for r in rows)
            lines.append(f"{column}: {int(differ.sum())} of {len(common)} rows differ ({shown})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--ignore", default="", help="comma-separated columns not to compare")
    args = parser.parse_args(argv)
    a, b = load(args.first), load(args.second)
    lines = differences(a, b, {c for c in args.ignore.split(",") if c})
    for line in lines:
        print(line)
    if not lines:
        print(f"{len(a)} rows, every compared column identical")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
