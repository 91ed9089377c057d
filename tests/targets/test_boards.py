import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest

from harness.targets.boards import Board, MemoryRegion, list_boards, load_board
from harness.errors import FusebenchError


def test_list_boards_has_the_emulated_parts_and_the_real_boards():
    assert {"stm32h7", "stm32f4", "esp32c3", "nucleo-h743zi", "nucleo-f446re", "openmv-h7"} <= set(list_boards())


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


def test_esp32c3_is_the_risc_v_part_run_on_virt():
    board = load_board("esp32c3")
    assert (board.core, board.fpu, board.clock_hz, board.arch) == ("rv32imc", "none", 160_000_000, "riscv")
    assert board.cpu_flags == ("-march=rv32imc", "-mabi=ilp32")
    assert board.flash == MemoryRegion(0x42000000, 4 * 1024 * 1024 - 64 * 1024)   # after bootloader + partitions
    assert board.ram == MemoryRegion(0x3FC80000, 384 * 1024)                      # SRAM1; SRAM0 is the cache
    qemu = board.runner("qemu")
    assert (qemu.machine, qemu.hal, qemu.uart_address) == ("virt", "qemu-riscv-virt", 0x10000000)
    assert qemu.instructions_per_tick == Fraction(1)                              # minstret
    # Linked in virt's DRAM with the ESP32-C3's sizes: RAM first, the flash after it.
    assert qemu.ram == MemoryRegion(0x80000000, board.ram.size)
    assert qemu.flash == MemoryRegion(0x80100000, board.flash.size)
    assert qemu.ram.end <= qemu.flash.origin
    assert (qemu.option("qemu"), qemu.option("qemu_package"), qemu.option("load")) == \
        ("qemu-system-riscv32", "qemu-system-misc", "loader")
    assert load_board("stm32h7").arch == "arm"


def test_a_risc_v_core_takes_no_arm_fpu_and_a_16_byte_stack(tmp_path):
    text = load_board("esp32c3").path.read_text().replace('name = "esp32c3"', 'name = "mine"')
    for change, message in ((('fpu = "none"', 'fpu = "fpv4-sp-d16"'), "is an Arm FPU"),
                            (("stack_bytes = 16384", "stack_bytes = 16392"), "multiple of 16")):
        (tmp_path / "mine.toml").write_text(text.replace(*change))
        with pytest.raises(FusebenchError, match=message):
            load_board(tmp_path / "mine.toml")
    (tmp_path / "mine.toml").write_text(text.replace('load = "loader"', 'load = "floppy"'))
    with pytest.raises(FusebenchError, match="runners.qemu.load must be one of kernel, loader"):
        load_board(tmp_path / "mine.toml")


def test_boards_are_frozen_and_hashable():
    board = load_board("stm32f4")
    with pytest.raises(AttributeError):
        board.clock_hz = 1      # type: ignore[misc]
    assert {board, load_board("stm32f4")} == {board}


def test_unknown_board_lists_known_ones():
    with pytest.raises(FusebenchError, match=r"unknown board 'stm32l4' \(known boards: .*stm32f4.*stm32h7"):
        load_board("stm32l4")


def test_missing_runner_table_is_a_clear_error():
    with pytest.raises(FusebenchError, match=r"no \[runners.qemu\] table \(it has: labgrid, serial\)"):
        load_board("nucleo-h743zi").runner("qemu")


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
console_tx = "PA9"
console_rx = "PA10"
console_af = 7
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
    assert serial.option("console_tx") == "PA9"
    assert serial.instructions_per_tick == 1      # silicon counts core cycles by default
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
    (("console_tx = \"PA9\"", "console_tx = \"A9\""), r"runners.serial.console_tx: bad pin name 'A9'"),
    (("console_rx = \"PA10\"", "console_rx = \"PA16\""), r"runners.serial.console_rx: bad pin name"),
    (("console_af = 7", "console_af = 16"), r"runners.serial.console_af must be an integer from 0 to 15, not 16"),
    (("console_af = 7\n", ""), r"missing key runners.serial.console_af"),
    (("port = ", "baud = 12\nport = "), r"runners.serial.baud must be an integer"),
    (("port = ", "usb_ids = [\"0483-374b\"]\nport = "), r"usb_ids entries must look like"),
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


