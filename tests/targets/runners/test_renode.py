"""The Renode runner: its scripts (no Renode needed), its handling of the
Renode process (with a stand-in `renode`), and the real thing where Renode is
installed (skipped otherwise, saying how to point the tests at it)."""
import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FIXTURES, TESTS_DIR
from harness.targets.boards import load_board
from harness.backend.build import build_firmware
from harness.errors import FusebenchError
from harness.targets.runners import make_runner
from harness.targets.runners.renode import (RENODE_NOT_FOUND, RenodeRunner, find_renode, platform_additions,
                                    renode_command, renode_script)

HERE = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def copy_model(x):
    return (3 * x[::-1].astype(np.int64) + 1).astype(np.uint8).view(np.int8)


# -- scripts ----------------------------------------------------------------------------------

def script_lines(board_name):
    board = load_board(board_name)
    text = renode_script(board, Path("/s/firmware.elf"), Path("/s/console.pty"), Path("/s/add.repl"))
    return [l for l in text.splitlines() if l and not l.startswith("#")]


def test_h743_script():
    assert script_lines("stm32h7") == [
        "logLevel 3",
        'mach create "fusebench"',
        "machine LoadPlatformDescription @platforms/cpus/stm32h743.repl",
        "machine LoadPlatformDescription @/s/add.repl",
        'sysbus Tag <0x5c001000, 0x5c001003> "DBGMCU_IDC" 0x20036450',
        "sysbus.cpu PerformanceInMips 480",
        'emulation SetGlobalQuantum "0.000002000"',
        "sysbus LoadELF @/s/firmware.elf",
        "sysbus.cpu VectorTableOffset 0x08000000",
        'emulation CreateUartPtyTerminal "fbconsole" "/s/console.pty" true',
        "connector Connect sysbus.usart3 fbconsole",
        "start",
    ]


def test_f4_script_uses_its_platform_clock_and_usart():
    lines = script_lines("stm32f4")
    assert "machine LoadPlatformDescription @platforms/cpus/stm32f4.repl" in lines
    assert "sysbus.cpu PerformanceInMips 168" in lines
    assert 'sysbus Tag <0xe0042000, 0xe0042003> "DBGMCU_IDCODE" 0x10076413' in lines
    assert "connector Connect sysbus.usart2 fbconsole" in lines
    # The console is made last, just before start: its pty existing means all else loaded.
    assert lines[-3].startswith("emulation CreateUartPtyTerminal") and lines[-1] == "start"


@pytest.mark.parametrize("board_name, hz", [("stm32h7", 480_000_000), ("stm32f4", 168_000_000)])
def test_dwt_is_added_at_the_board_clock(board_name, hz):
    assert platform_additions(load_board(board_name)).splitlines()[1:] == [
        "dwt: Miscellaneous.DWT @ sysbus 0xE0001000", f"    frequency: {hz}"]


def test_paths_renode_cannot_take_are_refused():
    with pytest.raises(FusebenchError, match="characters Renode's monitor cannot take"):
        renode_script(load_board("stm32h7"), Path("/my firmware/f.elf"), Path("/s/p"), None)


def test_command_is_headless_with_the_monitor_on_a_port():
    assert renode_command(Path("/opt/renode/renode"), Path("/s/x.resc"), 4321) == [
        "/opt/renode/renode", "--disable-xwt", "--plain", "--port", "4321", "/s/x.resc"]


# -- finding Renode ---------------------------------------------------------------------------

