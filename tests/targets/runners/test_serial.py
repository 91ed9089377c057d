"""The serial runner: its line link, and the real thing over QEMU's pseudo-terminal.

QEMU's `-serial pty` stands in for a Nucleo's /dev/ttyACM0: the serial runner
opens it with pyserial and uploads every input over it. A proxy pty between the
two flips and drops bytes to show the damage is detected and repaired, never
taken as data.
"""
import dataclasses
import os
import random
import re
import select
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FIXTURES
from harness.targets.boards import load_board
from harness.backend.build import build_firmware
from harness.errors import FusebenchError
from harness.targets.protocol import LinkClosed, LinkTimeout, encode_frame
from harness.targets.runners import make_runner
from harness.targets.runners.qemu import QemuRunner
from harness.targets.runners.qemu_pty import QemuPtyBoard, pty_command
from harness.targets.runners.serial import BoardNotAnswering, SerialLink, SerialRunner

BOARDS = ("stm32h7", "stm32f4")


def copy_model(x: np.ndarray) -> np.ndarray:
    return (3 * x[::-1].astype(np.int64) + 1).astype(np.uint8).view(np.int8)


# -- the line link, with a stand-in port ------------------------------------------------------

class FakePort:
    """pyserial's API over a list of chunks that 'arrive' one per read."""

    def __init__(self, chunks, fail_after=None):
        self.chunks = list(chunks)
        self.written = bytearray()
        self.fail_after = fail_after

    @property
    def in_waiting(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n):
        if self.fail_after is not None and not self.chunks:
            import serial
            raise serial.SerialException("device disconnected")
        if not self.chunks:
            time.sleep(0.01)
            return b""
        return self.chunks.pop(0)

    def write(self, data):
        self.written += data

    def flush(self):
        pass

    def reset_input_buffer(self):
        self.chunks.clear()

    def close(self):
        pass


def test_link_splits_lines_across_reads():
    ready = encode_frame("READY", seq=0)
    link = SerialLink(FakePort([b"boot noise\r\n" + ready[:5], ready[5:] + b"@ACK", b"#x\n"]))
    assert link.read_line(1.0) == "boot noise"
    assert link.read_line(1.0) == ready.decode().rstrip("\n")
    assert link.read_line(1.0) == "@ACK#x"
    with pytest.raises(LinkTimeout):
        link.read_line(0.05)
    assert list(link.recent)[-1] == "@ACK#x"


def test_a_frame_whose_newline_was_lost_is_still_delivered():
    frame = encode_frame("RESULT", seq=3, status=0).rstrip(b"\n")
    link = SerialLink(FakePort([frame]), idle_flush_s=0.05)
    t0 = time.monotonic()
    assert link.read_line(5.0) == frame.decode()
    assert time.monotonic() - t0 < 1.0          # not the 5 s timeout
    # A half frame is not: it waits for more and then times out.
    link = SerialLink(FakePort([frame[:-3]]), idle_flush_s=0.05)
    with pytest.raises(LinkTimeout):
        link.read_line(0.3)


def test_unplugged_port_is_link_closed():
    link = SerialLink(FakePort([], fail_after=0))
    with pytest.raises(LinkClosed, match="device disconnected"):
        link.read_line(1.0)


def test_a_port_that_hangs_up_while_writing_is_link_closed():
    """pyserial's POSIX flush (tcdrain) raises termios.error, not OSError, when
    the other end of a pty is gone: still LinkClosed, not a traceback."""
    termios = pytest.importorskip("termios")

    class HungUp(FakePort):
        def flush(self):
            raise termios.error(5, "Input/output error")

    with pytest.raises(LinkClosed, match="Input/output error"):
        SerialLink(HungUp([])).write(encode_frame("EXIT"))


