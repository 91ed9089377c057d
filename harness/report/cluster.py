"""Sweeps on a Dask distributed cluster: `invoke bench ... --cluster tcp://HOST:8786`.

Each (board, model, variant) job goes to the cluster as one task; a worker
plans, builds and runs it exactly as a local pool worker would
(`harness.report.bench.run_job`) and sends back the job's events (rows,
layer profile, plan, a detector's outputs). The client writes them into the
same run folder as a local sweep, and the folder's CSVs end up in the
sweep's order (`RunCollector.close`), whichever worker finished first.

What a worker needs: a clone of this repository at the same code (checked:
`code_fingerprint`), installed with `pip install -e '.[lab]'`, and the
toolchains and emulators of the runner (`scripts/setup.sh`). Start workers
with one thread (`dask worker tcp://HOST:8786 --nthreads 1`; `--nworkers N`
for N jobs at once): every job runs an emulator of its own. The model file
travels with the job, so workers need no shared file system. Builds are
content-addressed (harness.backend.build: the hash of the sources, flags and
toolchain), so a worker builds each image once and finds it up to date after.

When a worker dies, Dask's scheduler runs its job again on another worker
(up to the scheduler's `allowed-failures`, 3 by default). A job that raised
on its worker, or that the scheduler gave up on, is sent once more; when
that fails too, its rows are `crash` rows holding the worker's message.
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.errors import FusebenchError
from harness.paths import BUILD_DIR, MODELS_DIR, ROOT

if TYPE_CHECKING:
    from harness.report.bench import Job, RunCollector

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
TRIES = 2                       # a job's tries before its rows become crash rows
CONNECT_TIMEOUT_S = 10.0
NO_WORKERS_TIMEOUT_S = 120.0    # jobs left and no worker for this long: give up, keep what ran
_CODE_DIRS = ("harness", "firmware", "boards", "tools")


def cluster_address(option: Optional[str]) -> Optional[str]:
    """The scheduler to use: --cluster, else $DASK_SCHEDULER_ADDRESS, else none (a local pool)."""
    return option or os.environ.get(SCHEDULER_ENV) or None


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A digest of the code that decides a row (the harness, the firmware
    sources, the board files, the generators): workers must run the client's."""
    digest = hashlib.sha256()
    for folder in _CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _distributed():
    try:
        import distributed
    except ImportError:
        raise FusebenchError("--cluster needs Dask's distributed package: "
                             "pip install -e '.[lab]'") from None
    return distributed


def connect(address: str, runner_cls) -> "distributed.Client":   # noqa: F821
    """A client of the scheduler at `address`; a clear error when it cannot be reached."""
    if not runner_cls.parallel_jobs:
        raise FusebenchError(f"--cluster runs emulator jobs; the {runner_cls.kind} runner needs its "
                             f"board on this machine (run it without --cluster)")
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise FusebenchError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def _worker_setup(boards: list[str], runner: str, options: dict) -> dict:
    """On each worker: its code's fingerprint and whether the runner can run there."""
    from harness.report.bench import check_runner_setup
    try:
        check_runner_setup(boards, runner, options)
        problem = ""
    except FusebenchError as exc:
        problem = str(exc)
    return {"fingerprint": code_fingerprint(), "problem": problem}


def check_workers(client, address: str, boards: list[str], runner: str, options: dict) -> None:
    """Refuse to start when the cluster has no worker, or a worker runs other
    code or lacks what the runner needs (QEMU, a toolchain): say which."""
    answers = client.run(_worker_setup, boards, runner, options)
    if not answers:
        raise FusebenchError(f"the Dask cluster at {address} has no workers: start them with "
                             f"`dask worker {address} --nthreads 1` on machines with fusebench installed")
    mine = code_fingerprint()
    for worker, answer in sorted(answers.items()):
        if answer["fingerprint"] != mine:
            raise FusebenchError(f"Dask worker {worker} runs other fusebench code than this machine: "
                                 f"bring its clone to this one's commit (and changes)")
        if answer["problem"]:
            raise FusebenchError(f"Dask worker {worker}: {answer['problem']}")


