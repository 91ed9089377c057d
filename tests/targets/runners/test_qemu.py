import os
import re
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FIXTURES
from harness.targets.boards import load_board
from harness.backend.build import build_firmware
from harness.errors import FusebenchError
from harness.targets.runners import get_runner
from harness.targets.runners.qemu import QemuRunner
from tests.helpers.toolchains import requires_riscv

ARM_BOARDS = ("stm32h7", "stm32f4")
# Every emulated board: the Cortex-M ones, and the RISC-V one where its tools are installed.
BOARDS = (*ARM_BOARDS, pytest.param("esp32c3", marks=requires_riscv))


def fixture_define(name: str, macro: str) -> int:
    text = (FIXTURES / name / "fb_model.h").read_text()
    return int(re.search(rf"#define {macro} (\w+)", text).group(1).rstrip("u"), 0)


ARENA_PEAK = fixture_define("copy", "FIXTURE_ARENA_PEAK")
STACK_BUFFER = fixture_define("copy", "FIXTURE_STACK_BUFFER")
SPIN_LOOPS = fixture_define("copy", "FIXTURE_SPIN_LOOPS")
FAULT_PC = fixture_define("fault", "FIXTURE_FAULT_PC")
STREAM_ARENA_PEAK = fixture_define("stream", "FIXTURE_ARENA_PEAK")
STREAM_SPIN_LOOPS = fixture_define("stream", "FIXTURE_SPIN_LOOPS")


def copy_model(x: np.ndarray) -> np.ndarray:
    """What the copy fixture computes: out[i] = 3 * in[63 - i] + 1, int8 wrap-around."""
    return (3 * x[::-1].astype(np.int64) + 1).astype(np.uint8).view(np.int8)


def stream_reads() -> list[tuple[int, int]]:
    table = re.search(r"#define FIXTURE_READS (.*)", (FIXTURES / "stream" / "fb_model.h").read_text()).group(1)
    return [(int(off), int(n)) for off, n in re.findall(r"\{(\d+), (\d+)\}", table)]


