import shutil
import subprocess
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import TESTS_DIR
from harness.errors import FusebenchError
from harness.targets.protocol import (CorruptFrame, DeviceFault, LinkTimeout, ProtocolError, Session,
                              crc32, encode_body, encode_frame, parse_frame)

ROOT = TESTS_DIR.parent
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
    """Speaks the device side of the protocol like firmware/app/session.c. The
    model reverses the input; tests damage or drop lines to exercise retries.

    With `reads` the model streams its input (READY stream=1): over the UART
    it asks for each (offset, length) piece with NEEDs of at most `chunk`
    bytes while it runs, as stream.c's fb_model_read_input does."""

    def __init__(self, input_bytes=600, chunk=256, reads=None):
        self.input_bytes = input_bytes
        self.chunk = chunk
        self.streamed = reads is not None
        self.needs = [(off + i, min(chunk, n - i)) for off, n in (reads or []) for i in range(0, n, chunk)]
        self.running = False          # a streamed run over the UART is on
        self.req = 0                  # NEED counter, never reset
        self.need_index = 0
        self.run_seq = None
        self.stale_data = 0           # DATA dropped as late answers
        self.compute_pings = 0        # the model computes after its last read until this
                                      # many PINGs came (silence meanwhile)
        self.pings = 0
        self.out: deque[str] = deque()
        self.input = bytearray(input_bytes)
        self.got = 0
        self.expected_crc = 0
        self.damage_answers: list[int] = []    # indices of answers to corrupt
        self.drop_answers: list[int] = []      # indices of answers to lose
        self.damage_commands: list[int] = []   # indices of commands that arrive damaged
        self.drop_commands: list[int] = []     # indices of commands that never arrive
        self.fault_on_run = False
        self.hang_on_run = False
        self.answers = 0
        self.commands = 0
        self.host_files: dict[str, bytes] = {}
        self.log: list[str] = []
        self.say("READY", seq=0, **self.ready_fields())

    def ready_fields(self):
        fields = dict(proto=1, board="fake", model="rev", arena=4096, **{"in": self.input_bytes},
                      out=self.input_bytes, layers=2, timer="systick", stack=16384, chunk=self.chunk)
        if self.streamed:
            fields["stream"] = 1      # an old READY has no stream= at all
        return fields

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
        if index in self.drop_commands:
            return
        if index in self.damage_commands:
            if self.running:
                self.need()               # damaged while waiting for DATA: ask again
            else:
                self.say("NAK", seq=0, why="frame", want=self.got)
            return
        frame = parse_frame(data)
        self.log.append(frame.kind)
        seq = frame.fields["seq"]
        if self.running:
            if frame.kind == "DATA":
                self.take_data(frame)
                return
            if frame.kind == "RUN" and seq == self.run_seq:
                self.say("ACK", seq=seq, got=0)     # the host lost the ACK
                self.need()
                return
            if frame.kind == "PING" and seq == self.run_seq:
                self.pings += 1                     # the host heard nothing for a while
                if self.need_index == len(self.needs):
                    self.compute_pings -= 1
                    self.next_need()
                else:
                    self.need()
                return
            self.running = False          # anything else: the host gave up on the run
        if frame.kind == "RUN" and self.streamed and "file" not in frame.fields:
            self.paint = int(frame.fields["paint"], 16)
            self.run_seq = seq
            self.input[:] = bytes(self.input_bytes)
            self.say("ACK", seq=seq, got=0)
            self.running, self.need_index = True, 0
            self.next_need()
        elif frame.kind == "RUN":
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
        elif frame.kind == "PING":
            self.say("PONG", seq=seq)
        elif frame.kind == "HELLO":
            self.out.clear()
            self.out.append(encode_frame("READY", seq=seq, **self.ready_fields()).decode().rstrip("\n"))

    def next_need(self):
        if self.need_index == len(self.needs):
            if self.compute_pings > 0:
                return                    # computing: silence
            self.running = False
            self.result(self.run_seq, io=4321)
            return
        self.req += 1
        self.need()

    def need(self):
        off, n = self.needs[self.need_index]
        self.say("NEED", seq=self.run_seq, req=self.req, off=off, len=n)

    def take_data(self, frame):
        if self.need_index == len(self.needs) or int(frame.fields["req"]) != self.req or \
                frame.fields["seq"] != self.run_seq:
            self.stale_data += 1          # late: dropped without a word
            return
        off, n = self.needs[self.need_index]
        piece = bytes.fromhex(frame.fields.get("hex", ""))
        if int(frame.fields["off"]) != off or len(piece) != n:
            self.need()                   # not what was asked for
            return
        self.input[off:off + n] = piece
        self.need_index += 1
        self.next_need()

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
        self.result(seq)

    def result(self, seq, **extra):
        self.say("RESULT", seq=seq, status=0, ticks=1000 + self.paint, **extra, arena=3000,
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


def test_old_ready_and_result_without_the_streaming_fields_still_parse():
    device = FakeDevice(input_bytes=16)
    assert "stream=" not in device.out[0]
    session = ready_session(device)
    assert session.info.input_streamed is False
    result = session.run_pass(data_of(16), 0xA5, timeout_s=1.0)
    assert result.io_ticks == 0 and result.output == bytes(reversed(data_of(16)))


# -- streamed input: the device asks for pieces (NEED) while it runs ----------------------------

# Out of order, overlapping, odd-sized, two longer than a NEED: every byte is read.
STREAM_READS = [(300, 300), (0, 50), (17, 333), (299, 1)]
# The NEEDs those reads become (at most 256 bytes each).
STREAM_NEEDS = [(300, 256), (556, 44), (0, 50), (17, 256), (273, 77), (299, 1)]


def data_needs(device):
    """(off, len) of every DATA the host sent, in order."""
    return [(off, len(piece)) for off, piece in device.data_sent]


class RecordingStreamDevice(FakeDevice):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.data_sent = []

    def write(self, data):
        frame = parse_frame(data)          # also the ones that then 'arrive damaged'
        if frame.kind == "DATA":
            self.data_sent.append((int(frame.fields["off"]), bytes.fromhex(frame.fields["hex"])))
        super().write(data)


def stream_device(**kw):
    return RecordingStreamDevice(input_bytes=600, reads=STREAM_READS, **kw)


def test_streamed_pass_answers_every_need_with_the_bytes_asked_for():
    device = stream_device()
    session = ready_session(device)
    assert session.info.input_streamed is True
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert device.log == ["RUN"] + ["DATA"] * len(STREAM_NEEDS)      # no DATA phase before the run
    assert data_needs(device) == STREAM_NEEDS
    assert all(piece == data_of(600)[off:off + len(piece)] for off, piece in device.data_sent)
    assert result.output == bytes(reversed(data_of(600)))
    assert (result.status, result.ticks, result.io_ticks) == (0, 1165, 4321)
    # The next pass numbers its NEEDs on: nothing of the first can pass for the second.
    session.run_pass(data_of(600), 0x5A, timeout_s=1.0)
    assert device.req == 2 * len(STREAM_NEEDS) and device.stale_data == 0


def test_streamed_data_frames_carry_the_runs_seq_and_the_needs_req():
    device = stream_device()
    session = ready_session(device)
    sent = []
    write = device.write
    device.write = lambda data: (sent.append(parse_frame(data)), write(data))
    session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    run, *datas = sent
    assert run.kind == "RUN" and "file" not in run.fields and int(run.fields["crc"], 16) == crc32(data_of(600))
    assert {d.fields["seq"] for d in datas} == {run.fields["seq"]}
    assert [int(d.fields["req"]) for d in datas] == list(range(1, len(STREAM_NEEDS) + 1))


def test_streamed_damaged_lines_either_way_are_repaired():
    device = stream_device()
    # answers: 0 READY, 1 ACK, 2 NEED, 3 NEED, ...; commands: 0 RUN, 1 DATA, 2 DATA, ...
    device.damage_answers = [3]        # a NEED arrives damaged: the host PINGs, the device
                                       # repeats the NEED
    device.damage_commands = [1, 5]    # two DATA arrive damaged: the device asks again
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600)))
    assert device.log.count("RUN") == 1 and device.pings == 1
    assert sorted(set(data_needs(device))) == sorted(set(STREAM_NEEDS))
    assert len(device.data_sent) == len(STREAM_NEEDS) + 2


