"""The training loop: the plan, events, evaluation, save points, crash-resume checkpoints,
divergence checks, progress and metrics — around a pluggable :class:`~prunelab.training.update.UpdateStep`.

The hot path (one iteration) is: set the learning rate (only when it changes), call the update
step on the batch, append the returned loss tensor to a list. There is no ``.item()`` per step:
the pending losses are read in one ``torch.stack(...).tolist()`` at *check points* — about twice a
second (adaptive), and at every evaluation, save point and checkpoint.

Non-finite losses are detected at those check points, so the reported iteration is exact even
though it is found a little later. Because every save point and checkpoint is itself a check
point (and the weights are also checked for non-finite values there), a diverged state is never
written: the last good checkpoint stays untouched.
"""

from __future__ import annotations

import bisect
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from prunelab import distributed
from prunelab.errors import UserError
from prunelab.masks import Mask
from prunelab.specs.base import SpecError, semantic_dict
from prunelab.specs.training import TrainingSpec
from prunelab.steps import StepError, to_iterations
from prunelab.store.atomic import atomic_save_tensors, atomic_write_text
from prunelab.store.layout import RunLayout
from prunelab.training.checkpoint import (
    GENERATIONS,
    CheckpointError,
    _unshared,
    generation_paths,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from prunelab.training.device import resolve_device
from prunelab.training.evaluate import evaluate
from prunelab.training.metrics import MetricsWriter, load_summary_writer, truncate_metrics
from prunelab.training.schedule import make_lr_schedule
from prunelab.training.update import StepContext, UpdateStep, classification_loss

__all__ = ["TrainingLoop", "TrainResult", "TrainingDiverged", "TrainingPlan", "CompileUnavailable"]

WEIGHTS_FORMAT = "prunelab.weights/1"
_CHECK_SECONDS = 0.5  # target interval between check points (progress bar, NaN detection)
_MAX_PENDING = 1024  # upper bound on losses held between check points
_DATA_PARALLEL_CHECK_EVERY = 50  # ranks reduce their losses together, so check points are fixed steps


class TrainingDiverged(UserError, RuntimeError):
    """The training loss (or the weights) became NaN or infinite."""

    def __init__(
        self,
        iteration: int,
        loss: float,
        *,
        total: int | None = None,
        lr: float | None = None,
        checkpoint_step: int | None = None,
        what: str = "the training loss",
    ) -> None:
        self.iteration = iteration
        self.step = iteration
        self.loss = loss
        self.lr = lr
        self.checkpoint_step = checkpoint_step
        where = f"iteration {iteration}" + (f" of {total}" if total is not None else "")
        lr_text = f" (learning rate {lr:.4g})" if lr is not None else ""
        kept = (
            f" The last checkpoint (step {checkpoint_step}) was left untouched, but resuming from it will "
            "diverge again."
            if checkpoint_step is not None
            else " No checkpoint holds a diverged state."
        )
        super().__init__(
            f"training diverged: {what} was {loss} at {where}{lr_text}.{kept} "
            "Lower train.lr or add a linear warm-up (for example train.warmup=1ep)."
        )


class CompileUnavailable(SpecError):
    """``train.compile`` is set but ``torch.compile`` cannot compile the model on this machine."""


def _compile_failure(error: BaseException) -> BaseException | None:
    """The compiler's error behind ``error`` when ``torch.compile`` failed to compile (its back end
    raised, or inductor found no working C++ compiler), else ``None``."""
    exc = sys.modules.get("torch._dynamo.exc")
    inductor = sys.modules.get("torch._inductor.exc")
    failures = tuple(
        kind
        for kind in (
            getattr(exc, "BackendCompilerFailed", None),
            getattr(inductor, "InvalidCxxCompiler", None),
            getattr(inductor, "CppCompileError", None),
        )
        if kind is not None
    )
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen and failures:
        seen.add(id(cause))
        if isinstance(cause, failures):
            return getattr(cause, "inner_exception", None) or cause
        cause = cause.__cause__ or cause.__context__
    return None


@dataclass
class TrainResult:
    final_step: int
    test_accuracy: float | None
    test_loss: float | None
    train_loss: float | None
    best_accuracy: float | None
    best_step: int | None
    wall_seconds: float
    resumed_from: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    mask: Mask | None = None  # the trained network's mask, as the update step reports it
    # without an output directory: the state dicts of the save steps, kept in memory (a lottery's rewind point)
    saved_states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingPlan:
    """A spec's step strings converted to iterations."""

    iterations_per_epoch: int
    total: int
    eval_every: int | None
    checkpoint_every: int | None
    save_steps: tuple[int, ...]
    milestones: tuple[int, ...]
    warmup: int

    @classmethod
    def from_spec(
        cls, spec: TrainingSpec, iterations_per_epoch: int, save_steps: Iterable[int | str] = ()
    ) -> TrainingPlan:
        ipe = int(iterations_per_epoch)
        if ipe <= 0:
            raise ValueError(f"the training loader has {ipe} iterations per epoch; it must have at least one batch")
        total = to_iterations(spec.steps, ipe)
        if total <= 0:
            raise StepError(
                f"train.steps={spec.steps} trains nothing: give a positive length, e.g. "
                f"--train.steps=2ep or --train.steps={ipe}it ({ipe} iterations make an epoch)"
            )
        eval_every = to_iterations(spec.eval_every, ipe) if spec.eval_every is not None else 0
        checkpoint_every = to_iterations(spec.checkpoint_every, ipe)
        saves = sorted({to_iterations(s, ipe) for s in (*spec.save_steps, *save_steps)})
        late = [s for s in saves if s > total]
        if late:
            raise StepError(
                f"save step(s) {late} come after the end of training ({total} iterations = {spec.steps}); "
                "save at steps up to the end, or train longer"
            )
        return cls(
            iterations_per_epoch=ipe,
            total=total,
            eval_every=eval_every or None,
            checkpoint_every=checkpoint_every or None,
            save_steps=tuple(saves),
            milestones=tuple(sorted(to_iterations(m, ipe) for m in spec.milestones)),
            warmup=to_iterations(spec.warmup, ipe),
        )


def _stderr_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _check_loader(loader: Any, spec: TrainingSpec) -> None:
    if not hasattr(loader, "iterations_per_epoch") or not callable(getattr(loader, "epoch", None)):
        raise TypeError("train_loader must have `iterations_per_epoch` and `epoch(e, start_batch=0)` (a BatchLoader)")
    batch_size = getattr(loader, "batch_size", None)
    if isinstance(batch_size, int) and batch_size != spec.batch_size:
        raise ValueError(
            f"the training loader's batch size is {batch_size} but train.batch_size is {spec.batch_size}; "
            "build the loader with the spec's batch size"
        )


def _silent(message: str) -> None:
    """The log of ranks other than 0: one copy of every line is enough."""


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


class TrainingLoop:
    """Trains ``model`` in place with ``update`` as ``spec`` says; see :func:`prunelab.training.train`
    for the arguments. ``run()`` does the work and returns a :class:`TrainResult`."""

    def __init__(
        self,
        model: nn.Module,
        update: UpdateStep,
        train_loader: Any,
        test_loader: Any,
        spec: TrainingSpec,
        *,
        out_dir: str | Path | None = None,
        seed: int = 0,
        device: Any = None,
        save_steps: Iterable[int | str] = (),
        log: Callable[[str], None] | None = None,
        start_step: int = 0,
        stop_step: int | None = None,
    ) -> None:
        _check_loader(train_loader, spec)
        self.started = time.perf_counter()
        self.spec = spec
        self.data_parallel = distributed.active()
        self.log = (log or _stderr_log) if distributed.is_writer() else _silent
        self.model = model
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.plan = TrainingPlan.from_spec(spec, train_loader.iterations_per_epoch, save_steps)
        self.total = self.plan.total  # the schedule's length
        self.start = int(start_step)
        self.end = self.total if stop_step is None else int(stop_step)  # where this call stops
        if not 0 <= self.start <= self.end <= self.total:
            raise StepError(
                f"need 0 <= start_step <= stop_step <= total steps, got start_step={self.start}, "
                f"stop_step={stop_step}, total {self.total} ({spec.steps})"
            )
        self.lr_fn = make_lr_schedule(spec, self.plan.iterations_per_epoch, self.total)
        self.device = resolve_device(device if device is not None else spec.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.layout = RunLayout(self.out_dir) if self.out_dir is not None else None
        if spec.tensorboard:
            if self.out_dir is None:
                self.log("train.tensorboard is set but there is no output directory: no TensorBoard files are written")
            else:
                load_summary_writer()  # fail now, not after the first evaluation

        seed = int(seed)
        torch.manual_seed(seed)
        model.to(self.device)
        model.train()
        parallel: nn.Module = model
        if self.data_parallel:  # gradients averaged over ranks; rank 0's initial state broadcast to all
            parallel = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        # torch.compile of a module returns an OptimizedModule (an nn.Module); its stubs say a plain callable
        self.forward: nn.Module = torch.compile(parallel) if spec.compile else parallel  # type: ignore[assignment]
        self.evaluated: nn.Module = model if self.data_parallel else self.forward
        self.update = update
        loss = classification_loss(spec, self.device, data_parallel=self.data_parallel)
        update.bind(StepContext(model, self.forward, spec, self.device, self.plan.iterations_per_epoch, loss))
        self.fingerprint = json.loads(
            json.dumps(
                {
                    "spec": {k: v for k, v in semantic_dict(spec).items() if k != "save_steps"},
                    "seed": seed,
                    "iterations_per_epoch": self.plan.iterations_per_epoch,
                    "total_steps": self.total,
                    "start_step": self.start,
                    **({"world_size": distributed.world_size()} if self.data_parallel else {}),
                    **update.fingerprint(),
                }
            )
        )

        # bookkeeping (saved in checkpoints)
        self.step = self.start
        self.best_accuracy: float | None = None
        self.best_step: int | None = None
        self.history: list[dict[str, Any]] = []
        self.loss_sum = 0.0
        self.loss_count = 0
        self.resumed_from: int | None = None
        self.saved_states: dict[int, dict[str, torch.Tensor]] = {}
        self.last_checkpoint: int | None = None
        # trained by the packed trainer: kept in checkpoints so that a resumed run keeps its arithmetic
        self.packed = False
        # the packed trainer's evaluation of this model, all models at once (step -> Evaluation)
        self.evaluator: Callable[[int], Any] | None = None
        # transient
        self.pending: list[torch.Tensor] = []
        self.bar: Any = None
        self.recent_loss: float | None = None
        # steps between check points: adapted to about _CHECK_SECONDS, but fixed when ranks must meet there
        self.check_every = _DATA_PARALLEL_CHECK_EVERY if self.data_parallel else 10
        self.last_check = (self.start, time.perf_counter())

        self.metrics_path = self.layout.metrics_path if self.layout is not None else None
        self.checkpoint_dir = self.layout.checkpoints_dir if self.layout is not None else None
        if self.out_dir is not None:
            self._resume_or_reset()
        tb_dir = self.layout.tensorboard_dir if (self.layout is not None and spec.tensorboard) else None
        purge = (self.resumed_from + 1) if self.resumed_from is not None else 0
        self.writer = MetricsWriter(self.metrics_path, tensorboard_dir=tb_dir, purge_step=purge)
        self.next_event = self._next_event(self.step)

    # resume ---------------------------------------------------------------------------------
    def _resume_or_reset(self) -> None:
        assert self.checkpoint_dir is not None and self.metrics_path is not None
        checkpoint = load_checkpoint(self.checkpoint_dir, on_damaged=lambda message: self.log(f"note: {message}"))
        if checkpoint is None:
            if distributed.is_writer():
                self.metrics_path.unlink(missing_ok=True)
            self.packed = self.layout is not None and self.layout.packed_marker.exists()
            return
        tensor_path = checkpoint.path
        saved = checkpoint.trainer.get("fingerprint")
        if saved != self.fingerprint:
            differing = sorted(
                k for k in set(saved or {}) | set(self.fingerprint) if (saved or {}).get(k) != self.fingerprint.get(k)
            )
            raise CheckpointError(
                f"{tensor_path} belongs to a different run (differs in: {', '.join(differing)}); "
                f"use another output directory or delete {self.checkpoint_dir} to start over"
            )
        if checkpoint.step > self.end:
            raise CheckpointError(
                f"{tensor_path} is at step {checkpoint.step}, past stop_step={self.end}; "
                f"delete {self.checkpoint_dir} to train this run again"
            )
        if checkpoint.note:
            self.log(f"note: {checkpoint.note}")
        self.model.load_state_dict(checkpoint.model, strict=True)
        self.update.load_state_dict(checkpoint.update)
        restore_rng_state(checkpoint.rng, rank=distributed.rank() if self.data_parallel else None)
        state = checkpoint.trainer
        self.step = checkpoint.step
        self.best_accuracy = state.get("best_accuracy")
        self.best_step = state.get("best_step")
        self.history = list(state.get("history", []))
        self.loss_sum = float(state.get("loss_sum", 0.0))
        self.loss_count = int(state.get("loss_count", 0))
        self.packed = bool(state.get("packed", False))
        self.resumed_from = checkpoint.step
        self.last_checkpoint = checkpoint.step
        truncate_metrics(self.metrics_path, checkpoint.step)
        epoch, batch = divmod(checkpoint.step, self.plan.iterations_per_epoch)
        self.log(f"resuming from the checkpoint at step {checkpoint.step}/{self.end} (epoch {epoch}, batch {batch})")
        previous = generation_paths(self.checkpoint_dir, GENERATIONS[1])
        unsettled = checkpoint.note is not None or any(path.exists() for path in previous)
        if checkpoint.step == self.end and distributed.agree(unsettled):
            # the final save was interrupted (its sidecar or the dropping of the previous generation):
            # saving the same state again leaves the files an uninterrupted run leaves (rank 0 decides:
            # under torchrun every rank takes part in the save)
            self._save_checkpoint(checkpoint.step)

    # events ---------------------------------------------------------------------------------
    def _next_event(self, step: int) -> int:
        """The first step after ``step`` with an evaluation, save point, checkpoint or the end."""
        plan = self.plan
        candidates = [self.end]
        if plan.eval_every:
            candidates.append((step // plan.eval_every + 1) * plan.eval_every)
        if plan.checkpoint_every and self.out_dir is not None:
            candidates.append((step // plan.checkpoint_every + 1) * plan.checkpoint_every)
        index = bisect.bisect_right(plan.save_steps, step)
        if index < len(plan.save_steps):
            candidates.append(plan.save_steps[index])
        return max(min(candidates), step + 1) if step < self.end else self.end

    def _check(self, step: int) -> None:
        """A check point: read the pending losses (one sync), stop on a non-finite loss, handle the
        events due at ``step`` and update the progress bar."""
        self._flush(step)
        if step == self.next_event:
            self._events(step)
            self.next_event = self._next_event(step)
        now = time.perf_counter()
        last_step, last_time = self.last_check
        if step > last_step and now > last_time:
            rate = (step - last_step) / (now - last_time)
            if not self.data_parallel:
                self.check_every = max(1, min(_MAX_PENDING, int(rate * _CHECK_SECONDS)))
        self.last_check = (step, now)
        bar = self.bar
        if bar is not None:
            bar.update(step - bar.n)
            postfix = {}
            if self.recent_loss is not None:
                postfix["loss"] = f"{self.recent_loss:.4f}"
            if self.history and self.history[-1].get("test_accuracy") is not None:
                postfix["acc"] = f"{self.history[-1]['test_accuracy']:.2%}"
            bar.set_postfix(postfix, refresh=False)

    def _flush(self, step: int) -> None:
        pending = self.pending
        if not pending:
            return
        stacked = torch.stack(pending)
        if self.data_parallel:  # each rank's loss is its shard's share: the mean over ranks is the batch's
            stacked = distributed.all_reduce_sum(stacked) / distributed.world_size()
        values = stacked.tolist()
        pending.clear()
        first = step - len(values)  # the pending losses are those of iterations first+1 .. step
        total = self.loss_sum
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    first + offset + 1,
                    value,
                    total=self.end,
                    lr=self.lr_fn(first + offset),
                    checkpoint_step=self.last_checkpoint,
                )
            total += value  # sequential float64 sum: independent of where check points fall
        self.loss_sum = total
        self.loss_count += len(values)
        self.recent_loss = math.fsum(values) / len(values)

    def _check_weights(self, step: int) -> None:
        tensors = [t for t in self.model.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]
        tensors += [t for t in self.update.checked_tensors() if t.is_floating_point()]
        if not tensors:
            return
        peaks = torch.stack([n.float() for n in torch._foreach_norm(tensors, ord=math.inf)])
        if not bool(torch.isfinite(peaks).all()):
            raise TrainingDiverged(
                step,
                float("nan"),
                total=self.end,
                lr=self.lr_fn(max(step - 1, 0)),
                checkpoint_step=self.last_checkpoint,
                what="a weight or buffer",
            )

    def _events(self, step: int) -> None:
        plan, start, end = self.plan, self.start, self.end
        periodic_eval = plan.eval_every is not None and (step == start or step % plan.eval_every == 0)
        do_eval = step == end or periodic_eval
        if do_eval and self.history and self.history[-1]["step"] == step:
            do_eval = False
        do_save = self.out_dir is not None and (step == start or step == end or step in plan.save_steps)
        do_checkpoint = (
            self.out_dir is not None
            and step > start
            and (step == end or (plan.checkpoint_every is not None and step % plan.checkpoint_every == 0))
        )
        if do_eval or do_save or do_checkpoint:
            self._check_weights(step)
        if do_eval:
            self._evaluate(step)
        if do_save:
            self._save_weights(step)
        elif self.out_dir is None and step in plan.save_steps:
            self.saved_states[step] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if do_checkpoint:
            self._save_checkpoint(step)

    def _evaluate(self, step: int) -> None:
        train_loss = self.loss_sum / self.loss_count if self.loss_count else None
        self.loss_sum, self.loss_count = 0.0, 0
        test_loss = test_accuracy = None
        if self.test_loader is not None:
            result = (
                evaluate(
                    self.evaluated,
                    self.test_loader,
                    device=self.device,
                    bf16=self.spec.bf16,
                    batch_size=self.spec.eval_batch_size,
                )
                if self.evaluator is None
                else self.evaluator(step)
            )
            test_loss, test_accuracy = result.loss, result.accuracy
            if self.best_accuracy is None or test_accuracy > self.best_accuracy:
                self.best_accuracy, self.best_step = test_accuracy, step
        record = {
            "step": step,
            "epoch": step / self.plan.iterations_per_epoch,
            "lr": self.lr_fn(step),
            "train_loss": train_loss,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        }
        self.history.append(record)
        self.writer.write(record)
        self.log(
            f"step {step}/{self.end} (epoch {record['epoch']:.2f}): lr {record['lr']:.4g}, "
            f"train loss {_fmt(train_loss, '.4f')}, test loss {_fmt(test_loss, '.4f')}, "
            f"test accuracy {_fmt(test_accuracy, '.2%')}"
        )

    def _save_weights(self, step: int) -> None:
        assert self.layout is not None
        atomic_save_tensors(
            self.layout.weights_path(step),
            _unshared(self.model.state_dict()),
            metadata={"format": WEIGHTS_FORMAT, "step": str(step)},
        )

    def _save_checkpoint(self, step: int) -> None:
        assert self.checkpoint_dir is not None
        state = {
            "fingerprint": self.fingerprint,
            "best_accuracy": self.best_accuracy,
            "best_step": self.best_step,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "history": self.history,
            **({"packed": True} if self.packed else {}),
        }
        save_checkpoint(
            self.checkpoint_dir,
            step=step,
            model=self.model,
            update=self.update.state_dict(),
            trainer=state,
            rng=self._rng_states(),
            keep_previous=step < self.end,
        )
        self.last_checkpoint = step
        if self.packed and self.layout is not None and distributed.is_writer():
            self.layout.packed_marker.unlink(missing_ok=True)  # the checkpoint carries the fact now

    def mark_packed(self) -> None:
        """Train with the packed arithmetic from now on, and say so in the run's files before the first
        update (a marker until the first checkpoint, which records it), so that the run is finished
        packed however it is resumed."""
        self.packed = True
        if self.layout is not None and self.last_checkpoint is None and distributed.is_writer():
            self.layout.packed_marker.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.layout.packed_marker, "")

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """The global generators' states to checkpoint: this process's, or under data parallelism every
        rank's (gathered to all, written by rank 0), so each rank resumes its own dropout stream."""
        own = rng_state(self.device.type == "cuda")
        if not self.data_parallel:
            return own
        states: dict[str, torch.Tensor] = {}
        for name, value in own.items():
            gathered = [torch.empty_like(value) for _ in range(distributed.world_size())]
            torch.distributed.all_gather(gathered, value.to(self.device) if self.device.type == "cuda" else value)
            states.update({f"rank{r}.{name}": g.cpu() for r, g in enumerate(gathered)})
        return states

    # the loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        try:
            self.begin()  # closes what it opened if it fails
            self._loop()
            if self.step < self.end:  # pragma: no cover - guarded by the epoch-length check
                raise RuntimeError(f"training stopped at step {self.step} of {self.end}")
        except Exception as error:
            cause = _compile_failure(error) if self.spec.compile else None
            if cause is None:
                raise
            first_line = (str(cause).strip().splitlines() or [""])[0]
            raise CompileUnavailable(
                f"train.compile: torch.compile could not compile the model here ({type(cause).__name__}: "
                f"{first_line}). On a CPU its back end (inductor) needs a working C++ compiler: install g++ or "
                "clang++ (or point CXX at one), or train without --train.compile"
            ) from error
        finally:
            if self.bar is not None:
                self.close()
        distributed.barrier()  # rank 0's last files are written before any rank moves on
        return self.result()

    # the pieces of run(), also driven one by one by the packed trainer (prunelab.training.packed) ------
    def begin(self) -> None:
        """Open the progress bar and handle the starting point's events (evaluation, weights)."""
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.end,
            initial=self.step,
            disable=not self.spec.progress or not distributed.is_writer(),
            file=sys.stderr,
            unit="it",
            dynamic_ncols=True,
            desc="train",
        )
        self.last_check = (self.step, time.perf_counter())
        try:
            if self.resumed_from is None:
                self.next_event = self.start
                self._check(self.start)  # evaluation and weights at the starting point
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the progress bar and the metrics writer."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.writer.close()

    def check(self, step: int, losses: list[torch.Tensor]) -> None:
        """A check point at ``step`` reached from outside :meth:`run`, with the training losses of the
        steps since the last one (0-d tensors, oldest first); the model holds the state of ``step``
        whenever ``step`` is an event (:attr:`next_event`)."""
        self.pending.extend(losses)
        self.step = step
        self._check(step)

    def result(self) -> TrainResult:
        final = self.history[-1] if self.history and self.history[-1]["step"] == self.end else {}
        return TrainResult(
            final_step=self.step,
            test_accuracy=final.get("test_accuracy"),
            test_loss=final.get("test_loss"),
            train_loss=final.get("train_loss"),
            best_accuracy=self.best_accuracy,
            best_step=self.best_step,
            wall_seconds=time.perf_counter() - self.started,
            resumed_from=self.resumed_from,
            history=list(self.history),
            mask=self.update.final_mask(),
            saved_states=self.saved_states,
        )

    def _loop(self) -> None:
        step, end, ipe = self.step, self.end, self.plan.iterations_per_epoch
        if step >= end:
            return
        loader, lr_fn, set_lr, update = self.train_loader, self.lr_fn, self.update.set_lr, self.update.step
        keep = self.pending.append
        current_lr = None
        next_check = min(self.next_event, step + self.check_every)
        epoch, batch = divmod(step, ipe)
        while step < end:
            for x, y in loader.epoch(epoch, batch):
                lr = lr_fn(step)
                if lr != current_lr:
                    set_lr(lr)
                    current_lr = lr
                keep(update(x, y, step))
                step += 1
                if step >= next_check:
                    self.step = step
                    self._check(step)
                    if step >= end:
                        break
                    next_check = min(self.next_event, step + self.check_every)
            else:
                if step != (epoch + 1) * ipe:
                    raise RuntimeError(
                        f"the training loader yielded {step - epoch * ipe - batch} batches in epoch {epoch} "
                        f"from batch {batch}, but declares {ipe} iterations per epoch"
                    )
            epoch, batch = epoch + 1, 0
        self.step = step
