"""report.md: one page per run, readable alone."""
from __future__ import annotations

import pandas as pd

from harness.report.runreport import write_report
from harness.report.tables import summarize_bench


def test_the_report_has_the_summary_plots_commit_tools_and_reference(tmp_path):
    rows = pd.DataFrame([dict(board="stm32h7", runner="qemu", model="m", variant="unfused", input="i0", run=0,
                              status="ok", instructions=100, count_source="qemu-icount", macs=10,
                              arena_bytes_planned=64, arena_bytes_peak=64, stack_bytes_peak=10,
                              ram_bytes_total=80, ram_bytes_needed=None, ram_bytes_available=128,
                              flash_bytes=1000, top1=1, label=1, reference="litert-ref",
                              inputs="fashion-mnist test images, 64x64x3 (1)")])
    (tmp_path / "peak-ram.png").write_bytes(b"png")
    text = write_report(tmp_path, rows, summarize_bench(rows)).read_text()
    for part in ("# Bench run", "## Summary", "| stm32h7 | m | unfused | qemu | 1 |", "![peak-ram](peak-ram.png)",
                 "outputs checked against: litert-ref", "commit: ", "| arm-none-eabi-gcc |", "| numpy |",
                 "counts: qemu-icount"):
        assert part in text, part