def stream_model(x: np.ndarray) -> np.ndarray:
    """What the stream fixture computes from the pieces it reads (see its fb_model.h)."""
    u = x.view(np.uint8).astype(np.int64)
    out = np.zeros(64, np.int64)
    for r, (off, n) in enumerate(stream_reads()):
        j = np.arange(off, off + n)
        np.add.at(out, j % 64, (r + 1) * (j // 64 + 1) * u[j])
    return (out & 0xFF).astype(np.uint8).view(np.int8)


def qemu_processes_running(elf: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(elf).encode() in cmdline and b"qemu-system-" in cmdline:
                pids.append(int(entry.name))
    return pids


# -- without the emulator ---------------------------------------------------------------------

def test_command_line():
    runner = QemuRunner(load_board("stm32h7"))
    command = runner.command(Path("/x/firmware.elf"))
    assert command[:3] == ["qemu-system-arm", "-M", "mps2-an500"]
    joined = " ".join(command)
    assert "-icount shift=0" in joined
    assert "-semihosting-config enable=on,target=native" in joined
    assert "-serial stdio" in joined and "-kernel /x/firmware.elf" in joined
    assert QemuRunner(load_board("stm32f4")).command(Path("f.elf"))[2] == "netduinoplus2"


def test_risc_v_command_line_comes_from_the_board():
    command = QemuRunner(load_board("esp32c3")).command(Path("/x/a,b/firmware.elf"))
    assert command[:3] == ["qemu-system-riscv32", "-M", "virt"]
    joined = " ".join(command)
    assert "-icount shift=0" in joined and "-semihosting-config enable=on,target=native" in joined
    # No OpenSBI; the core starts at the ELF's entry (virt would jump to the start of DRAM).
    assert "-bios none" in joined and "-kernel" not in command
    assert command[-2:] == ["-device", "loader,file=/x/a,,b/firmware.elf,cpu-num=0"]


def test_console_on_a_later_serial_port(tmp_path):
    text = (load_board("stm32f4").path.read_text()
            .replace('name = "stm32f4"', 'name = "other"').replace("serial_index = 0", "serial_index = 2"))
    (tmp_path / "other.toml").write_text(text)
    command = " ".join(QemuRunner(load_board(tmp_path / "other.toml")).command(Path("f.elf")))
    assert "-serial null -serial null -serial stdio" in command


def test_the_link_reads_its_own_copy_of_the_pipe():
    """The owner closes the emulator's stdout when it ends a session; the line
    reader must not be reading that descriptor, whose number the next
    emulator's pipe can take (the stale reader would take its READY)."""
    import subprocess
    from harness.targets.runners.qemu import PipeLink

    process = subprocess.Popen(["sh", "-c", "sleep 0.2; echo one; sleep 0.2; echo two"], stdout=subprocess.PIPE)
    link = PipeLink(process)
    process.stdout.close()
    assert [link.read_line(10.0), link.read_line(10.0)] == ["one", "two"]
    process.wait(10)


@pytest.mark.parametrize("board, package", [("stm32f4", "qemu-system-arm"), ("esp32c3", "qemu-system-misc")])
def test_missing_qemu_names_the_package(tmp_path, board, package):
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    runner = QemuRunner(load_board(board), qemu="qemu-system-not-installed")
    with pytest.raises(FusebenchError, match=f"qemu-system-not-installed not found: install the Debian package {package}$"):
        next(runner.run(elf, [np.zeros(16, np.int8)]))


def test_missing_firmware_and_bad_options(tmp_path):
    with pytest.raises(FusebenchError, match="does not exist"):
        next(QemuRunner(load_board("stm32f4")).run(tmp_path / "none.elf", []))
    with pytest.raises(FusebenchError, match="input_via"):
        QemuRunner(load_board("stm32f4"), input_via="carrier-pigeon")
    with pytest.raises(FusebenchError, match="unknown runner 'vmware'"):
        get_runner("vmware", load_board("stm32f4"))


# -- in QEMU -----------------------------------------------------------------------------------

class Images(dict):
    """{(board, fixture): elf}, each built when a test first asks for it (a
    board whose toolchain is missing is then never built)."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def __missing__(self, key):
        board, name = key
        self[key] = build_firmware(load_board(board), FIXTURES / name, self.root / board / name).elf
        return self[key]


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """The fixtures built for the emulated boards: {(board, fixture): elf}."""
    return Images(tmp_path_factory.mktemp("qemu-firmware"))


@pytest.mark.qemu
@pytest.mark.parametrize("input_via", ["file", "uart"])
@pytest.mark.parametrize("board_name", BOARDS)
def test_copy_model_results(firmware, board_name, input_via):
    board = load_board(board_name)
    runner = QemuRunner(board, input_via=input_via)
    rng = np.random.default_rng(7)
    inputs = [rng.integers(-128, 128, 64, dtype=np.int8) for _ in range(2)]
    # Inputs made of the paint bytes themselves (0x5A, 0xA5): the watermark stays exact.
    inputs += [np.full(64, 0x5A, np.int8), np.full(64, 0xA5 - 256, np.int8)]
    results = list(runner.run(firmware[board_name, "copy"], inputs, timeout_s=30))

    assert runner.last_exit_code == 0      # EXIT -> BYE -> semihosting SYS_EXIT_EXTENDED(0)
    assert [r.input_index for r in results] == [0, 1, 2, 3]
    ratio = board.runner("qemu").instructions_per_tick
    for x, r in zip(inputs, results):
        assert r.status == "ok", r.detail
        assert r.model_status == 0
        assert r.output.dtype == np.int8
        np.testing.assert_array_equal(r.output, copy_model(x))
        assert r.arena_bytes_peak == ARENA_PEAK                 # exact, whatever the data
        assert STACK_BUFFER <= r.stack_bytes_model <= STACK_BUFFER + 256
        assert r.stack_bytes_model < r.stack_bytes_peak < board.stack_bytes
        assert r.count_source == "qemu-icount"
        assert r.instructions == round(r.ticks * ratio)
        # Layer 1 is a subs/bne loop: exactly 2 instructions per iteration, plus
        # the layer bookkeeping and at most one tick of rounding at each end.
        assert len(r.per_layer_instructions) == 4
        spin = r.per_layer_instructions[1]
        assert abs(spin - 2 * SPIN_LOOPS) <= 2 * ratio + 100, r.per_layer_instructions
        assert abs(sum(r.per_layer_instructions) - r.instructions) <= 4 * ratio + 100
        assert 2 * SPIN_LOOPS < r.instructions < 4 * SPIN_LOOPS + 50_000
        assert r.detail["layer_calls"] == 4
        assert "output_depends_on_paint" not in r.detail
    # Same code path for every input, and the counter starts afresh at the
    # timed region (hal_time_restart): the same counts and stack marks, exactly.
    assert len({(r.ticks, tuple(r.per_layer_instructions), r.stack_bytes_peak) for r in results}) == 1


@pytest.mark.qemu
@pytest.mark.parametrize("board_name", BOARDS)
def test_streamed_input_from_a_host_file_and_over_the_uart(firmware, board_name):
    """The stream fixture reads its input in pieces while it runs: from the
    host file (semihosting, kept open) or, over the UART, by asking the host
    (NEED) for every piece. Same outputs; the time of the reads is I/O, left
    out of the run's and the layers' counts and reported on its own."""
    board = load_board(board_name)
    ratio = board.runner("qemu").instructions_per_tick
    rng = np.random.default_rng(11)
    inputs = [rng.integers(-128, 128, 576, dtype=np.int8) for _ in range(2)]
    by_path = {}
    for input_via in ("file", "uart"):
        runner = QemuRunner(board, input_via=input_via)
        by_path[input_via] = results = list(runner.run(firmware[board_name, "stream"], inputs, timeout_s=30))
        assert runner.last_exit_code == 0
        for x, r in zip(inputs, results):
            assert r.status == "ok", r.detail
            np.testing.assert_array_equal(r.output, stream_model(x))
            assert r.arena_bytes_peak == STREAM_ARENA_PEAK
            assert r.detail["layer_calls"] == 3 and len(r.per_layer_instructions) == 3
            assert abs(sum(r.per_layer_instructions) - r.instructions) <= 3 * ratio + 100
            assert r.per_layer_instructions[1] >= 2 * STREAM_SPIN_LOOPS     # the layer without reads
            assert r.io_ticks is not None
    reads = len(stream_reads())
    for f, u in zip(by_path["file"], by_path["uart"]):
        # Over QEMU's UART the reads take far longer than the model ...
        assert u.io_ticks > u.ticks > 0 and u.io_ticks > 10 * f.io_ticks
        # ... and none of it shows: the model's counts agree with the file path's
        # to the tick rounding at both ends of every read.
        assert abs(u.ticks - f.ticks) <= 2 * reads + 2, (u.ticks, f.ticks)
        for layer_u, layer_f in zip(u.per_layer_instructions, f.per_layer_instructions):
            assert abs(layer_u - layer_f) <= (2 * reads + 2) * ratio, (u.per_layer_instructions,
                                                                       f.per_layer_instructions)


@pytest.mark.qemu
@pytest.mark.parametrize("board_name", ARM_BOARDS)
def test_fault_reports_registers_and_the_next_input_gets_a_fresh_emulator(firmware, board_name):
    runner = QemuRunner(load_board(board_name))
    elf = firmware[board_name, "fault"]
    results = list(runner.run(elf, [np.zeros(16, np.int8), np.ones(16, np.int8)], timeout_s=30))
    assert [r.status for r in results] == ["crash", "crash"]
    for r in results:
        d = r.detail
        assert d["pc"] == FAULT_PC                 # the stacked PC: where the jump went
        assert d["exception"] == 3                 # HardFault ...
        assert d["hfsr"] & (1 << 30)               # ... forced (escalated) ...
        assert d["cfsr"] & (1 << 17)               # ... from a UsageFault INVSTATE
        assert d["lr"] & 1                         # a Thumb return address in fb_model_run
        assert d["exit_code"] == 3
        assert any(line.startswith("@FAULT") for line in d["last_output"])
        assert r.output is None and r.instructions is None
    assert qemu_processes_running(elf) == []


@pytest.mark.qemu
@requires_riscv
def test_a_risc_v_trap_is_reported_as_a_cortex_m_fault_is(firmware):
    """The same FAULT frame and crash rows, with the trap CSRs in the fields
    (hal.h): exception = mcause, pc = mepc, lr = ra, xpsr = mstatus."""
    board = load_board("esp32c3")
    elf = firmware["esp32c3", "fault"]
    results = list(QemuRunner(board).run(elf, [np.zeros(16, np.int8), np.ones(16, np.int8)], timeout_s=30))
    assert [r.status for r in results] == ["crash", "crash"]
    qemu = board.runner("qemu")
    for r in results:
        d = r.detail
        assert d["pc"] == FAULT_PC                 # mepc: where the jump went ...
        assert d["exception"] == 2                 # ... virt's boot ROM, zeros there: illegal instruction
        assert qemu.flash.origin <= d["lr"] < qemu.flash.end        # ra: back into fb_model_run
        assert (d["xpsr"] >> 11) & 3 == 3          # mstatus.MPP: trapped from machine mode
        assert qemu.ram.origin < d["sp"] <= qemu.ram.origin + board.stack_bytes
        assert d["exit_code"] == 3
        assert any(line.startswith("@FAULT") for line in d["last_output"])
        assert r.output is None and r.instructions is None
    assert qemu_processes_running(elf) == []


@pytest.mark.qemu
@pytest.mark.parametrize("board_name", BOARDS)
def test_hang_becomes_a_timeout_with_the_last_output(firmware, board_name):
    elf = firmware[board_name, "hang"]
    [result] = QemuRunner(load_board(board_name)).run(elf, [np.zeros(16, np.int8)], timeout_s=1.0)
    assert result.status == "timeout"
    assert result.detail["timeout_s"] == 1.0
    last = result.detail["last_output"]
    assert last[0].startswith("@READY") and "model=fixture-hang" in last[0]
    assert last[-1].startswith("@ACK")             # the input arrived, then nothing
    assert qemu_processes_running(elf) == []


@pytest.mark.qemu
def test_emulator_is_killed_when_the_caller_stops_early(firmware):
    elf = firmware["stm32f4", "copy"]
    results = QemuRunner(load_board("stm32f4")).run(elf, [np.zeros(64, np.int8)] * 3, timeout_s=30)
    assert next(results).status == "ok"
    assert len(qemu_processes_running(elf)) == 1
    results.close()
    assert qemu_processes_running(elf) == []


@pytest.mark.qemu
def test_emulator_is_killed_on_ctrl_c(firmware):
    elf = firmware["stm32h7", "hang"]
    results = QemuRunner(load_board("stm32h7")).run(elf, [np.zeros(16, np.int8)], timeout_s=60)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(results)
    finally:
        timer.cancel()
    assert qemu_processes_running(elf) == []


@pytest.mark.qemu
def test_bad_inputs_are_clear_errors(firmware):
    elf = firmware["stm32h7", "copy"]
    runner = QemuRunner(load_board("stm32h7"))
    with pytest.raises(FusebenchError, match="input 0 has 10 bytes; the model takes 64"):
        list(runner.run(elf, [np.zeros(10, np.int8)]))
    with pytest.raises(FusebenchError, match="input 1 has 256 bytes; the model takes 64"):
        list(runner.run(elf, [np.zeros(64, np.int8), np.zeros(64, np.float32)]))
    with pytest.raises(FusebenchError, match="input 0 has dtype float64"):
        list(runner.run(elf, [np.zeros(8, np.float64)]))
    assert qemu_processes_running(elf) == []


@pytest.mark.qemu
def test_firmware_for_another_board_is_refused(firmware):
    # An F4 image handed to the H7 board's runner. It is given the F4's QEMU
    # settings so that it boots at all; READY then names the wrong board.
    runner = QemuRunner(load_board("stm32h7"))
    runner.target = load_board("stm32f4").runner("qemu")
    with pytest.raises(FusebenchError, match="built for board 'stm32f4', not 'stm32h7'"):
        list(runner.run(firmware["stm32f4", "copy"], [np.zeros(64, np.int8)]))


@pytest.mark.qemu
@requires_riscv
def test_a_shipped_model_runs_bit_exact_on_the_risc_v_board(tmp_path):
    """The smallest shipped MobileNetV2 built for the ESP32-C3 (portable C
    kernels, picolibc) and run on virt: bit-exact with LiteRT's reference."""
    import pandas as pd

    from harness.paths import MODELS_DIR
    from harness.report.bench import run_sweep

    run_dir = run_sweep(["esp32c3"], [MODELS_DIR / "mobilenetv2_w035_64.tflite"], ["unfused", "fused"],
                        max_inputs=2, jobs=2, run_dir=tmp_path)
    rows = pd.read_csv(run_dir / "bench.csv")
    assert len(rows) == 2 * 2
    assert (rows["status"] == "ok").all(), rows[["variant", "status", "detail"]]
    assert rows["outputs_match"].all()
    assert (rows["count_source"] == "qemu-icount").all() and (rows["instructions"] > 1_000_000).all()
    unfused = rows[rows["variant"] == "unfused"]
    assert (unfused["arena_bytes_peak"] == unfused["arena_bytes_planned"]).all()
    # A plan sizes each kernel's scratch for the DSP kernels too (the most either
    # build needs), which the portable ones a RISC-V core runs do not fill.
    assert (rows["arena_bytes_peak"] <= rows["arena_bytes_planned"]).all()
    assert (rows["ram_bytes_total"] <= 384 * 1024).all()
