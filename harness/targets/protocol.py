"""The framed UART protocol between the host and the measurement firmware.

Every line either way is a frame:

    @<body>#<length>#<crc32>\\n

<body> is printable ASCII without '@' or '#': a kind (`RESULT`) and
space-separated `key=value` fields. <length> is the body's length in decimal,
<crc32> its CRC-32 (zlib.crc32) in 8 lowercase hex digits. A line with a
flipped, dropped or truncated byte fails the checks and raises `CorruptFrame`:
it is never parsed as data. Lines without '@' (boot noise) are not frames.

The conversation (`Session`) is stop-and-wait: one host command, one answer.
Host commands carry `seq=<n>`; the device echoes it, so a late answer to an
earlier command is recognised and skipped. Over QEMU's pipes nothing is ever
lost, but the same code then works over a real serial line, where it is.
See firmware/app/session.c (and stream.c) for the device side.

A model with streamed input (READY `stream=1`) has no input buffer: it asks
for the bytes while it runs. Without a host file there is no DATA phase: the
device ACKs the RUN and runs, sending `NEED req=<r> off=<offset> len=<n>` for
every piece it reads; the host answers `DATA seq=<the RUN's seq> req=<r>
off=<offset> hex=<bytes>` until the RESULT arrives. The RUN's CRC cannot be
checked on the device then: each DATA frame's own CRC protects its bytes.

The numbers both ends must agree on (protocol version, chunk size, ...) are
written once, in the firmware's firmware/app/fb_protocol.h, and read from
there (`read_header_constants`).
"""
from __future__ import annotations

import re
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

from harness.errors import FusebenchError
from harness.paths import FIRMWARE_DIR

PROTOCOL_HEADER = FIRMWARE_DIR / "app" / "fb_protocol.h"

_GUARD = re.compile(r"#(?:ifndef|define) FB_PROTOCOL_H|#endif")
_DEFINE = re.compile(r"#define (FB_[A-Z0-9_]+) (?:([0-9]+)u?|\((-[0-9]+)\))(?: /\*.*\*/)?")


class ProtocolHeaderError(FusebenchError):
    """fb_protocol.h is not what read_header_constants understands."""


