"""Streamed input (FB_INPUT_STREAMED) without an emulator.

The stream fixture (tests/fixtures/firmware/stream) reads its input in
out-of-order, overlapping, odd-sized pieces through fb_model_read_input().
Here it runs under the host driver (firmware/host/main.c, as
harness.backend.hostmodel builds it) and under the real measurement app
(firmware/app) built for the host with a stdio HAL, talking to
harness.targets.protocol over pipes, with damage done to the lines both ways.
"""
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import TESTS_DIR
from harness.backend.hostmodel import build_host_model, run_host_model
from harness.targets.protocol import NEED_RETRIES, ProtocolError, Session, encode_frame, parse_frame

ROOT = TESTS_DIR.parent
STREAM = ROOT / "tests/fixtures/firmware/stream"
# Only a failing run waits this long; a loaded CI machine must not fail a good one.
PATIENCE_S = 30.0


def fixture_reads() -> list[tuple[int, int]]:
    text = (STREAM / "fb_model.h").read_text()
    table = re.search(r"#define FIXTURE_READS (.*)", text).group(1)
    return [(int(off), int(n)) for off, n in re.findall(r"\{(\d+), (\d+)\}", table)]


def stream_model(x: np.ndarray) -> np.ndarray:
    """What the stream fixture computes (see its fb_model.h)."""
    u = np.asarray(x).view(np.uint8).astype(np.int64)
    out = np.zeros(64, np.int64)
    for r, (off, n) in enumerate(fixture_reads()):
        j = np.arange(off, off + n)
        np.add.at(out, j % 64, (r + 1) * (j // 64 + 1) * u[j])
    return (out & 0xFF).astype(np.uint8).view(np.int8)


def inputs(n, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, 576, dtype=np.int8) for _ in range(n)]


def needs_of(reads, chunk=256):
    return [(off + i, min(chunk, n - i)) for off, n in reads for i in range(0, n, chunk)]


def test_fixture_reads_are_out_of_order_overlapping_and_longer_than_a_need():
    reads = fixture_reads()
    assert any(n > 256 for _, n in reads) and any(n % 2 for _, n in reads)
    assert [off for off, _ in reads] != sorted(off for off, _ in reads)
    covered = np.zeros(576, int)
    for off, n in reads:
        covered[off:off + n] += 1
    assert covered.min() >= 1 and covered.max() >= 2


@pytest.fixture(scope="module")
def cc():
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no host C compiler")
    return compiler


# -- the host driver ---------------------------------------------------------------------------

def test_host_driver_runs_a_streamed_model(cc, tmp_path):
    gen = tmp_path / "gen"
    shutil.copytree(STREAM, gen)
    (gen / "weights.bin").write_bytes(b"")        # build_host_model hashes it; the fixture has none
    exe = build_host_model(gen)
    xs = inputs(3)
    outs = run_host_model(exe, xs, 64)
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out, stream_model(x))


# -- the measurement app on the host -----------------------------------------------------------

@pytest.fixture(scope="module")
def app(cc, tmp_path_factory):
    exe = tmp_path_factory.mktemp("app_host") / "app_host"
    subprocess.run([cc, "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-std=c11", '-DFB_BOARD_NAME="host"',
                    f"-I{ROOT / 'firmware/app'}", f"-I{ROOT / 'firmware/hal'}", f"-I{STREAM}",
                    *map(str, sorted((ROOT / "firmware/app").glob("*.c"))),
                    str(ROOT / "tests/fixtures/firmware/host/hal_stdio.c"), str(STREAM / "fb_model.c"),
                    "-o", str(exe)], check=True)
    return exe


