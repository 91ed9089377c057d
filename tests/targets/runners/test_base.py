"""The loop every runner runs (Runner.run), driven through a minimal runner
over a scripted device: passes, failure rows, recovery, the end of a session."""
from collections import deque

import numpy as np
import pytest

from harness.errors import FusebenchError
from harness.targets.boards import load_board
from harness.targets.protocol import LinkClosed, LinkTimeout, encode_frame, parse_frame
from harness.targets.runners.base import PAINTS, Runner

INPUT_BYTES = 8


class ScriptedDevice:
    """The device side of the protocol for an 8-byte input whose model
    reverses it. `plan` says what each RUN (one pass) does: "ok" answers
    RESULT, "fault" a FAULT frame, "hang" nothing more, "close" closes the
    link, "garble" a damaged RESULT; "silent" never says READY."""

    def __init__(self, plan: deque, board: str = "stm32h7", silent: bool = False):
        self.plan = plan
        self.out: deque = deque()
        self.closed = False
        self.behaviour = "ok"
        self.input = bytearray(INPUT_BYTES)
        self.silent = silent
        self.commands: list[str] = []
        self.board = board
        self.ready(0)

    def ready(self, seq):
        if not self.silent:
            self.say("READY", seq=seq, proto=1, board=self.board, model="rev", arena=64,
                     **{"in": INPUT_BYTES}, out=INPUT_BYTES, layers=1, timer="systick", stack=1024, chunk=256)

    def say(self, kind, **fields):
        self.out.append(encode_frame(kind, **fields).decode().rstrip("\n"))

    def write(self, data: bytes) -> None:
        frame = parse_frame(data)
        self.commands.append(frame.kind)
        seq = frame.fields.get("seq", "0")
        if frame.kind == "HELLO":
            self.ready(seq)
        elif frame.kind == "RUN":
            self.behaviour = self.plan.popleft()
            self.paint = int(frame.fields["paint"], 16)
            self.say("ACK", seq=seq, got=0)
        elif frame.kind == "DATA":
            piece = bytes.fromhex(frame.fields["hex"])
            self.input[:len(piece)] = piece
            self.say("ACK", seq=seq, got=len(piece))
            self.finish(seq)
        elif frame.kind == "EXIT":
            self.say("BYE", seq=seq)

    def finish(self, seq):
        if self.behaviour == "fault":
            self.say("FAULT", exc=3, pc="0x0000deac", lr="0x000015fb", cfsr="0x00020000")
        elif self.behaviour == "close":
            self.closed = True
        elif self.behaviour in ("ok", "garble"):
            self.say("RESULT", seq=seq, status=0, ticks=100 + (self.paint == PAINTS[1]), arena=40,
                     stack=200 if self.paint == PAINTS[0] else 240, stack_model=100, overflow=0, calls=1,
                     layers="100", out=bytes(reversed(self.input)).hex())
            if self.behaviour == "garble":
                self.out[-1] = self.out[-1].replace("status=0", "status:0")
        # "hang": nothing more

    def read_line(self, timeout_s: float) -> str:
        if self.out:
            return self.out.popleft()
        if self.closed:
            raise LinkClosed("the device went away")
        raise LinkTimeout(f"no line for {timeout_s:g} s")


class ScriptedRunner(Runner):
    """A runner whose sessions are ScriptedDevices; it records what the loop asks of it."""

    kind = "scripted"                       # not registered: only these tests use it
    count_source = "qemu-icount"

    def __init__(self, plan, silent=False, **attributes):
        super().__init__(load_board("stm32h7"), table="qemu")
        self.plan = deque(plan)
        self.silent = silent
        self.events: list[str] = []
        self.device = None
        self.ack_timeout_s = 0.01
        self.boot_timeout_s = 0.2
        for name, value in attributes.items():
            setattr(self, name, value)

    def start(self, binary):
        self.events.append("start")
        self.device = ScriptedDevice(self.plan, silent=self.silent)
        return self.handshake(self.device, binary)

    def shut_down(self, session):
        self.events.append("exit")
        super().shut_down(session)

    def stop(self):
        if self.device is not None:
            self.events.append("stop")
            self.device = None

    def failure_detail(self, error):
        return {"commands": list(self.device.commands)}


def inputs(n):
    return [np.arange(INPUT_BYTES, dtype=np.int8) + i for i in range(n)]


@pytest.fixture
def elf(tmp_path):
    path = tmp_path / "firmware.elf"
    path.write_bytes(b"\x7fELF")
    return path


def test_every_input_is_two_passes_merged(elf):
    runner = ScriptedRunner(["ok"] * 4)
    results = list(runner.run(elf, inputs(2)))
    assert [r.status for r in results] == ["ok", "ok"]
    for i, r in enumerate(results):
        np.testing.assert_array_equal(r.output, inputs(2)[i][::-1])
        assert r.detail["paints"] == list(PAINTS)
        assert r.stack_bytes_peak == 240                  # the larger watermark of the two passes
        assert r.instructions == 100 * 40                 # the first pass's ticks, times the qemu ratio
        assert r.count_source == "qemu-icount" and r.input_index == i
    assert runner.events == ["start", "exit", "stop"]     # one session; EXIT, then it ends


