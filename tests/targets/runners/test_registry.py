"""The runner registry: kinds come from the registered classes, and a class
registered anywhere (here: in a test) is a runner like the shipped ones."""
import dataclasses
from fractions import Fraction

import pytest

from harness.errors import FusebenchError
from harness.targets import runners
from harness.targets.boards import load_board
from harness.targets.runners import base
from harness.targets.runners.farm import LabgridRunner
from harness.targets.runners.qemu import QemuRunner
from harness.targets.runners.renode import RenodeRunner
from harness.targets.runners.serial import SerialRunner


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test (its classes stay local)."""
    runners.runner_classes()
    monkeypatch.setattr(base, "_RUNNERS", dict(base._RUNNERS))
    return base._RUNNERS


def test_kinds_are_the_registered_classes():
    assert runners.RUNNER_KINDS == ("labgrid", "qemu", "renode", "serial")
    assert runners.runner_classes() == {"labgrid": LabgridRunner, "qemu": QemuRunner, "renode": RenodeRunner,
                                        "serial": SerialRunner}
    for kind, cls in runners.runner_classes().items():
        assert cls.kind == kind and cls.count_source in runners.COUNT_SOURCES


def test_what_the_classes_say_about_themselves():
    assert not QemuRunner.silicon_image and SerialRunner.silicon_image and RenodeRunner.silicon_image
    assert QemuRunner.parallel_jobs and RenodeRunner.parallel_jobs and not SerialRunner.parallel_jobs
    assert [runners.count_column(c.count_source) for c in (QemuRunner, RenodeRunner, SerialRunner)] == \
        ["instructions", "instructions", "cycles"]
    assert runners.count_column("systick-cycles") == "cycles"
    assert runners.count_column(float("nan")) == "instructions"      # an empty CSV cell


def test_a_runner_class_added_in_a_test_shows_up(registry, tmp_path):
    @runners.register_runner
    class StandIn(base.Runner):
        kind = "standin"
        count_source = "qemu-icount"
        preference = -1                    # preferred over qemu where a board has its table

        @classmethod
        def from_options(cls, board, port=None, **options):
            runner = cls(board)
            runner.options = dict(port=port, **options)
            return runner

        def start(self, binary):
            raise AssertionError("not run here")

        def stop(self):
            pass

    assert runners.RUNNER_KINDS == ("labgrid", "qemu", "renode", "serial", "standin")
    assert runners.runner_class("standin") is StandIn
    board_file = tmp_path / "with-standin.toml"
    board_file.write_text('extends = "stm32h7"\nname = "with-standin"\n[runners.qemu]\n'
                          '[runners.standin]\nhal = "qemu-mps2"\nuart_address = 0x40004000\n'
                          'instructions_per_tick = 40\n')
    board = load_board(board_file)
    made = runners.make_runner("standin", board, port="/dev/x", renode=None, flash=True)
    assert isinstance(made, StandIn) and made.options == {"port": "/dev/x", "flash": True}
    assert runners.choose_runner([board]) == "standin"
    assert runners.choose_runner([load_board("stm32h7")]) == "qemu"
    with pytest.raises(FusebenchError, match=r"unknown runner 'x' \(known runners: labgrid, qemu, renode, serial, standin\)"):
        runners.make_runner("x", board)


def test_a_kind_is_registered_once(registry):
    with pytest.raises(TypeError, match="runner kind 'qemu' is taken by harness.targets.runners.qemu.QemuRunner"):
        @runners.register_runner
        class AnotherQemu(QemuRunner):
            pass


def test_a_runner_option_picks_its_runner(registry):
    h7 = load_board("stm32h7")
    assert runners.choose_runner([h7], port="/dev/ttyACM0") == "serial"
    assert runners.choose_runner([h7], renode="/opt/renode") == "qemu"     # Renode only when asked for
    qemu_only = dataclasses.replace(h7, runners=(h7.runner("qemu"),))
    assert runners.choose_runner([qemu_only, load_board("nucleo-f446re")]) == "qemu"   # they disagree


def test_silicon_runners_count_one_cycle_per_tick_by_default():
    board = load_board("nucleo-h743zi")
    assert board.runner("serial").instructions_per_tick == Fraction(1) == SerialRunner.default_instructions_per_tick
    assert QemuRunner.default_instructions_per_tick is None     # the qemu table must say
