import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import harness.backend.build as build
from tests.helpers import FIXTURES
from harness.targets.boards import MemoryRegion, load_board
from harness.backend.build import OBJECTS_DIR, DoesNotFit, build_firmware, linker_script
from harness.errors import FusebenchError
from tests.helpers.toolchains import requires_riscv_gcc

needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                     reason="arm-none-eabi-gcc not installed")


def test_linker_script_has_the_real_sizes_at_the_emulator_addresses():
    board = load_board("stm32h7")
    script = linker_script(board, board.runner("qemu"))
    assert "FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 0x200000" in script
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 0x80000" in script
    assert "__stack_size = 0x4000;" in script
    # The stack is the first thing in RAM, .data and .bss come after it.
    assert script.index(".stack (NOLOAD)") < script.index(".data :") < script.index(".bss (NOLOAD)")

    f4 = load_board("stm32f4")
    script = linker_script(f4, f4.runner("qemu"))
    assert "FLASH (rx)  : ORIGIN = 0x08000000, LENGTH = 0x100000" in script
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 0x20000" in script


def test_risc_v_linker_script_has_the_esp32c3_sizes_in_virt_dram():
    board = load_board("esp32c3")
    script = linker_script(board, board.runner("qemu"))
    assert "FLASH (rx)  : ORIGIN = 0x80100000, LENGTH = 0x3f0000" in script
    assert "RAM   (rwx) : ORIGIN = 0x80000000, LENGTH = 0x60000" in script
    assert "ENTRY(_start)" in script and "__global_pointer$" in script and ".sdata" in script
    assert ".isr_vector" not in script and "ARM.exidx" not in script
    assert script.index(".stack (NOLOAD)") < script.index(".data :") < script.index(".bss (NOLOAD)")
    assert "ENTRY(Reset_Handler)" in linker_script(load_board("stm32f4"), load_board("stm32f4").runner("qemu"))


def test_the_board_architecture_picks_the_toolchain():
    assert build.toolchain(load_board("esp32c3")).gcc == "riscv64-unknown-elf-gcc"
    assert build.toolchain(load_board("stm32h7")).gcc == "arm-none-eabi-gcc"
    assert build.kernel_defines(load_board("esp32c3")) == ["-DFB_KERNELS_DSP=0"]   # portable C only
    assert build.kernel_set(load_board("stm32h7")) == "dsp"


def test_vector_table_needs_an_aligned_flash_origin():
    board = load_board("stm32f4")
    target = dataclasses.replace(board.runner("qemu"), flash=MemoryRegion(0x08000100, 0x100000))
    with pytest.raises(FusebenchError, match="not 1024-byte aligned"):
        linker_script(board, target)


def copy_fixture(tmp_path, name="copy", arena=None):
    gen = tmp_path / f"gen-{name}"
    shutil.copytree(FIXTURES / name, gen)
    if arena is not None:
        header = gen / "fb_model.h"
        text = header.read_text()
        assert "#define FB_ARENA_BYTES 4096" in text
        header.write_text(text.replace("#define FB_ARENA_BYTES 4096", f"#define FB_ARENA_BYTES {arena}"))
    return gen


def symbols(elf: Path, nm: str = "arm-none-eabi-nm") -> dict[str, int]:
    out = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (l.split() for l in out.splitlines()) if len(parts) == 3}


@needs_toolchain
def test_build_sizes_layout_and_cache(tmp_path):
    board = load_board("stm32h7")
    gen = copy_fixture(tmp_path)
    out = tmp_path / "out"
    first = build_firmware(board, gen, out)
    assert not first.cached and first.elf.is_file() and first.map_file.is_file()
    assert first.stack_bytes == board.stack_bytes
    assert first.bss_bytes >= 4096                     # the arena is in .bss
    assert first.ram_static_bytes == first.data_bytes + first.bss_bytes
    assert first.flash_bytes == first.text_bytes + first.data_bytes
    assert 1024 < first.text_bytes < 64 * 1024
    sym = symbols(first.elf)
    ram = board.runner("qemu").ram
    assert sym["__stack_bottom"] == ram.origin
    assert sym["__stack_top"] == ram.origin + board.stack_bytes
    assert sym["cortexm_vectors"] == board.runner("qemu").flash.origin
    assert sym["fb_arena"] % 16 == 0 and ram.origin < sym["fb_arena"] < ram.end

    again = build_firmware(board, gen, out)
    assert again.cached and dataclasses.replace(again, cached=False) == first

    (gen / "fb_model.c").write_text((gen / "fb_model.c").read_text() + "\n/* changed */\n")
    assert not build_firmware(board, gen, out).cached
    assert not build_firmware(board, gen, out, opt="-Os").cached


