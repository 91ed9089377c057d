import shutil
import subprocess
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import FusebenchError
from harness.protocol import (CorruptFrame, DeviceFault, LinkTimeout, ProtocolError, Session,
                              crc32, encode_body, encode_frame, parse_frame)

ROOT = Path(__file__).resolve().parent.parent
FRAME = encode_frame("RESULT", seq=7, status=0, ticks=1083, out="be0a7f80")


def test_round_trip():
    frame = parse_frame(FRAME)
    assert frame.kind == "RESULT"
    assert dict(frame.fields) == {"seq": "7", "status": "0", "ticks": "1083", "out": "be0a7f80"}
    assert frame.int("ticks") == 1083
    assert frame.hex_bytes("out") == bytes([0xBE, 0x0A, 0x7F, 0x80])
    body = b"RESULT seq=7 status=0 ticks=1083 out=be0a7f80"
    assert FRAME == b"@" + body + b"#%d#%08x\n" % (len(body), crc32(body))


_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="@#="),
                  min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(kind=st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True),
       fields=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _values, max_size=6))
def test_round_trip_any_fields(kind, fields):
    frame = parse_frame(encode_frame(kind, **fields))
    assert frame.kind == kind and dict(frame.fields) == fields


def test_noise_is_not_a_frame_and_noise_before_a_frame_is_skipped():
    assert parse_frame("qemu-system-arm: warning: nic lan9118.0 has no peer") is None
    assert parse_frame("") is None
    assert parse_frame(b"\x00\xffjunk" + FRAME).kind == "RESULT"


def test_unframeable_values_are_refused():
    for bad in ("has space", "a#b", "x@y", "k=v", ""):
        with pytest.raises(ValueError):
            encode_frame("RUN", file=bad)


def corrupt_variants(frame: bytes):
    """Every line with one byte flipped, one byte dropped, or cut short."""
    line = frame.rstrip(b"\n")
    for i in range(len(line)):
        for flip in (0x01, 0x20, 0x80):
            yield line[:i] + bytes([line[i] ^ flip]) + line[i + 1:]
        yield line[:i] + line[i + 1:]
        if i:
            yield line[:i]


def test_every_flipped_dropped_or_truncated_byte_is_detected():
    count = 0
    for variant in corrupt_variants(FRAME):
        with pytest.raises(CorruptFrame):
            parse_frame(variant)
        count += 1
    assert count > 200


def test_corrupt_frame_reasons():
    body = b"ACK seq=1 got=0"
    good = encode_body(body.decode())
    with pytest.raises(CorruptFrame, match="checksum"):
        parse_frame(good.replace(b"got=0", b"got=8"))
    with pytest.raises(CorruptFrame, match="length"):
        parse_frame(good.replace(b"got=0", b"got=00"))
    with pytest.raises(CorruptFrame, match="start lost"):
        parse_frame(good[1:])
    with pytest.raises(CorruptFrame, match="trailer"):
        parse_frame(good[:-5])


# -- the C side of the framing, built for the host ---------------------------------------------

