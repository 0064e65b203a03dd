"""Content-addressed run directories.

A run directory is named by the kind of stage and the hash of its semantic spec; what it holds is
spelled out in :mod:`prunelab.store.layout` (``summary.json``, written last, means "finished").
A file lock (``.lock`` beside the directory) makes concurrent starts of the same run train it once:
the second process waits, then finds the summary and returns it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from prunelab import distributed
from prunelab.store.atomic import atomic_write_json, atomic_write_text, read_json
from prunelab.store.layout import RunLayout

__all__ = ["RunStore", "Run", "home_dir", "SUMMARY_KEYS", "RunNotFound"]

SUMMARY_KEYS = ("run_id", "kind", "test_accuracy", "test_loss", "density", "wall_seconds")


class RunNotFound(LookupError):
    """No run matches the given id or prefix."""


def home_dir(home: str | os.PathLike | None = None) -> Path:
    """The run store root: the argument, else ``$PRUNELAB_HOME``, else ``~/.prunelab/runs``."""
    if home:
        return Path(home).expanduser()
    env = os.environ.get("PRUNELAB_HOME")
    if env:
        return Path(env).expanduser()
    return Path("~/.prunelab/runs").expanduser()


@dataclass(frozen=True)
class Run(RunLayout):
    """One run directory: its :class:`RunLayout` and its id (``<kind>-<hash>``, or
    ``<parent>/<stage>`` for the stages of a multi-stage experiment)."""

    run_id: str = ""

    @property
    def kind(self) -> str:
        return self.run_id.split("-", 1)[0]

    @property
    def finished(self) -> bool:
        return self.summary_path.is_file()

    def summary(self) -> dict[str, Any]:
        if not self.finished:
            raise RunNotFound(f"run {self.run_id} has not finished (no {self.summary_path})")
        return read_json(self.summary_path)

    def stage_info(self) -> dict[str, Any]:
        """What else names the stage (``stage.json``): density, branch arguments, a user model's class."""
        return read_json(self.stage_path) if self.stage_path.is_file() else {}

    def spec_data(self) -> dict[str, Any]:
        return yaml.safe_load(self.spec_path.read_text(encoding="utf-8")) if self.spec_path.is_file() else {}

    def write_summary(self, summary: dict[str, Any]) -> None:
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            raise ValueError(f"summary for {self.run_id} lacks required keys {missing}")
        atomic_write_json(self.summary_path, summary)


class RunStore:
    """The directory of all runs. ``RunStore()`` uses ``$PRUNELAB_HOME`` or ``~/.prunelab/runs``."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = home_dir(root)

    def run(self, run_id: str) -> Run:
        return Run(self.root / run_id, run_id)

    def create(self, run_id: str, spec_yaml: str, *, extra: dict[str, Any] | None = None) -> Run:
        """Make the run directory and write its resolved spec (idempotent)."""
        run = self.run(run_id)
        if not distributed.is_writer():  # under torchrun, rank 0 keeps the store
            return run
        run.path.mkdir(parents=True, exist_ok=True)
        if not run.spec_path.is_file():
            atomic_write_text(run.spec_path, spec_yaml)
        if extra:
            atomic_write_json(run.stage_path, extra)
        return run

    @contextmanager
    def lock(self, run_id: str, *, timeout: float = -1, on_wait: Any = None) -> Iterator[None]:
        """Exclusive lock for one run; ``on_wait(message)`` is called if another process holds it.
        Under ``torchrun`` only rank 0 takes it (the other ranks train the same run with it)."""
        if not distributed.is_writer():
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / f".{run_id.replace('/', '__')}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait(f"run {run_id} is being trained by another process; waiting for it to finish")
            lock.acquire(timeout=timeout)
        try:
            yield
        finally:
            lock.release()

    def runs(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        return sorted(
            (Run(p, p.name) for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda r: r.path.stat().st_mtime,
        )

    def find(self, ref: str) -> Run:
        """A run by id, unique id prefix, hash prefix, or path to its directory."""
        candidate = Path(ref).expanduser()
        if candidate.is_dir() and RunLayout(candidate).spec_path.is_file():
            return Run(candidate, candidate.name)
        exact = self.run(ref)
        if exact.path.is_dir():
            return exact
        matches = [r for r in self.runs() if r.run_id.startswith(ref) or r.run_id.split("-", 1)[-1].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFound(f"no run {ref!r} under {self.root} (list them with `prunelab runs`)")
        names = ", ".join(r.run_id for r in matches[:6])
        raise RunNotFound(f"{ref!r} matches several runs ({names}); give more characters")