def pyrenode3_importable(monkeypatch, present: bool) -> None:
    """Make importlib see (or not see) pyrenode3, leaving every other module alone."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr("harness.targets.runners.renode.importlib.util.find_spec",
                        lambda name, *a: (object() if present else None) if name == "pyrenode3"
                        else real(name, *a))


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_renode_order(tmp_path, monkeypatch):
    pyrenode3_importable(monkeypatch, False)
    (tmp_path / "a").mkdir()
    explicit = executable(tmp_path / "a" / "renode")
    env_dir = tmp_path / "b"
    env_dir.mkdir()
    from_env = executable(env_dir / "renode")
    path_dir = tmp_path / "c"
    path_dir.mkdir()
    on_path = executable(path_dir / "renode")
    env = {"RENODE": str(env_dir), "PATH": str(path_dir)}
    assert find_renode(str(explicit), env).executable == explicit
    assert find_renode(None, env).executable == from_env          # a folder holding `renode`
    assert find_renode(None, {"PATH": str(path_dir)}).executable == on_path
    pyrenode3_importable(monkeypatch, True)
    assert find_renode(None, {"PATH": str(path_dir)}).kind == "pyrenode3"
    assert find_renode(None, env).executable == from_env          # an explicit choice wins


def test_missing_renode_says_how_to_point_at_it(tmp_path, monkeypatch):
    pyrenode3_importable(monkeypatch, False)
    with pytest.raises(FusebenchError) as info:
        find_renode(None, {"PATH": str(tmp_path)})
    message = str(info.value)
    assert message == RENODE_NOT_FOUND and "\n" not in message
    assert "--renode" in message and "RENODE=" in message and "PATH" in message
    with pytest.raises(FusebenchError, match=r"--renode /nowhere/renode is not a Renode executable"):
        find_renode("/nowhere/renode", {})
    with pytest.raises(FusebenchError, match=r"\$RENODE /nowhere is not a Renode executable"):
        find_renode(None, {"RENODE": "/nowhere"})


def test_make_runner_renode():
    runner = make_runner("renode", load_board("stm32h7"), renode="/opt/renode")
    assert isinstance(runner, RenodeRunner) and runner.renode == "/opt/renode"
    assert runner.count_source == "renode-virtual"
    assert runner.target.hal == "stm32h7"


# -- the process, with a stand-in renode --------------------------------------------------------

@pytest.fixture(scope="module")
def h7_image(tmp_path_factory):
    board = load_board("stm32h7")
    return build_firmware(board, FIXTURES / "copy", tmp_path_factory.mktemp("renode-fw"), runner="renode").elf


@pytest.fixture
def fake_renode(tmp_path, monkeypatch):
    record = tmp_path / "starts.jsonl"
    wrapper = executable(tmp_path / "renode",
                         f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} {HERE / 'fake_renode.py'} \"$@\"\n")
    monkeypatch.setenv("FAKE_RENODE_RECORD", str(record))
    return wrapper, record


def starts(record: Path) -> list[dict]:
    return [json.loads(l) for l in record.read_text().splitlines()] if record.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent, the runner, reaped it or will).
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_runner_drives_renode_and_quits_it(h7_image, fake_renode):
    renode, record = fake_renode
    xs = [np.arange(64, dtype=np.int8), np.full(64, -7, np.int8)]
    runner = RenodeRunner(load_board("stm32h7"), renode=str(renode), ack_timeout_s=2)
    results = list(runner.run(h7_image, xs, timeout_s=10))
    for x, r in zip(xs, results):
        assert r.status == "ok", r.detail
        assert r.count_source == "renode-virtual"
        assert r.instructions == 12345                  # CYCCNT ticks, one per instruction
        np.testing.assert_array_equal(r.output, copy_model(x))
    [start] = starts(record)
    assert start["argv"][:5] == ["--disable-xwt", "--plain", "--port", start["argv"][3], start["argv"][-1]]
    assert start["elf_exists"] and "LoadPlatformDescription @platforms/cpus/stm32h743.repl" in start["script"]
    time.sleep(0.2)
    assert not alive(start["pid"])                      # quit through the monitor


@pytest.mark.parametrize("mode", ["hang", "deaf"])
def test_renode_is_ended_after_a_hang_even_if_it_ignores_quit(h7_image, fake_renode, monkeypatch, mode):
    renode, record = fake_renode
    monkeypatch.setenv("FAKE_RENODE_MODE", mode)
    runner = RenodeRunner(load_board("stm32h7"), renode=str(renode), ack_timeout_s=0.5,
                          quit_timeout_s=1.0)
    t0 = time.monotonic()
    results = list(runner.run(h7_image, [np.zeros(64, np.int8)] * 2, timeout_s=0.5))
    assert [r.status for r in results] == ["timeout", "timeout"]
    assert "stopped answering" in results[0].detail["reason"]
    pids = [s["pid"] for s in starts(record)]
    assert len(pids) == 2                               # a fresh emulation for the second input
    assert not any(alive(pid) for pid in pids)
    assert time.monotonic() - t0 < 30


def test_pyrenode3_runs_the_same_script_in_process(h7_image, monkeypatch):
    """pyrenode3 stand-in: Monitor().execute gets `include @script`; close clears the emulation."""
    import importlib.util as iu
    import re
    import threading
    import tty
    import types

    spec = iu.spec_from_file_location("fake_renode", HERE / "fake_renode.py")
    fake = iu.module_from_spec(spec)
    spec.loader.exec_module(fake)
    calls = []

    class Monitor:
        def execute(self, command):
            calls.append(command)
            script = Path(command.split("@", 1)[1]).read_text()
            pty = re.search(r'CreateUartPtyTerminal "\w+" "([^"]+)"', script).group(1)
            master, slave = os.openpty()
            tty.setraw(slave)
            os.symlink(os.ttyname(slave), pty)
            threading.Thread(target=fake.device, args=(master, "ok"), daemon=True).start()
            return "", ""

    class Emulation:
        def clear(self):
            calls.append("clear")

    wrappers = types.SimpleNamespace(Monitor=Monitor, Emulation=Emulation)
    monkeypatch.setitem(sys.modules, "pyrenode3", types.SimpleNamespace(wrappers=wrappers))
    monkeypatch.setitem(sys.modules, "pyrenode3.wrappers", wrappers)
    pyrenode3_importable(monkeypatch, True)
    monkeypatch.delenv("RENODE", raising=False)
    runner = RenodeRunner(load_board("stm32h7"), ack_timeout_s=2)
    [result] = runner.run(h7_image, [np.arange(64, dtype=np.int8)], timeout_s=10)
    assert runner.install.kind == "pyrenode3"
    assert result.status == "ok" and result.instructions == 12345
    assert calls[0].startswith("include @") and calls[0].endswith("fusebench.resc")
    assert calls[-1] == "clear"


def test_renode_that_never_makes_the_console_is_a_clear_error(h7_image, tmp_path):
    broken = executable(tmp_path / "renode", "#!/bin/sh\necho 'Could not find platform file'\nexit 1\n")
    runner = RenodeRunner(load_board("stm32h7"), renode=str(broken))
    with pytest.raises(FusebenchError, match=r"Renode exited with status 1 before the console existed: "
                                             r"Could not find platform file"):
        list(runner.run(h7_image, [np.zeros(64, np.int8)]))


# -- the real Renode ----------------------------------------------------------------------------

def installed_renode():
    try:
        return find_renode()
    except FusebenchError as exc:
        return str(exc)


RENODE = installed_renode()
needs_renode = pytest.mark.skipif(isinstance(RENODE, str), reason=f"{RENODE} to run the Renode tests")


@needs_renode
@pytest.mark.parametrize("board_name", ["stm32h7", "stm32f4"])
def test_copy_model_on_real_renode(board_name, tmp_path):
    board = load_board(board_name)
    elf = build_firmware(board, FIXTURES / "copy", tmp_path / "fw", runner="renode").elf
    xs = [np.random.default_rng(3).integers(-128, 128, 64, dtype=np.int8) for _ in range(2)]
    xs.append(np.full(64, 0x5A, np.int8))
    results = list(RenodeRunner(board).run(elf, xs, timeout_s=60))
    spin = int(next(l for l in (FIXTURES / "copy" / "fb_model.h").read_text().splitlines()
                    if "FIXTURE_SPIN_LOOPS" in l).split()[2].rstrip("u"), 0)
    for x, r in zip(xs, results):
        assert r.status == "ok", r.detail
        np.testing.assert_array_equal(r.output, copy_model(x))
        assert r.count_source == "renode-virtual"
        # Layer 1 is a subs/bne loop of 2 instructions per iteration: CYCCNT at
        # clock_hz with the core at clock-MHz MIPS counts about one per instruction.
        assert 1.5 * spin < r.per_layer_instructions[1] < 4 * spin, r.per_layer_instructions


@needs_renode
def test_fault_on_real_renode_is_a_crash_with_registers(tmp_path):
    board = load_board("stm32h7")
    elf = build_firmware(board, FIXTURES / "fault", tmp_path / "fw", runner="renode").elf
    [result] = RenodeRunner(board).run(elf, [np.zeros(16, np.int8)], timeout_s=60)
    assert result.status == "crash"
    assert result.detail["exception"] == 3 and "pc" in result.detail


def test_sweep_without_renode_stops_before_any_work(tmp_path):
    from harness.report.bench import run_sweep
    with pytest.raises(FusebenchError, match="--renode /nowhere/renode is not a Renode executable"):
        run_sweep(["stm32h7"], [tmp_path / "never-read.tflite"], ["unfused"], run_dir=tmp_path,
                  runner="renode", runner_options={"renode": "/nowhere/renode"})


def test_the_offline_svd_download_is_kept_out_of_the_rows():
    """stm32f4.repl asks for its SVD file; offline Renode logs the failure and
    goes on: the log tail that goes into a row's detail leaves it out."""
    from harness.targets.runners.renode import _log_noise
    assert _log_noise("[ERROR] Could not download https://dl.antmicro.com/projects/renode/svd/STM32F40x.svd.gz")
    assert _log_noise("sysbus: Failed to load SVD file")
    assert not _log_noise("[ERROR] cpu: CPU abort [PC=0x8000f00]: Undefined instruction")
