"""A study: many trials, their prerequisites, and the order they may run in, handed to an executor.

The study closes the requested trials over their prerequisites (:meth:`Trial.needs`: a lottery's levels
and controls, a branch's parent run), skips what is already stored, and submits every trial whose
prerequisites are stored as soon as the executor has room — the longest remaining chain first, so a
lottery's next level goes before the controls of the level before it. A failed trial is reported with
its error and the trials that need it are skipped; every other trial still runs. A trial lost with its
worker (killed, out of memory) is submitted once more and resumes from its last checkpoint.

Nothing here schedules processes: executors (:mod:`prunelab.experiments.executors`) do. The study only
decides *what* is ready, which is what content-addressed, resumable runs make safe to hand to any engine.
"""

from __future__ import annotations

import heapq
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from prunelab.errors import UserError
from prunelab.experiments.executors import Executor, InProcessExecutor, one_line
from prunelab.experiments.executors.worker import log_path
from prunelab.experiments.packing import auto_pack, pack_key
from prunelab.experiments.trial import Trial
from prunelab.experiments.workbench import release_data
from prunelab.specs import SpecError
from prunelab.steps import parse_step
from prunelab.store import RunStore

__all__ = ["Point", "Study", "StudyResult", "StudyFailed", "TrialFailed", "Outcome", "pack", "resolve_pack"]

log = logging.getLogger("prunelab")

#: how many times a trial whose worker died is submitted again
WORKER_LOSS_RETRIES = 1


@dataclass(frozen=True)
class Point:
    """A requested trial and the values that name it in its study (grid values, seed, strategy, ...)."""

    trial: Trial
    values: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class _Entry:
    trial: Trial
    run_id: str
    values: dict[str, Any]
    requested: bool
    needs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) if self.values else self.trial.describe()


@dataclass
class Outcome:
    """What became of one trial: ``stored`` (finished before), ``done``, ``failed`` or ``skipped`` (a
    prerequisite failed)."""

    run_id: str
    kind: str
    label: str
    status: str
    requested: bool
    values: dict[str, Any]
    summary: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    cause: str | None = None  # skipped: the failed trial it needed
    user_error: bool = False  # failed (or skipped because a trial failed) with an error the user can fix
    message: str | None = None  # that error's one line, without its type

    def row(self) -> dict[str, Any]:
        summary = self.summary or {}
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "trial": self.label,
            "status": self.status,
            "test_accuracy": summary.get("test_accuracy"),
            "density": summary.get("density"),
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "error": self.error,
        }


@dataclass
class StudyResult:
    outcomes: list[Outcome]
    wall_seconds: float
    executor: str

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "skipped")]

    @property
    def ok(self) -> bool:
        return not self.failed

    def user_failure(self) -> TrialFailed | None:
        """The first failure as an error, when every trial that failed failed with an error the user can
        fix (bad input, diverged training, a full disk); else ``None``."""
        failed = [o for o in self.outcomes if o.status == "failed"]
        if not failed or not all(o.user_error for o in failed):
            return None
        return TrialFailed(failed[0].run_id, failed[0].message or failed[0].error or "failed")

    def summaries(self) -> list[dict[str, Any]]:
        """The summaries of the requested trials that finished, in the order they were requested."""
        return [o.summary for o in self.outcomes if o.requested and o.summary is not None]

    def rows(self, *, requested_only: bool = False) -> list[dict[str, Any]]:
        return [o.row() for o in self.outcomes if o.requested or not requested_only]

    def totals(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("done", "stored", "failed", "skipped") if self.count(s)]
        return (
            f"{len(self.outcomes)} trials: {', '.join(parts) or 'none'} in {self.wall_seconds:.1f} s ({self.executor})"
        )


class TrialFailed(UserError):
    """A trial of a study failed with an error the user can fix; the message names the run."""

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(f"{run_id}: {message}")