@needs_toolchain
def test_too_big_arena_fails_at_link_time_with_the_numbers(tmp_path):
    board = load_board("stm32h7")
    fits = build_firmware(board, copy_fixture(tmp_path, arena=4096), tmp_path / "fits")
    used = fits.ram_bytes                                      # stack + .data + .bss
    extra = (board.ram.size - used) + 4096                     # 4 KB too much; a multiple of 16
    with pytest.raises(DoesNotFit) as info:
        build_firmware(board, copy_fixture(tmp_path / "big", arena=4096 + extra), tmp_path / "big-out")
    error = info.value
    assert error.region == "RAM"
    assert error.available == board.ram.size == 512 * 1024
    assert error.needed == used + extra
    assert error.needed - error.available == 4096
    assert "stm32h7" in str(error) and "RAM needs" in str(error)
    assert isinstance(error, FusebenchError)


@needs_toolchain
def test_too_much_flash_fails_at_link_time(tmp_path):
    board = load_board("stm32f4")
    gen = copy_fixture(tmp_path)
    weights = 1024 * 1024 + 10_000
    (gen / "weights.c").write_text(
        "#include <stdint.h>\n"
        f"const int8_t fixture_weights[{weights}] = {{1}};\n"
        "int8_t fixture_weight(int i) { return fixture_weights[i]; }\n")
    model = gen / "fb_model.c"
    model.write_text(model.read_text().replace(
        "    fb_layer_done(3);",
        "    extern int8_t fixture_weight(int);\n    output[0] += fixture_weight(input[0]);\n    fb_layer_done(3);"))
    with pytest.raises(DoesNotFit) as info:
        build_firmware(board, gen, tmp_path / "out")
    assert info.value.region == "FLASH"
    assert info.value.available == 1024 * 1024
    assert info.value.needed > 1024 * 1024 + 10_000


