"""``--executor slurm``: each unit is a Slurm job submitted through submitit (``pip install
'prunelab[slurm]'``).

The driver (``prunelab run`` on a login node, or inside an allocation) submits one job per ready unit
with the given partition, time limit, CPUs and GPUs per trial, writes submitit's logs under the log
folder, and polls the jobs. A job that hits its time limit or is pre-empted is requeued by submitit
(:class:`submitit.helpers.Checkpointable`) and its trial resumes from its last checkpoint. The run store
must be on a file system every node shares. ``cluster="local"`` runs the jobs as local processes
(submitit's ``LocalExecutor``): a way to try a study file before the cluster, and what the tests use.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import submitit

from prunelab.experiments.executors.base import Executor
from prunelab.experiments.executors.worker import execute_unit
from prunelab.specs import SpecError

__all__ = ["SlurmExecutor", "parse_slurm_time"]

_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_slurm_time(text: str) -> int:
    """Slurm's time formats as whole minutes (rounded up): ``90``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM``, ``D-HH:MM:SS``."""
    match = _TIME.match(str(text).strip())
    if not match:
        raise SpecError(f"--slurm-time {text!r} is not a Slurm time: write minutes (90), HH:MM:SS or D-HH:MM:SS")
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts
    total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total <= 0:
        raise SpecError(f"--slurm-time {text!r} is zero: give the time limit of one trial")
    return total


class _UnitJob(submitit.helpers.Checkpointable):
    """A unit as a submitit job; on time-out or pre-emption submitit requeues it with the same unit."""

    def __call__(self, unit: dict[str, Any]) -> list[dict[str, Any]]:
        return execute_unit(unit)


class SlurmExecutor(Executor):
    name = "slurm"
    capacity = None  # Slurm's queue decides what runs when

    def __init__(
        self,
        folder: str | Path,
        *,
        partition: str | None = None,
        time: str = "60",
        gpus_per_trial: int = 0,
        cpus_per_trial: int = 1,
        mem_gb: float | None = None,
        cluster: str | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        if cluster not in (None, "slurm", "local", "debug"):
            raise SpecError(f"--slurm-cluster {cluster!r}: use slurm, local or debug")
        if cluster in ("local", "debug") and partition:
            raise SpecError(f"--slurm-partition applies to a Slurm cluster, not --slurm-cluster {cluster}; drop it")
        if gpus_per_trial < 0 or cpus_per_trial < 1:
            raise SpecError("--slurm-gpus-per-trial must be >= 0 and --slurm-cpus-per-trial >= 1")
        self.folder = Path(folder).expanduser().resolve()
        self.timeout_min = parse_slurm_time(time)
        self._executor = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=cluster)
        parameters: dict[str, Any] = {
            "timeout_min": self.timeout_min,
            "cpus_per_task": cpus_per_trial,
            "gpus_per_node": gpus_per_trial,
            "tasks_per_node": 1,
            "nodes": 1,
            "name": "prunelab",
        }
        if mem_gb is not None:
            parameters["mem_gb"] = mem_gb
        if partition:
            parameters["slurm_partition"] = partition
        self._executor.update_parameters(**parameters)
        self.cluster = self._executor.cluster
        self.threads = cpus_per_trial
        self.partition, self.gpus_per_trial = partition, gpus_per_trial
        self.poll_seconds = poll_seconds
        self._jobs: dict[Any, Future] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="prunelab-slurm-poll", daemon=True)
        self._poller.start()

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition else f"cluster {self.cluster}"
        return (
            f"slurm ({where}): one job per trial, {self.timeout_min} min, {self.threads} CPU(s)"
            + (f", {self.gpus_per_trial} GPU(s)" if self.gpus_per_trial else "")
            + f"; logs in {self.folder}"
        )

    def submit(self, unit: dict[str, Any]) -> Future:
        job = self._executor.submit(_UnitJob(), unit)
        future: Future = Future()
        with self._lock:
            self._jobs[job] = future
        return future

    def _poll(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                jobs = list(self._jobs.items())
            for job, future in jobs:
                if not job.done():
                    continue
                with self._lock:
                    self._jobs.pop(job, None)
                try:
                    future.set_result(job.result())
                except Exception as error:  # the job failed as a whole (killed, out of time for good)
                    future.set_exception(error)
            self._closed.wait(self.poll_seconds)

    def close(self) -> None:
        self._closed.set()
        self._poller.join(timeout=5)

    def abort(self) -> None:
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            try:
                job.cancel(check=False)
            except Exception:  # already finished or unknown to the scheduler: nothing to stop
                pass
        self.close()
