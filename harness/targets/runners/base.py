"""What every runner shares: the result record and the per-input measurement.

A runner (pqm4 style) is one way of running firmware: `QemuRunner` now,
Renode or a real board on a serial port later. Each starts the firmware its
own way and hands `measure_input` a `Session` over its link; turning passes
into a `RunResult` is the same everywhere.
"""
from __future__ import annotations

import os
import signal
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import ClassVar, Iterable, Iterator, Literal

import numpy as np

from harness.targets.boards import Board, RunnerTarget
from harness.errors import FusebenchError
from harness.targets.protocol import INPUT_READ_FAILED, PassResult, Session

Status = Literal["ok", "crash", "timeout"]

# Two paint bytes: a byte the model writes with one of them still differs
# from the other, so the larger watermark of the two passes is exact.
PAINTS = (0xA5, 0x5A)


@dataclass
class RunResult:
    status: Status                         # 'ok', 'crash' (fault, kernel error, stack overflow), 'timeout'
    instructions: int | None               # or cycles, see count_source
    count_source: str                      # 'qemu-icount': instructions from QEMU's virtual clock
    arena_bytes_peak: int | None           # highest arena byte written, + 1
    stack_bytes_peak: int | None           # deepest stack use, from the top of the stack
    output: np.ndarray | None              # int8 output vector
    per_layer_instructions: list[int] = field(default_factory=list)
    detail: dict = field(default_factory=dict)   # fault registers, last output seen, ...
    input_index: int = 0
    ticks: int | None = None               # raw time-counter ticks of the run
    stack_bytes_model: int | None = None   # stack below the SP at the call of fb_model_run
    model_status: int | None = None        # fb_model_run's return value
    io_ticks: int | None = None            # ticks spent reading streamed input (not in ticks)


class Runner(ABC):
    """Runs a firmware image on one platform: `run(binary, inputs)` yields one
    RunResult per input, in order."""

    kind: ClassVar[str]            # the board file's [runners.<kind>] table
    count_source: ClassVar[str]

    def __init__(self, board: Board):
        self.board = board
        self.target: RunnerTarget = board.runner(self.kind)

    @abstractmethod
    def run(self, binary: Path, inputs: Iterable[np.ndarray],
            timeout_s: float = 60.0) -> Iterator[RunResult]:
        ...

    @property
    def ticks_to_count(self) -> Fraction:
        ratio = self.target.instructions_per_tick
        if ratio is None:
            raise FusebenchError(f"board {self.board.name}: [runners.{self.kind}] has no "
                                 f"instructions_per_tick")
        return ratio


def input_bytes(array: np.ndarray, expected: int, index: int) -> bytes:
    """An input tensor as the bytes the firmware wants (int8, C order)."""
    array = np.asarray(array)
    if array.dtype not in (np.int8, np.uint8):
        raise FusebenchError(f"input {index} has dtype {array.dtype}; the firmware takes int8")
    if array.size != expected:
        raise FusebenchError(f"input {index} has {array.size} elements; the model takes {expected}")
    return np.ascontiguousarray(array).view(np.int8).tobytes()


def measure_input(session: Session, data: bytes, timeout_s: float, ratio: Fraction,
                  count_source: str, index: int = 0, host_file: str | None = None) -> RunResult:
    """Run one input once per paint byte and merge the passes. `host_file`
    holds the input for a device that can read host files (emulators)."""
    passes: list[PassResult] = []
    for paint in PAINTS:
        result = session.run_pass(data, paint, timeout_s, host_file=host_file)
        passes.append(result)
        if result.status != 0:
            break   # a failing kernel: one pass says enough
    return merge_passes(passes, ratio, count_source, index)


def merge_passes(passes: list[PassResult], ratio: Fraction, count_source: str,
                 index: int = 0) -> RunResult:
    first = passes[0]
    # Ticks may differ by one between passes: where the run starts within a
    # tick is arbitrary. The first pass is reported.
    detail: dict = {"paints": [p.paint for p in passes], "layer_calls": first.layer_calls,
                    "ticks_per_pass": [p.ticks for p in passes]}
    if any(p.output != first.output for p in passes):
        # The output changed with the paint: the model read memory it never wrote.
        detail["output_depends_on_paint"] = True
    status: Status = "ok"
    if first.status != 0:
        status = "crash"
        detail["reason"] = (f"fb_model_run returned {first.status}" if first.status != INPUT_READ_FAILED else
                            f"fb_model_run returned {first.status}: the model could not read its input "
                            "(the host never delivered a piece intact)")
    elif any(p.stack_overflow for p in passes):
        status = "crash"
        detail["reason"] = "stack overflow: the whole stack region was used"
    return RunResult(
        status=status,
        instructions=round(first.ticks * ratio),
        count_source=count_source,
        arena_bytes_peak=max(p.arena_bytes_peak for p in passes),
        stack_bytes_peak=max(p.stack_bytes_peak for p in passes),
        output=np.frombuffer(first.output, dtype=np.int8).copy(),
        per_layer_instructions=[round(t * ratio) for t in first.layer_ticks],
        detail=detail,
        input_index=index,
        ticks=first.ticks,
        stack_bytes_model=max(p.stack_bytes_model for p in passes),
        model_status=first.status,
        io_ticks=first.io_ticks,
    )


def kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILL an emulator started with start_new_session=True (its own process
    group: children such as Renode's mono die too) and reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
