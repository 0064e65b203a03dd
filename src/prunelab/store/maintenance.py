"""Checking and cleaning a run store: ``verify`` (every tensor file against its checksum, summaries
against the schema, specs), ``remove_runs`` (``prunelab rm``) and ``collect_garbage`` (``prunelab gc``).

Removal never races a live process: a run is removed only while this process holds its lock and the
locks of all its stages; a run whose lock someone holds is in use and left alone. A removed run is
first renamed into the store root as ``.trash-*`` (one atomic step, hidden from ``runs``), then
deleted, so an interrupted removal never leaves half a run that looks finished.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from prunelab.store.atomic import verify_tensor_file
from prunelab.store.integrity import DamagedFile
from prunelab.store.runs import Run, RunBusy, RunStore, _release_removing

__all__ = [
    "Problem",
    "VerifyReport",
    "verify_runs",
    "check_run",
    "remove_runs",
    "Removal",
    "collect_garbage",
    "TRASH_PREFIX",
]

TRASH_PREFIX = ".trash-"
LOCK_GLOB = ".*.lock"


# verify ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong in a run: the file, what is wrong with it, and how to recover."""

    run_id: str
    path: Path
    problem: str
    advice: str


@dataclass
class VerifyReport:
    runs: int = 0
    files: int = 0  # tensor files checked
    bytes: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    unverified: list[Path] = field(default_factory=list)  # tensor files written before checksums


def check_run(run: Run, report: VerifyReport, *, check_spec: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Add to ``report`` what is wrong with ``run``'s own files (not its stages')."""

    def damaged(error: DamagedFile) -> None:
        report.problems.append(Problem(run.run_id, error.path, error.problem, error.advice))

    report.runs += 1
    if not run.spec_path.is_file():
        damaged(DamagedFile(run.spec_path, "missing (every run directory starts with its spec)"))
    else:
        try:
            data = run.spec_data()
            if check_spec is not None:
                try:
                    check_spec(data)
                except (ValueError, TypeError) as error:
                    damaged(DamagedFile(run.spec_path, f"damaged (not a valid spec: {error})"))
        except DamagedFile as error:
            damaged(error)
    try:
        run.stage_info()
    except DamagedFile as error:
        damaged(error)
    recorded: list[Path] = []
    if run.finished:
        try:
            run.summary()
            recorded = run.recorded_files()
        except DamagedFile as error:
            damaged(error)
    for path in recorded:
        if not path.is_file():
            damaged(DamagedFile(path, f"missing, although run {run.run_id} finished with it"))
    for path in run.tensor_files():
        report.files += 1
        with suppress(OSError):
            report.bytes += path.stat().st_size
        try:
            if not verify_tensor_file(path):
                report.unverified.append(path)
        except DamagedFile as error:
            damaged(error)


def verify_runs(runs: Iterable[Run], *, check_spec: Callable[[dict[str, Any]], None] | None = None) -> VerifyReport:
    """Check every given run (stages are runs: pass them too, e.g. from :meth:`RunStore.all_runs`)."""
    report = VerifyReport()
    started = time.perf_counter()
    for run in runs:
        check_run(run, report, check_spec=check_spec)
    report.seconds = time.perf_counter() - started
    return report


# locks over several runs --------------------------------------------------------------------------
@contextmanager
def _try_lock_file(path: Path, *, remove: bool = True) -> Iterator[bool]:
    """Take the lock at ``path`` if nobody holds it; its file is removed on release when ``remove``."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        if remove:
            _release_removing(lock)
        else:
            lock.release()


def _lock_files(store: RunStore, run: Run) -> list[Path]:
    """The lock files of ``run`` and of every stage it has or had (stale ones included)."""
    own = store.lock_path(run.run_id)
    stages = sorted(store.root.glob(f"{own.name[: -len('.lock')]}__*.lock"))
    wanted = {own, *stages, *(store.lock_path(stage.run_id) for stage in store.stages(run))}
    return sorted(wanted)


def _hold_all(stack: ExitStack, paths: Sequence[Path], run_id: str, *, dry_run: bool = False) -> None:
    for path in paths:
        keep = dry_run and path.exists()  # a dry run changes nothing, stale lock files included
        if not stack.enter_context(_try_lock_file(path, remove=not keep)):
            raise RunBusy(
                f"run {run_id} is in use: another process holds its lock {path.name} (it is training it or one of "
                "its stages); wait for that process to finish or stop it, then try again"
            )


