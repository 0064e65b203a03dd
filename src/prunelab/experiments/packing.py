"""Packing: several trials of a study trained together by the vectorised trainer, each still its own run.

:func:`pack_key` says which trials may train together (same data set, architecture and training
length; each keeps its own seed, mask, data order and learning rate); the study groups ready trials by
it into units (:func:`prunelab.experiments.study.pack`), and :func:`run_packed` runs a unit.

Every trial of the unit runs its ordinary code (``Trial.run``: locks, stored-run reuse, scoring,
masks, summaries) in a thread of its own, but only one thread runs at a time, handing over at each
training: when a trial's stage reaches :meth:`Workbench.train`, its thread parks there with the
training's arguments. Once every trial is parked or finished, the parked trainings are run together
by :func:`~prunelab.training.packed.train_packed` (those that cannot pack, one by one), and each
thread is resumed in turn with its own result. The trials therefore do exactly what they do alone,
in a fixed order (nothing about the threads is left to chance: the global RNG some initialisers
reseed is never used by two at once), and each lands as its own ordinary run, which an unpacked
command later reuses.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from prunelab.specs import ExperimentSpec
from prunelab.store import RunStore
from prunelab.training import TrainResult
from prunelab.training.packed import Lane, packing_spec, train_packed

if TYPE_CHECKING:  # the trial module imports the kinds, which park here
    from prunelab.experiments.trial import Trial

__all__ = ["PACK_KINDS", "pack_key", "parked_worker", "run_packed", "auto_pack"]

#: the kinds whose training can pack (a whole lottery only collects its stages; supermask training
#: trains scores, not weights)
PACK_KINDS = ("train", "prune", "branch", "lottery")

#: ``--pack auto`` on a CPU: the most trials trained together (measured in benchmarks/bench_packed.py)
AUTO_PACK_CPU = 8
#: ``--pack auto`` on a GPU
AUTO_PACK_CUDA = 32
#: On a CPU, ``--pack auto`` packs only fully connected models of at most this many prunable weights:
#: larger ones are compute-bound on one thread and run slower packed (benchmarks/README.md, "Packed
#: training", quiet machine: LeNet-300-100 on 8x8 digits, 50,200 weights, 1.20x at K = 8; on 28x28
#: MNIST, 266,200 weights, 0.85x; Conv-6 at most 1.0x).
AUTO_PACK_CPU_MAX_WEIGHTS = 100_000

_local = threading.local()


def auto_pack(device: str = "auto", spec: ExperimentSpec | None = None) -> int:
    """How many trials ``--pack auto`` trains together on ``device`` (``auto``: CUDA if available). On a
    CPU, trials of ``spec``'s model train alone unless it is a small fully connected network
    (:data:`AUTO_PACK_CPU_MAX_WEIGHTS`)."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return AUTO_PACK_CUDA
    if spec is not None:
        from prunelab.experiments.validation import prunable_shapes  # here: it imports workbench, which imports us

        shapes = prunable_shapes(spec).values()
        weights = sum(math.prod(shape) for shape in shapes)
        if weights > AUTO_PACK_CPU_MAX_WEIGHTS or any(len(shape) > 2 for shape in shapes):
            return 1
    return AUTO_PACK_CPU


def pack_key(trial: Trial) -> Any:
    """Trials with equal keys can be trained together; ``None``: this trial trains alone."""
    if trial.kind not in PACK_KINDS or (trial.kind == "lottery" and trial.level is None):
        return None
    spec = trial.spec
    train = spec.train
    if train.compile or train.bf16:
        return None
    rewind = spec.prune.rewind if trial.kind == "lottery" else None
    return (spec.dataset, spec.model, packing_spec(train), rewind)


class _Worker:
    """One trial of a unit in its own thread, run only while the driver waits for it."""

    def __init__(self, trial: Trial, store: RunStore, quiet: bool) -> None:
        self.trial, self.store, self.quiet = trial, store, quiet
        self.lane: Lane | None = None
        self.done = False
        self.outcome: dict[str, Any] | None = None
        self._result: TrainResult | Exception | None = None
        self._wake = threading.Event()
        self._parked = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"prunelab-trial-{trial.run_id}", daemon=True)

    def _main(self) -> None:
        _local.worker = self
        started = time.perf_counter()
        try:
            summary = self.trial.run(self.store, quiet=self.quiet)
        except Exception as error:  # noqa: BLE001 - the trial's outcome
            self.outcome = {
                "run_id": self.trial.run_id,
                "ok": False,
                "error": error,
                "seconds": time.perf_counter() - started,
            }
        else:
            self.outcome = {
                "run_id": self.trial.run_id,
                "ok": True,
                "summary": summary,
                "seconds": time.perf_counter() - started,
            }
        finally:
            if self.outcome is None:  # interrupted by a BaseException
                self.outcome = {
                    "run_id": self.trial.run_id,
                    "ok": False,
                    "error": RuntimeError("interrupted"),
                    "seconds": time.perf_counter() - started,
                }
            self.done = True
            self._parked.set()

    # the trial's side ----------------------------------------------------------------------------
    def train(self, lane: Lane) -> TrainResult:
        """Park with a training's arguments until the driver hands back its result."""
        self.lane = lane
        self._parked.set()
        self._wake.wait()
        self._wake.clear()
        result, self._result = self._result, None
        if isinstance(result, Exception):
            raise result
        assert result is not None
        return result

    # the driver's side ---------------------------------------------------------------------------
    def advance(self, result: TrainResult | Exception | None = None) -> None:
        """Run the trial (with ``result`` for the training it parked at) until it parks again or ends."""
        self.lane = None
        self._parked.clear()
        if not self._thread.is_alive() and not self.done:
            self._thread.start()
        else:
            self._result = result
            self._wake.set()
        self._parked.wait()


def parked_worker() -> _Worker | None:
    """The packed unit's worker of the calling thread, if it runs in one."""
    return getattr(_local, "worker", None)


def run_packed(
    trials: Sequence[Trial],
    store: RunStore,
    *,
    quiet: bool = True,
    max_lanes: int | None = None,
    logs: Sequence[Path] = (),
) -> list[dict[str, Any]]:
    """Run ``trials``, their trainings together; one outcome per trial, as ``execute_unit`` returns them
    (``error`` an exception here). ``logs``: files that all the unit prints on stderr is appended to."""
    workers = [_Worker(trial, store, quiet) for trial in trials]
    with _stderr_to(logs):
        for worker in workers:
            worker.advance()
        while True:
            parked = [w for w in workers if not w.done]
            if not parked:
                break
            results = train_packed([w.lane for w in parked], max_lanes=max_lanes)  # type: ignore[misc]
            for worker, result in zip(parked, results):
                worker.advance(result)
    return [w.outcome for w in workers]  # type: ignore[misc]


class _Tee:
    def __init__(self, streams: Sequence[TextIO]) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _stderr_to(paths: Sequence[Path]) -> Iterator[None]:
    if not paths:
        yield
        return
    with contextlib.ExitStack() as stack:
        streams = []
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            streams.append(stack.enter_context(path.open("a", encoding="utf-8")))
        with contextlib.redirect_stderr(_Tee(streams)):
            yield