@needs_toolchain
def test_compile_error_is_one_line(tmp_path):
    gen = copy_fixture(tmp_path)
    (gen / "fb_model.c").write_text("this is not C\n")
    with pytest.raises(FusebenchError, match=r"firmware build failed: .*fb_model.c.*error") as info:
        build_firmware(load_board("stm32f4"), gen, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert (tmp_path / "out" / "build.log").is_file()


def test_missing_generated_model(tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (scripts/setup.sh installs it)")
    with pytest.raises(FusebenchError, match="no fb_model.h"):
        build_firmware(load_board("stm32f4"), tmp_path, tmp_path / "out")


def test_bad_optimisation_flag(tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (scripts/setup.sh installs it)")
    with pytest.raises(FusebenchError, match="bad optimisation flag"):
        build_firmware(load_board("stm32f4"), FIXTURES / "copy", tmp_path, opt="-O2; rm -rf /")


@pytest.mark.parametrize("board, packages", [
    ("stm32f4", "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
    ("esp32c3", "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"),
])
def test_missing_toolchain_names_the_packages(tmp_path, monkeypatch, board, packages):
    arch = load_board(board).arch
    missing = dataclasses.replace(build.TOOLCHAINS[arch], gcc=f"{build.TOOLCHAINS[arch].gcc}-not-installed")
    monkeypatch.setitem(build.TOOLCHAINS, arch, missing)
    with pytest.raises(FusebenchError, match=f"-not-installed not found: install the Debian packages {packages}$") \
            as info:
        build_firmware(load_board(board), FIXTURES / "copy", tmp_path)
    assert "\n" not in str(info.value)


@requires_riscv_gcc
def test_risc_v_build_layout(tmp_path):
    board = load_board("esp32c3")
    result = build_firmware(board, copy_fixture(tmp_path), tmp_path / "out")
    assert result.stack_bytes == board.stack_bytes and result.bss_bytes >= 4096
    assert 1024 < result.text_bytes < 64 * 1024
    sym = symbols(result.elf, "riscv64-unknown-elf-nm")
    flash, ram = board.runner("qemu").flash, board.runner("qemu").ram
    assert sym["_start"] == flash.origin                       # the loader starts the core here
    assert sym["__stack_bottom"] == ram.origin and sym["__stack_top"] == ram.origin + board.stack_bytes
    assert ram.origin < sym["fb_arena"] < ram.end and sym["fb_arena"] % 16 == 0
    assert ram.origin < sym["__global_pointer$"] - 0x800 < ram.end
    log = (tmp_path / "out" / "build.log").read_text()
    assert "--specs=picolibc.specs" in log and "-march=rv32imc -mabi=ilp32" in log
    assert "hal/riscv/" in log and "hal/cortexm/" not in log and "-DFB_KERNELS_DSP=0" in log


@requires_riscv_gcc
def test_risc_v_image_too_big_for_the_esp32c3_does_not_fit(tmp_path):
    board = load_board("esp32c3")
    fits = build_firmware(board, copy_fixture(tmp_path, arena=4096), tmp_path / "fits")
    extra = (board.ram.size - fits.ram_bytes) + 4096           # 4 KB more than the 384 KB of SRAM1
    with pytest.raises(DoesNotFit) as info:
        build_firmware(board, copy_fixture(tmp_path / "big", arena=4096 + extra), tmp_path / "big-out")
    assert info.value.region == "RAM" and info.value.available == 384 * 1024
    assert info.value.needed - info.value.available == 4096
    # QEMU's virt has 128 MB there: only the linker script stands for the part.
    assert board.runner("qemu").ram.size == 384 * 1024


def test_runtime_objects_are_compiled_once_and_give_the_one_call_image(tmp_path):
    """Two models on one board share the runtime's and the HAL's objects, and
    the image equals that of one gcc call over every source."""
    board = load_board("stm32h7")
    first = build_firmware(board, copy_fixture(tmp_path, "copy"), tmp_path / "a")
    log = (tmp_path / "a" / "build.log").read_text()
    listed = re.findall(r"^(\S+\.o): (\S+)$", log, re.M)
    assert any("runtime/src/fb_conv_dsp.c" in src for _, src in listed)
    assert any("hal/qemu-mps2/" in src for _, src in listed)
    objects = [OBJECTS_DIR / name for name, _ in listed]
    stamps = [o.stat().st_mtime_ns for o in objects]
    second = build_firmware(board, copy_fixture(tmp_path / "big", "copy", arena=8192), tmp_path / "b")
    assert not second.cached and second.bss_bytes == first.bss_bytes + 4096
    assert [o.stat().st_mtime_ns for o in objects] == stamps          # reused, not recompiled
    # the same sources through one gcc call, as before the object cache
    command = log.splitlines()[0].split()
    first_input = next(k for k, a in enumerate(command) if a.endswith((".o", ".c")))
    last_input = max(k for k, a in enumerate(command) if a.endswith((".o", ".c")))
    sources = [src for _, src in listed] + [a for a in command if a.endswith(".c")]
    link = [a for a in command[last_input + 1:] if a != "-o" and ".firmware.elf." not in a]
    elf = tmp_path / "one-call.elf"
    subprocess.run([*command[:first_input], *sources, *link, "-o", str(elf)], check=True, cwd=tmp_path / "a",
                   capture_output=True)
    images = []
    for path in (first.elf, elf):
        binary = path.with_suffix(".bin")
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(path), str(binary)], check=True)
        images.append(binary.read_bytes())
    assert images[0] == images[1]
