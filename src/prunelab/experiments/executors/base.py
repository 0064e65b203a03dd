"""The executor interface: a study hands *units* (plain data, see :mod:`.worker`) to an executor and
gets a :class:`concurrent.futures.Future` of their outcomes back. Executors only run units; the order
of a study (dependencies, retries, progress) is the study's."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from prunelab.experiments.executors.worker import execute_unit

__all__ = ["Executor", "InProcessExecutor"]


class Executor:
    """Runs units somewhere. ``capacity`` is how many units it runs at once (``None``: as many as are
    submitted — a cluster's own queue decides); ``threads`` the torch CPU threads of each unit
    (``None``: leave the worker's setting)."""

    name = "executor"
    capacity: int | None = 1
    threads: int | None = None

    def submit(self, unit: dict[str, Any]) -> Future:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers once every submitted unit has finished."""

    def abort(self) -> None:
        """Stop at once (the study was interrupted): running trials stop where they are, and resume from
        their last checkpoint when the study is run again."""
        self.close()

    def describe(self) -> str:
        return self.name

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        if error is None:
            self.close()
        else:
            self.abort()


class InProcessExecutor(Executor):
    """Runs each unit in this process when it is submitted (``--workers 1``): the behaviour of a single
    command, with the trial's own progress bar and logging."""

    name = "in-process"
    capacity = 1

    def submit(self, unit: dict[str, Any]) -> Future:
        future: Future = Future()
        future.set_result(execute_unit(unit))
        return future
