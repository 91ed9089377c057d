"""Sweeps on a Dask cluster (harness.report.cluster): a scheduler and two
workers started here on 127.0.0.1, stopped by the fixture."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import FusebenchError
from harness.paths import MODELS_DIR
from harness.report.bench import run_sweep

distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed (pip install -e '.[lab]')")

SMALLEST = MODELS_DIR / "mobilenetv2_w035_64.tflite"
VARIANTS = ["unfused", "fused", "msf", "patch"]
DASK = Path(sys.executable).parent / "dask"
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1 (one thread
    each, no nanny: killing a worker's process kills the worker)."""

    def __init__(self, folder: Path, workers: int):
        if not DASK.is_file():
            pytest.skip(f"no `dask` command next to {sys.executable}")
        self.folder = folder
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.client = None
        try:
            self._start_all(workers)
        except BaseException:
            self.stop()
            raise

    def _start_all(self, workers: int) -> None:
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
                                  "--no-dashboard"])
        for k in range(workers):
            self._start(f"w{k}", ["worker", self.address, "--name", f"w{k}", "--nthreads", "1", "--no-nanny",
                                  "--no-dashboard", "--memory-limit", "0", "--host", "127.0.0.1"])
        self.client = self._client()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self.client.scheduler_info()["workers"]) < workers:
            assert time.monotonic() < deadline, f"the workers did not join: {self.logs()}"
            time.sleep(0.2)

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=self.folder, start_new_session=True)

    def _client(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                return distributed.Client(self.address, timeout=5, set_as_default=False)
            except (OSError, TimeoutError):
                assert time.monotonic() < deadline, f"the scheduler did not start: {self.logs()}"
                time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.folder.glob("*.log")))

    def worker_processing(self) -> dict[str, int]:
        """Tasks each worker (by name) is running now."""
        info = self.client.scheduler_info()["workers"]
        names = {address: w["name"] for address, w in info.items()}
        return {names[a]: len(tasks) for a, tasks in self.client.processing().items() if a in names}

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for p in self.processes.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)   # the worker and the emulator it started
            except ProcessLookupError:
                pass
        for p in self.processes.values():
            p.wait(timeout=10)


@pytest.fixture
def loopback_cluster(tmp_path):
    folder = tmp_path / "dask"
    folder.mkdir()
    cluster = LoopbackCluster(folder, workers=2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same sweep in the local pool: what the cluster's CSVs must equal."""
    return run_sweep(["stm32h7"], [SMALLEST], VARIANTS, max_inputs=2, jobs=2,
                     run_dir=tmp_path_factory.mktemp("local"))


def _csv(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / name, keep_default_na=False)


def _assert_same_results(local: Path, remote: Path) -> None:
    """Every column of every row, in the same order: instruction counts too
    (QEMU's -icount, the counter started afresh at the timed region)."""
    pd.testing.assert_frame_equal(_csv(local, "bench.csv"), _csv(remote, "bench.csv"))
    pd.testing.assert_frame_equal(_csv(local, "layers.csv"), _csv(remote, "layers.csv"))
    assert sorted(p.name for p in (local / "plans").iterdir()) == sorted(p.name for p in (remote / "plans").iterdir())
    rows = _csv(remote, "bench.csv")
    assert len(rows) == 2 * len(VARIANTS) and set(rows["status"]) <= {"ok", "does-not-fit", "not-applicable"}
    assert list(dict.fromkeys(rows["variant"])) == VARIANTS          # the sweep's order, not the finishing order


@pytest.mark.qemu
def test_a_sweep_on_the_cluster_writes_the_local_runs_csvs(loopback_cluster, local_run, tmp_path):
    remote = run_sweep(["stm32h7"], [SMALLEST], VARIANTS, max_inputs=2, run_dir=tmp_path / "remote",
                       cluster=loopback_cluster.address)
    _assert_same_results(local_run, remote)


@pytest.mark.qemu
def test_killing_a_worker_mid_sweep_loses_no_row(loopback_cluster, local_run, tmp_path):
    result: dict = {}

    def sweep():
        try:
            result["run_dir"] = run_sweep(["stm32h7"], [SMALLEST], VARIANTS, max_inputs=2,
                                          run_dir=tmp_path / "remote", cluster=loopback_cluster.address)
        except BaseException as exc:      # handed to the test's thread
            result["error"] = exc

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not loopback_cluster.worker_processing().get("w0"):
        assert thread.is_alive() and time.monotonic() < deadline, f"w0 never got a job: {result}"
        time.sleep(0.05)
    loopback_cluster.kill("w0")                    # mid-job: its emulator dies with it
    thread.join(timeout=300)
    assert not thread.is_alive(), "the sweep did not finish after the worker died"
    assert "error" not in result, result.get("error")
    _assert_same_results(local_run, result["run_dir"])


def test_a_job_that_fails_twice_is_a_crash_row_with_the_workers_message(monkeypatch, tmp_path):
    """An in-process cluster, so the job itself can be made to fail."""
    import harness.report.bench as bench

    calls = []

    def failing_job(job, events):
        calls.append(job.variant)
        raise RuntimeError("the worker's disk is full")

    monkeypatch.setattr(bench, "run_job", failing_job)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        run_dir = run_sweep(["stm32h7"], [SMALLEST], ["unfused"], max_inputs=2, runs=2,
                            run_dir=tmp_path, cluster=cluster.scheduler_address)
    rows = _csv(run_dir, "bench.csv")
    assert calls == ["unfused", "unfused"]
    assert len(rows) == 4 and (rows["status"] == "crash").all()
    assert rows["detail"].str.contains("failed 2 times on the Dask cluster: RuntimeError: "
                                       "the worker's disk is full").all()
    assert list(rows["run"]) == [0, 0, 1, 1] and list(rows["input"][:2]) == list(rows["input"][2:])  # run_job's order


def test_a_scheduler_that_does_not_answer_is_a_clear_error(monkeypatch, tmp_path):
    import harness.report.cluster as cluster
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(FusebenchError, match=f"cannot reach the Dask scheduler at {address}"):
        run_sweep(["stm32h7"], [SMALLEST], ["unfused"], run_dir=tmp_path, cluster=address)
    assert time.monotonic() - started < 30 and not (tmp_path / "bench.csv").exists()


def test_a_cluster_without_workers_or_with_a_board_on_a_port_is_refused(tmp_path):
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        with pytest.raises(FusebenchError, match="has no workers: start them with `dask worker"):
            run_sweep(["stm32h7"], [SMALLEST], ["unfused"], run_dir=tmp_path, cluster=empty.scheduler_address)
        with pytest.raises(FusebenchError, match="the serial runner needs its board on this machine"):
            run_sweep(["nucleo-h743zi"], [SMALLEST], ["unfused"], run_dir=tmp_path, runner="serial",
                      runner_options={"port": "/dev/null", "flash": False}, cluster=empty.scheduler_address)


def test_the_command_line_takes_the_cluster_from_the_environment(monkeypatch, tmp_path):
    """`invoke bench` without --cluster uses $DASK_SCHEDULER_ADDRESS: one error line, no traceback."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=address, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    proc = subprocess.run([str(Path(sys.executable).parent / "invoke"), "bench", "--model", "mobilenetv2_w035_64",
                           "--variant", "unfused", "--max-inputs", "1"],
                          cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout
    assert f"cannot reach the Dask scheduler at {address}" in proc.stderr + proc.stdout