class StudyFailed(RuntimeError):
    """Some trials of a study failed (the others finished); ``result`` says which and why."""

    def __init__(self, result: StudyResult) -> None:
        self.result = result
        first = result.failed[0]
        more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        super().__init__(f"{first.run_id} {first.status}: {first.error}{more}")


def pack(ready: Sequence[Trial], limit: int = 1) -> list[list[Trial]]:
    """Group ready trials into the units handed to the executor: trials with the same
    :func:`~prunelab.experiments.packing.pack_key` (same data set, architecture and training length; any
    seed, mask, data order and learning rate), at most ``limit`` per unit, in the order given (a group's
    place is that of its first trial). ``limit=1`` keeps one trial per unit. A unit of several trials is
    trained together by the vectorised trainer, each trial still landing as its own run."""
    if limit <= 1:
        return [[trial] for trial in ready]
    units: list[list[Trial]] = []
    open_units: dict[Any, list[Trial]] = {}
    for trial in ready:
        key = pack_key(trial)
        unit = open_units.get(key) if key is not None else None
        if unit is None or len(unit) >= limit:
            unit = []
            units.append(unit)
            if key is not None:
                open_units[key] = unit
        unit.append(trial)
    return units


_units = pack  # for the methods whose ``pack`` argument (the --pack setting) hides the function


def _is_auto(pack: int | str) -> bool:
    return isinstance(pack, str) and pack.strip().lower() == "auto"


def resolve_pack(pack: int | str, trials: Sequence[Trial]) -> int:
    """``--pack``: a number of trials trained together at most, or ``auto`` (sized to the trials' device
    and model: :func:`~prunelab.experiments.packing.auto_pack`)."""
    if isinstance(pack, str) and pack.strip().lower() == "auto":
        keyed = ((pack_key(trial), trial.spec) for trial in trials)
        kinds = {key: spec for key, spec in keyed if key is not None}  # one spec per packable kind
        return min((auto_pack(spec.train.device, spec) for spec in kinds.values()), default=auto_pack())
    try:
        value = int(pack)
    except (TypeError, ValueError):
        raise SpecError(f"--pack takes a number of trials (1 trains each alone) or auto, got {pack!r}") from None
    if value < 1:
        raise SpecError(f"--pack must be >= 1 (1 trains each trial alone) or auto, got {value}")
    return value


