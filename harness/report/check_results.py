"""`python -m harness.report.check_results bench.csv`: exit 1 when any row of a run
is a mismatch, a crash or a timeout (what the nightly job fails on)."""
from __future__ import annotations

import sys

import pandas as pd

from harness.report.bench import BAD_STATUSES


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.report.check_results results/<run>/bench.csv", file=sys.stderr)
        return 2
    try:
        rows = pd.read_csv(argv[0])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        print(f"error: cannot read {argv[0]}: {exc}", file=sys.stderr)
        return 1
    bad = rows[rows["status"].isin(BAD_STATUSES)]
    print(f"{len(rows)} rows: " + ", ".join(f"{s} {n}" for s, n in rows["status"].value_counts().items()))
    for _, r in bad.iterrows():
        print(f"FAILED {r['board']}/{r['model']}/{r['variant']}/{r['input']}: {r['status']} {r.get('detail', '')}")
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
