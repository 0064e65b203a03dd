"""Training K models of one architecture together: ``train_packed``, the lock-step driver.

Each model is an ordinary :class:`~prunelab.training.loop.TrainingLoop` with an ordinary
:class:`~prunelab.training.masked_step.MaskedStep` — its own output directory, mask, seed, data order
and learning-rate schedule, evaluation, save points, checkpoints, resume, metrics and divergence
checks. Only the iterations are shared: one :class:`~prunelab.training.packed_step.PackedStep`
updates the K models at once on the K batches a :class:`~prunelab.data.PackedLoader` stacks. At a
check point the K losses go to their loops, and a model whose loop has an event there (evaluation,
weights, checkpoint, the end) first gets its state written back into its module and optimiser, so its
files are those of an unpacked run of the same model (equal within float reassociation; a packed run
resumes bit for bit, and its checkpoint can even be resumed unpacked).

Models that cannot train together — another architecture, start or length, another optimiser or
batch size, ``compile``, ``bf16``, a loader that is not an unsharded ``BatchLoader``, data-parallel
training — are trained one after another as :func:`~prunelab.training.train` would. A model whose
training diverges fails alone; the others go on.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab import distributed
from prunelab.data.loader import BatchLoader, PackedLoader
from prunelab.specs.training import TrainingSpec
from prunelab.training.loop import _CHECK_SECONDS, _MAX_PENDING, TrainingLoop, TrainResult
from prunelab.training.masked_step import MaskedStep
from prunelab.training.packed_step import PackedStep

__all__ = ["Lane", "train_packed", "packing_spec", "continue_packed"]

#: the training fields that may differ between models trained together: the learning-rate schedule and
#: the seeds (each model has its own), and what only the models' own loops read
PER_MODEL_FIELDS = (
    "lr",
    "schedule",
    "milestones",
    "gamma",
    "warmup",
    "data_order_seed",
    "augment_seed",
    "save_steps",
    "eval_every",
    "checkpoint_every",
    "eval_batch_size",
    "progress",
    "tensorboard",
)
_DEFAULTS = TrainingSpec()
#: the most weights (summed over the models) trained together: K times a model's memory must fit, and
#: a model this large saturates the device alone, so packing it would gain nothing
PACKED_PARAMETERS = 16_000_000


def packing_spec(spec: TrainingSpec) -> TrainingSpec:
    """``spec`` with the per-model fields at their defaults: specs that agree here can train together."""
    return dataclasses.replace(spec, **{name: getattr(_DEFAULTS, name) for name in PER_MODEL_FIELDS})


@dataclass
class Lane:
    """One model to train: the arguments of :func:`~prunelab.training.train` (masked weight training)."""

    model: nn.Module
    train_loader: Any
    test_loader: Any
    spec: TrainingSpec
    out_dir: str | Path | None = None
    mask: Mapping[str, torch.Tensor] | None = None
    prunable: Mapping[str, nn.Parameter] | None = None
    seed: int = 0
    device: str | torch.device | None = None
    save_steps: Iterable[int | str] = ()
    log: Callable[[str], None] | None = None
    start_step: int = 0
    stop_step: int | None = None

    def loop(self) -> TrainingLoop:
        return TrainingLoop(
            self.model,
            MaskedStep(self.mask, self.prunable),
            self.train_loader,
            self.test_loader,
            self.spec,
            out_dir=self.out_dir,
            seed=self.seed,
            device=self.device,
            save_steps=self.save_steps,
            log=self.log,
            start_step=self.start_step,
            stop_step=self.stop_step,
        )


def train_packed(lanes: Sequence[Lane], *, max_lanes: int | None = None) -> list[TrainResult | Exception]:
    """Train every lane, those that can train together in lock-step (at most ``max_lanes`` at once, and
    at most :data:`PACKED_PARAMETERS` weights together); returns each lane's :class:`TrainResult`, or
    the exception that stopped it (a bad argument, a divergence), in the order given. Each lane resumes
    from its own checkpoint, as ``train`` does."""
    results: list[TrainResult | Exception | None] = [None] * len(lanes)
    loops: dict[int, TrainingLoop] = {}
    for index, lane in enumerate(lanes):
        try:
            loops[index] = lane.loop()
        except Exception as error:  # noqa: BLE001 - reported as this lane's result
            results[index] = error
    groups: dict[Any, list[int]] = {}
    for index, loop in loops.items():
        groups.setdefault(_key(loop, index), []).append(index)
    for members in groups.values():
        size = sum(p.numel() for p in loops[members[0]].model.parameters())
        cap = max(1, min(PACKED_PARAMETERS // max(size, 1), max_lanes if max_lanes is not None else len(members)))
        chunks = [members[i : i + cap] for i in range(0, len(members), cap)]
        for chunk in chunks:
            if len(chunk) == 1 and not (loops[chunk[0]].packed and _packable(loops[chunk[0]])):
                results[chunk[0]] = _run_alone(loops[chunk[0]])
            else:
                for index, outcome in zip(chunk, _run_packed([loops[i] for i in chunk])):
                    results[index] = outcome
    return results  # type: ignore[return-value]


def continue_packed(loop: TrainingLoop) -> TrainResult:
    """Finish ``loop``, resumed from a packed run's checkpoint, with the packed arithmetic (alone: the
    model is packed with a copy of itself, since the per-model results of a packed step do not depend
    on the other models but may differ from a single model's kernels)."""
    if not _packable(loop):
        return loop.run()
    result = _run_packed([loop])[0]
    if isinstance(result, Exception):
        raise result
    return result


