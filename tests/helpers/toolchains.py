"""Skip marks for tests that need a cross toolchain or an emulator that
scripts/setup.sh installs (tests/conftest.py skips every `qemu` test without
the Arm ones)."""
import shutil

import pytest

RISCV_TOOLS = ("riscv64-unknown-elf-gcc", "qemu-system-riscv32")
RISCV_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc"


def missing(tools) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


# The RISC-V board (esp32c3): its gcc and picolibc to build, qemu-system-riscv32 to run.
requires_riscv = pytest.mark.skipif(
    bool(missing(RISCV_TOOLS)),
    reason=f"{', '.join(missing(RISCV_TOOLS)) or 'nothing'} not installed (scripts/setup.sh installs "
           f"the Debian packages {RISCV_PACKAGES})")
requires_riscv_gcc = pytest.mark.skipif(
    shutil.which("riscv64-unknown-elf-gcc") is None,
    reason=f"riscv64-unknown-elf-gcc not installed (scripts/setup.sh installs {RISCV_PACKAGES})")
