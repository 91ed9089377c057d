"""Runners: one way each of running firmware and collecting RunResults.

* `qemu`: QEMU's stand-in machines (instructions from -icount);
* `renode`: Renode's model of the real part (the silicon image; virtual time);
* `serial`: the real board on a serial port (flashed, DWT cycles).
"""
from harness.targets.runners.base import PAINTS, RunResult, Runner

__all__ = ["PAINTS", "RUNNER_KINDS", "RunResult", "Runner", "choose_runner", "get_runner",
           "make_runner"]

RUNNER_KINDS = ("qemu", "renode", "serial")


def make_runner(kind: str, board, **options) -> Runner:
    """The runner of `kind` for `board`. Options (None means the default):
    renode: `renode` (path of Renode); serial: `port` (a device, or "auto" /
    None to find the board by USB id), `flash` (False: the board is already
    flashed), `flash_tool`, `probe`. The baud rate is the board file's: the
    firmware is built with it."""
    from harness.errors import FusebenchError

    options = {k: v for k, v in options.items() if v is not None}
    if kind == "qemu":
        from harness.targets.runners.qemu import QemuRunner

        return QemuRunner(board)
    if kind == "renode":
        from harness.targets.runners.renode import RenodeRunner

        return RenodeRunner(board, renode=options.get("renode"))
    if kind == "serial":
        from harness.targets.flash import Flasher, port_for_board
        from harness.targets.runners.serial import SerialRunner

        board.runner("serial")             # a clear error for boards without the table
        port = options.get("port")
        if port in (None, "", "auto"):
            port = port_for_board(board)
        flasher = None
        if options.get("flash", True):
            flasher = Flasher.for_board(board, tool=options.get("flash_tool"),
                                        probe=options.get("probe"))
        return SerialRunner(board, port, flasher=flasher)
    raise FusebenchError(f"unknown runner {kind!r} (known runners: {', '.join(RUNNER_KINDS)})")


def choose_runner(boards, runner=None, port=None) -> str:
    """`invoke bench`'s runner when --runner is not given: serial with --port
    or for boards that have only a serial table (nucleo-*, openmv-h7), else qemu."""
    from harness.errors import FusebenchError

    if runner:
        if runner not in RUNNER_KINDS:
            raise FusebenchError(f"unknown runner {runner!r} (known runners: {', '.join(RUNNER_KINDS)})")
        return runner
    if port:
        return "serial"
    kinds = [{t.kind for t in b.runners} for b in boards]
    if kinds and all("qemu" not in k and "serial" in k for k in kinds):
        return "serial"
    return "qemu"


def get_runner(kind: str, board) -> Runner:
    """The runner of `kind` for `board` with default options."""
    return make_runner(kind, board)
