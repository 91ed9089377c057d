"""The silicon HALs (firmware/hal/stm32h7, stm32f4) build for every board that
names them, at the real addresses, and Renode gets the very image silicon gets."""
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import FIXTURES
from harness.targets.boards import list_boards, load_board
from harness.backend.build import build_firmware, hal_defines
from harness.targets.runners import runner_classes

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed (run scripts/setup.sh)")

SILICON_RUNNERS = [kind for kind, cls in runner_classes().items() if cls.silicon_image]
SILICON_TARGETS = [(name, t.kind) for name in list_boards() for t in load_board(name).runners
                   if t.kind in SILICON_RUNNERS]


def symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (l.split() for l in out.splitlines()) if len(parts) == 3}


def raw_image(elf: Path, out: Path) -> bytes:
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(out)], check=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("silicon")
    return {(name, kind): build_firmware(load_board(name), FIXTURES / "copy", root / f"{name}-{kind}",
                                         runner=kind)
            for name, kind in SILICON_TARGETS}


def test_every_real_board_and_renode_part_is_covered():
    assert {("nucleo-h743zi", "serial"), ("nucleo-f446re", "serial"), ("openmv-h7", "serial"),
            ("stm32h7", "renode"), ("stm32f4", "renode")} <= set(SILICON_TARGETS)


@pytest.mark.parametrize("name, kind", SILICON_TARGETS)
def test_silicon_image_builds_at_the_real_addresses(images, name, kind):
    board, build = load_board(name), images[name, kind]
    syms = symbols(build.elf)
    hal = board.runner(kind).hal
    assert f"{hal}/hal_{hal}.c" in (build.elf.parent / "build.log").read_text()
    assert syms["cortexm_vectors"] == board.flash.origin == 0x08000000
    assert board.ram.origin <= syms["__stack_bottom"] < syms["__stack_top"] <= board.ram.end
    # No semihosting on silicon: inputs come over the UART, never from host files.
    assert not {"semihost_open", "semihost_read_at"} & syms.keys()
    text = build.elf.read_bytes()
    assert (bytes.fromhex("55ceacc5") in text) == (board.core == "cortex-m7")   # the M7's DWT unlock key


def test_board_file_settings_reach_the_compiler():
    board = load_board("nucleo-f446re")
    assert hal_defines(board, board.runner("serial")) == [
        "-DFB_CPU_HZ=180000000u", "-DFB_CONSOLE_BAUD=115200u", "-DFB_CONSOLE_TX_PORT=0",
        "-DFB_CONSOLE_TX_PIN=2", "-DFB_CONSOLE_RX_PORT=0", "-DFB_CONSOLE_RX_PIN=3", "-DFB_CONSOLE_AF=7"]
    assert hal_defines(board, board.runner("serial"))[0] != \
        hal_defines(load_board("nucleo-h743zi"), load_board("nucleo-h743zi").runner("serial"))[0]
    assert hal_defines(load_board("stm32h7"), load_board("stm32h7").runner("qemu")) == []


@pytest.mark.parametrize("name", ["stm32h7", "stm32f4"])
def test_renode_runs_the_image_silicon_runs(images, name, tmp_path):
    renode = raw_image(images[name, "renode"].elf, tmp_path / "renode.bin")
    serial = raw_image(images[name, "serial"].elf, tmp_path / "serial.bin")
    assert renode == serial