@pytest.mark.parametrize("name, hal, clock_hz, flash_kb, ram, uart, tx, rx", [
    ("nucleo-h743zi", "stm32h7", 480_000_000, 2048, (0x24000000, 512 * 1024), 0x40004800, "PD8", "PD9"),
    ("openmv-h7", "stm32h7", 480_000_000, 2048, (0x24000000, 512 * 1024), 0x40004800, "PB10", "PB11"),
    ("nucleo-f446re", "stm32f4", 180_000_000, 512, (0x20000000, 128 * 1024), 0x40004400, "PA2", "PA3"),
])
def test_real_boards_describe_the_part_and_its_console(name, hal, clock_hz, flash_kb, ram, uart, tx, rx):
    board = load_board(name)
    assert board.clock_hz == clock_hz
    assert board.flash == MemoryRegion(0x08000000, flash_kb * 1024)
    assert board.ram == MemoryRegion(*ram)
    serial = board.runner("serial")
    assert (serial.hal, serial.uart_address) == (hal, uart)
    assert (serial.option("console_tx"), serial.option("console_rx"), serial.option("console_af")) == (tx, rx, 7)
    assert serial.flash == board.flash and serial.ram == board.ram   # silicon: the real addresses
    assert serial.instructions_per_tick == 1
    assert serial.option("usb_ids")


def test_openmv_is_flashed_over_dfu_and_nucleos_through_the_st_link():
    assert load_board("openmv-h7").runner("serial").option("flash_tools") == ("dfu-util",)
    for name in ("nucleo-h743zi", "nucleo-f446re"):
        assert load_board(name).runner("serial").option("flash_tools")[0] == "pyocd"


@pytest.mark.parametrize("name, platform, peripheral", [
    ("stm32h7", "platforms/cpus/stm32h743.repl", "sysbus.usart3"),
    ("stm32f4", "platforms/cpus/stm32f4.repl", "sysbus.usart2"),
])
def test_emulated_parts_have_renode_and_serial_tables_for_the_silicon_image(name, platform, peripheral):
    board = load_board(name)
    renode, serial = board.runner("renode"), board.runner("serial")
    assert renode.option("platform") == platform
    assert renode.option("uart_peripheral") == peripheral
    # The very same image: same HAL, console, pins and addresses as on silicon.
    for key in ("console_tx", "console_rx", "console_af", "baud"):
        assert renode.option(key) == serial.option(key)
    assert (renode.hal, renode.uart_address, renode.flash, renode.ram) == \
           (serial.hal, serial.uart_address, serial.flash, serial.ram)
    assert renode.flash.origin == 0x08000000


def test_parse_pin():
    from harness.targets.hal import parse_pin
    assert parse_pin("PA0") == (0, 0)
    assert parse_pin("PD9") == (3, 9)
    assert parse_pin("PK15") == (10, 15)
    for bad in ("PL1", "PA16", "pa1", "D9", ""):
        with pytest.raises(FusebenchError, match="bad pin name"):
            parse_pin(bad)


def test_renode_table_needs_platform_and_peripheral(tmp_path):
    text = GOOD + """[runners.renode]
hal = "stm32f4"
uart_address = 0x40011000
console_tx = "PA9"
console_rx = "PA10"
console_af = 7
platform = "platforms/cpus/stm32f4.repl"
"""
    with pytest.raises(FusebenchError, match="missing key runners.renode.uart_peripheral"):
        load_board(write_board(tmp_path, text))
    bad_tag = text + 'uart_peripheral = "sysbus.usart1"\ntags = [{{ name = "X" }}]\n'
    with pytest.raises(FusebenchError, match="tags entries must be tables with an integer address"):
        load_board(write_board(tmp_path, bad_tag))


# -- extends ----------------------------------------------------------------------------------

# The board files as they were before they extended stm32h7 / stm32f4, every key spelled out.
FLAT_BOARDS = Path(__file__).resolve().parent / "flat_boards"


@pytest.mark.parametrize("name", ["nucleo-h743zi", "openmv-h7", "stm32h7-qspi", "nucleo-f446re"])
def test_a_board_that_extends_loads_to_the_board_its_flat_file_described(name):
    child, flat = load_board(name), load_board(FLAT_BOARDS / f"{name}.toml")
    assert "extends" in child.path.read_text() and "extends" not in flat.path.read_text()
    for f in dataclasses.fields(Board):
        if f.name != "path":
            assert getattr(child, f.name) == getattr(flat, f.name), f.name