def _discard(store: RunStore, path: Path) -> None:
    """Rename ``path`` into the store's trash (atomic), then delete it."""
    trash = store.root / f"{TRASH_PREFIX}{uuid.uuid4().hex[:12]}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _outermost(runs: Sequence[Run]) -> list[Run]:
    """``runs`` without those inside another of them (removing a lottery removes its stages)."""
    paths = [run.path.absolute() for run in runs]
    kept = []
    for run, path in zip(runs, paths):
        if path in paths[: paths.index(path)]:
            continue  # named twice
        if not any(other != path and other in path.parents for other in paths):
            kept.append(run)
    return kept


def remove_runs(store: RunStore, runs: Sequence[Run], *, dry_run: bool = False) -> list[tuple[Run, int]]:
    """Remove runs with their stages, after taking every one of their locks; returns ``(run, number of
    stages)`` per removed run. Raises :class:`RunBusy`, removing nothing, if any lock is held."""
    runs = _outermost(runs)
    removed = [(run, len(store.stages(run))) for run in runs]
    with ExitStack() as stack:
        for run in runs:
            _hold_all(stack, _lock_files(store, run), run.run_id, dry_run=dry_run)
        if not dry_run:
            for run in runs:
                _discard(store, run.path)
    return removed


# gc ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Removal:
    what: str  # "temp file", "stale lock", "unfinished run", "interrupted removal", "interrupted recomputation"
    path: Path
    detail: str = ""
    bytes: int = 0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _last_change(run: Run) -> float:
    """When the run's own files last changed (its stages' files are theirs)."""
    stamps = [run.path.stat().st_mtime]
    for directory in (*run.own_dirs, run.tensorboard_dir):
        if directory.is_dir():
            stamps += [p.stat().st_mtime for p in directory.iterdir() if p.is_file()]
    return max(stamps)


def collect_garbage(
    store: RunStore, *, older_than: float, dry_run: bool = False, now: float | None = None
) -> tuple[list[Removal], list[str]]:
    """Remove what no run needs: leftovers of interrupted removals, lock files nobody holds, temporary
    files of interrupted writes (in runs nobody holds), and unfinished runs that no process holds, that
    have not changed for ``older_than`` seconds and hold no finished stage. Returns the removals (done,
    or due with ``dry_run``) and notes about what was left alone."""
    now = time.time() if now is None else now
    removals: list[Removal] = []
    notes: list[str] = []
    if not store.root.is_dir():
        return removals, notes
    for trash in sorted(store.root.glob(f"{TRASH_PREFIX}*")):
        removals.append(Removal("interrupted removal", trash, "left by an interrupted `prunelab rm`", _size(trash)))
        if not dry_run:
            shutil.rmtree(trash, ignore_errors=True)
    for path in sorted(store.root.glob(LOCK_GLOB)):
        with _try_lock_file(path, remove=not dry_run) as free:
            if free:
                removals.append(Removal("stale lock", path, "held by no process"))
    gone: list[Path] = []
    for run in store.all_runs():
        if any(g in run.path.parents or g == run.path for g in gone) or run.finished:
            continue
        stages = store.stages(run)
        age = now - max(_last_change(r) for r in (run, *stages))
        if age < older_than or any(stage.finished for stage in stages):
            continue
        size = _size(run.path)
        try:
            remove_runs(store, [run], dry_run=dry_run)
        except RunBusy:
            notes.append(f"run {run.run_id} is unfinished but in use; left alone")
            continue
        gone.append(run.path)
        removals.append(Removal("unfinished run", run.path, f"{run.run_id}, unchanged for {_age(age)}", size))
    for run in store.all_runs():
        if any(g in run.path.parents or g == run.path for g in gone):
            continue
        if run.finished and run.more_steps_dir.is_dir():
            existed = store.lock_path(run.run_id).exists()
            with _try_lock_file(store.lock_path(run.run_id), remove=not (dry_run and existed)) as free:
                if free:  # a killed recomputation of steps the run did not save: asking again redoes it
                    removals.append(
                        Removal(
                            "interrupted recomputation",
                            run.more_steps_dir,
                            f"of run {run.run_id}",
                            _size(run.more_steps_dir),
                        )
                    )
                    if not dry_run:
                        shutil.rmtree(run.more_steps_dir, ignore_errors=True)
                else:
                    notes.append(f"run {run.run_id} is in use; its scratch directory was left alone")
        temps = run.temp_files()
        if not temps:
            continue
        existed = store.lock_path(run.run_id).exists()
        with _try_lock_file(store.lock_path(run.run_id), remove=not (dry_run and existed)) as free:
            if not free:
                notes.append(f"run {run.run_id} is in use; its temporary files were left alone")
                continue
            for temp in run.temp_files():
                removals.append(Removal("temp file", temp, f"of run {run.run_id}", _size(temp)))
                if not dry_run:
                    temp.unlink(missing_ok=True)
    return removals, notes


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f}{unit}"
    return f"{seconds:.0f}s"
