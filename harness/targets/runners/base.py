"""What every runner shares: the result record, the per-input loop and the registry.

A runner (pqm4 style) is one way of running firmware: QEMU's stand-in
machines (`qemu`), Renode's model of the part (`renode`), a real board on a
serial port (`serial`). `Runner.run` is the loop they all run: boot a session
when the first input comes, run every input once per paint byte and merge the
passes into a `RunResult`, turn a fault, a dead link, a hang or a conversation
damaged beyond repair into a `crash` or `timeout` row, and give the next input
(only when there is one) a fresh session. A runner class implements only what
differs: `check_tools`, `start`, `restart`, `shut_down`, `stop` and what its
failure rows add (`failure_detail`); its class attributes tell the rest of the
harness what it runs and what it counts (see `Runner`).

Runner classes are registered under their `kind` with `@register_runner`;
`harness.targets.runners` looks them up.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Literal, Optional

import numpy as np

from harness.errors import FusebenchError
from harness.targets.boards import Board, RunnerTarget
from harness.targets.protocol import (INPUT_READ_FAILED, CorruptFrame, DeviceFault, DeviceInfo, LinkClosed,
                                      LinkTimeout, PassResult, ProtocolError, Session, encode_frame)

if TYPE_CHECKING:
    from harness.targets.boards import BoardTable
    from harness.targets.protocol import Link

Status = Literal["ok", "crash", "timeout"]

# Two paint bytes: a byte the model writes with one of them still differs
# from the other, so the larger watermark of the two passes is exact.
PAINTS = (0xA5, 0x5A)

# Every time counter a runner reports (`count_source`) and what it counts: the
# bench column its counts go to. Silicon counts core cycles; the emulators
# count instructions (their virtual time advances once per instruction).
COUNT_SOURCES = {
    "qemu-icount": "instructions",      # QEMU -icount shift=0, read through SysTick
    "renode-virtual": "instructions",   # Renode's added DWT at clock_hz, core at clock-MHz MIPS
    "dwt": "cycles",                    # DWT CYCCNT on silicon
    "systick-cycles": "cycles",         # SysTick on the core clock: silicon whose DWT did not count
}


def count_column(count_source: Any) -> str:
    """`cycles` or `instructions`: what a count from `count_source` is, and so
    which bench column holds it (unknown sources count as instructions)."""
    return "cycles" if COUNT_SOURCES.get(count_source) == "cycles" else "instructions"


@dataclass
class RunResult:
    status: Status                         # 'ok', 'crash' (fault, kernel error, stack overflow), 'timeout'
    instructions: int | None               # or cycles: see count_source and count_column
    count_source: str                      # a COUNT_SOURCES key: what the time counter counts
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

    @property
    def count_column(self) -> str:
        """`cycles` or `instructions`: what `instructions` holds."""
        return count_column(self.count_source)


_RUNNERS: dict[str, type["Runner"]] = {}


def register_runner(cls: type["Runner"]) -> type["Runner"]:
    """Class decorator: make `cls` the runner of its `kind` (`--runner <kind>`)."""
    taken = _RUNNERS.get(cls.kind)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"runner kind {cls.kind!r} is taken by {taken.__module__}.{taken.__qualname__}")
    _RUNNERS[cls.kind] = cls
    return cls


class Runner(ABC):
    """Runs a firmware image on one platform: `run(binary, inputs)` yields one
    RunResult per input, in order (one run at a time per instance).

    What a runner kind is, for the rest of the harness (class attributes):
    `kind` names it (`--runner`) and the board file's `[runners.<kind>]`
    table; `count_source` is what its time counter counts; `silicon_image`
    says it runs the silicon image (the part's real addresses and a silicon
    HAL), built into its own `<kind>/` folder, instead of the QEMU image;
    `parallel_jobs` whether several firmware jobs may run at once;
    `preference` its rank when `--runner` is not given (lower first; None:
    only when asked for); `chosen_by_option` a command-line option that picks
    it when given (serial: `port`); `default_instructions_per_tick` the tick
    ratio of a table that gives none (None: the table must give one).
    """

    kind: ClassVar[str]
    count_source: str                      # instances may refine it (serial: systick-cycles)
    silicon_image: ClassVar[bool] = False
    parallel_jobs: ClassVar[bool] = True
    preference: ClassVar[Optional[int]] = None
    chosen_by_option: ClassVar[Optional[str]] = None
    default_instructions_per_tick: ClassVar[Optional[Fraction]] = None

    # How the conversation goes.
    hello_until_ready: ClassVar[bool] = False      # READY may have gone out before we listened
    end_failed_sessions: ClassVar[bool] = False    # end a failed session before its row is handed on
    reason_on_timeout: ClassVar[str] = "{}"        # detail["reason"] of a timeout ({} = the error)
    reason_on_link_closed: ClassVar[str] = "{}"    # ... of a link that closed during a run

    boot_timeout_s: float = 30.0
    ack_timeout_s: float = 10.0
    retries: int = 4               # per command (protocol.Session)
    pass_retries: int = 0          # repeats of a pass whose answers were damaged beyond the retries

    def __init__(self, board: Board, table: Optional[str] = None):
        """`table`: the runner table the image was built for (default: this kind's)."""
        self.board = board
        self.target: RunnerTarget = board.runner(table or self.kind)
        self.pass_repeats = 0      # passes run again after damaged answers (for tests)

    # -- the registry's hooks ---------------------------------------------------------------

    @classmethod
    def from_options(cls, board: Board, **options) -> "Runner":
        """The runner for `board` from the command line's runner options
        (port, renode, flash_tool, probe, flash); the ones it does not take are ignored."""
        return cls(board)

    @classmethod
    def check_setup(cls, board: Board, **options) -> None:
        """Fail now, before any build, when this runner cannot run on `board`:
        no table, no tool, no port."""
        cls.from_options(board, **options).check_tools()

    @classmethod
    def check_table(cls, table: "BoardTable") -> None:
        """Check the keys of a board file's `[runners.<kind>]` table that only
        this runner reads (boards.py calls it while loading the board)."""

    # -- what differs between runners --------------------------------------------------------

    def check_tools(self) -> None:
        """Raise FusebenchError when what the runner needs is not installed."""

    @abstractmethod
    def start(self, binary: Path) -> Session:
        """Boot a session (an emulator, a flashed and opened board) and return
        it once the firmware said READY (`handshake`)."""

    def restart(self, binary: Path, failed: RunResult) -> Session:
        """A fresh session for the next input after `failed` (a crash or a
        timeout): by default a new start."""
        self.stop()
        return self.start(binary)

    def shut_down(self, session: Session) -> None:
        """End a run whose last input went well: EXIT, answered by BYE."""
        try:
            session.exit()
        except ProtocolError:
            pass                   # stop() ends it anyway

    @abstractmethod
    def stop(self) -> None:
        """End the session, whatever state it is in (kill the emulator, close
        the port); safe to call when there is none."""

    def host_file(self, data: bytes) -> Optional[str]:
        """A file holding `data` that the device reads itself (emulators with
        semihosting); None: the input goes over the link."""
        return None

    def failure_detail(self, error: ProtocolError) -> dict:
        """What this runner adds to the detail of a crash or timeout row."""
        return {}

    def not_ready(self, error: ProtocolError, binary: Path, after: str) -> FusebenchError:
        """The error for firmware that did not say READY (`after` says when)."""
        return FusebenchError(f"firmware {binary} did not say READY within {self.boot_timeout_s:g} s "
                              f"after {after} ({error})")

    def check_ready(self, info: DeviceInfo, binary: Path) -> None:
        """Refuse firmware that READY says was built for another board."""
        if info.board != self.board.name:
            raise FusebenchError(f"firmware {binary} was built for board {info.board!r}, "
                                 f"not {self.board.name!r}")

    @property
    def where(self) -> str:
        """Where it runs, for progress lines: the machine, the port."""
        return self.target.machine or ""

    # -- the loop every runner runs -----------------------------------------------------------

    def run(self, binary: Path, inputs: Iterable[np.ndarray],
            timeout_s: float = 60.0) -> Iterator[RunResult]:
        """Run every input on the firmware `binary`; yields one RunResult each.
        The session ends however the run does: done, an error, the caller
        closing the generator, Ctrl-C."""
        binary = Path(binary)
        if not binary.is_file():
            raise FusebenchError(f"firmware {binary} does not exist")
        self.check_tools()
        self.ticks_to_count                # a table without a tick ratio fails before booting
        session: Optional[Session] = None
        failed: Optional[RunResult] = None
        try:
            for index, array in enumerate(inputs):
                if session is None:
                    session = self.start(binary)
                elif failed is not None:   # only when there is a next input
                    session, failed = self.restart(binary, failed), None
                data = input_bytes(array, session.info.input_bytes, index)
                result = self.measure(session, data, timeout_s, index)
                if result.status != "ok":
                    failed = result
                    if self.end_failed_sessions:
                        self.stop()
                yield result
            if session is not None and failed is None:
                self.shut_down(session)
        finally:
            self.stop()

    def handshake(self, link: "Link", binary: Path, after: str = "starting") -> Session:
        """A session on `link` once the firmware said READY for this board.
        With `hello_until_ready` HELLO asks for READY again every second."""
        session = Session(link, ack_timeout_s=self.ack_timeout_s, retries=self.retries)
        deadline = time.monotonic() + self.boot_timeout_s
        try:
            while True:
                if not self.hello_until_ready:
                    info = session.wait_ready(self.boot_timeout_s)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkTimeout(f"no READY within {self.boot_timeout_s:g} s")
                try:
                    link.write(encode_frame("HELLO"))
                    info = session.wait_ready(min(1.0, remaining))
                    break
                except (LinkTimeout, CorruptFrame):
                    continue
        except DeviceFault as fault:
            raise FusebenchError(f"firmware {binary} faulted while booting: {fault}") from None
        except (LinkTimeout, LinkClosed, CorruptFrame) as exc:
            raise self.not_ready(exc, binary, after) from None
        self.check_ready(info, binary)
        return session

    def measure(self, session: Session, data: bytes, timeout_s: float, index: int) -> RunResult:
        """One input: a pass per paint byte, merged; a failure becomes its row."""
        host_file = self.host_file(data)
        passes: list[PassResult] = []
        try:
            for paint in PAINTS:
                passes.append(self._one_pass(session, data, paint, timeout_s, host_file))
                if passes[-1].status != 0:
                    break          # a failing kernel: one pass says enough
        except ProtocolError as error:
            return self.failed_result(error, index, timeout_s)
        return merge_passes(passes, self.ticks_to_count, self.count_source, index)

    def _one_pass(self, session: Session, data: bytes, paint: int, timeout_s: float,
                  host_file: Optional[str] = None) -> PassResult:
        for attempt in range(self.pass_retries + 1):
            try:
                result = session.run_pass(data, paint, timeout_s, host_file=host_file)
                if result.status == INPUT_READ_FAILED and attempt < self.pass_retries:
                    # a streamed model gave up on a piece of its input the line kept
                    # damaging: like a damaged RESULT, run the pass again
                    self.pass_repeats += 1
                    continue
                return result
            except (LinkTimeout, LinkClosed, DeviceFault):
                raise                         # silence, a dead link, a fault: not a glitch
            except ProtocolError:
                # A damaged RESULT, or answers lost so that the device left the
                # transfer (NAK why=command): a pass is idempotent (RUN repaints
                # and the input goes up again), so run it again.
                if attempt == self.pass_retries:
                    raise
                self.pass_repeats += 1
        raise AssertionError("unreachable")

    def failed_result(self, error: ProtocolError, index: int, timeout_s: float) -> RunResult:
        """The row of an input whose run ended in `error`."""
        status: Status = "crash"
        if isinstance(error, DeviceFault):
            detail: dict = dict(reason=str(error), exception=error.exception, **error.registers)
        elif isinstance(error, LinkTimeout):
            status = "timeout"
            detail = dict(reason=self.reason_on_timeout.format(error), timeout_s=timeout_s)
        elif isinstance(error, LinkClosed):
            detail = dict(reason=self.reason_on_link_closed.format(error))
        else:                                 # damaged beyond the retries, or off-protocol
            detail = dict(reason=f"protocol error: {error}")
        detail.update(self.failure_detail(error))
        return RunResult(status=status, instructions=None, count_source=self.count_source,
                         arena_bytes_peak=None, stack_bytes_peak=None, output=None,
                         input_index=index, detail=detail)

    @property
    def ticks_to_count(self) -> Fraction:
        ratio = self.target.instructions_per_tick
        if ratio is None:
            raise FusebenchError(f"board {self.board.name}: [runners.{self.target.kind}] has no "
                                 f"instructions_per_tick")
        return ratio


def input_bytes(array: np.ndarray, expected: int, index: int) -> bytes:
    """An input tensor as the bytes the firmware wants (the model's input
    dtype, int8, uint8 or float32, little-endian, C order)."""
    array = np.asarray(array)
    if array.dtype not in (np.int8, np.uint8, np.float32):
        raise FusebenchError(f"input {index} has dtype {array.dtype}; the firmware takes int8, uint8 or float32")
    if array.nbytes != expected:
        raise FusebenchError(f"input {index} has {array.nbytes} bytes; the model takes {expected}")
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


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
