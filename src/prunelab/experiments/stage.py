"""Idempotent, resumable stages on top of the run store.

A stage is a unit of work whose result is a ``summary.json`` in a content-addressed run directory.
Running a stage whose summary exists returns it at once; otherwise the stage takes the run's lock
(so two processes never train the same run twice), re-checks, and runs its body, which may itself
resume from checkpoints left by an interrupted attempt. A finished run is only reused once its
tensor files verify: a damaged result is an error naming the file and the recovery, never reused.
A stage that fails on bad input before producing anything, or whose training diverges, leaves no
unfinished run behind.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from typing import Any

from prunelab import distributed
from prunelab.store import Run, RunStore
from prunelab.training import TrainingDiverged

__all__ = ["run_stage", "remove_if_unused"]

log = logging.getLogger("prunelab")


def run_stage(
    store: RunStore,
    run_id: str,
    spec_yaml: str,
    body: Callable[[Run], dict[str, Any]],
    *,
    stage_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the summary of ``run_id``, running ``body(run)`` first if it has not finished.

    ``body`` returns the summary fields; ``run_id``, ``kind`` and ``wall_seconds`` are filled in here
    when absent, and the summary is written atomically as the last act of the stage.
    """
    run = store.run(run_id)
    if run.finished:
        # debug only: a study announces the stored runs a command asked for; here a finished run is most
        # often a prerequisite read back (a lottery's previous level), just stored by this very command
        log.debug("reusing finished run %s", run_id)
        summary = run.verified_summary()
        store.clear_stale_lock(run_id)  # left by a process killed between its summary and its unlock
        return summary
    summary = _run_body(store, run, spec_yaml, body, stage_info)
    distributed.barrier()  # under torchrun: rank 0 wrote the summary before any rank reads the store again
    return summary


def _run_body(
    store: RunStore, run: Run, spec_yaml: str, body: Callable[[Run], dict[str, Any]], stage_info: dict[str, Any] | None
) -> dict[str, Any]:
    run_id = run.run_id
    with store.lock(run_id, on_wait=log.warning):
        if distributed.agree(run.finished):  # another process finished it while we waited
            return run.verified_summary()
        fresh = not run.path.exists()
        store.create(run_id, spec_yaml, extra=stage_info)
        started = time.perf_counter()
        try:
            summary = body(run)
        except TrainingDiverged:
            if distributed.is_writer():
                _remove_diverged(store, run)
            raise
        except Exception:
            if fresh and distributed.is_writer():
                _remove_if_empty(run)
            raise
        summary.setdefault("run_id", run_id)
        summary.setdefault("kind", run.kind)
        summary.setdefault("wall_seconds", round(time.perf_counter() - started, 3))
        ordered: dict[str, Any] = {key: summary[key] for key in ("run_id", "kind") if key in summary}
        ordered.update({k: v for k, v in summary.items() if k not in ordered})
        run.write_summary(ordered)
        return ordered


def _remove_diverged(store: RunStore, run: Run) -> None:
    """A run whose training diverged is removed, checkpoints and all: its spec diverges again from any
    of them, and the fix (a lower learning rate, a warm-up) names another run. So ``prunelab runs`` never
    lists it as unfinished. An enclosing run (a lottery) that holds nothing else goes too."""
    shutil.rmtree(run.path, ignore_errors=True)
    log.debug("removed %s: its training diverged", run.run_id)
    if "/" not in run.run_id:
        return
    remove_if_unused(store, run.run_id.split("/", 1)[0])


def remove_if_unused(store: RunStore, run_id: str) -> None:
    """Remove ``run_id`` if it is unfinished, holds nothing but its spec and stage record, and no live
    process holds its lock: what a multi-stage run (a lottery) leaves when its first stage fails."""
    run = store.run(run_id)
    with store.try_lock(run_id) as held:
        if held and not run.finished:
            _remove_if_empty(run)


def _remove_if_empty(run: Run) -> None:
    """A stage that failed before producing anything (bad input) leaves no unfinished run behind;
    one that trained at all keeps its checkpoints so that re-running resumes."""
    if run.path.is_dir() and all(p.name in run.bookkeeping for p in run.path.iterdir()):
        shutil.rmtree(run.path, ignore_errors=True)