class Damage:
    """The app's pipes as a link, with a hook on each command written and each
    line read: `to_device(frame, data) -> bytes` and `to_host(line) -> str`."""

    def __init__(self, exe, to_device=None, to_host=None):
        from harness.targets.runners.qemu import PipeLink

        self.process = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pipe = PipeLink(self.process)
        self.to_device = to_device or (lambda frame, data: data)
        self.to_host = to_host or (lambda line: line)
        self.written: list = []          # parsed frames, before damage
        self.read: list[str] = []        # lines as they arrived, before damage

    def write(self, data: bytes) -> None:
        frame = parse_frame(data)
        self.written.append(frame)
        self.pipe.write(self.to_device(frame, data))

    def read_line(self, timeout_s: float) -> str:
        line = self.pipe.read_line(timeout_s)
        self.read.append(line)
        return self.to_host(line)

    def close(self):
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture
def device(app):
    links = []

    def start(**hooks):
        link = Damage(app, **hooks)
        links.append(link)
        session = Session(link, ack_timeout_s=0.5)
        info = session.wait_ready(PATIENCE_S)
        assert (info.board, info.model, info.input_bytes, info.input_streamed) == ("host", "fixture-stream", 576, True)
        return link, session

    yield start
    for link in links:
        link.close()


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def kinds(link, kind):
    return [f for f in (parse_frame(line) for line in link.read) if f is not None and f.kind == kind]


