"""``--executor local``: N worker processes on this machine (``concurrent.futures`` with the ``spawn``
start method), each with its share of the CPU threads or one GPU.

Each worker sets ``torch.set_num_threads(cores // N)`` (at least one) and, when GPUs are given, its
``CUDA_VISIBLE_DEVICES`` to one of them before CUDA is initialised (round robin when there are more
workers than GPUs). On Linux a worker is also told to exit when the driver dies
(``PR_SET_PDEATHSIG``), so a killed study leaves no orphan training a run it can no longer report.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from prunelab.experiments.executors.base import Executor
from prunelab.experiments.executors.worker import execute_unit
from prunelab.specs import SpecError

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

__all__ = ["LocalExecutor", "available_cores", "visible_gpus", "default_workers"]


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[int]:
    """The CUDA devices torch sees (none without CUDA)."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def default_workers() -> int:
    """One worker per GPU when CUDA is available, else one per core."""
    return len(visible_gpus()) or available_cores()


def _die_with_parent(driver: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl: the worker then ends when its queue closes
            pass
    if os.getppid() != driver:  # the driver died while this worker was starting, before the signal was armed
        os._exit(1)


def _init_worker(driver: int, threads: int, devices: Queue[int] | None) -> None:
    _die_with_parent(driver)
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    import torch

    torch.set_num_threads(threads)


class LocalExecutor(Executor):
    name = "local"
    threads: int  # always set: each worker's share of the cores

    def __init__(self, workers: int | None = None, *, gpus: Sequence[int] | None = None) -> None:
        self.gpus = list(visible_gpus() if gpus is None else gpus)
        self.workers = int(workers) if workers is not None else (len(self.gpus) or available_cores())
        if self.workers < 1:
            raise SpecError(f"--workers must be >= 1, got {self.workers}")
        self.capacity = self.workers
        self.threads = max(1, available_cores() // self.workers)
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        share = f"GPU {', '.join(map(str, self.gpus))}" if self.gpus else f"{self.threads} CPU thread(s) each"
        return f"local: {self.workers} worker process(es), {share}"

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        devices: Queue[int] | None = None
        if self.gpus:
            devices = context.Queue()
            for i in range(self.workers):
                devices.put(self.gpus[i % len(self.gpus)])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), self.threads, devices),
        )

    def submit(self, unit: dict[str, Any]) -> Future:
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(execute_unit, unit)
        except BrokenProcessPool:  # a worker died (killed, out of memory): start a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(execute_unit, unit)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def abort(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            return
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