def write(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_extends_replaces_keys_merges_tables_and_sets_the_runner_kinds(tmp_path):
    write(tmp_path, "parent", GOOD.format(name="parent"))
    board = load_board(write(tmp_path, "child", """extends = "parent"
name = "child"
clock_hz = 200
[memory.ram]
size = 0x4000
[runners.serial]
console_tx = "PB6"
usb_ids = ["0483:374b"]
"""))
    parent = load_board(tmp_path / "parent.toml")
    assert (board.name, board.description, board.clock_hz) == ("child", "test part", 200)
    assert board.ram == MemoryRegion(0x20000000, 0x4000)          # the origin is the parent's
    assert board.flash == parent.flash
    assert [t.kind for t in board.runners] == ["serial"]          # the child's kinds only
    serial, parent_serial = board.runner("serial"), parent.runner("serial")
    assert (serial.option("console_tx"), serial.option("console_rx")) == ("PB6", "PA10")
    assert serial.option("usb_ids") == ("0483:374b",) and serial.option("port") == "/dev/ttyACM0"
    assert (serial.hal, serial.uart_address) == (parent_serial.hal, parent_serial.uart_address)


def test_an_empty_runner_table_inherits_the_parents_whole_and_chains_are_allowed(tmp_path):
    write(tmp_path, "parent", GOOD.format(name="parent"))
    write(tmp_path, "middle", 'extends = "parent"\nname = "middle"\ndescription = "middle part"\n')
    board = load_board(write(tmp_path, "child", 'extends = "middle"\nname = "child"\n[runners.qemu]\n'))
    parent = load_board(tmp_path / "parent.toml")
    assert board.description == "middle part"
    assert board.runners == (parent.runner("qemu"),)
    assert [t.kind for t in load_board(tmp_path / "middle.toml").runners] == ["qemu", "serial"]


def test_without_drops_inherited_keys(tmp_path):
    write(tmp_path, "parent", GOOD.format(name="parent"))
    board = load_board(write(tmp_path, "child", 'extends = "parent"\nname = "child"\n'
                                                '[runners.serial]\nwithout = ["port"]\n'))
    assert board.runner("serial").option("port") is None
    assert board.runner("serial").option("console_tx") == "PA9"


def test_a_shipped_parent_is_found_from_anywhere(tmp_path):
    board = load_board(write(tmp_path, "mine", 'extends = "nucleo-h743zi"\nname = "mine"\n'))
    assert board.runners == load_board("nucleo-h743zi").runners


@pytest.mark.parametrize("files, message", [
    ({"child": 'extends = "nowhere"\nname = "child"\n'},
     r"child.toml: extends 'nowhere', but there is no such board next to it or in .*boards"),
    ({"child": 'extends = "other"\nname = "child"\n', "other": 'extends = "child"\nname = "other"\n'},
     r"other.toml: extends makes a cycle: child -> other -> child"),
    ({"child": 'extends = "child"\nname = "child"\n'}, r"child.toml: extends makes a cycle: child -> child"),
    ({"child": 'extends = 7\nname = "child"\n'}, r"child.toml: extends must be a board name, not 7"),
    ({"child": 'extends = "parent"\n'}, r"child.toml: missing key name"),   # never inherited
    ({"child": 'extends = "parent"\nname = "child"\n[runners.serial]\nwithout = ["baud"]\n'},
     r"child.toml: runners.serial.without names 'baud', which it does not inherit"),
    ({"child": 'extends = "parent"\nname = "child"\n[runners.renode]\nwithout = ["hal"]\n'},
     r"child.toml: runners.renode.without drops inherited keys, and this table inherits none"),
    ({"child": GOOD.format(name="child") + 'without = ["port"]\n'},
     r"child.toml: runners.serial.without drops inherited keys, and this table inherits none"),
])
def test_bad_extends_give_one_line_errors(tmp_path, files, message):
    write(tmp_path, "parent", GOOD.format(name="parent"))
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(FusebenchError, match=message) as info:
        load_board(tmp_path / "child.toml")
    assert "\n" not in str(info.value)
