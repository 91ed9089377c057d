"""The invoke command line (tasks.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from invoke import Collection, Program

from harness.errors import FusebenchError
from harness.paths import MODELS_DIR

SMALLEST = MODELS_DIR / "mobilenetv2_w035_64.tflite"


def tasks_collection() -> Collection:
    spec = importlib.util.spec_from_file_location("fusebench_tasks", Path(__file__).parents[1] / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Collection.from_module(module)


def test_every_option_has_a_real_flag():
    """invoke derives short flags from option names, dashes included: none may
    be `-` (it showed as `--=STRING, --patch-end`), and no two may clash."""
    collection = tasks_collection()
    for name in collection.task_names:
        flags = [n for arg in collection[name].get_arguments() for n in arg.names]
        assert "-" not in flags, name
        assert len(flags) == len(set(flags)), name


def test_invoke_run_takes_the_runner_and_its_options(monkeypatch):
    seen = {}
    monkeypatch.setattr("harness.commands.run_command", lambda **kwargs: seen.update(kwargs))
    Program(namespace=tasks_collection()).run(
        ["invoke", "run", "--board", "nucleo-h743zi", "--model", "m", "--runner", "serial",
         "--port", "/dev/ttyACM3", "--flash-tool", "openocd", "--probe", "P1", "--no-flash",
         "--max-inputs", "2"], exit=False)
    assert seen == dict(board="nucleo-h743zi", model="m", variant="unfused", inputs=None, max_inputs=2,
                        timeout=600.0, runner="serial", port="/dev/ttyACM3", renode=None,
                        flash_tool="openocd", probe="P1", no_flash=True, place=None, options={})


@pytest.mark.parametrize("args,message", [
    (["bench", "--max-inputs", "0"], "--max-inputs 0: must be at least 1"),
    (["bench", "--max-inputs", "-1"], "--max-inputs -1: must be at least 1"),
    (["bench", "--max-inputs", "many"], "--max-inputs 'many': expected a whole number"),
    (["bench", "--runs", "0"], "--runs 0: must be at least 1"),
    (["bench", "--timeout", "-5"], "--timeout -5: must be more than 0 seconds"),
    (["run", "--board", "stm32f4", "--max-inputs", "0"], "--max-inputs 0"),
    (["resolution", "--max-inputs", "0"], "--max-inputs 0"),
    (["flash"], "--board: name the board"),
])
def test_bad_counts_are_one_line_before_any_work(monkeypatch, capsys, args, message):
    started = []
    for target in ("harness.commands.bench_command", "harness.commands.run_command",
                   "harness.report.resolution.resolution_sweep", "harness.targets.flash.flash_command"):
        monkeypatch.setattr(target, lambda *a, **k: started.append(1))
    with pytest.raises(SystemExit) as exit_info:
        Program(namespace=tasks_collection()).run(["invoke", *args])
    assert exit_info.value.code == 1 and not started
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_every_task_prints_its_help_with_h(capsys):
    collection = tasks_collection()
    for name in collection.task_names:
        with pytest.raises(SystemExit) as exit_info:
            Program(namespace=collection).run(["invoke", name, "-h"])
        assert exit_info.value.code in (0, None), name
        assert f"{name} [--options]" in capsys.readouterr().out or name == "boards", name


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """A runner kind of the test's own, registered like the shipped ones, and
    a board with its table; builds go to a folder of the test's own."""
    from harness.targets.runners import base, runner_classes

    runner_classes()
    monkeypatch.setattr(base, "_RUNNERS", dict(base._RUNNERS))
    monkeypatch.setattr("harness.report.bench.BUILD_DIR", tmp_path / "build")
    # The host reference is not what this is about: a fixed one.
    monkeypatch.setattr("harness.report.bench.reference_outputs_isolated",
                        lambda path, xs: [np.arange(10, dtype=np.int8) for _ in xs])

    @base.register_runner
    class StandIn(base.Runner):
        kind = "standin"
        count_source = "qemu-icount"
        silicon_image = True
        made = []

        @classmethod
        def from_options(cls, board, **options):
            runner = cls(board)
            runner.options = options
            cls.made.append(runner)
            return runner

        def run(self, binary, inputs, timeout_s=60.0):
            self.binary = binary
            for i, _ in enumerate(inputs):
                yield base.RunResult(status="ok", instructions=4242 + i, count_source=self.count_source,
                                     arena_bytes_peak=100, stack_bytes_peak=50,
                                     output=np.arange(10, dtype=np.int8), input_index=i)

        def start(self, binary):
            raise AssertionError("run() is replaced")

        def stop(self):
            pass

    board = tmp_path / "standin-board.toml"
    board.write_text('extends = "stm32h7"\nname = "standin-board"\n[runners.qemu]\n[runners.standin]\n'
                     'hal = "qemu-mps2"\nuart_address = 0x40004000\n')
    return StandIn, board, tmp_path / "build"


def test_run_uses_the_registry_and_the_runners_image(standin, capsys):
    from harness.commands import run_command

    cls, board, build_dir = standin
    with pytest.raises(FusebenchError, match=r"standin/firmware.elf is not built; run `invoke bench --board "
                                             r".*standin-board.toml .*--runner standin --max-inputs 1` first"):
        run_command(board=str(board), model=str(SMALLEST), runner="standin")
    elf = build_dir / "standin-board" / SMALLEST.stem / "unfused" / "standin" / "firmware.elf"   # its own folder
    elf.parent.mkdir(parents=True)
    elf.write_bytes(b"\x7fELF")
    run_command(board=str(board), model=str(SMALLEST), runner="standin", max_inputs=2, port="/dev/x")
    runner = cls.made[-1]
    assert runner.binary == elf and runner.options == {"port": "/dev/x", "flash": True}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "top1 9 (reference 9" in lines[0] and "bit-exact True; qemu-icount 4242;" in lines[0]
    assert "qemu-icount 4243;" in lines[1]