class Study:
    """The requested trials (``Point``s or bare ``Trial``s) and their prerequisites, in ``store``."""

    def __init__(self, points: Iterable[Point | Trial], store: RunStore | None = None) -> None:
        self.store = store or RunStore()
        requested: dict[str, Point] = {}
        for point in points:
            point = point if isinstance(point, Point) else Point(point)
            run_id = point.trial.run_id
            if run_id in requested:
                point = Point(_merge(requested[run_id].trial, point.trial), requested[run_id].values or point.values)
            requested[run_id] = point
        self.entries: dict[str, _Entry] = {}
        for run_id, point in requested.items():
            self._visit(point.trial, run_id, point.values, requested=True)
        #: one trial was asked for (with its prerequisites): its failure is the failure of the command
        self.single = len(requested) == 1

    def _visit(self, trial: Trial, run_id: str, values: dict[str, Any], *, requested: bool) -> None:
        entry = self.entries.get(run_id)
        if entry is not None:
            if requested and not entry.requested:
                entry.requested, entry.values, entry.trial = True, values, _one_dense_run(trial, entry.trial)
            else:
                entry.trial = _one_dense_run(entry.trial, trial)
            return
        needs = trial.needs()
        ids = [need.run_id for need in needs]
        for need, need_id in zip(needs, ids):
            self._visit(need, need_id, {}, requested=False)
        self.entries[run_id] = _Entry(trial, run_id, values, requested, ids)  # after its prerequisites

    @property
    def log_folder(self) -> Path:
        """Where trials run by workers write what they print: ``<store>/.logs/<run id>.log``."""
        return self.store.root / ".logs"

    # planning -----------------------------------------------------------------------------------
    def plan(self) -> list[dict[str, Any]]:
        """One row per trial, prerequisites first: run id, kind, what it is, and whether it is stored,
        partial (begun, resumable) or missing. Reads only the store: no data, no model."""
        return [
            {
                "run_id": e.run_id,
                "kind": e.trial.kind,
                "trial": e.label,
                "state": e.trial.state(self.store),
                "requested": e.requested,
            }
            for e in self.entries.values()
        ]

    def pending(self) -> list[str]:
        """The run ids of the trials not yet stored."""
        return [rid for rid, e in self.entries.items() if not e.trial.is_stored(self.store)]

    def width(self, pack: int | str = 1) -> int:
        """How many units still to run can run at once, at most: the largest number of pending trials at
        the same depth of prerequisites (1 for a lottery without controls, whose levels run in order),
        counted as the units :func:`pack` makes of them with ``pack`` trials at most per unit."""
        pending = set(self.pending())
        # auto packs only as far as it keeps every worker busy (see run), so it never narrows the executor
        limit = 1 if _is_auto(pack) else resolve_pack(pack, [self.entries[rid].trial for rid in pending])
        layer: dict[str, int] = {}
        for rid, entry in self.entries.items():  # prerequisites come first
            if rid in pending:
                layer[rid] = 1 + max((layer[n] for n in entry.needs if n in layer), default=0)
        layers: dict[int, list[Trial]] = {}
        for rid, value in layer.items():
            layers.setdefault(value, []).append(self.entries[rid].trial)
        return max((len(_units(trials, limit)) for trials in layers.values()), default=0)

    def check(self) -> None:
        """The checks of every trial still to run against its model and data (:meth:`Trial.validate`), so
        a typo in the last trial fails before the first one trains."""
        for run_id in self.pending():
            self.entries[run_id].trial.validate(self.store)

    # running ------------------------------------------------------------------------------------
    def run(
        self,
        executor: Executor | None = None,
        *,
        progress: bool = True,
        stream: TextIO | None = None,
        pack: int | str = "auto",
    ) -> StudyResult:
        """Run every trial not yet stored on ``executor`` (default: in this process) and return what
        became of each. ``pack``: how many trials that share a data set, an architecture and a training
        length may train together (``auto``: sized to their device; 1: each alone). Raises only for
        problems found before anything runs (:meth:`check`, a bad ``pack``)."""
        executor = executor or InProcessExecutor()
        started = time.perf_counter()
        self.check()
        pending = set(self.pending())
        limit = resolve_pack(pack, [self.entries[rid].trial for rid in pending])
        auto = _is_auto(pack)
        in_process = isinstance(executor, InProcessExecutor)
        if not in_process:
            release_data()  # read for the checks; the workers read their own
        quiet = not in_process or len(pending) > 1
        progress = progress and len(pending) > 1  # one trial shows its own progress, as a single command
        # workers print into one log per trial; in this process trials print as a single command does
        log_folder = None if in_process else str(self.log_folder.resolve())
        outcomes: dict[str, Outcome] = {}
        for run_id, entry in self.entries.items():
            if run_id not in pending:
                if entry.requested:
                    log.info("reusing finished run %s", run_id)
                outcomes[run_id] = self._outcome(entry, "stored", summary=self.store.run(run_id).verified_summary())
                self.store.clear_stale_lock(run_id)  # left by a process killed between its summary and its unlock
        depth = self._depths()
        order = {run_id: i for i, run_id in enumerate(self.entries)}
        waiting = {rid: {n for n in self.entries[rid].needs if n in pending} for rid in pending}
        dependents: dict[str, list[str]] = {rid: [] for rid in self.entries}
        for rid in pending:
            for need in waiting[rid]:
                dependents[need].append(rid)
        ready: list[tuple[int, int, str]] = [(-depth[r], order[r], r) for r in pending if not waiting[r]]
        heapq.heapify(ready)
        in_flight: dict[Future, list[str]] = {}
        losses: dict[str, int] = {}
        display = _Progress(
            len(self.entries), len(outcomes), enabled=progress, stream=stream or sys.stderr, single=self.single
        )

        def finish(run_id: str, outcome: Outcome) -> None:
            outcomes[run_id] = outcome
            if outcome.status == "done":
                for dependent in dependents[run_id]:
                    waiting[dependent].discard(run_id)
                    if not waiting[dependent] and dependent not in outcomes:
                        heapq.heappush(ready, (-depth[dependent], order[dependent], dependent))
                display.finished(outcome)
                return
            display.finished(outcome)
            cause = outcome.cause or run_id
            for dependent in dependents[run_id]:  # everything downstream of a failure is skipped
                if dependent not in outcomes:
                    finish(
                        dependent,
                        self._outcome(
                            self.entries[dependent],
                            "skipped",
                            cause=cause,
                            error=f"not run: it needs {cause}, which failed",
                            user_error=outcome.user_error,
                        ),
                    )

        try:
            while ready or in_flight:
                free = len(ready) if executor.capacity is None else executor.capacity - len(in_flight)
                unit_limit = limit
                if auto and executor.capacity is not None and free > 0:
                    # spread the ready trials over the free workers first: on a CPU, separate processes on
                    # separate cores beat packing (benchmarks/README.md); pack what is left over
                    unit_limit = max(1, min(limit, -(-len(ready) // free)))
                batch = [heapq.heappop(ready) for _ in range(min(free * unit_limit, len(ready)))]
                units = _units([self.entries[item[2]].trial for item in batch], unit_limit)
                if executor.capacity is not None:  # the units beyond the free workers wait for the next round
                    later = {trial.run_id for unit in units[free:] for trial in unit}
                    for item in batch:
                        if item[2] in later:
                            heapq.heappush(ready, item)
                    units = units[:free]
                for unit in units:
                    ids = [trial.run_id for trial in unit]
                    payload = {
                        "trials": [trial.to_data() for trial in unit],
                        "store": str(self.store.root.resolve()),
                        "threads": executor.threads,
                        "quiet": quiet,
                        "log": log_folder,
                        "raise": in_process and len(pending) == 1,
                        "pack": unit_limit,
                    }
                    in_flight[executor.submit(payload)] = ids
                    display.running(len(in_flight))
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                finished = [(future, in_flight.pop(future)) for future in done]
                display.running(len(in_flight))
                for future, ids in finished:
                    error = future.exception()
                    if error is not None:  # the worker, not the trial, failed
                        for rid in ids:
                            losses[rid] = losses.get(rid, 0) + 1
                            if losses[rid] <= WORKER_LOSS_RETRIES:
                                display.note(
                                    f"worker lost while running {rid} ({one_line(error)}); submitting it again"
                                )
                                heapq.heappush(ready, (-depth[rid], order[rid], rid))
                            else:
                                finish(
                                    rid,
                                    self._outcome(
                                        self.entries[rid],
                                        "failed",
                                        error=f"worker lost {losses[rid]} times: {one_line(error)}",
                                    ),
                                )
                        continue
                    for result in future.result():
                        entry = self.entries[result["run_id"]]
                        if result["ok"]:
                            finish(
                                entry.run_id,
                                self._outcome(entry, "done", summary=result["summary"], seconds=result["seconds"]),
                            )
                        else:
                            error_text = result["error"]
                            if log_folder is not None:
                                error_text += f" (log: {log_path(log_folder, entry.run_id)})"
                            finish(
                                entry.run_id,
                                self._outcome(
                                    entry,
                                    "failed",
                                    error=error_text,
                                    seconds=result["seconds"],
                                    user_error=bool(result.get("user_error")),
                                    message=result.get("message"),
                                ),
                            )
        finally:
            display.close()
        return StudyResult([outcomes[rid] for rid in self.entries], time.perf_counter() - started, executor.describe())

    def _outcome(self, entry: _Entry, status: str, **fields: Any) -> Outcome:
        return Outcome(entry.run_id, entry.trial.kind, entry.label, status, entry.requested, entry.values, **fields)

    def _depths(self) -> dict[str, int]:
        """The length of the longest chain of trials that wait on each one (1 for a trial none waits on)."""
        depth = {rid: 1 for rid in self.entries}
        for rid in reversed(list(self.entries)):  # prerequisites come before the trials that need them
            for need in self.entries[rid].needs:
                depth[need] = max(depth[need], depth[rid] + 1)
        return depth


def _merge(first: Trial, second: Trial) -> Trial:
    """Two requests of one run: identical, or one lottery asked with different levels or controls."""
    if first.kind == "lottery" and first.level is None and second.level is None:
        controls = tuple(dict.fromkeys([*first.controls, *second.controls]))
        return replace(first, levels=max(first.levels or 0, second.levels or 0), controls=controls)
    return first


def _dense_steps(trial: Trial) -> tuple[str, ...] | None:
    """The steps a trial of a spec's train run needs saved (``None``: ``trial`` is not one). A lottery's
    level 0 is its spec's train run, which must save the rewind step."""
    if trial.kind == "train":
        return trial.spec.train.save_steps
    if trial.kind == "lottery" and trial.level == 0 and trial.control is None:
        rewind = trial.spec.prune.rewind
        return (rewind,) if parse_step(rewind).to_iterations(1) else ()
    return None


def _one_dense_run(kept: Trial, other: Trial) -> Trial:
    """``kept``, as the one trial of a run that ``other`` names too. Trials of one train run (``train``
    trials, lotteries' level 0) become one that saves every step any of them needs, so each step is
    saved while training rather than recomputed afterwards."""
    mine, theirs = _dense_steps(kept), _dense_steps(other)
    if mine is None or theirs is None or set(theirs) <= set(mine):
        return kept
    base = kept if kept.kind == "train" else Trial("train", kept.spec)
    steps = tuple(dict.fromkeys([*base.spec.train.save_steps, *mine, *theirs]))
    return replace(base, spec=replace(base.spec, train=replace(base.spec.train, save_steps=steps)))


class _Progress:
    """done / running / failed / left on stderr: a tqdm bar on a terminal, a line per finished trial
    otherwise (logs of a Slurm driver, CI)."""

    def __init__(self, total: int, stored: int, *, enabled: bool, stream: TextIO, single: bool = False) -> None:
        self.total, self.done, self.failed, self.in_flight = total, stored, 0, 0
        self.enabled, self.stream, self.single = enabled, stream, single
        self.bar = None
        if enabled and getattr(stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=stored, unit="trial", desc="study", file=stream, dynamic_ncols=True)
            self._refresh()
        elif enabled and stored:
            self._line(f"{stored} of {total} trials already stored")

    def _status(self) -> str:
        left = self.total - self.done - self.failed
        return f"done {self.done} · running {self.in_flight} · failed {self.failed} · left {left}"

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self._status(), refresh=True)

    def _line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"study: {text}", file=self.stream)
        else:
            print(f"study: {text}", file=self.stream, flush=True)

    def running(self, count: int) -> None:
        self.in_flight = count
        self._refresh()

    def note(self, text: str) -> None:
        self._line(text)

    def finished(self, outcome: Outcome) -> None:
        if outcome.status == "done":
            self.done += 1
        else:
            self.failed += 1
            if not (self.single and outcome.user_error):  # else the command reports it, as one line
                self._line(f"{outcome.status.upper()} {outcome.run_id} ({outcome.label}): {outcome.error}")
        if self.bar is not None:
            self.bar.update(1)
            self._refresh()
        elif outcome.status == "done":
            accuracy = (outcome.summary or {}).get("test_accuracy")
            shown = f", test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
            self._line(f"{self._status()} — finished {outcome.run_id} ({outcome.label}{shown})")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