def test_streamed_damaged_ack_and_damaged_result():
    device = stream_device()
    device.damage_answers = [1]        # the RUN's ACK: RUN again, the device says ACK + NEED again
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600)))
    # Both the first NEED and its repeat are answered; the device drops the late one.
    assert device.stale_data == 1

    device = stream_device()
    device.damage_answers = [1 + 1 + len(STREAM_NEEDS)]   # the RESULT: PING, the device is idle
    session = ready_session(device)                       # (PONG): RUN again, the run is repeated
    result = session.run_pass(data_of(600), 0x5A, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600)))
    assert device.log.count("RUN") == 2 and len(device.data_sent) == 2 * len(STREAM_NEEDS)
    assert device.log.count("PING") == 1


def test_streamed_run_skips_late_frames_of_earlier_commands():
    device = stream_device()
    session = ready_session(device)
    for stale in (encode_frame("NEED", seq=99, req=7, off=0, len=4), encode_frame("ACK", seq=98, got=0),
                  encode_frame("RESULT", seq=97, status=0, ticks=1, arena=0, stack=0, stack_model=0,
                                overflow=0, calls=0, layers="1", out="00")):
        device.out.append(stale.decode().rstrip("\n"))
    device.out.append("boot noise")
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600)))
    assert data_needs(device) == STREAM_NEEDS                         # the stale NEED went unanswered