def test_a_signal_interrupting_a_call_is_retried_never_a_closed_line():
    """Renode in-process (pyrenode3) delivers signals to our threads: tcdrain,
    a write or a read cut short by EINTR is tried again (it lost rows as
    `serial port closed while writing: (4, 'Interrupted system call')`)."""
    import errno

    import serial
    termios = pytest.importorskip("termios")
    ready = encode_frame("READY", seq=0)

    class Interrupted(FakePort):
        def __init__(self, chunks):
            super().__init__(chunks)
            self.flushes = self.writes = self.reads = 0

        def flush(self):
            self.flushes += 1
            if self.flushes <= 2:
                raise termios.error(errno.EINTR, "Interrupted system call")

        def write(self, data):
            self.writes += 1
            if self.writes == 1:
                raise serial.SerialException("write failed: [Errno 4] Interrupted system call")
            super().write(data)

        def read(self, n):
            self.reads += 1
            if self.reads == 1:
                raise OSError(errno.EINTR, "Interrupted system call")
            return super().read(n)

    port = Interrupted([ready])
    link = SerialLink(port)
    link.write(encode_frame("HELLO", seq=1))
    assert bytes(port.written) == encode_frame("HELLO", seq=1) and port.flushes == 3
    assert link.read_line(1.0) == ready.decode().rstrip("\n")


def test_opening_a_missing_port_is_one_line():
    with pytest.raises(FusebenchError, match="cannot open serial port /dev/nonexistent-fb"):
        SerialLink.open("/dev/nonexistent-fb")


def test_pty_command_moves_only_the_console():
    command = pty_command(load_board("stm32h7"), Path("/x/f.elf"))
    assert "-serial pty" in " ".join(command) and "stdio" not in command


def test_serial_runner_options(monkeypatch):
    board = load_board("nucleo-h743zi")
    runner = make_runner("serial", board, port="/dev/ttyACM7", flash=False)
    assert isinstance(runner, SerialRunner)
    assert (runner.port, runner.baud, runner.count_source, runner.flasher) == ("/dev/ttyACM7", 115200, "dwt", None)
    with pytest.raises(FusebenchError, match="unknown runner 'bogus'"):
        make_runner("bogus", board)
    qemu_only = dataclasses.replace(load_board("stm32h7"), runners=(load_board("stm32h7").runner("qemu"),))
    with pytest.raises(FusebenchError, match=r"no \[runners.serial\] table"):
        make_runner("serial", qemu_only, port="/dev/x", flash=False)


# -- over QEMU's pseudo-terminal ---------------------------------------------------------------

@pytest.fixture(scope="module")
def copy_elves(tmp_path_factory):
    root = tmp_path_factory.mktemp("serial-firmware")
    return {b: build_firmware(load_board(b), FIXTURES / "copy", root / b).elf for b in BOARDS}


def inputs(n, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, 64, dtype=np.int8) for _ in range(n)]


@pytest.mark.qemu
@pytest.mark.parametrize("board_name", BOARDS)
def test_serial_over_qemu_pty_matches_the_direct_runner(copy_elves, board_name):
    board, elf = load_board(board_name), copy_elves[board_name]
    xs = inputs(3)
    with QemuPtyBoard(board, elf) as device:
        assert re.fullmatch(r"/dev/pts/\d+", device.port)
        runner = SerialRunner(board, device.port, firmware_runner="qemu", ack_timeout_s=2)
        served = list(runner.run(elf, xs, timeout_s=20))
        assert device.exit_code() == 0            # EXIT -> BYE -> semihosting exit(0)
    direct = list(QemuRunner(board).run(elf, xs, timeout_s=20))
    tick = board.runner("qemu").instructions_per_tick
    for x, s, d in zip(xs, served, direct):
        assert s.status == "ok", s.detail
        assert s.count_source == "qemu-icount"
        np.testing.assert_array_equal(s.output, copy_model(x))
        np.testing.assert_array_equal(s.output, d.output)
        assert (s.arena_bytes_peak, s.stack_bytes_peak) == (d.arena_bytes_peak, d.stack_bytes_peak)
        assert s.ticks == d.ticks           # the counter starts afresh at the run (hal_time_restart)
        assert s.instructions == round(s.ticks * tick)
    assert runner.pass_repeats == 0


