"""Content-addressed run directories.

A run directory is named by the kind of stage and the hash of its semantic spec; what it holds is
spelled out in :mod:`prunelab.store.layout` (``summary.json``, written last, means "finished").
A file lock (``.<run id>.lock`` in the store root) makes concurrent starts of the same run train it
once: the second process waits, then finds the summary and returns it. Whoever holds a run's lock
owns its files: on taking the lock it removes temporary files a killed holder left behind, and on
releasing it removes the lock file (see :meth:`RunStore.lock` for why that is safe).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from filelock import FileLock, Timeout

from prunelab import distributed
from prunelab.errors import UserError
from prunelab.store.atomic import atomic_write_json, atomic_write_text, load_tensors, read_json, verify_tensor_file
from prunelab.store.integrity import DamagedFile, owning_run
from prunelab.store.layout import RunLayout
from prunelab.store.summary import SUMMARY_KEYS, summary_problems

if TYPE_CHECKING:
    import torch

__all__ = ["RunStore", "Run", "home_dir", "SUMMARY_KEYS", "RunNotFound", "RunBusy"]


class RunNotFound(UserError, LookupError):
    """No run matches the given id or prefix."""


class RunBusy(UserError, ValueError):
    """A run's lock is held by a live process (it is being trained right now)."""


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
        """The run's ``summary.json``, checked against the summary schema (:class:`DamagedFile` if it is
        unreadable or does not fit)."""
        if not self.finished:
            raise RunNotFound(f"run {self.run_id} has not finished (no {self.summary_path})")
        try:
            summary = read_json(self.summary_path)
        except ValueError as error:
            raise DamagedFile(self.summary_path, f"damaged (not valid JSON: {error.__cause__ or error})") from error
        problems = summary_problems(summary)
        if problems:
            raise DamagedFile(self.summary_path, f"damaged ({'; '.join(problems)})")
        return summary

    def stage_info(self) -> dict[str, Any]:
        """What else names the stage (``stage.json``): density, branch arguments, a user model's class."""
        if not self.stage_path.is_file():
            return {}
        try:
            info = read_json(self.stage_path)
        except ValueError as error:
            raise DamagedFile(self.stage_path, f"damaged (not valid JSON: {error.__cause__ or error})") from error
        if not isinstance(info, dict):
            raise DamagedFile(self.stage_path, "damaged (not a JSON object)")
        return info

    def spec_data(self) -> dict[str, Any]:
        """The run's stored spec as a mapping (``{}`` when it has none)."""
        if not self.spec_path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.spec_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise DamagedFile(self.spec_path, f"damaged (not valid YAML: {error})") from error
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise DamagedFile(self.spec_path, f"damaged (holds a {type(data).__name__}, not a mapping)")
        return data

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically after checking it against the summary schema."""
        problems = summary_problems(summary)
        if problems:
            raise ValueError(f"summary for {self.run_id} does not fit the summary schema: {'; '.join(problems)}")
        atomic_write_json(self.summary_path, summary)

    def recorded_steps(self) -> list[int]:
        """The steps whose weights a finished run's summary says it saved (its final step, ``saved_steps``)."""
        if not self.finished:
            return []
        summary = self.summary()
        steps = set(summary.get("saved_steps") or ())
        if summary.get("final_step") is not None:
            steps.add(summary["final_step"])
        return sorted(steps)

    def saved_steps(self) -> list[int]:
        """The steps whose weights are saved: those on disk, and for a finished run those its summary
        records (a recorded step whose file is gone is damage, reported when it is loaded)."""
        return sorted(set(super().saved_steps()) | set(self.recorded_steps()))

    def recorded_files(self) -> list[Path]:
        """The tensor files a finished run must hold: its mask and the weights of its recorded steps."""
        steps = self.recorded_steps()
        return [self.mask_path, *(self.weights_path(s) for s in steps)] if steps else []

    def verified_summary(self) -> dict[str, Any]:
        """The summary of a finished run, after checking the files it hands on (its mask and recorded
        weights) against their checksums: what every reuse of a finished run goes through, so that a
        damaged result is an error naming the file, never reused. (Checkpoints are not needed any more
        and are left to ``prunelab verify``.)"""
        summary = self.summary()
        for path in self.recorded_files():
            verify_tensor_file(path)
        return summary

    def load_weights(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """The weights saved at ``step`` (default: the final step), checked against their checksum."""
        if step is None:
            step = self.summary()["final_step"]
        return load_tensors(self.weights_path(step))


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

    def lock_path(self, run_id: str) -> Path:
        return self.root / f".{run_id.replace('/', '__')}.lock"

    @contextmanager
    def lock(self, run_id: str, *, timeout: float = -1, on_wait: Any = None) -> Iterator[None]:
        """Exclusive lock for one run; ``on_wait(message)`` is called if another process holds it.

        While it is held, the run's files are this process's: temporary files found on taking it were
        left by a killed holder and are removed. Under ``torchrun`` only rank 0 takes it (the other
        ranks train the same run with it).
        """
        if not distributed.is_writer():
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path(run_id)))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait(f"run {run_id} is being trained by another process; waiting for it to finish")
            lock.acquire(timeout=timeout)
        try:
            for temp in self.run(run_id).temp_files():
                temp.unlink(missing_ok=True)
            yield
        finally:
            _release_removing(lock)

    @contextmanager
    def try_lock(self, run_id: str) -> Iterator[bool]:
        """Take the run's lock if nobody holds it: yields True (held until the block ends) or False.
        Under ``torchrun``, ranks other than 0 never hold it (False)."""
        if not distributed.is_writer():
            yield False
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path(run_id)))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            _release_removing(lock)

    def clear_stale_lock(self, run_id: str) -> None:
        """Remove the run's lock file if a killed process left it (nobody holds it)."""
        if self.lock_path(run_id).exists():
            with self.try_lock(run_id):
                pass

    def runs(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        return sorted(
            (Run(p, p.name) for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda r: r.path.stat().st_mtime,
        )

    def all_runs(self) -> list[Run]:
        """Every run, the stages of multi-stage experiments included (each after its parent)."""
        return [run for top in self.runs() for run in self._with_stages(top)]

    def stages(self, run: Run) -> list[Run]:
        """The stages inside ``run``, recursively (a lottery's levels and their controls)."""
        return self._with_stages(run)[1:]

    def _with_stages(self, run: Run) -> list[Run]:
        found = [run]
        for stage_dir in run.stage_dirs():
            found += self._with_stages(Run(stage_dir, f"{run.run_id}/{stage_dir.name}"))
        return found

    def find(self, ref: str) -> Run:
        """A run by id, unique id prefix, hash prefix, or path to its directory."""
        candidate = Path(ref).expanduser()
        if candidate.is_dir() and RunLayout(candidate).spec_path.is_file():
            owner = owning_run(RunLayout(candidate).spec_path)  # a stage's id includes its parents'
            return Run(candidate, owner[1] if owner else candidate.name)
        exact = self.run(ref)
        if exact.path.is_dir():
            return exact
        pointed = self._pointed(ref)
        if pointed is not None:
            return pointed
        matches = [r for r in self.runs() if r.run_id.startswith(ref) or r.run_id.split("-", 1)[-1].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFound(f"no run {ref!r} under {self.root} (list them with `prunelab runs`)")
        names = ", ".join(r.run_id for r in matches[:6])
        raise RunNotFound(f"{ref!r} matches several runs ({names}); give more characters")

    def linked(self, run: Run) -> list[Run]:
        """The runs that ``run`` uses as its stages but that live elsewhere (a lottery's level 0: its spec's
        train run, shared with others); they are not part of ``run``, so removing ``run`` keeps them."""
        found = []
        for owner in (run, *self.stages(run)):
            for target in (owner.stage_info().get("stages") or {}).values():
                if isinstance(target, str) and self.run(target).path.is_dir():
                    found.append(self.run(target))
        return found

    def _pointed(self, ref: str) -> Run | None:
        """A stage kept elsewhere: ``<parent>/<stage>`` named by the parent's ``stage.json`` ``stages``
        entry (a lottery's level 0 is its spec's train run)."""
        parent, _, stage = ref.rpartition("/")
        if not parent or not self.run(parent).path.is_dir():
            return None
        target = (self.run(parent).stage_info().get("stages") or {}).get(stage)
        return self.run(target) if isinstance(target, str) and self.run(target).path.is_dir() else None


def _release_removing(lock: FileLock) -> None:
    """Release ``lock`` and remove its file, without breaking mutual exclusion.

    The file is unlinked *while the lock is still held*, then released. A process that opened the old
    file and waits on it gets its flock on an unlinked inode; filelock (>= 3.20.4) notices
    (``st_nlink == 0``) and retries on a fresh file, so two processes never both believe they hold the
    lock. Unlinking after releasing would not be safe. On Windows the unlink fails while the file is
    open and filelock removes the file itself.
    """
    with suppress(OSError):
        os.unlink(lock.lock_file)
    lock.release()
