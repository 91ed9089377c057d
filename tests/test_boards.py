from fractions import Fraction

import pytest

from harness.boards import Board, MemoryRegion, list_boards, load_board
from harness.errors import FusebenchError


def test_list_boards_has_both_targets():
    assert {"stm32h7", "stm32f4"} <= set(list_boards())


def test_stm32h7_is_the_h743_run_on_mps2_an500():
    board = load_board("stm32h7")
    assert isinstance(board, Board)
    assert (board.core, board.fpu, board.clock_hz) == ("cortex-m7", "fpv5-d16", 480_000_000)
    assert board.flash == MemoryRegion(0x08000000, 2 * 1024 * 1024)
    assert board.ram == MemoryRegion(0x24000000, 512 * 1024)
    qemu = board.runner("qemu")
    assert qemu.machine == "mps2-an500"
    assert qemu.uart_address == 0x40004000
    assert qemu.instructions_per_tick == Fraction(40)
    # Linked where mps2-an500 has memory, with the H743's sizes.
    assert qemu.flash == MemoryRegion(0x0, 2 * 1024 * 1024)
    assert qemu.ram == MemoryRegion(0x20000000, 512 * 1024)
    assert board.cpu_flags == ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard")


def test_stm32f4_is_the_f405_run_on_netduinoplus2():
    board = load_board("stm32f4")
    assert (board.core, board.fpu, board.clock_hz) == ("cortex-m4", "fpv4-sp-d16", 168_000_000)
    assert board.flash == MemoryRegion(0x08000000, 1024 * 1024)
    assert board.ram == MemoryRegion(0x20000000, 128 * 1024)
    qemu = board.runner("qemu")
    assert qemu.machine == "netduinoplus2"
    assert qemu.uart_address == 0x40011000
    assert qemu.serial_index == 0
    assert qemu.instructions_per_tick == Fraction(125, 21)
    assert qemu.flash == board.flash and qemu.ram == board.ram   # QEMU maps the real addresses


def test_boards_are_frozen_and_hashable():
    board = load_board("stm32f4")
    with pytest.raises(AttributeError):
        board.clock_hz = 1      # type: ignore[misc]
    assert {board, load_board("stm32f4")} == {board}


def test_unknown_board_lists_known_ones():
    with pytest.raises(FusebenchError, match=r"unknown board 'stm32l4' \(known boards: .*stm32f4.*stm32h7"):
        load_board("stm32l4")


def test_missing_runner_table_is_a_clear_error():
    with pytest.raises(FusebenchError, match=r"no \[runners.renode\] table \(it has: qemu\)"):
        load_board("stm32h7").runner("renode")


GOOD = """
name = "{name}"
description = "test part"
core = "cortex-m4"
fpu = "fpv4-sp-d16"
clock_hz = 100
stack_bytes = 1024
[memory.flash]
origin = 0x08000000
size = 0x10000
[memory.ram]
origin = 0x20000000
size = 0x8000
[runners.qemu]
machine = "netduinoplus2"
hal = "qemu-netduinoplus2"
uart_address = 0x40011000
instructions_per_tick = "3/2"
[runners.serial]
hal = "stm32f4"
uart_address = 0x40011000
port = "/dev/ttyACM0"
"""


def write_board(tmp_path, text, name="testboard"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text.format(name=name))
    return path


def test_load_by_path_and_unknown_runner_keys_are_kept(tmp_path):
    board = load_board(write_board(tmp_path, GOOD))
    assert board.name == "testboard"
    assert board.runner("qemu").instructions_per_tick == Fraction(3, 2)
    serial = board.runner("serial")
    assert serial.option("port") == "/dev/ttyACM0"
    assert serial.instructions_per_tick is None
    assert load_board(str(board.path)) == board


@pytest.mark.parametrize("change, message", [
    (("core = \"cortex-m4\"", "core = \"cortex-m9\""), "core 'cortex-m9' is not one of"),
    (("clock_hz = 100\n", ""), "missing key clock_hz"),
    (("size = 0x8000", "size = \"big\""), r"memory.ram.size must be int, not str"),
    (("stack_bytes = 1024", "stack_bytes = 65536"), "does not fit RAM"),
    (("instructions_per_tick = \"3/2\"", "instructions_per_tick = \"fast\""),
     "instructions_per_tick must be a positive integer or a fraction"),
    (("instructions_per_tick = \"3/2\"", "instructions_per_tick = 1.5"),
     "instructions_per_tick must be a positive integer or a fraction"),
    (("machine = \"netduinoplus2\"\n", ""), r"missing key runners.qemu.machine"),
    (("[memory.ram]", "[memory.ram\n"), "invalid TOML"),
])
def test_bad_board_files_give_one_line_errors(tmp_path, change, message):
    text = GOOD.replace(*change)
    with pytest.raises(FusebenchError, match=message) as info:
        load_board(write_board(tmp_path, text))
    assert "testboard.toml" in str(info.value)


def test_name_must_match_file_name(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text(GOOD.format(name="testboard"))
    with pytest.raises(FusebenchError, match="differs from the file name"):
        load_board(path)


def test_missing_board_file(tmp_path):
    with pytest.raises(FusebenchError, match="does not exist"):
        load_board(tmp_path / "nothere.toml")