def read_header_constants(path: Path = PROTOCOL_HEADER) -> dict[str, int]:
    """The `#define FB_<NAME> <integer>` lines of the protocol header, by name.

    Strict, so that host and firmware cannot silently disagree: apart from the
    include guard, every preprocessor line must be such a define (a decimal
    integer, optionally with a u suffix, or a negative one in parentheses, and
    at most a /* comment */ after it), and no name may be defined twice."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ProtocolHeaderError(f"cannot read the protocol header {path}: {exc.strerror}") from None
    constants: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped.startswith("#") or _GUARD.fullmatch(stripped):
            continue
        match = _DEFINE.fullmatch(stripped)
        if not match:
            raise ProtocolHeaderError(f"{path}:{number}: not '#define FB_<NAME> <integer>': {stripped[:80]!r}")
        name = match.group(1)
        if name in constants:
            raise ProtocolHeaderError(f"{path}:{number}: {name} defined twice")
        constants[name] = int(match.group(2) if match.group(2) is not None else match.group(3))
    return constants


def _firmware_constant(constants: Mapping[str, int], name: str) -> int:
    if name not in constants:
        raise ProtocolHeaderError(f"{PROTOCOL_HEADER}: no '#define {name} <integer>'")
    return constants[name]


_FIRMWARE = read_header_constants()
PROTOCOL_VERSION = _firmware_constant(_FIRMWARE, "FB_PROTOCOL_VERSION")
# fb_model_run()'s status when a streamed model could not read its input
# (FB_MODEL_ERR_INPUT in the generated fb_model.h): the line, not the model.
INPUT_READ_FAILED = _firmware_constant(_FIRMWARE, "FB_INPUT_READ_FAILED")
MAX_CHUNK_BYTES = _firmware_constant(_FIRMWARE, "FB_MAX_CHUNK_BYTES")
# The longest RUN file= path: the device keeps it in the RUN's own line.
MAX_PATH_BYTES = _firmware_constant(_FIRMWARE, "FB_MAX_PATH_BYTES")
# How often the device asks again for one piece of streamed input (NEED).
NEED_RETRIES = _firmware_constant(_FIRMWARE, "FB_NEED_RETRIES")
FRAME_START = "@"

_TRAILER = re.compile(r"#(\d{1,9})#([0-9a-f]{8})$")
_KIND = re.compile(r"[A-Z][A-Z0-9_]*")
_FORBIDDEN = re.compile(r"[^\x21-\x7e]|[@#=]")   # values: printable, no space/@/#/=


class ProtocolError(FusebenchError):
    """The device did not follow the protocol."""


class CorruptFrame(ProtocolError):
    """A line that is a frame (or the remains of one) but fails its checks."""

    def __init__(self, line: str, reason: str):
        self.line = line
        self.reason = reason
        super().__init__(f"corrupt frame ({reason}): {line[:120]!r}")


class LinkTimeout(ProtocolError):
    """No line arrived in time."""


class LinkClosed(ProtocolError):
    """The other end went away (the emulator exited, the port closed)."""


class DeviceFault(ProtocolError):
    """The firmware reported a fault (FAULT frame) and stopped."""

    def __init__(self, frame: "Frame"):
        self.frame = frame
        regs = {k: int(v, 16) for k, v in frame.fields.items() if v.startswith("0x")}
        self.registers = regs
        self.exception = int(frame.fields.get("exc", "0"))
        super().__init__(f"firmware fault (exception {self.exception}) at pc={regs.get('pc', 0):#010x}")


@dataclass(frozen=True)
class Frame:
    kind: str
    fields: Mapping[str, str]
    body: str

    def int(self, key: str) -> int:
        try:
            value = self.fields[key]
            return int(value, 16) if value.startswith("0x") else int(value)
        except (KeyError, ValueError):
            raise ProtocolError(f"{self.kind} frame without a valid {key}: {self.body[:120]!r}") from None

    def hex_bytes(self, key: str) -> bytes:
        try:
            return bytes.fromhex(self.fields.get(key, ""))
        except ValueError:
            raise ProtocolError(f"{self.kind} frame with bad hex in {key}") from None


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_body(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"@%s#%d#%08x\n" % (raw, len(raw), crc32(raw))


def encode_frame(kind: str, **fields: object) -> bytes:
    """`encode_frame("RUN", bytes=64, crc="0x1234abcd")` -> b'@RUN bytes=64 ...#n#crc\\n'."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"bad frame kind {kind!r}")
    parts = [kind]
    for key, value in fields.items():
        text = str(value)
        if not text or _FORBIDDEN.search(key) or _FORBIDDEN.search(text):
            raise ValueError(f"field {key}={text!r} cannot be framed")
        parts.append(f"{key}={text}")
    return encode_body(" ".join(parts))


def parse_frame(line: str | bytes) -> Frame | None:
    """The frame on `line`, None if the line is not a frame at all (noise).

    Raises CorruptFrame when the line is or ends like a frame but its length,
    checksum or layout is wrong."""
    if isinstance(line, bytes):
        line = line.decode("latin-1")
    line = line.rstrip("\r\n")
    start = line.rfind(FRAME_START)
    if start < 0:
        # A frame whose start was lost still ends in its trailer: not noise.
        if _TRAILER.search(line):
            raise CorruptFrame(line, "start lost")
        return None
    # Like the device, take the last '@': anything before it is noise or a
    # frame cut short, which then fails as a missing frame (timeout).
    text = line[start + 1:]
    match = _TRAILER.search(text)
    if not match:
        raise CorruptFrame(line, "no length/checksum trailer")
    body = text[:match.start()]
    if int(match.group(1)) != len(body.encode("latin-1")):
        raise CorruptFrame(line, f"length {match.group(1)} but body has {len(body)} bytes")
    if int(match.group(2), 16) != crc32(body.encode("latin-1")):
        raise CorruptFrame(line, "checksum mismatch")
    kind, _, rest = body.partition(" ")
    if not _KIND.fullmatch(kind):
        raise CorruptFrame(line, f"bad kind {kind!r}")
    fields: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise CorruptFrame(line, f"bad field {token[:40]!r}")
        fields[key] = value
    return Frame(kind, fields, body)