class _EventList:
    """A job's events, kept to be sent back with its result."""

    def __init__(self):
        self.items: list[tuple] = []

    def put(self, event: tuple) -> None:
        if event[0] != "status":         # progress of a job far away: the client reports its end
            self.items.append(event)


def _local_model(model_path: str, model: bytes) -> Path:
    """The job's model file on this worker: the same path when it holds the
    same bytes (one machine, a shared file system, a clone's shipped model),
    else a copy by content under build/cluster-models/."""
    digest = hashlib.sha256(model).hexdigest()
    for candidate in (Path(model_path), MODELS_DIR / Path(model_path).name):
        try:
            if hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
                return candidate
        except OSError:
            pass
    path = BUILD_DIR / "cluster-models" / digest[:16] / Path(model_path).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(model)
        os.replace(tmp, path)
    return path


def run_job_on_worker(job: "Job", fingerprint: str, model: bytes) -> dict:
    """The task: run one job on this worker; its events and who ran it."""
    from harness.report.bench import run_job
    try:
        from distributed import get_worker
        worker = get_worker().address
    except (ImportError, ValueError):
        worker = "?"
    if code_fingerprint() != fingerprint:
        raise FusebenchError(f"worker {worker} runs other fusebench code than the client")
    events = _EventList()
    run_job(replace(job, model_path=str(_local_model(job.model_path, model))), events)
    return {"worker": worker, "events": events.items}


def _label(job: "Job") -> str:
    return f"{job.board}/{Path(job.model_path).stem}/{job.variant}"


def run_jobs(client, address: str, job_list: list["Job"], collector: "RunCollector") -> None:
    """Run every job on the cluster; events go to `collector` as each job ends."""
    from distributed import as_completed

    from harness.report.bench import rows_without_run

    fingerprint = code_fingerprint()
    models = {path: Path(path).read_bytes() for path in {j.model_path for j in job_list}}
    run_id = uuid.uuid4().hex[:8]

    def submit(index: int, attempt: int):
        job = job_list[index]
        return client.submit(run_job_on_worker, job, fingerprint, models[job.model_path],
                             key=f"fusebench-{run_id}-{index}-{attempt}-{_label(job)}", pure=False)

    pending = {submit(i, 1): (i, 1) for i in range(len(job_list))}
    finished = as_completed(list(pending), loop=client.loop)
    collector.say(f"{len(job_list)} jobs sent to the Dask cluster at {address}")
    no_workers_since: Optional[float] = None
    try:
        while pending:
            done = finished.next_batch(block=False) if finished.has_ready() else []
            if not done:
                time.sleep(0.5)
                if client.status != "running":
                    raise FusebenchError(f"lost the Dask scheduler at {address} with {len(pending)} jobs "
                                         f"left; what ran is in {collector.run_dir}")
                if client.scheduler_info()["workers"]:
                    no_workers_since = None
                elif no_workers_since is None:
                    no_workers_since = time.monotonic()
                elif time.monotonic() - no_workers_since > NO_WORKERS_TIMEOUT_S:
                    raise FusebenchError(f"the Dask cluster at {address} has had no workers for "
                                         f"{NO_WORKERS_TIMEOUT_S:g} s with {len(pending)} jobs left; "
                                         f"what ran is in {collector.run_dir}")
                continue
            for future in done:
                index, attempt = pending.pop(future)
                job = job_list[index]
                try:
                    result = future.result()
                except Exception as exc:          # the task raised, or the scheduler gave up on it
                    message = f"{type(exc).__name__}: {exc}"
                    if attempt < TRIES:
                        collector.say(f"{_label(job)} failed on the cluster ({message}); trying again")
                        again = submit(index, attempt + 1)
                        pending[again] = (index, attempt + 1)
                        finished.add(again)
                    else:
                        for row in rows_without_run(job, "crash", f"failed {TRIES} times on the Dask cluster: {message}"):
                            collector.handle("row", row)
                    continue
                for kind, payload in result["events"]:
                    collector.handle(kind, payload)
                collector.say(f"{_label(job)} done on {result['worker']}")
    except KeyboardInterrupt:
        client.cancel(list(pending), force=True)
        raise collector.interrupted() from None
    finally:
        if pending:
            try:
                client.cancel(list(pending), force=True)
            except Exception:    # the scheduler may be gone already
                pass