def test_app_streams_over_the_uart(device):
    link, session = device()
    for x in inputs(2):
        result = session.run_pass(x.tobytes(), 0xA5, timeout_s=PATIENCE_S)
        assert result.status == 0
        assert result.output == stream_model(x).tobytes()
        assert result.io_ticks > 0 and result.ticks > 0          # nanoseconds here
        assert len(result.layer_ticks) == 3 and result.arena_bytes_peak == 400
    needs = kinds(link, "NEED")
    assert [(f.int("off"), f.int("len")) for f in needs] == 2 * needs_of(fixture_reads())
    assert [f.int("req") for f in needs] == list(range(1, len(needs) + 1))   # never reset
    assert [f.kind for f in link.written] == ["RUN"] + ["DATA"] * (len(needs) // 2) + \
        ["RUN"] + ["DATA"] * (len(needs) // 2)
    # Every frame of a run echoes the RUN's seq.
    run_seqs = [f.fields["seq"] for f in link.written if f.kind == "RUN"]
    assert {f.fields["seq"] for f in needs[:len(needs) // 2]} == {run_seqs[0]}
    session.exit()
    assert link.process.wait(PATIENCE_S) == 0


def test_app_reads_a_host_file_and_checks_its_crc(device, tmp_path):
    link, session = device()
    x = inputs(1)[0]
    path = tmp_path / "input.bin"
    path.write_bytes(x.tobytes())
    result = session.run_pass(x.tobytes(), 0x5A, timeout_s=PATIENCE_S, host_file=str(path))
    assert result.output == stream_model(x).tobytes() and result.status == 0
    assert [f.kind for f in link.written] == ["RUN"] and not kinds(link, "NEED")
    path.write_bytes(bytes(576))                                   # not the input the RUN names
    with pytest.raises(ProtocolError, match="why=crc"):
        session.run_pass(x.tobytes(), 0x5A, timeout_s=PATIENCE_S, host_file=str(path))
    # A file that is not there: NEEDs over the UART after all.
    result = session.run_pass(x.tobytes(), 0x5A, timeout_s=PATIENCE_S, host_file=str(tmp_path / "none.bin"))
    assert result.output == stream_model(x).tobytes()


def test_app_asks_again_after_damaged_or_wrong_data(device):
    count = {"data": 0}

    def damage_data(frame, data):
        if frame.kind != "DATA":
            return data
        count["data"] += 1
        if count["data"] == 2:
            return flip(data, len(data) // 2)                     # fails its CRC
        if count["data"] == 4:                                    # intact, but not the bytes asked for
            fields = dict(frame.fields, off=int(frame.fields["off"]) + 1)
            return encode_frame("DATA", **fields)
        if count["data"] == 6:                                    # intact, one byte short
            fields = dict(frame.fields, hex=frame.fields["hex"][:-2])
            return encode_frame("DATA", **fields)
        return data

    link, session = device(to_device=damage_data)
    x = inputs(1)[0]
    result = session.run_pass(x.tobytes(), 0xA5, timeout_s=PATIENCE_S)
    assert result.status == 0 and result.output == stream_model(x).tobytes()
    needs = kinds(link, "NEED")
    assert len(needs) == len(needs_of(fixture_reads())) + 3
    reqs = [f.int("req") for f in needs]
    assert len(set(reqs)) == len(needs_of(fixture_reads()))      # the repeats are the same NEEDs


@pytest.mark.parametrize("kind, nth, how, runs, pings", [
    ("ACK", 1, "damaged", 2, 0),       # the RUN again: ACK and NEED again (the NEED answered twice)
    ("NEED", 3, "damaged", 1, 1),      # PING: the NEED again
    ("NEED", 3, "lost", 1, 1),         # silence for ack_timeout_s, PING: the NEED again
    ("RESULT", 1, "damaged", 2, 1),    # PING; the device is idle (PONG): the RUN again, all of it
])
def test_damaged_and_lost_lines_to_the_host_are_repaired(device, kind, nth, how, runs, pings):
    seen = {"n": 0}

    def damage_lines(line):
        if line.startswith("@" + kind):
            seen["n"] += 1
            if seen["n"] == nth:
                return line.replace("seq=", "seq:", 1) if how == "damaged" else "line noise"
        return line

    link, session = device(to_host=damage_lines)
    x = inputs(1)[0]
    result = session.run_pass(x.tobytes(), 0xA5, timeout_s=PATIENCE_S)
    assert result.status == 0 and result.output == stream_model(x).tobytes()
    sent = [f.kind for f in link.written]
    assert (sent.count("RUN"), sent.count("PING")) == (runs, pings), sent
    assert len(kinds(link, "PONG")) == (kind == "RESULT")
    assert len(kinds(link, "RESULT")) == 1 + (kind == "RESULT")


def test_app_gives_up_after_its_retries_and_the_model_fails(device):
    link, session = device(to_device=lambda frame, data: flip(data, len(data) // 2)
                           if frame.kind == "DATA" else data)
    x = inputs(1)[0]
    result = session.run_pass(x.tobytes(), 0xA5, timeout_s=PATIENCE_S)
    assert result.status == 1                                     # the fixture's "a read failed"
    needs = kinds(link, "NEED")
    assert len(needs) == NEED_RETRIES + 1 and len({f.int("req") for f in needs}) == 1


def test_a_run_the_host_abandons_ends_without_a_result(device):
    link, session = device()
    x = inputs(1)[0]
    link.write(encode_frame("RUN", seq=40, bytes=576, crc="0", paint="a5"))
    ack = parse_frame(link.read_line(PATIENCE_S))
    need = parse_frame(link.read_line(PATIENCE_S))
    assert (ack.kind, ack.fields["seq"], need.kind, need.fields["seq"]) == ("ACK", "40", "NEED", "40")
    # Instead of the DATA: a new pass. The device leaves the old run and serves it.
    session._seq = 40
    result = session.run_pass(x.tobytes(), 0xA5, timeout_s=PATIENCE_S)
    assert result.output == stream_model(x).tobytes()
    assert [f.fields["seq"] for f in kinds(link, "RESULT")] == ["41"]
    link.write(encode_frame("RUN", seq=50, bytes=576, crc="0", paint="a5"))
    assert parse_frame(link.read_line(PATIENCE_S)).kind == "ACK"
    assert parse_frame(link.read_line(PATIENCE_S)).kind == "NEED"
    session._seq = 50
    session.exit()                                                 # EXIT mid-run: BYE, no RESULT
    assert link.process.wait(PATIENCE_S) == 0
    assert [f.fields["seq"] for f in kinds(link, "RESULT")] == ["41"]