def _packable(loop: TrainingLoop) -> bool:
    spec, loader = loop.spec, loop.train_loader
    started_alone = loop.resumed_from is not None and not loop.packed  # it keeps its arithmetic
    return not (
        distributed.active()
        or spec.compile
        or spec.bf16
        or type(loader) is not BatchLoader
        or loader.shard is not None
        or loop.step >= loop.end
        or type(loop.update) is not MaskedStep
        or started_alone
    )


def _key(loop: TrainingLoop, index: int) -> Any:
    """Loops with equal keys can be packed; a loop that cannot be packed gets a key of its own."""
    spec, loader, model = loop.spec, loop.train_loader, loop.model
    if not _packable(loop):
        return ("alone", index)
    tensors = tuple((n, tuple(t.shape), t.dtype, t.requires_grad) for n, t in model.named_parameters())
    buffers = tuple((n, tuple(t.shape), t.dtype) for n, t in model.named_buffers())
    return (
        type(model),
        repr(model),
        tensors,
        buffers,
        packing_spec(spec),
        str(loop.device),
        loop.step,
        loop.start,
        loop.end,
        loop.total,
        id(loader.dataset),
        loader.batch_size,
        loader.shuffle,
        loader.augmentation,
        str(loader.device),
    )


def _run_alone(loop: TrainingLoop) -> TrainResult | Exception:
    try:
        return loop.run()
    except Exception as error:  # noqa: BLE001 - reported as this lane's result
        return error


def _run_packed(loops: list[TrainingLoop]) -> list[TrainResult | Exception]:
    outcomes: dict[int, TrainResult | Exception] = {}
    active: list[int] = []
    for loop in loops:  # every model is marked before any of them is updated
        loop.mark_packed()
    for index, loop in enumerate(loops):
        try:
            loop.begin()
        except Exception as error:  # noqa: BLE001
            outcomes[index] = error
        else:
            active.append(index)
    try:
        _drive(loops, active, outcomes)
    finally:
        for loop in loops:
            loop.evaluator = None
        for index in active:
            loops[index].close()
    for index in active:
        if index not in outcomes:
            outcomes[index] = loops[index].result()
    return [outcomes[i] for i in range(len(loops))]


def _masked_update(loop: TrainingLoop) -> MaskedStep:
    """The masked step of a loop that :func:`_packable` admitted."""
    assert isinstance(loop.update, MaskedStep), "only loops with a MaskedStep are packed"
    return loop.update


