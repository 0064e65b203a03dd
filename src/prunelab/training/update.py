"""The update step: the one part of training that differs between kinds of training.

The training loop (:mod:`prunelab.training.loop`) owns everything around an iteration — the plan,
the learning-rate schedule, evaluation, save points, checkpoints and resume, divergence checks,
progress and metrics. What one iteration *does* with a batch is an :class:`UpdateStep`:

* :class:`~prunelab.training.masked_step.MaskedStep` — weight training under a fixed mask (dense
  training is the mask-less case);
* :class:`prunelab.supermask.SupermaskStep` — frozen weights, learned scores; the mask is the output.

A step has its own state (optimiser moments, a dedicated generator, ...), which the loop stores in
every checkpoint through :meth:`UpdateStep.state_dict` and gives back on resume through
:meth:`UpdateStep.load_state_dict`, so a resumed run equals an uninterrupted one.

The contract, in the order the loop calls it:

1. ``bind(context)`` once, after the model is on its device and in train mode (build the optimiser
   here, from ``context.spec``);
2. ``load_state_dict(state)`` when resuming from a checkpoint (after the model's own state);
3. ``set_lr(lr)`` whenever the scheduled learning rate changes (not every iteration);
4. ``step(x, y, iteration)`` per batch: update the model and return the batch's training loss as a
   0-d tensor, *without* reading it on the host (no ``.item()``: the loop reads pending losses in one
   sync at its check points). ``iteration`` is the number of updates done before this one;
5. ``state_dict()`` at every checkpoint; ``final_mask()`` once at the end.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunelab import distributed
from prunelab.masks import Mask
from prunelab.specs.training import TrainingSpec

__all__ = ["LossFn", "StepContext", "UpdateStep", "classification_loss"]


LossFn = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepContext:
    """What the loop hands a step when binding it."""

    model: nn.Module  # on ``device``, in train mode; what the loop evaluates, saves and checkpoints
    forward: Callable[[torch.Tensor], torch.Tensor]  # ``model``, or its DDP / ``torch.compile`` wrapper
    spec: TrainingSpec
    device: torch.device
    iterations_per_epoch: int
    loss: LossFn  # ``loss(forward, x, y)``: the training loss of a batch (see :func:`classification_loss`)


def classification_loss(spec: TrainingSpec, device: torch.device, *, data_parallel: bool = False) -> LossFn:
    """``loss(forward, x, y)``: cross-entropy with the spec's label smoothing, under bf16 autocast when
    ``spec.bf16`` — the training loss every step of prunelab uses.

    With ``data_parallel`` (one rank of several, each holding a shard of the global batch) the loss is
    the shard's summed cross-entropy times ``world_size / n_global`` (``n_global`` the global batch's
    size, summed over ranks): averaging the ranks' gradients, as DDP does, then gives exactly the
    gradient of the global batch's mean loss, also when the shards differ in size."""
    cross_entropy = torch.nn.functional.cross_entropy
    smoothing = spec.label_smoothing
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if spec.bf16 else contextlib.nullcontext()
    if data_parallel:
        world = float(distributed.world_size())

        def loss_data_parallel(forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            n_global = distributed.all_reduce_sum(torch.full((), float(y.shape[0]), device=y.device))
            with autocast:
                total = cross_entropy(forward(x), y, reduction="sum", label_smoothing=smoothing)
            return total * (world / n_global)

        return loss_data_parallel
    if spec.bf16:

        def loss_bf16(forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast:
                return cross_entropy(forward(x), y, label_smoothing=smoothing)

        return loss_bf16

    def loss(forward: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(forward(x), y, label_smoothing=smoothing)

    return loss


class UpdateStep(ABC):
    """One training iteration's update, with state of its own (see the module docstring)."""

    #: Shown in logs and recorded in checkpoints' fingerprints when it is not the default step.
    name: str = "update"

    @abstractmethod
    def bind(self, context: StepContext) -> None:
        """Prepare for training ``context.model`` (build the optimiser, apply a mask, ...)."""

    @abstractmethod
    def set_lr(self, lr: float) -> None:
        """Use learning rate ``lr`` from the next update on."""

    @abstractmethod
    def step(self, x: torch.Tensor, y: torch.Tensor, iteration: int) -> torch.Tensor:
        """Update on one batch; return its loss (a 0-d tensor, detached, not read on the host)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The step's state: nested dicts, lists and tuples of tensors, numbers and strings."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the model's own state is already restored)."""

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able facts a checkpoint must share to be resumed by this step (e.g. its mask's digest);
        a checkpoint whose fingerprint differs belongs to another run."""
        return {}

    def final_mask(self) -> Mask | None:
        """The mask the trained network has: the fixed input mask, a learned one, or ``None``."""
        return None

    def checked_tensors(self) -> list[torch.Tensor]:
        """Tensors the loop checks for non-finite values at its check points, beyond the model's
        state (e.g. learned scores kept outside the model)."""
        return []