class Link(Protocol):
    """A byte pipe to the device: QEMU's stdio, a socket, a serial port."""

    def write(self, data: bytes) -> None: ...

    def read_line(self, timeout_s: float) -> str:
        """The next line (without newline); LinkTimeout / LinkClosed otherwise."""
        ...


@dataclass(frozen=True)
class DeviceInfo:
    """What the firmware announced in READY."""
    board: str
    model: str
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    num_layers: int
    timer: str
    stack_bytes: int
    chunk_bytes: int
    input_streamed: bool = False  # READY stream=1: the model asks for its input as it runs


@dataclass(frozen=True)
class PassResult:
    """One run of the model with one paint byte."""
    paint: int
    status: int                  # fb_model_run's return value
    ticks: int                   # time counter ticks around fb_model_run
    arena_bytes_peak: int
    stack_bytes_peak: int        # from the top of the stack
    stack_bytes_model: int       # below the SP at the call of fb_model_run
    stack_overflow: bool
    layer_calls: int
    layer_ticks: tuple[int, ...]
    output: bytes
    io_ticks: int = 0            # spent reading streamed input; not in ticks or layer_ticks


@dataclass
class Session:
    """The host side of the conversation with one running firmware."""
    link: Link
    ack_timeout_s: float = 10.0
    retries: int = 4
    history: deque = field(default_factory=lambda: deque(maxlen=20))
    info: DeviceInfo | None = None
    _seq: int = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _read_frame(self, timeout_s: float) -> Frame | None:
        """The next frame; None for noise. FAULT raises DeviceFault."""
        line = self.link.read_line(timeout_s)
        self.history.append(line)
        frame = parse_frame(line)
        if frame is not None and frame.kind == "FAULT":
            raise DeviceFault(frame)
        return frame

    def _answer(self, seq: int, timeout_s: float) -> Frame:
        """The device's answer to command `seq`, skipping noise and late
        answers to earlier commands. Raises LinkTimeout, CorruptFrame."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout(f"no answer to command {seq} within {timeout_s:g} s")
            frame = self._read_frame(remaining)
            if frame is None:
                continue
            if frame.fields.get("seq") == str(seq) or (
                    frame.kind == "NAK" and frame.fields.get("why") == "frame"):
                return frame

    def _command(self, kind: str, timeout_s: float | None = None, **fields: object) -> Frame:
        """Send a command and return its answer, resending on silence or a
        corrupt answer (commands are idempotent on the device)."""
        timeout_s = self.ack_timeout_s if timeout_s is None else timeout_s
        seq = self._next_seq()
        data = encode_frame(kind, seq=seq, **fields)
        for attempt in range(self.retries + 1):
            self.link.write(data)
            try:
                answer = self._answer(seq, timeout_s)
            except (LinkTimeout, CorruptFrame):
                if attempt == self.retries:
                    raise
                continue
            if answer.kind == "NAK" and answer.fields.get("why") == "frame" and attempt < self.retries:
                continue   # our frame arrived damaged: send it again
            return answer
        raise AssertionError("unreachable")

    def wait_ready(self, timeout_s: float) -> DeviceInfo:
        """Wait for the READY the firmware prints at boot."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout(f"no READY within {timeout_s:g} s")
            try:
                frame = self._read_frame(remaining)
            except CorruptFrame:
                # The READY itself may be the damaged line: ask for it again.
                self.link.write(encode_frame("HELLO", seq=self._next_seq()))
                continue
            if frame is not None and frame.kind == "READY":
                self.info = _device_info(frame)
                return self.info

    def run_pass(self, data: bytes, paint: int, timeout_s: float,
                 host_file: str | None = None) -> PassResult:
        """Send one input with the paint byte, run the model once, return the
        RESULT. `timeout_s` bounds the model run (transfers use ack_timeout_s).

        With `host_file` (a file holding exactly `data`, readable by the
        emulator) the device reads the input from there instead of over the
        UART; if it cannot (NAK why=file), the UART is used after all.
        A device with streamed input gets no DATA phase over the UART: it
        asks for pieces of `data` (NEED) while it runs (`_streamed_pass`)."""
        info = self.info
        if info is None:
            raise ProtocolError("run_pass before READY")
        if len(data) != info.input_bytes:
            raise FusebenchError(f"input has {len(data)} bytes, model {info.model} expects "
                                 f"{info.input_bytes}")
        run_fields: dict[str, object] = dict(bytes=len(data), crc=f"{crc32(data):08x}",
                                             paint=f"{paint:02x}")
        if host_file is not None:
            if len(host_file) > MAX_PATH_BYTES:
                raise FusebenchError(f"input file path longer than {MAX_PATH_BYTES}: {host_file}")
            answer = self._command("RUN", **run_fields, file=host_file)
            if answer.kind == "NAK" and answer.fields.get("why") == "file":
                host_file = None          # no host file system here: use the UART
            else:
                _expect_ack(answer, len(data))
        if host_file is None:
            if info.input_streamed:
                return self._streamed_pass(data, paint, timeout_s, run_fields)
            answer = self._command("RUN", **run_fields)
            _expect_ack(answer, 0)
        chunk = min(info.chunk_bytes, MAX_CHUNK_BYTES)
        got = 0 if host_file is None else len(data)
        naks = 0
        while got < len(data):
            answer = self._command("DATA", off=got, hex=data[got:got + chunk].hex())
            if answer.kind == "NAK":
                naks += 1
                if answer.fields.get("why") == "crc" or naks > self.retries:
                    raise ProtocolError(f"device rejected the input: {answer.body}")
                got = answer.int("want")
                continue
            if answer.kind == "RESULT":          # the last ACK was lost; the run is done
                return _pass_result(answer, paint)
            _expect_ack(answer, None)
            got = answer.int("got")
        # After the last ACK the device checks the CRC and runs the model; its
        # RESULT answers the last DATA command (or the RUN, for a host file).
        while True:
            frame = self._answer(self._seq, timeout_s)
            if frame.kind == "RESULT":
                return _pass_result(frame, paint)
            if frame.kind == "NAK" and frame.fields.get("why") != "frame":
                raise ProtocolError(f"device rejected the input: {frame.body}")

    def _streamed_pass(self, data: bytes, paint: int, timeout_s: float,
                       run_fields: Mapping[str, object]) -> PassResult:
        """RUN, then answer the device's NEEDs with pieces of `data` until its
        RESULT. Every frame of the run carries the RUN's seq.

        Until the device answers the RUN (ACK or NEED), the RUN is resent
        after a damaged line or ack_timeout_s of silence, as any command.
        After, a damaged line or ack_timeout_s of silence gets a PING with the
        RUN's seq: a device waiting for DATA repeats its NEED, an idle one
        answers PONG (its RESULT was lost) and we send the RUN again: the run
        is repeated. At most `retries` of these in a row; then, or when the
        model is simply computing, `timeout_s` bounds the silence between two
        frames of the run."""
        info = self.info
        seq = self._next_seq()
        run = encode_frame("RUN", seq=seq, **run_fields)
        ping = encode_frame("PING", seq=seq)
        limit = min(info.chunk_bytes, MAX_CHUNK_BYTES)
        self.link.write(run)
        repairs = 0                       # since the last good frame of this run
        quiet_until = time.monotonic() + self.ack_timeout_s
        give_up_at: float | None = None   # set once the device answered the RUN

        def repair(reason: Exception | None = None) -> None:
            nonlocal repairs, quiet_until
            if repairs >= self.retries:
                if reason is not None:
                    raise reason
                if give_up_at is None:
                    raise LinkTimeout(f"no answer to command {seq} within {self.ack_timeout_s:g} s")
                quiet_until = give_up_at  # the model may just be computing: wait
                return
            repairs += 1
            self.link.write(run if give_up_at is None else ping)
            quiet_until = time.monotonic() + self.ack_timeout_s

        while True:
            now = time.monotonic()
            if give_up_at is not None and now >= give_up_at:
                raise LinkTimeout(f"no NEED or RESULT for command {seq} within {timeout_s:g} s")
            if now >= quiet_until:
                repair()
                continue
            try:
                frame = self._read_frame(min(quiet_until, give_up_at or quiet_until) - now)
            except LinkTimeout:
                continue                      # the deadlines decide
            except CorruptFrame as exc:
                repair(exc)
                continue
            if frame is None:
                continue
            if frame.kind == "NAK" and frame.fields.get("why") == "frame":
                if give_up_at is None:        # our RUN arrived damaged
                    repair(ProtocolError(f"command {seq} kept arriving damaged"))
                continue
            if frame.fields.get("seq") != str(seq):
                continue                      # a late answer to an earlier command
            if frame.kind == "RESULT":
                return _pass_result(frame, paint)
            if frame.kind == "ACK":
                _expect_ack(frame, 0)
            elif frame.kind == "NEED":
                req, off, n = frame.int("req"), frame.int("off"), frame.int("len")
                if n <= 0 or n > limit or off < 0 or off + n > len(data):
                    raise ProtocolError(f"device asked for input bytes [{off}, {off + n}) of "
                                        f"{len(data)} (at most {limit} at a time): {frame.body[:120]}")
                self.link.write(encode_frame("DATA", seq=seq, req=req, off=off,
                                             hex=data[off:off + n].hex()))
            elif frame.kind == "PONG":
                # The device is idle: the run ended and its RESULT was lost. Again.
                if repairs >= self.retries:
                    raise ProtocolError(f"the RESULT of command {seq} kept getting lost")
                repairs += 1
                self.link.write(run)
                continue
            elif frame.kind == "NAK" and frame.fields.get("why") != "command":
                raise ProtocolError(f"device rejected the input: {frame.body}")
            else:
                continue
            repairs = 0
            now = time.monotonic()
            give_up_at = now + timeout_s
            quiet_until = now + self.ack_timeout_s

    def exit(self) -> None:
        """Ask the firmware to end the run (the emulator then quits)."""
        answer = self._command("EXIT")
        if answer.kind != "BYE":
            raise ProtocolError(f"expected BYE, got {answer.body}")


