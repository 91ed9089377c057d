#!/usr/bin/env bash
# One-time set-up on Debian/Ubuntu: the host C compiler (planning sizes scratch
# with the C runtime built for the host), the Arm toolchain, newlib and QEMU from the
# distribution, the RISC-V toolchain, picolibc and QEMU for the esp32c3 board (so
# that the tests cover RISC-V too), and a Python virtual environment (.venv) with
# fusebench and its test tools. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(gcc gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
              gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc python3-venv)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo_cmd="sudo"
    fi
    # Another apt or dpkg (an unattended upgrade, a second shell) may hold the
    # lock: wait for it, up to 10 minutes, rather than fail at once. `install`
    # waits by itself (DPkg::Lock::Timeout); `update` does not, so it retries.
    lock_wait=(-o DPkg::Lock::Timeout=600)
    waited=0
    until out=$($sudo_cmd apt-get "${lock_wait[@]}" update -qq 2>&1); do
        if grep -q "Could not get lock" <<<"$out" && [ "$waited" -lt 600 ]; then
            [ "$waited" = 0 ] && echo "setup: another apt holds its lock; waiting for it (up to 10 min)"
            sleep 5
            waited=$((waited + 5))
        else
            echo "$out" >&2
            exit 1
        fi
    done
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get "${lock_wait[@]}" install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.fusebench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing fusebench and its Python dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    touch "$stamp"
fi
echo "setup: ready ($(arm-none-eabi-gcc --version | head -1); $(qemu-system-arm --version | head -1);" \
     "$(riscv64-unknown-elf-gcc --version | head -1))"
