"""``train()``: the training loop with the masked weight-training step, or with any other update step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab.specs.training import TrainingSpec
from prunelab.store.layout import RunLayout
from prunelab.training.loop import TrainingLoop, TrainResult
from prunelab.training.masked_step import MaskedStep
from prunelab.training.update import UpdateStep

__all__ = ["train", "weights_path"]


def weights_path(out_dir: str | Path, step: int) -> Path:
    """Where :func:`train` saves the weights of ``step`` under ``out_dir`` (see :class:`RunLayout`)."""
    return RunLayout(Path(out_dir)).weights_path(step)


def train(
    model: nn.Module,
    train_loader: Any,
    test_loader: Any,
    spec: TrainingSpec,
    *,
    out_dir: str | Path | None,
    mask: Mapping[str, torch.Tensor] | None = None,
    prunable: Mapping[str, nn.Parameter] | None = None,
    update: UpdateStep | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    save_steps: Iterable[int | str] = (),
    log: Callable[[str], None] | None = None,
    start_step: int = 0,
    stop_step: int | None = None,
) -> TrainResult:
    """Train ``model`` in place as ``spec`` says; resume automatically from ``out_dir``'s checkpoint.

    ``train_loader`` provides ``iterations_per_epoch`` and ``epoch(e, start_batch)``; ``test_loader``
    (a loader, an iterable of ``(x, y)``, or ``None``) is evaluated every ``spec.eval_every`` steps and
    at the end. With ``mask`` the weights it names (looked up in ``prunable``, default: the model's
    named parameters) stay exactly zero where the mask is False. ``update`` replaces that masked
    weight-training step by another :class:`~prunelab.training.update.UpdateStep` (e.g. a supermask
    step; ``mask`` and ``prunable`` must then be left out). ``save_steps`` (iterations or step
    strings) add to ``spec.save_steps``. ``out_dir=None`` trains in memory without writing files.
    ``device`` overrides ``spec.device``. Logs go to ``log`` (default: stderr); stdout is never used.

    ``start_step`` starts the data order and the learning-rate schedule at that step (for rewinding:
    ``model`` holds the weights of that step; the optimiser state starts fresh). ``stop_step`` ends
    this call early (the schedule still spans ``spec.steps``); the final evaluation, final weights and
    final checkpoint are then those of ``stop_step``.

    A checkpoint written by the packed trainer (:func:`~prunelab.training.packed.train_packed`) is resumed
    by it, so that the run finishes with the arithmetic it started with (bit for bit on the CPU).

    Raises :class:`~prunelab.training.loop.TrainingDiverged` when the loss becomes NaN or infinite.
    """
    if update is None:
        update = MaskedStep(mask, prunable)
    elif mask is not None or prunable is not None:
        raise ValueError("pass either update= or mask=/prunable= (the masked step's arguments), not both")
    loop = TrainingLoop(
        model,
        update,
        train_loader,
        test_loader,
        spec,
        out_dir=out_dir,
        seed=seed,
        device=device,
        save_steps=save_steps,
        log=log,
        start_step=start_step,
        stop_step=stop_step,
    )
    if loop.packed and type(update) is MaskedStep:  # resumed from a packed run: it goes on as one
        from prunelab.training.packed import continue_packed

        return continue_packed(loop)
    return loop.run()
