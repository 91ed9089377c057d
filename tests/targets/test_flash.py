"""Flashing and port detection, checked with stand-in tools and ports (no hardware)."""
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import FIXTURES
from harness.targets.boards import load_board
from harness.errors import FusebenchError
from harness.targets.flash import Flasher, boards_report, detect_ports, port_for_board, tool_command


def fake_tool(directory: Path, name: str, status: int = 0) -> Path:
    """An executable `name` that records its arguments (one JSON line per call)."""
    path = directory / name
    path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(directory / 'calls.jsonl')!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
                    f"print('fake {name} output line')\n"
                    f"sys.exit({status})\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(directory: Path) -> list[list[str]]:
    path = directory / "calls.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def only_fake_tools(tmp_path, monkeypatch):
    """PATH holds only the fake tools (and the cross objcopy), pyocd is not importable."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    objcopy = shutil.which("arm-none-eabi-objcopy")
    if objcopy:
        os.symlink(objcopy, bin_dir / "arm-none-eabi-objcopy")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr("harness.targets.flash.importlib.util.find_spec", lambda name: None)
    return bin_dir


def test_first_installed_tool_of_the_board_file_is_used(only_fake_tools):
    board = load_board("nucleo-h743zi")                    # pyocd, openocd, st-flash
    with pytest.raises(FusebenchError, match=r"no flash tool for board nucleo-h743zi is installed "
                                             r"\(pyocd: pip install pyocd; openocd: the Debian package"):
        Flasher.for_board(board)
    fake_tool(only_fake_tools, "st-flash")
    assert Flasher.for_board(board).tool == "st-flash"
    fake_tool(only_fake_tools, "openocd")
    assert Flasher.for_board(board).tool == "openocd"
    assert Flasher.for_board(board, tool="st-flash").tool == "st-flash"
    with pytest.raises(FusebenchError, match="unknown flash tool 'jlink'"):
        Flasher.for_board(board, tool="jlink")


def test_pyocd_module_counts_as_installed(only_fake_tools, monkeypatch):
    monkeypatch.setattr("harness.targets.flash.importlib.util.find_spec", lambda name: object())
    assert tool_command("pyocd") == [sys.executable, "-m", "pyocd"]
    assert tool_command("openocd") is None


def test_commands_for_each_tool(only_fake_tools):
    elf, image = Path("/fw/firmware.elf"), Path("/tmp/firmware.bin")
    h7 = load_board("nucleo-h743zi")
    pyocd = Flasher(h7, "pyocd", ["pyocd"], probe="066DFF")
    assert pyocd.flash_commands(elf) == [["pyocd", "load", "-t", "stm32h743zitx", "-u", "066DFF",
                                          "--format", "elf", "/fw/firmware.elf"]]
    assert pyocd.reset_command() == ["pyocd", "reset", "-t", "stm32h743zitx", "-u", "066DFF"]
    openocd = Flasher(h7, "openocd", ["openocd"])
    assert openocd.flash_commands(elf) == [["openocd", "-f", "interface/stlink.cfg", "-f",
                                            "target/stm32h7x.cfg", "-c",
                                            "program /fw/firmware.elf verify reset exit"]]
    assert "reset run" in openocd.reset_command()
    f446 = load_board("nucleo-f446re")
    stflash = Flasher(f446, "st-flash", ["st-flash"])
    assert stflash.flash_commands(elf, image) == [["st-flash", "--reset", "write", "/tmp/firmware.bin",
                                                   "0x08000000"]]
    openmv = Flasher(load_board("openmv-h7"), "dfu-util", ["dfu-util"])
    assert openmv.flash_commands(elf, image) == [["dfu-util", "-a", "0", "-d", "0483:df11", "-s",
                                                  "0x08000000:leave", "-D", "/tmp/firmware.bin"]]
    assert not openmv.can_reset
    with pytest.raises(FusebenchError, match="dfu-util cannot reset board openmv-h7: press its reset button"):
        openmv.reset()


@pytest.fixture
def openmv_elf(tmp_path):
    """Built before only_fake_tools narrows PATH."""
    from harness.backend.build import build_firmware
    board = load_board("openmv-h7")
    return board, build_firmware(board, FIXTURES / "copy", tmp_path / "fw", runner="serial").elf


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc missing")
def test_flash_runs_the_tool_with_a_raw_image(openmv_elf, only_fake_tools):
    board, elf = openmv_elf
    fake_tool(only_fake_tools, "dfu-util")
    flasher = Flasher.for_board(board)
    flasher.flash(elf)
    [argv] = calls(only_fake_tools)
    assert argv[1:7] == ["-a", "0", "-d", "0483:df11", "-s", "0x08000000:leave"]
    # The image given to dfu-util was the raw flash contents (gone with its temp folder now).
    assert argv[-2] == "-D" and argv[-1].endswith("firmware.bin")


def test_tool_failure_is_one_line_with_its_last_output(only_fake_tools, tmp_path):
    fake_tool(only_fake_tools, "pyocd", status=3)
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    flasher = Flasher.for_board(load_board("nucleo-h743zi"))
    with pytest.raises(FusebenchError, match=r"pyocd failed \(status 3\): fake pyocd output line") as info:
        flasher.flash(elf)
    assert "\n" not in str(info.value)
    with pytest.raises(FusebenchError, match="does not exist"):
        flasher.flash(tmp_path / "missing.elf")


def port(device, vid, pid, serial_number="0670FF", description="STM32 STLink"):
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number,
                           description=description)


COMPORTS = [
    port("/dev/ttyS0", None, None),
    port("/dev/ttyACM0", 0x0483, 0x374B),                     # ST-LINK/V2-1: Nucleo-F446RE or H743ZI
    port("/dev/ttyACM1", 0x0483, 0x374E, "003A00"),           # ST-LINK/V3E: Nucleo-H743ZI2
    port("/dev/ttyUSB0", 0x0403, 0x6001, "A50285BI", "FT232R USB UART"),   # OpenMV's adapter
    port("/dev/ttyACM2", 0x2341, 0x0043),                     # an Arduino: nobody's
]


def test_detect_ports_by_usb_id():
    found = {p.device: p for p in detect_ports(COMPORTS)}
    assert set(found) == {"/dev/ttyACM0", "/dev/ttyACM1", "/dev/ttyUSB0"}
    assert "nucleo-f446re" in found["/dev/ttyACM0"].boards
    assert "nucleo-h743zi" in found["/dev/ttyACM0"].boards
    assert "nucleo-f446re" not in found["/dev/ttyACM1"].boards
    assert found["/dev/ttyUSB0"].boards == ("openmv-h7",)
    assert found["/dev/ttyACM1"].usb_id == "0483:374e"


def test_port_for_board():
    assert port_for_board(load_board("openmv-h7"), COMPORTS) == "/dev/ttyUSB0"
    assert port_for_board(load_board("nucleo-f446re"), COMPORTS) == "/dev/ttyACM0"
    with pytest.raises(FusebenchError, match="several serial ports fit board nucleo-h743zi: "
                                             "/dev/ttyACM0 .*/dev/ttyACM1 .*choose one with --port"):
        port_for_board(load_board("nucleo-h743zi"), COMPORTS)
    with pytest.raises(FusebenchError, match="no serial port for board openmv-h7 found .*give --port"):
        port_for_board(load_board("openmv-h7"), COMPORTS[:1])


def test_boards_report_lists_boards_and_ports():
    text = boards_report(COMPORTS)
    assert text.startswith("boards:")
    for name in ("stm32h7", "stm32f4", "nucleo-h743zi", "nucleo-f446re", "openmv-h7"):
        assert f"  {name} " in text
    assert "[qemu, renode, serial, labgrid]" in text
    assert "/dev/ttyUSB0  0403:6001, serial A50285BI  FT232R USB UART  -> openmv-h7" in text
    assert "/dev/ttyS0" not in text
    assert "none with a known USB id" in boards_report([])