def _engine(loops: list[TrainingLoop], active: list[int]) -> tuple[PackedStep, PackedLoader]:
    """The packed step and loader of the active lanes; a lane alone is packed with a copy of itself
    (one packed model's results do not depend on the others, but may on there being others). Lanes
    that evaluate on one data set get the packed evaluation."""
    members = [loops[i] for i in active]
    if len(members) == 1:
        members = members * 2
    step = PackedStep(
        [m.model for m in members], [_masked_update(m) for m in members], members[0].spec, members[0].device
    )
    tests = [m.test_loader for m in members]
    shared = all(
        type(t) is BatchLoader
        and t.shard is None
        and not t.shuffle
        and t.augmentation is None
        and t.dataset is tests[0].dataset
        and t.batch_size == tests[0].batch_size
        and t.device == tests[0].device
        for t in tests
    )
    sizes = {m.spec.eval_batch_size for m in members}
    evaluation = _SharedEvaluation(step, tests[0], sizes.pop()) if shared and len(sizes) == 1 else None
    for position, loop in enumerate(members[: len(active)]):
        loop.evaluator = None if evaluation is None else functools.partial(evaluation, position)
    return step, PackedLoader([m.train_loader for m in members])


class _SharedEvaluation:
    """The packed models' evaluations of one step, computed together when the first lane asks."""

    def __init__(self, step: PackedStep, loader: BatchLoader, batch_size: int) -> None:
        self.step, self.loader, self.batch_size = step, loader, batch_size
        self.at: int | None = None
        self.results: list[Any] = []

    def __call__(self, position: int, step: int) -> Any:
        if self.at != step:
            self.results = self.step.evaluate(self.loader, batch_size=self.batch_size)
            self.at = step
        return self.results[position]


def _drive(loops: list[TrainingLoop], active: list[int], outcomes: dict[int, TrainResult | Exception]) -> None:
    """The lock-step loop over ``active`` (indices into ``loops``); ``active`` shrinks as lanes fail."""
    if not active:
        return
    first = loops[active[0]]
    step, end, ipe = first.step, first.end, first.plan.iterations_per_epoch
    if step >= end:
        return
    packed, loader = _engine(loops, active)
    pending: list[torch.Tensor] = []
    rates: tuple[float, ...] | None = None
    check_every, last_check = 10, (step, time.perf_counter())
    next_check = min(step + check_every, *(loops[i].next_event for i in active))
    epoch, batch = divmod(step, ipe)
    while step < end:
        rebuilt = False
        for x, y in loader.epoch(epoch, batch):
            wanted = tuple(loops[i].lr_fn(step) for i in active)
            if wanted != rates:
                packed.set_lr(wanted * (packed.lanes // len(wanted)))
                rates = wanted
            pending.append(packed.step(x, y))
            step += 1
            if step < next_check:
                continue
            failed = _check(loops, active, packed, pending, step, outcomes)
            pending = []
            now = time.perf_counter()
            if now > last_check[1]:
                rate = (step - last_check[0]) / (now - last_check[1])
                check_every = max(1, min(_MAX_PENDING, int(rate * _CHECK_SECONDS)))
            last_check = (step, now)
            if failed:
                for position, index in enumerate(active):
                    if index not in failed and loops[index].next_event != step:
                        packed.export(position)  # the survivors go on from their own modules
                for index in failed:
                    loops[index].close()
                active[:] = [i for i in active if i not in failed]
                if not active:
                    return
                packed, loader = _engine(loops, active)
                rates = None
            if step >= end:
                break
            next_check = min(step + check_every, *(loops[i].next_event for i in active))
            if failed:
                rebuilt = True
                break
        else:
            if step != (epoch + 1) * ipe:
                raise RuntimeError(
                    f"the packed loader yielded {step - epoch * ipe - batch} batches in epoch {epoch} "
                    f"from batch {batch}, but declares {ipe} iterations per epoch"
                )
        if rebuilt:  # a new loader: continue the epoch where it stands
            epoch, batch = divmod(step, ipe)
        else:
            epoch, batch = epoch + 1, 0


def _check(
    loops: list[TrainingLoop],
    active: list[int],
    packed: PackedStep,
    pending: list[torch.Tensor],
    step: int,
    outcomes: dict[int, TrainResult | Exception],
) -> set[int]:
    """A check point of every active lane at ``step``; returns the lanes that failed there."""
    columns = torch.stack(pending).unbind(1) if pending else [None] * len(active)
    failed = set()
    for position, index in enumerate(active):
        loop = loops[index]
        if loop.next_event == step:
            packed.export(position)
        column = columns[position]
        try:
            loop.check(step, list(column.unbind()) if column is not None else [])
        except Exception as error:  # noqa: BLE001 - this lane stops; the others go on
            outcomes[index] = error
            failed.add(index)
    return failed
