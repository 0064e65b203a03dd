"""What a worker runs — the same function in a worker process, a Ray task or a Slurm job.

A *unit* is plain data: the trials (as :meth:`Trial.to_data`), the run store's root, the CPU threads the
worker may use, how many of its trials may train together (``pack``), whether trials show their own
progress bars, and a folder for each trial's log (what it would print on stderr: evaluations, warnings), which
keeps the study's own progress readable. With
``raise`` (one trial run in the driver's own process) a trial's error is raised as it is. Each trial's outcome
comes back as
data too, its error (if any) as one line, so one failing trial never stops the others and no exception
object has to travel back to the driver.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch

from prunelab.errors import describe_error, is_user_error
from prunelab.experiments.trial import Trial
from prunelab.store import RunStore

__all__ = ["execute_unit", "one_line", "log_path"]


def log_path(folder: str | Path, run_id: str) -> Path:
    """Where a trial run by a worker writes what it prints (appended on every attempt)."""
    return Path(folder) / f"{run_id.replace('/', '__')}.log"


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def execute_unit(unit: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the unit's trials one after another in this process; one outcome per trial:
    ``{"run_id", "ok", "summary" | "error", "seconds"}``; a failure also has ``user_error`` (whether the user
    can fix it: bad input, diverged training, a full disk) and ``message`` (its one line without the type).

    With ``pack`` (how many trials may train together) above 1, a unit of several trials is run by
    :func:`~prunelab.experiments.packing.run_packed`: their trainings in lock-step, each trial still its
    own run; what the unit prints goes to every trial's log.
    """
    threads = unit.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    store = RunStore(unit["store"])
    trials = [Trial.from_data(data) for data in unit["trials"]]
    if len(trials) > 1 and int(unit.get("pack") or 1) > 1:
        from prunelab.experiments.packing import run_packed

        logs = [log_path(unit["log"], trial.run_id) for trial in trials] if unit.get("log") else []
        outcomes = run_packed(trials, store, quiet=bool(unit.get("quiet")), max_lanes=int(unit["pack"]), logs=logs)
        for outcome in outcomes:
            if not outcome["ok"]:
                outcome["error"] = one_line(outcome["error"])
        return outcomes
    outcomes = []
    for trial in trials:
        started = time.perf_counter()
        try:
            with _stderr_to(unit.get("log"), trial.run_id):
                summary = trial.run(store, quiet=bool(unit.get("quiet")))
        except Exception as error:  # reported by the study; the unit's other trials still run
            if unit.get("raise"):  # a single command in this process: its error is the command's
                raise
            outcomes.append(
                {
                    "run_id": trial.run_id,
                    "ok": False,
                    "error": one_line(error),
                    "user_error": is_user_error(error),
                    "message": describe_error(error),
                    "seconds": time.perf_counter() - started,
                }
            )
        else:
            outcomes.append(
                {"run_id": trial.run_id, "ok": True, "summary": summary, "seconds": time.perf_counter() - started}
            )
    return outcomes


@contextlib.contextmanager
def _stderr_to(folder: str | None, run_id: str):
    if folder is None:
        yield
        return
    path = log_path(folder, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream, contextlib.redirect_stderr(stream):
        yield