class FlakyLine:
    """A pty the runner opens instead of QEMU's, passing bytes both ways with
    damage: `host_to_device(bytes)` and `device_to_host(line)` return what is
    passed on."""

    def __init__(self, qemu_port, host_to_device=None, device_to_host=None):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.qemu = os.open(qemu_port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.qemu)
        self.h2d = host_to_device or (lambda b: b)
        self.d2h = device_to_host or (lambda b: b)
        self._stop = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        pending = b""
        while not self._stop:
            ready, _, _ = select.select([self.master, self.qemu], [], [], 0.05)
            try:
                if self.master in ready:
                    os.write(self.qemu, self.h2d(os.read(self.master, 4096)))
                if self.qemu in ready:
                    pending += os.read(self.qemu, 4096)
                    *lines, pending = pending.split(b"\n")
                    out = b"".join(self.d2h(line + b"\n") for line in lines)
                    if out:
                        os.write(self.master, out)
            except OSError:
                return

    def close(self):
        self._stop = True
        self._thread.join(2)
        for fd in (self.master, self.slave, self.qemu):
            os.close(fd)


def byte_noise(seed, flip, drop, counts):
    rng = random.Random(seed)

    def mangle(data):
        out = bytearray()
        for b in data:
            r = rng.random()
            if r < drop:
                counts["drop"] += 1
                continue
            if r < drop + flip:
                counts["flip"] += 1
                b ^= 1 << rng.randrange(8)
            out.append(b)
        return bytes(out)
    return mangle


@pytest.mark.qemu
def run_over_flaky_line(board, elf, xs, to_device, to_host) -> list:
    """Run `xs` through the serial runner over QEMU's pty with `FlakyLine` damaging bytes."""
    with QemuPtyBoard(board, elf) as device:
        line = FlakyLine(device.port, to_device, to_host)
        try:
            runner = SerialRunner(board, line.path, firmware_runner="qemu", ack_timeout_s=0.5,
                                  retries=12, pass_retries=12, boot_timeout_s=10)
            return list(runner.run(elf, xs, timeout_s=3))
        finally:
            line.close()


def test_flipped_and_dropped_bytes_are_detected_and_repaired(copy_elves):
    board, elf = load_board("stm32f4"), copy_elves["stm32f4"]
    xs = inputs(4, seed=11)
    counts = {"flip": 0, "drop": 0}
    # About one line in three is damaged either way: far worse than any real cable.
    to_device = byte_noise(1, flip=0.002, drop=0.001, counts=counts)
    to_host = byte_noise(2, flip=0.001, drop=0.0005, counts=counts)
    results = run_over_flaky_line(board, elf, xs, to_device, to_host)
    assert counts["flip"] > 0 and counts["drop"] > 0        # damage was done ...
    for x, r in zip(xs, results):                            # ... and none of it got through
        assert r.status == "ok", r.detail
        np.testing.assert_array_equal(r.output, copy_model(x))
        assert r.arena_bytes_peak == results[0].arena_bytes_peak


