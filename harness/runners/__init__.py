"""Runners: one way each of running firmware and collecting RunResults."""
from harness.runners.base import PAINTS, RunResult, Runner

__all__ = ["PAINTS", "RunResult", "Runner", "get_runner"]


def get_runner(kind: str, board) -> Runner:
    """The runner of `kind` ('qemu') for `board`."""
    from harness.errors import FusebenchError

    if kind == "qemu":
        from harness.runners.qemu import QemuRunner

        return QemuRunner(board)
    raise FusebenchError(f"unknown runner {kind!r} (known runners: qemu)")
