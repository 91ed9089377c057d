"""A stand-in for the `renode` command, for the runner's process handling.

It does what the runner relies on Renode doing, and nothing more: takes
`--disable-xwt --plain --port N script.resc`, reads the script, creates the
console pseudo-terminal at the path of `CreateUartPtyTerminal`, answers the
Monitor's `quit` on port N, and plays a device on the console: the copy model
of tests/fixtures/firmware/copy (out[i] = 3 * in[63 - i] + 1) with a made-up
tick count. FAKE_RENODE_MODE: "ok", "hang" (ACKs the input, never answers
after it) or "deaf" (like hang, and ignores `quit`: only a kill ends it).
FAKE_RENODE_RECORD names a file that gets one JSON line per start.
"""
import json
import os
import re
import socket
import sys
import threading
import tty

from harness.targets.protocol import crc32, encode_frame, parse_frame, CorruptFrame

TICKS = 12345


def monitor(port: int, mode: str) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1)
    while True:
        conn, _ = server.accept()
        data = b""
        while True:
            chunk = conn.recv(1024)
            if not chunk:
                break
            data += chunk
            if b"quit" in data and mode != "deaf":
                conn.sendall(b"Renode is quitting\n")
                os._exit(0)


def device(fd: int, mode: str) -> None:
    def send(kind, **fields):
        os.write(fd, encode_frame(kind, **fields))

    def ready(seq):
        send("READY", seq=seq, proto=1, board="stm32h7", model="fixture-copy", arena=4096, **{"in": 64},
             out=64, layers=1, timer="cycles", stack=16384, chunk=256)

    ready(0)
    buffer = b""
    data = bytearray(64)
    expected = None
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            try:
                frame = parse_frame(line)
            except CorruptFrame:
                send("NAK", seq=0, why="frame", want=0)
                continue
            if frame is None:
                continue
            seq = frame.fields.get("seq", "0")
            if frame.kind == "HELLO":
                ready(seq)
            elif frame.kind == "RUN":
                expected = int(frame.fields["crc"], 16)
                send("ACK", seq=seq, got=0)
            elif frame.kind == "DATA":
                off = int(frame.fields["off"])
                chunk_bytes = bytes.fromhex(frame.fields["hex"])
                data[off:off + len(chunk_bytes)] = chunk_bytes
                got = off + len(chunk_bytes)
                send("ACK", seq=seq, got=got)
                if got == 64 and mode == "ok":
                    assert crc32(bytes(data)) == expected
                    out = bytes((3 * data[63 - i] + 1) & 0xFF for i in range(64))
                    send("RESULT", seq=seq, status=0, ticks=TICKS, arena=3000, stack=600,
                         stack_model=500, overflow=0, calls=1, layers=TICKS, out=out.hex())
            elif frame.kind == "EXIT":
                send("BYE", seq=seq)


def main() -> None:
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    script = open(args[-1]).read()
    mode = os.environ.get("FAKE_RENODE_MODE", "ok")
    pty_path = re.search(r'CreateUartPtyTerminal "\w+" "([^"]+)"', script).group(1)
    elf = re.search(r"sysbus LoadELF @(\S+)", script).group(1)
    record = os.environ.get("FAKE_RENODE_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "argv": args, "elf_exists": os.path.isfile(elf),
                                "script": script}) + "\n")
    master, slave = os.openpty()
    tty.setraw(slave)
    os.symlink(os.ttyname(slave), pty_path)
    threading.Thread(target=monitor, args=(port, mode), daemon=True).start()
    device(master, mode)
    threading.Event().wait()


if __name__ == "__main__":
    main()