def stream_model(x: np.ndarray) -> np.ndarray:
    """What the stream fixture computes from the pieces it reads (see its fb_model.h)."""
    table = re.search(r"#define FIXTURE_READS (.*)", (FIXTURES / "stream" / "fb_model.h").read_text()).group(1)
    u = x.view(np.uint8).astype(np.int64)
    out = np.zeros(64, np.int64)
    for r, (off, n) in enumerate((int(a), int(b)) for a, b in re.findall(r"\{(\d+), (\d+)\}", table)):
        j = np.arange(off, off + n)
        np.add.at(out, j % 64, (r + 1) * (j // 64 + 1) * u[j])
    return (out & 0xFF).astype(np.uint8).view(np.int8)


@pytest.mark.qemu
def test_streamed_input_over_a_flaky_line(tmp_path):
    """A model that asks for its input while it runs (NEED/DATA), over a line
    that flips and drops bytes both ways: the device asks again, the host
    repairs what it lost, no damaged byte reaches the model."""
    board = load_board("stm32h7")
    elf = build_firmware(board, FIXTURES / "stream", tmp_path / "stream").elf
    rng = np.random.default_rng(13)
    xs = [rng.integers(-128, 128, 576, dtype=np.int8) for _ in range(3)]
    counts = {"flip": 0, "drop": 0}
    # DATA lines are ~560 bytes: about one in four is damaged on the way.
    to_device = byte_noise(3, flip=0.0004, drop=0.0001, counts=counts)
    to_host = byte_noise(4, flip=0.001, drop=0.0005, counts=counts)
    results = run_over_flaky_line(board, elf, xs, to_device, to_host)
    assert counts["flip"] > 0 and counts["drop"] > 0
    for x, r in zip(xs, results):
        assert r.status == "ok", r.detail
        np.testing.assert_array_equal(r.output, stream_model(x))
        assert r.io_ticks > 0 and r.arena_bytes_peak == 400


@pytest.mark.qemu
def test_a_damaged_result_is_never_a_row_the_pass_runs_again(copy_elves):
    board, elf = load_board("stm32h7"), copy_elves["stm32h7"]
    damaged = []

    def hit_first_result(line):
        if line.startswith(b"@RESULT") and not damaged:
            damaged.append(line)
            i = line.index(b"out=") + 6
            return line[:i] + bytes([line[i] ^ 0x01]) + line[i + 1:]   # one output digit
        return line

    with QemuPtyBoard(board, elf) as device:
        line = FlakyLine(device.port, device_to_host=hit_first_result)
        try:
            runner = SerialRunner(board, line.path, firmware_runner="qemu", ack_timeout_s=1)
            [result] = runner.run(elf, inputs(1), timeout_s=5)
        finally:
            line.close()
    assert damaged and runner.pass_repeats == 1
    assert result.status == "ok"
    np.testing.assert_array_equal(result.output, copy_model(inputs(1)[0]))


@pytest.mark.qemu
def test_a_board_that_stops_answering_is_a_clear_error(copy_elves):
    board, elf = load_board("stm32h7"), copy_elves["stm32h7"]
    state = {"dead": False}

    def silence_after_first_ack(line):
        if state["dead"]:
            return b""                                       # the wire went dead
        state["dead"] = line.startswith(b"@ACK")            # the RUN's ACK still gets through
        return line

    with QemuPtyBoard(board, elf) as device:
        line = FlakyLine(device.port, device_to_host=silence_after_first_ack)
        try:
            runner = SerialRunner(board, line.path, firmware_runner="qemu", ack_timeout_s=0.2,
                                  retries=1, boot_timeout_s=1.5)
            results = runner.run(elf, inputs(2), timeout_s=1)
            first = next(results)
            assert first.status == "timeout"
            assert "the board stopped answering" in first.detail["reason"]
            assert first.output is None and first.instructions is None
            with pytest.raises(BoardNotAnswering, match=rf"the board on {line.path} did not say READY "
                                                        r"within 1.5 s after input 0 ended in timeout"):
                next(results)
        finally:
            line.close()


@pytest.mark.qemu
def test_firmware_for_another_board_is_refused_over_the_line(copy_elves):
    f4 = load_board("stm32f4")
    with QemuPtyBoard(f4, copy_elves["stm32f4"]) as device:
        runner = SerialRunner(load_board("stm32h7"), device.port, firmware_runner="qemu")
        with pytest.raises(FusebenchError, match=r"runs firmware built for 'stm32f4', not 'stm32h7'"):
            list(runner.run(copy_elves["stm32f4"], inputs(1)))


@pytest.mark.qemu
def test_real_model_over_the_pty_equals_the_direct_path():
    """The smallest shipped model, a few inputs: same outputs (bit-exact with
    LiteRT), watermarks and instruction counts (to one tick) as direct QEMU."""
    from harness.frontend.catalog import default_models
    from tools.pty_equivalence import compare
    from harness.frontend.tflite_import import load_model

    # The smallest input: the upload over QEMU's UART moves about 13 KB/s of hex.
    model = min(default_models(), key=lambda p: int(np.prod(load_model(p).input.shape)))
    summary = compare("stm32h7", [model], max_inputs=2, out_csv=Path(os.devnull))
    assert summary["rows"] == 2
    assert summary["both_ok"] == summary["outputs_equal"] == summary["matches_reference"] == 2
    assert summary["arena_equal"] == summary["stack_within_one_exception_frame"] == 2
    assert summary["instructions_within_one_tick"] == 2
    assert summary["max_layer_diff"] <= 2 * 40


def test_choose_runner():
    from harness.targets.runners import choose_runner
    h7, nucleo = load_board("stm32h7"), load_board("nucleo-h743zi")
    assert choose_runner([h7]) == "qemu"
    assert choose_runner([h7], port="/dev/ttyACM0") == "serial"
    assert choose_runner([nucleo]) == "serial"            # real boards have nothing else
    assert choose_runner([h7], runner="renode") == "renode"
    with pytest.raises(FusebenchError, match="unknown runner 'gem5'"):
        choose_runner([h7], runner="gem5")


def test_sweep_on_a_board_with_no_port_found_stops_before_any_work(tmp_path, monkeypatch):
    from harness.report.bench import run_sweep
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    with pytest.raises(FusebenchError, match="no serial port for board nucleo-f446re found .*--port"):
        run_sweep(["nucleo-f446re"], [tmp_path / "never-read.tflite"], ["unfused"], run_dir=tmp_path,
                  runner="serial", runner_options={"flash": False})


@pytest.mark.qemu
def test_fault_over_the_line_is_a_crash_with_registers(tmp_path):
    board = load_board("stm32h7")
    elf = build_firmware(board, FIXTURES / "fault", tmp_path / "fault").elf
    fault_pc = int(re.search(r"#define FIXTURE_FAULT_PC (\w+)",
                             (FIXTURES / "fault" / "fb_model.h").read_text()).group(1).rstrip("u"), 0)
    with QemuPtyBoard(board, elf) as device:
        [result] = SerialRunner(board, device.port, firmware_runner="qemu").run(elf, [np.zeros(16, np.int8)])
    assert result.status == "crash"
    assert result.detail["pc"] == fault_pc and result.detail["exception"] == 3
    assert any(line.startswith("@FAULT") for line in result.detail["last_output"])


@pytest.mark.qemu
def test_streamed_input_msf_firmware_over_the_line_is_bit_exact(model_paths):
    """A real msf schedule reads its input while it runs: over a serial line it
    asks for each piece (NEED/DATA); outputs and counts match the file path."""
    from harness.report.bench import build_planned, load_inputs, plan_variant, reference_outputs_isolated
    path = next(p for p in model_paths if p.stem == "mobilenetv2_w035_64")
    board, graph, plan = plan_variant("stm32h7", str(path), "msf")
    assert plan.input_streamed
    build = build_planned(board, graph, plan)
    samples = load_inputs(graph, None)[:1]
    ref = reference_outputs_isolated(str(path), [x for _, x, _ in samples])[0]
    with QemuPtyBoard(board, build.elf) as device:
        [result] = SerialRunner(board, device.port, firmware_runner="qemu").run(build.elf, [samples[0][1]])
    assert result.status == "ok", result.detail
    np.testing.assert_array_equal(np.asarray(result.output, np.int8).reshape(-1), ref)
    assert result.arena_bytes_peak == plan.arena_bytes and result.io_ticks > 0


def test_a_streamed_pass_whose_input_read_failed_is_run_again():
    """fb_model_run's FB_MODEL_ERR_INPUT is the line's fault, not the model's: the pass repeats."""
    from harness.targets.protocol import INPUT_READ_FAILED, PassResult

    def result(status):
        return PassResult(paint=0xA5, status=status, ticks=10, arena_bytes_peak=1, stack_bytes_peak=1,
                          stack_bytes_model=1, stack_overflow=False, layer_calls=1, layer_ticks=(10,),
                          output=b"\0")

    class Stub:
        def __init__(self, statuses):
            self.statuses = list(statuses)

        def run_pass(self, data, paint, timeout_s, host_file=None):
            return result(self.statuses.pop(0))

    runner = SerialRunner(load_board("stm32h7"), "/dev/null-port", pass_retries=2)
    assert runner._one_pass(Stub([INPUT_READ_FAILED, 0]), b"", 0xA5, 1.0).status == 0
    assert runner.pass_repeats == 1
    # out of retries: the failure is reported as it is
    assert runner._one_pass(Stub([INPUT_READ_FAILED] * 3), b"", 0xA5, 1.0).status == INPUT_READ_FAILED
