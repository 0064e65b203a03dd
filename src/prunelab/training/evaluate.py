"""Accuracy and mean cross-entropy of a model over a data set."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunelab import distributed

__all__ = ["Evaluation", "evaluate", "iterate_batches"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Evaluation:
    """``accuracy`` is a fraction in [0, 1]; ``loss`` the mean (unsmoothed) cross-entropy per example."""

    accuracy: float
    loss: float
    examples: int


def iterate_batches(loader: Any) -> Iterator[Batch]:
    """Batches of a prunelab loader (its epoch 0) or of any iterable of ``(x, y)`` pairs."""
    if hasattr(loader, "epoch") and callable(loader.epoch):
        return iter(loader.epoch(0))
    return iter(loader)


def evaluate(
    model: nn.Module,
    loader: Any | Iterable[Batch],
    *,
    device: torch.device | str | None = None,
    bf16: bool = False,
    batch_size: int | None = None,
) -> Evaluation:
    """Evaluate in eval mode without gradients; the model's train/eval mode is restored afterwards.

    ``loader`` is a prunelab loader (``loader.epoch(0)`` is used) or an iterable of ``(x, y)``.
    ``batch_size`` splits larger batches (to bound memory); ``bf16`` runs the forward pass under
    bfloat16 autocast. Counts and sums stay on the device and are read once at the end. Under
    ``torchrun`` each rank evaluates its shard of ``loader`` and the sums are added over ranks.
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    examples = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in iterate_batches(loader):
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                chunks = zip(x.split(batch_size), y.split(batch_size)) if batch_size else ((x, y),)
                for xb, yb in chunks:
                    with amp:
                        logits = model(xb)
                    logits = logits.float()
                    loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
                    correct += (logits.argmax(dim=1) == yb).sum()
                    examples += yb.shape[0]
    finally:
        model.train(was_training)
    if distributed.active():  # each rank evaluated its shard: one reduction of the three sums
        totals = distributed.all_reduce_sum(torch.stack([correct.double(), loss_sum, loss_sum.new_tensor(examples)]))
        correct, loss_sum, examples = totals[0].long(), totals[1], int(totals[2])
    if examples == 0:
        raise ValueError("evaluation data is empty")
    return Evaluation(accuracy=int(correct) / examples, loss=float(loss_sum) / examples, examples=examples)
