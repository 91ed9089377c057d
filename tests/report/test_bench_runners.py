"""The sweep's runner wiring: a job for a real board builds the silicon image
into its own folder and fills the `cycles` column (the board is a stand-in)."""
import queue
import shutil

import numpy as np
import pytest

from harness.report.bench import Job, load_inputs, run_job
from harness.targets.runners.base import RunResult
from harness.frontend.tflite_import import load_model

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed (run scripts/setup.sh)")


class StandInBoard:
    """What make_runner would return for a Nucleo; records what it was asked to run."""
    instances = []

    def __init__(self, kind, board, **options):
        self.kind, self.board, self.options, self.port = kind, board, options, options.get("port")
        StandInBoard.instances.append(self)

    def run(self, binary, inputs, timeout_s=60.0):
        self.binary = binary
        for i, x in enumerate(inputs):
            yield RunResult(status="ok", instructions=123_456 + i, count_source="dwt",
                            arena_bytes_peak=1000, stack_bytes_peak=500,
                            output=np.zeros(10, np.int8), input_index=i, ticks=123_456 + i)


def test_a_serial_job_builds_the_silicon_image_and_reports_cycles(monkeypatch):
    from harness.frontend.catalog import default_models

    model = min(default_models(), key=lambda p: int(np.prod(load_model(p).input.shape)))
    inputs = load_inputs(load_model(model), None)[:2]
    references = [np.zeros(10, np.int8), np.ones(10, np.int8)]
    StandInBoard.instances.clear()
    monkeypatch.setattr("harness.targets.runners.make_runner", StandInBoard)
    events = queue.Queue()
    job = Job(board="nucleo-h743zi", model_path=str(model), variant="unfused", inputs=inputs,
              references=references, runner="serial", runner_options={"port": "/dev/ttyACM9"})
    run_job(job, events)
    rows = [payload for kind, payload in _drain(events) if kind == "row"]
    [runner] = StandInBoard.instances
    assert (runner.kind, runner.options) == ("serial", {"port": "/dev/ttyACM9"})
    assert runner.binary.parts[-2:] == ("serial", "firmware.elf")          # build/<b>/<m>/<v>/serial/
    assert "hal/stm32h7/hal_stm32h7.c" in (runner.binary.parent / "build.log").read_text()
    assert [r["runner"] for r in rows] == ["serial", "serial"]
    assert [r["cycles"] for r in rows] == [123_456, 123_457]
    assert [r["instructions"] for r in rows] == ["", ""]
    assert [r["count_source"] for r in rows] == ["dwt", "dwt"]
    assert [r["status"] for r in rows] == ["ok", "mismatch"]          # compared with the reference


def _drain(events):
    while True:
        try:
            yield events.get_nowait()
        except queue.Empty:
            return


# -- cycles or instructions: one answer, from the count source ------------------------------------

def _result(count_source):
    return RunResult(status="ok", instructions=5000, count_source=count_source, arena_bytes_peak=1,
                     stack_bytes_peak=1, output=np.zeros(1, np.int8), per_layer_instructions=[2000, 3000])


@pytest.mark.parametrize("count_source, column", [("dwt", "cycles"), ("systick-cycles", "cycles"),
                                                  ("qemu-icount", "instructions"),
                                                  ("renode-virtual", "instructions")])
def test_layer_rows_label_counts_as_their_source_counts(count_source, column):
    from types import SimpleNamespace

    from harness.report.bench import _layer_rows

    steps = [SimpleNamespace(index=i, op=i, kind="CONV_2D", macs=1000, live_bytes=64) for i in range(2)]
    base = dict(board="nucleo-h743zi", model="m", variant="unfused")
    rows = _layer_rows(base, "i0", SimpleNamespace(steps=steps), None, _result(count_source))
    assert [r[column] for r in rows] == [2000, 3000]
    assert not any(("instructions" if column == "cycles" else "cycles") in r for r in rows)


def test_a_summary_of_silicon_without_dwt_reports_cycles():
    import pandas as pd

    from harness.report.tables import summarize_bench

    rows = pd.DataFrame([dict(board="nucleo-h743zi", runner="serial", model="m", variant="unfused",
                              input=f"i{i}", status="ok", instructions="", cycles=1000 + i,
                              count_source="systick-cycles", macs=10, arena_bytes_planned=64,
                              arena_bytes_peak=64, stack_bytes_peak=10, ram_bytes_total=80,
                              ram_bytes_needed=None, ram_bytes_available=128, flash_bytes=1000, top1=1,
                              label=1) for i in range(3)])
    summary = summarize_bench(rows).iloc[0]
    assert summary["cycles_median"] == 1001 and "instructions_median" not in summary