def _expect_ack(frame: Frame, got: int | None) -> None:
    if frame.kind == "NAK":
        raise ProtocolError(f"device refused: {frame.body}")
    if frame.kind != "ACK" or (got is not None and frame.int("got") != got):
        raise ProtocolError(f"expected ACK, got {frame.body[:120]}")


def _device_info(frame: Frame) -> DeviceInfo:
    proto = frame.int("proto")
    if proto != PROTOCOL_VERSION:
        raise ProtocolError(f"firmware speaks protocol {proto}, host {PROTOCOL_VERSION}")
    return DeviceInfo(board=frame.fields.get("board", ""), model=frame.fields.get("model", ""),
                      arena_bytes=frame.int("arena"), input_bytes=frame.int("in"),
                      output_bytes=frame.int("out"), num_layers=frame.int("layers"),
                      timer=frame.fields.get("timer", ""), stack_bytes=frame.int("stack"),
                      chunk_bytes=frame.int("chunk"),
                      input_streamed="stream" in frame.fields and frame.int("stream") != 0)


def _pass_result(frame: Frame, paint: int) -> PassResult:
    layers = frame.fields.get("layers", "")
    try:
        layer_ticks = tuple(int(t) for t in layers.split(",")) if layers else ()
    except ValueError:
        raise ProtocolError(f"RESULT with bad layers field {layers[:60]!r}") from None
    return PassResult(paint=paint, status=frame.int("status"), ticks=frame.int("ticks"),
                      arena_bytes_peak=frame.int("arena"), stack_bytes_peak=frame.int("stack"),
                      stack_bytes_model=frame.int("stack_model"),
                      stack_overflow=bool(frame.int("overflow")), layer_calls=frame.int("calls"),
                      layer_ticks=layer_ticks, output=frame.hex_bytes("out"),
                      io_ticks=frame.int("io") if "io" in frame.fields else 0)