@pytest.fixture(scope="module")
def frame_host(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path_factory.mktemp("frame_host") / "frame_host"
    subprocess.run([cc, "-O1", "-Wall", "-Werror", "-std=c11",
                    f"-I{ROOT / 'firmware/app'}", f"-I{ROOT / 'firmware/hal'}",
                    str(ROOT / "tests/fixtures/firmware/host/frame_host.c"),
                    str(ROOT / "firmware/app/frame.c"), "-o", str(exe)], check=True)
    return exe


def c_read(exe, data: bytes) -> list[tuple[int, str]]:
    out = subprocess.run([str(exe), "read"], input=data, capture_output=True, check=True).stdout
    results = []
    for line in out.decode().splitlines():
        code, _, rest = line.partition(" ")
        results.append((int(code), rest))
    return results


def test_c_writer_frames_parse_in_python(frame_host):
    out = subprocess.run([str(frame_host), "write"], capture_output=True, check=True).stdout
    frame = parse_frame(out)
    assert frame.kind == "RESULT"
    assert frame.int("status") == -3
    assert frame.int("ticks") == 12345678901234
    assert frame.int("pc") == 0xDEADBEEF
    assert frame.fields["model"] == "a_b_c_d_e"        # made frame-safe on the device
    assert frame.fields["layers"] == "1,22,4000000000" and frame.fields["none"] == ""
    assert frame.hex_bytes("out") == bytes([0, 1, 0x7F, 0x80, 0xFF])


def test_c_reader_accepts_python_frames(frame_host):
    data = encode_frame("DATA", seq=3, off=256, hex="00ff") + encode_frame("EXIT", seq=4)
    assert c_read(frame_host, data) == [(len("DATA seq=3 off=256 hex=00ff"), "DATA seq=3 off=256 hex=00ff|1 256"),
                                        (len("EXIT seq=4"), "EXIT seq=4|0 0")]


def test_c_reader_rejects_every_corruption(frame_host):
    frame = encode_frame("DATA", seq=3, off=0, hex="a5a5")
    variants = [v for v in corrupt_variants(frame) if v.startswith(b"@") and b"@" not in v[1:]]
    # One line per variant; a cut-short line must not swallow the next good frame.
    stream = b"".join(v + b"\n" for v in variants)
    results = c_read(frame_host, stream)
    assert len(results) == len(variants)
    assert all(code < 0 for code, _ in results)
    cut = frame[:10]            # no newline: the next '@' starts over
    assert c_read(frame_host, cut + frame) == [(25, "DATA seq=3 off=0 hex=a5a5|1 0")]


# -- the conversation, against a device simulated in Python -------------------------------------

class FakeDevice:
    """Speaks the device side of the protocol like firmware/app/main.c. The
    model reverses the input; tests damage or drop lines to exercise retries."""

    def __init__(self, input_bytes=600, chunk=256):
        self.input_bytes = input_bytes
        self.chunk = chunk
        self.out: deque[str] = deque()
        self.input = bytearray(input_bytes)
        self.got = 0
        self.expected_crc = 0
        self.damage_answers: list[int] = []    # indices of answers to corrupt
        self.drop_answers: list[int] = []      # indices of answers to lose
        self.damage_commands: list[int] = []   # indices of commands that arrive damaged
        self.fault_on_run = False
        self.hang_on_run = False
        self.answers = 0
        self.commands = 0
        self.host_files: dict[str, bytes] = {}
        self.log: list[str] = []
        self.say("READY", seq=0, proto=1, board="fake", model="rev", arena=4096,
                 **{"in": input_bytes}, out=input_bytes, layers=2, timer="systick",
                 stack=16384, chunk=chunk)

    def say(self, kind, **fields):
        line = encode_frame(kind, **fields).decode().rstrip("\n")
        index = self.answers
        self.answers += 1
        if index in self.drop_answers:
            return
        if index in self.damage_answers:
            line = line.replace("=", ":", 1)
        self.out.append(line)

    def write(self, data: bytes) -> None:
        index = self.commands
        self.commands += 1
        if index in self.damage_commands:
            self.say("NAK", seq=0, why="frame", want=self.got)
            return
        frame = parse_frame(data)
        self.log.append(frame.kind)
        seq = frame.fields["seq"]
        if frame.kind == "RUN":
            self.expected_crc = int(frame.fields["crc"], 16)
            self.paint = int(frame.fields["paint"], 16)
            self.got = 0
            if "file" in frame.fields:
                if frame.fields["file"] not in self.host_files:
                    self.say("NAK", seq=seq, why="file", want=0)
                    return
                self.input[:] = self.host_files[frame.fields["file"]]
                self.got = self.input_bytes
                self.say("ACK", seq=seq, got=self.got)
                self.finish(seq)
                return
            self.say("ACK", seq=seq, got=0)
        elif frame.kind == "DATA":
            off = int(frame.fields["off"])
            piece = bytes.fromhex(frame.fields["hex"])
            if off > self.got:
                self.say("NAK", seq=seq, why="data", want=self.got)
                return
            self.input[off:off + len(piece)] = piece
            self.got = max(self.got, off + len(piece))
            self.say("ACK", seq=seq, got=self.got)
            if self.got == self.input_bytes:
                self.finish(seq)
        elif frame.kind == "EXIT":
            self.say("BYE", seq=seq)
        elif frame.kind == "HELLO":
            self.out.clear()
            self.out.append(encode_frame("READY", seq=seq, proto=1, board="fake", model="rev",
                                         arena=4096, **{"in": self.input_bytes},
                                         out=self.input_bytes, layers=2, timer="systick",
                                         stack=16384, chunk=self.chunk).decode().rstrip("\n"))

    def finish(self, seq):
        if crc32(bytes(self.input)) != self.expected_crc:
            self.say("NAK", seq=seq, why="crc", want=0)
            return
        if self.hang_on_run:
            return
        if self.fault_on_run:
            self.out.append(encode_frame("FAULT", exc=3, pc="0x0000deac", lr="0x000015fb",
                                         cfsr="0x00020000").decode().rstrip("\n"))
            return
        self.say("RESULT", seq=seq, status=0, ticks=1000 + self.paint, arena=3000,
                 stack=600 if self.paint == 0xA5 else 640, stack_model=500, overflow=0, calls=2,
                 layers="400,600", out=bytes(reversed(self.input)).hex())

    def read_line(self, timeout_s: float) -> str:
        if not self.out:
            raise LinkTimeout("nothing more")
        return self.out.popleft()


def data_of(n):
    return bytes((i * 37 + 11) & 0xFF for i in range(n))


def ready_session(device, **kw):
    session = Session(device, ack_timeout_s=0.01, **kw)
    info = session.wait_ready(1.0)
    assert (info.input_bytes, info.chunk_bytes, info.board) == (device.input_bytes, device.chunk, "fake")
    return session


def test_pass_over_the_uart_in_chunks():
    device = FakeDevice(input_bytes=600)
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert device.log == ["RUN", "DATA", "DATA", "DATA"]       # 256 + 256 + 88 bytes
    assert result.output == bytes(reversed(data_of(600)))
    assert (result.status, result.ticks, result.arena_bytes_peak, result.layer_ticks) == (0, 1165, 3000, (400, 600))
    session.exit()
    assert device.log[-1] == "EXIT"


def test_damaged_and_lost_lines_are_resent():
    device = FakeDevice(input_bytes=600)
    # answers: 0 READY, 1 ACK(RUN), 2 ACK(DATA 0), ...
    device.damage_answers = [2]        # ACK of the first chunk arrives corrupt
    device.drop_answers = [4]          # ACK of the second chunk is lost
    device.damage_commands = [3]       # one DATA arrives damaged: NAK why=frame
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0x5A, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600)))
    assert device.log.count("DATA") > 3