def test_crash_then_a_fresh_session_for_the_next_input(elf):
    runner = ScriptedRunner(["ok", "ok", "fault", "ok", "ok"])
    results = list(runner.run(elf, inputs(3)))
    assert [r.status for r in results] == ["ok", "crash", "ok"]
    crash = results[1].detail
    assert crash["reason"].startswith("firmware fault (exception 3)")
    assert (crash["exception"], crash["pc"], crash["cfsr"]) == (3, 0xDEAC, 0x20000)
    assert crash["commands"][-1] == "DATA"                # the runner's own detail is added
    assert results[1].output is None and results[1].instructions is None
    assert runner.events == ["start", "stop", "start", "exit", "stop"]
    np.testing.assert_array_equal(results[2].output, inputs(3)[2][::-1])


def test_timeout_then_a_fresh_session(elf):
    runner = ScriptedRunner(["hang", "ok", "ok"])
    results = list(runner.run(elf, inputs(2), timeout_s=0.05))
    assert [r.status for r in results] == ["timeout", "ok"]
    assert results[0].detail["timeout_s"] == 0.05
    assert results[0].detail["reason"].startswith("no line for")
    assert runner.events == ["start", "stop", "start", "exit", "stop"]


def test_runner_wording_of_failures(elf):
    runner = ScriptedRunner(["hang", "close"], reason_on_timeout="the board stopped answering: {}",
                            reason_on_link_closed="the link closed ({})")
    [hang, closed] = runner.run(elf, inputs(2), timeout_s=0.05)
    assert hang.status == "timeout" and hang.detail["reason"].startswith("the board stopped answering: no line")
    assert closed.status == "crash" and closed.detail["reason"] == "the link closed (the device went away)"


def test_no_fresh_session_after_the_last_input(elf):
    runner = ScriptedRunner(["ok", "ok", "fault"])
    results = list(runner.run(elf, inputs(2)))
    assert [r.status for r in results] == ["ok", "crash"]
    assert runner.events == ["start", "stop"]              # no restart, and no EXIT to a crashed device


def test_a_failed_session_ends_before_its_row_when_the_runner_says_so(elf):
    runner = ScriptedRunner(["fault", "ok", "ok"], end_failed_sessions=True)
    results = runner.run(elf, inputs(2))
    assert next(results).status == "crash"
    assert runner.events == ["start", "stop"]              # before the caller asked for more
    assert next(results).status == "ok"
    assert runner.events == ["start", "stop", "start"]


def test_damaged_results_repeat_the_pass_as_often_as_allowed(elf):
    runner = ScriptedRunner(["garble", "ok", "ok"], pass_retries=1)
    [result] = runner.run(elf, inputs(1))
    assert result.status == "ok" and runner.pass_repeats == 1
    runner = ScriptedRunner(["garble"], pass_retries=0)
    [result] = runner.run(elf, inputs(1))
    assert result.status == "crash" and result.detail["reason"].startswith("protocol error: corrupt frame")


def test_closing_the_generator_ends_the_session(elf):
    runner = ScriptedRunner(["ok"] * 6)
    results = runner.run(elf, inputs(3))
    next(results)
    assert runner.events == ["start"]
    results.close()
    assert runner.events == ["start", "stop"]


def test_no_input_no_session(elf):
    runner = ScriptedRunner([])
    assert list(runner.run(elf, [])) == []
    assert runner.events == []


def test_firmware_that_never_says_ready_is_one_clear_error(elf):
    runner = ScriptedRunner(["ok"], silent=True)
    with pytest.raises(FusebenchError, match=r"firmware .*firmware.elf did not say READY within 0.2 s"):
        list(runner.run(elf, inputs(1)))
    assert runner.events == ["start", "stop"]
    # with HELLO until READY the device is asked again every second, within the same limit
    runner = ScriptedRunner(["ok"], silent=True, hello_until_ready=True)
    with pytest.raises(FusebenchError, match="did not say READY"):
        list(runner.run(elf, inputs(1)))


def test_firmware_for_another_board_and_missing_firmware_are_refused(elf, tmp_path):
    runner = ScriptedRunner(["ok"])
    runner.start = lambda binary: runner.handshake(ScriptedDevice(deque(), board="stm32f4"), binary)
    with pytest.raises(FusebenchError, match="built for board 'stm32f4', not 'stm32h7'"):
        list(runner.run(elf, inputs(1)))
    with pytest.raises(FusebenchError, match="does not exist"):
        next(ScriptedRunner([]).run(tmp_path / "none.elf", inputs(1)))
