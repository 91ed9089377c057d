"""The labgrid runner, for real and without hardware: a labgrid coordinator and
an exporter on 127.0.0.1, the exporter publishing QEMU's console UART
(`-serial tcp:127.0.0.1:PORT,server`) as a NetworkSerialPort of a place. The
runner acquires the place, opens the console through labgrid's SerialDriver
and must give the rows the direct QEMU runner gives for the same image.
Every process is started here, bounded in time and killed at teardown."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from harness.errors import FusebenchError
from harness.paths import MODELS_DIR
from harness.targets.boards import BoardTable, load_board
from harness.targets.runners import choose_runner, runner_class

SMALLEST = MODELS_DIR / "mobilenetv2_w035_64.tflite"
HAVE_LABGRID = importlib.util.find_spec("labgrid") is not None
BIN = Path(sys.executable).parent
PLACE = "fb-loopback"
needs_lab = pytest.mark.skipif(not HAVE_LABGRID or not (BIN / "labgrid-coordinator").exists(),
                               reason="labgrid not installed: pip install -e '.[lab]'")


# -- without a farm -------------------------------------------------------------------------

def test_place_alone_picks_the_labgrid_runner():
    assert choose_runner([load_board("nucleo-h743zi")], place="bench-1") == "labgrid"
    cls = runner_class("labgrid")
    assert not cls.parallel_jobs and cls.preference is None and cls.chosen_by_option == "place"


def test_the_labgrid_image_is_the_image_its_table_names():
    from harness.report.bench import firmware_dir
    from harness.frontend.tflite_import import load_model

    graph = load_model(SMALLEST)
    assert firmware_dir("stm32h7", graph, "unfused", "labgrid") == firmware_dir("stm32h7", graph, "unfused", "qemu")
    assert (firmware_dir("nucleo-h743zi", graph, "unfused", "labgrid")
            == firmware_dir("nucleo-h743zi", graph, "unfused", "serial"))
    h7 = load_board("nucleo-h743zi").runner("labgrid")
    assert h7.hal == "stm32h7" and h7.option("flash") == "openocd"
    assert load_board("stm32h7").runner("labgrid").hal == "qemu-mps2"


@pytest.mark.parametrize("values, message", [
    ({"resources": ["NetworkSerialPort"]}, "image must name"),
    ({"image": "qemu", "resources": "NetworkSerialPort"}, "resources must be a list"),
    ({"image": "qemu", "resources": ["NetworkUSBDebugger"]}, "must include a serial port"),
    ({"image": "qemu", "resources": ["NetworkSerialPort"], "flash": "jtag"}, "flash must be one of"),
    ({"image": "qemu", "resources": ["NetworkSerialPort"], "flash": "openocd"}, "needs NetworkUSBDebugger"),
])
def test_bad_labgrid_tables_are_one_line_errors(values, message):
    table = BoardTable(values, "board file x.toml", "runners.labgrid.")
    with pytest.raises(FusebenchError, match=message) as info:
        runner_class("labgrid").check_table(table)
    assert "\n" not in str(info.value)


def test_an_image_naming_no_table_is_a_clear_error(tmp_path):
    path = tmp_path / "lab-only.toml"
    path.write_text('extends = "stm32h7"\nname = "lab-only"\n[runners.labgrid]\nimage = "renode"\n')
    with pytest.raises(FusebenchError, match=r"runners.labgrid.image must name another runner table"):
        load_board(path)


def test_no_place_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LG_PLACE", raising=False)
    monkeypatch.delenv("LG_ENV", raising=False)
    with pytest.raises(FusebenchError, match="needs a place: --place NAME or LG_PLACE"):
        runner_class("labgrid").from_options(load_board("stm32h7"))


def test_missing_labgrid_names_the_extra(monkeypatch):
    import builtins
    from harness.targets.runners import farm

    real_import = builtins.__import__

    def no_labgrid(name, *args, **kwargs):
        if name.startswith("labgrid"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_labgrid)
    with pytest.raises(FusebenchError, match=r"pip install -e '\.\[lab\]'"):
        farm.LabgridRunner(load_board("stm32h7"), place="x").check_tools()


@needs_lab
def test_no_coordinator_is_a_clear_error_within_seconds(monkeypatch):
    monkeypatch.setenv("LG_COORDINATOR", f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(FusebenchError, match="cannot reach the labgrid coordinator at 127.0.0.1"):
        runner_class("labgrid").check_setup(load_board("stm32h7"), place=PLACE)
    assert time.monotonic() - started < 15


# -- a farm on loopback ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s} s")


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


class Farm:
    """labgrid-coordinator + labgrid-exporter on 127.0.0.1 and one place whose
    NetworkSerialPort is QEMU's UART on `serial_port`."""

    def __init__(self, root: Path):
        self.root = root
        self.coordinator = f"127.0.0.1:{free_port()}"
        self.serial_port = free_port()
        self.env = dict(os.environ, LG_COORDINATOR=self.coordinator, GRPC_ENABLE_FORK_SUPPORT="false")
        self.processes: list[subprocess.Popen] = []
        self.qemu_process = None

    def spawn(self, *command, name: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        process = subprocess.Popen(command, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def client(self, *args, env=None, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "labgrid-client"), *args], env=dict(self.env, **(env or {})),
                              capture_output=True, text=True, timeout=30, check=check)

    def start(self) -> None:
        port = int(self.coordinator.rsplit(":", 1)[1])
        coordinator = self.spawn(str(BIN / "labgrid-coordinator"), "-l", self.coordinator, name="coordinator")
        wait_for_port(port, 20, coordinator, "labgrid-coordinator")
        (self.root / "exporter.yaml").write_text(textwrap.dedent(f"""\
            qemu-uart:
              NetworkSerialPort:
                host: 127.0.0.1
                port: {self.serial_port}
                speed: 115200
                protocol: raw
            """))
        exporter = self.spawn(str(BIN / "labgrid-exporter"), "-c", self.coordinator, "-n", "loopback",
                              "--hostname", "127.0.0.1", "exporter.yaml", name="exporter")
        deadline = time.monotonic() + 20
        while "NetworkSerialPort" not in self.client("resources", check=False).stdout:
            if exporter.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the exporter did not publish its resource: "
                                   + (self.root / "exporter.log").read_text()[-2000:])
            time.sleep(0.2)
        self.client("-p", PLACE, "create")
        self.client("-p", PLACE, "add-match", "loopback/qemu-uart/NetworkSerialPort")

    def acquired_by(self) -> str:
        for line in self.client("-p", PLACE, "show").stdout.splitlines():
            if line.strip().startswith("acquired:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError("no acquired line")

    @contextlib.contextmanager
    def qemu(self, board, elf):
        """QEMU running `elf`, its console UART the place's NetworkSerialPort."""
        from harness.targets.runners.qemu_pty import pty_command

        command = pty_command(board, elf)
        command[command.index("pty")] = f"tcp:127.0.0.1:{self.serial_port},server=on,wait=off"
        process = self.spawn(*command, name="qemu")
        try:
            wait_for_port(self.serial_port, 10, process, "QEMU")
            yield process
        finally:
            kill(process)

    def stop(self) -> None:
        for process in reversed(self.processes):
            kill(process)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    if not HAVE_LABGRID or not (BIN / "labgrid-coordinator").exists():
        pytest.skip("labgrid not installed: pip install -e '.[lab]'")
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed (run scripts/setup.sh)")
    lab = Farm(tmp_path_factory.mktemp("farm"))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def on_farm(farm, monkeypatch):
    monkeypatch.setenv("LG_COORDINATOR", farm.coordinator)
    monkeypatch.delenv("LG_ENV", raising=False)
    monkeypatch.delenv("LG_PLACE", raising=False)
    return farm


@pytest.fixture(scope="module")
def smallest():
    """The smallest shipped model built for stm32h7 (the QEMU image) and two of its inputs."""
    from harness.report.bench import build_planned, load_inputs, plan_variant

    board, graph, plan = plan_variant("stm32h7", str(SMALLEST), "unfused")
    build = build_planned(board, graph, plan, runner="labgrid")
    return board, build.elf, [x for _, x, _ in load_inputs(graph, None)[:2]]


@pytest.mark.qemu
def test_labgrid_rows_equal_the_direct_qemu_runs(on_farm, smallest):
    from harness.targets.runners.qemu import QemuRunner

    board, elf, xs = smallest
    runner = runner_class("labgrid").from_options(board, place=PLACE)
    with on_farm.qemu(board, elf):
        lab = list(runner.run(elf, xs, timeout_s=60))
    direct = list(QemuRunner(board).run(elf, xs, timeout_s=60))
    tick = board.runner("qemu").instructions_per_tick
    for a, b in zip(lab, direct, strict=True):
        assert a.status == b.status == "ok", a.detail
        assert a.count_source == b.count_source == "qemu-icount"
        np.testing.assert_array_equal(a.output, b.output)
        assert (a.arena_bytes_peak, a.stack_bytes_peak, a.stack_bytes_model) == \
               (b.arena_bytes_peak, b.stack_bytes_peak, b.stack_bytes_model)
        # The same instructions: the counter starts afresh at the timed region (hal_time_restart).
        assert (a.ticks, a.instructions) == (b.ticks, b.instructions) and a.instructions == round(a.ticks * tick)
        assert a.per_layer_instructions == b.per_layer_instructions
    assert on_farm.acquired_by() == "None"


@pytest.mark.qemu
def test_the_place_is_released_after_a_timeout_and_after_ctrl_c(on_farm, smallest, tmp_path):
    from harness.backend.build import build_firmware
    from tests.helpers import FIXTURES

    board, elf, xs = smallest
    runner = runner_class("labgrid").from_options(board, place=PLACE)
    hang = build_firmware(board, FIXTURES / "hang", tmp_path / "hang", runner="labgrid").elf
    with on_farm.qemu(board, hang):
        [row] = runner.run(hang, [np.zeros(16, np.int8)], timeout_s=1)
        assert row.status == "timeout" and row.detail["place"] == PLACE
        assert on_farm.acquired_by() == "None"

    def interrupted():
        yield xs[0]
        assert on_farm.acquired_by() != "None"      # held while it runs
        raise KeyboardInterrupt

    with on_farm.qemu(board, elf):
        with pytest.raises(KeyboardInterrupt):
            list(runner.run(elf, interrupted(), timeout_s=60))
    assert on_farm.acquired_by() == "None"


@pytest.mark.qemu
def test_a_killed_owner_releases_the_place_through_its_guard(on_farm):
    script = (f"from harness.targets.runners.farm import FarmPlace\n"
              f"f = FarmPlace({PLACE!r}); f.acquire(['NetworkSerialPort']); print('held', flush=True)\n"
              f"import time; time.sleep(60)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=on_farm.env,
                             cwd=Path(__file__).resolve().parents[3])
    try:
        assert owner.stdout.readline().strip() == b"held"
        assert on_farm.acquired_by() != "None"
    finally:
        owner.kill()
        owner.wait(timeout=10)
    deadline = time.monotonic() + 20
    while on_farm.acquired_by() != "None":
        assert time.monotonic() < deadline, "the guard did not release the place"
        time.sleep(0.3)


@pytest.mark.qemu
def test_unknown_taken_or_unfit_places_are_clear_errors(on_farm):
    cls = runner_class("labgrid")
    with pytest.raises(FusebenchError, match=r"labgrid place 'no-such-place' does not exist.*fb-loopback"):
        cls.check_setup(load_board("stm32h7"), place="no-such-place")
    with pytest.raises(FusebenchError, match=rf"place {PLACE} has no NetworkUSBDebugger resource"):
        cls.check_setup(load_board("nucleo-h743zi"), place=PLACE)
    cls.check_setup(load_board("nucleo-h743zi"), place=PLACE, flash=False)   # --no-flash: no probe needed
    other = {"LG_USERNAME": "someone-else"}
    on_farm.client("-p", PLACE, "acquire", env=other)
    try:
        with pytest.raises(FusebenchError, match=rf"place {PLACE} is acquired by .*/someone-else"):
            list(cls.from_options(load_board("stm32h7"), place=PLACE).run(Path(__file__), [np.zeros(1)]))
    finally:
        on_farm.client("-p", PLACE, "release", env=other)


@pytest.mark.qemu
def test_a_labgrid_sweep_gives_the_qemu_sweeps_rows(on_farm, smallest, tmp_path):
    import pandas as pd
    from harness.report.bench import run_sweep

    board, elf, _ = smallest
    columns = ["board", "model", "variant", "input", "status", "outputs_match", "count_source", "instructions",
               "arena_bytes_peak", "stack_bytes_peak", "flash_bytes"]
    with on_farm.qemu(board, elf):
        lab_dir = run_sweep(["stm32h7"], [SMALLEST], ["unfused"], max_inputs=2, runner="labgrid",
                            runner_options={"place": PLACE}, run_dir=tmp_path / "lab")
    qemu_dir = run_sweep(["stm32h7"], [SMALLEST], ["unfused"], max_inputs=2, run_dir=tmp_path / "qemu")
    lab, direct = (pd.read_csv(d / "bench.csv") for d in (lab_dir, qemu_dir))
    assert (lab["runner"] == "labgrid").all() and (lab["status"] == "ok").all(), lab["detail"]
    pd.testing.assert_frame_equal(lab[columns], direct[columns])
    assert on_farm.acquired_by() == "None"


@pytest.mark.qemu
@pytest.mark.slow
def test_the_largest_shipped_model_that_fits_gives_the_qemu_runners_rows_through_the_farm(on_farm, tmp_path):
    """The shipped model with the largest input that fits stm32h7 (its 62 KB
    travel over the farm's serial port), in its own QEMU behind the place: the
    labgrid rows are the direct runner's, instruction counts included. (The
    smallest model is the other tests' case; the ones between add nothing.)"""
    import pandas as pd
    from harness.backend.build import DoesNotFit
    from harness.frontend.catalog import default_models
    from harness.report.bench import build_planned, plan_variant, run_sweep

    for model in sorted(default_models(), key=lambda m: -plan_variant("stm32h7", str(m), "unfused")[1].input.nbytes):
        board, graph, plan = plan_variant("stm32h7", str(model), "unfused")
        try:
            elf = build_planned(board, graph, plan, runner="labgrid").elf
        except DoesNotFit:
            continue                  # w1.0@128's weights need more flash than the H743 has
        break
    else:
        pytest.fail("no shipped model fits stm32h7")
    with on_farm.qemu(board, elf):
        lab_dir = run_sweep(["stm32h7"], [model], ["unfused"], max_inputs=1, runner="labgrid",
                            runner_options={"place": PLACE}, run_dir=tmp_path / "lab")
    qemu_dir = run_sweep(["stm32h7"], [model], ["unfused"], max_inputs=1, run_dir=tmp_path / "qemu")
    lab, direct = (pd.read_csv(d / "bench.csv") for d in (lab_dir, qemu_dir))
    assert (lab["status"] == "ok").all(), lab["detail"]
    same = ["model", "input", "status", "outputs_match", "top1", "count_source", "instructions",
            "arena_bytes_peak", "stack_bytes_peak", "ram_bytes_total", "flash_bytes"]
    pd.testing.assert_frame_equal(lab[same], direct[same])
    assert graph.input.nbytes >= 144 * 144 * 3 and on_farm.acquired_by() == "None"