def test_stale_answers_to_earlier_commands_are_skipped():
    device = FakeDevice(input_bytes=16)
    session = ready_session(device)
    device.out.append(encode_frame("ACK", seq=99, got=5).decode().rstrip("\n"))
    device.out.append("some noise from the emulator")
    result = session.run_pass(data_of(16), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(16)))


def test_host_file_and_fallback_to_the_uart():
    device = FakeDevice(input_bytes=600)
    device.host_files["/tmp/in.bin"] = data_of(600)
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0, host_file="/tmp/in.bin")
    assert device.log == ["RUN"] and result.output == bytes(reversed(data_of(600)))
    device.log.clear()
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0, host_file="/tmp/missing.bin")
    assert device.log == ["RUN", "RUN", "DATA", "DATA", "DATA"]
    assert result.output == bytes(reversed(data_of(600)))


def test_fault_and_hang_and_wrong_size():
    device = FakeDevice(input_bytes=16)
    session = ready_session(device)
    device.fault_on_run = True
    with pytest.raises(DeviceFault) as info:
        session.run_pass(data_of(16), 0xA5, timeout_s=1.0)
    assert info.value.registers["pc"] == 0xDEAC and info.value.exception == 3
    device.fault_on_run, device.hang_on_run = False, True
    with pytest.raises(LinkTimeout):
        session.run_pass(data_of(16), 0xA5, timeout_s=0.05)
    with pytest.raises(FusebenchError, match="input has 15 bytes"):
        session.run_pass(data_of(15), 0xA5, timeout_s=1.0)


def test_damaged_ready_is_asked_for_again():
    device = FakeDevice(input_bytes=16)
    device.out[0] = device.out[0].replace("proto=1", "proto=2")   # CRC no longer matches
    session = Session(device, ack_timeout_s=0.01)
    assert session.wait_ready(1.0).input_bytes == 16
    assert device.log == ["HELLO"]