@pytest.mark.parametrize("off, n", [(590, 20), (600, 1), (0, 0), (0, 257), (-1, 4)])
def test_need_outside_the_input_is_a_protocol_error(off, n):
    device = stream_device()
    device.needs = [(off, n)]
    session = ready_session(device)
    with pytest.raises(ProtocolError, match="asked for input bytes"):
        session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert device.data_sent == []


def test_streamed_silence_is_repaired_with_ping_then_times_out():
    device = stream_device()
    device.drop_answers = [3]          # a NEED lost without a trace (on a serial line: its
    session = ready_session(device)    # newline flipped): after the silence, PING: NEED again
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600))) and device.pings == 1

    device = stream_device()
    device.drop_commands = [2]         # a DATA never arrives: PING, NEED again, DATA again
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600)))
    assert len(device.data_sent) == len(STREAM_NEEDS) + 1 and device.pings == 1

    device = stream_device()
    session = ready_session(device)
    device.drop_answers = list(range(3, 100))   # the line dies after the first NEED
    with pytest.raises(LinkTimeout, match="no NEED or RESULT"):
        session.run_pass(data_of(600), 0xA5, timeout_s=0.2)
    assert device.pings == session.retries

    device = stream_device()
    device.drop_answers = [1, 2]       # the first RUN's ACK and NEED: silence, the RUN is resent
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600))) and device.log.count("RUN") == 2


def test_streamed_device_with_a_host_file_and_the_fallback_to_needs():
    device = stream_device()
    device.host_files["/tmp/in.bin"] = data_of(600)
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0, host_file="/tmp/in.bin")
    assert device.log == ["RUN"] and result.output == bytes(reversed(data_of(600)))
    device.log.clear()
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0, host_file="/tmp/missing.bin")
    assert device.log == ["RUN", "RUN"] + ["DATA"] * len(STREAM_NEEDS)
    assert result.output == bytes(reversed(data_of(600))) and result.io_ticks == 4321


def test_long_computation_after_the_last_read_is_not_an_error():
    device = stream_device()
    device.compute_pings = 3           # silent for three of the host's PINGs
    session = ready_session(device)
    result = session.run_pass(data_of(600), 0xA5, timeout_s=1.0)
    assert result.output == bytes(reversed(data_of(600))) and device.pings == 3

    device = stream_device()
    device.compute_pings = 100         # longer than `retries` PINGs: then just wait
    session = ready_session(device)
    with pytest.raises(LinkTimeout, match="no NEED or RESULT"):
        session.run_pass(data_of(600), 0xA5, timeout_s=0.2)
    assert device.pings == session.retries
