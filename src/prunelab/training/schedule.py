"""The learning rate as a pure function of the step.

``lr(s) = lr_peak · w(s) · g(s)`` for the update that takes the model from step ``s`` to ``s + 1``:

* warm-up ``w(s) = min(1, s / W)`` over ``W`` warm-up steps (``w = 1`` when ``W = 0``), so the rate
  rises linearly from 0 at step 0 to the peak at step ``W``;
* ``constant``: ``g(s) = 1``;
* ``multistep``: ``g(s) = gamma ** (number of milestones m with m <= s)``;
* ``cosine``: ``g(s) = ½ (1 + cos(π · p))`` with ``p = clamp((s − W) / (T − W), 0, 1)``, which falls
  from 1 at the end of the warm-up to 0 at the last step ``T``.

Because the rate depends on nothing but the step, resuming needs no scheduler state.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from prunelab.specs.training import TrainingSpec
from prunelab.steps import to_iterations

__all__ = ["lr_at_step", "make_lr_schedule"]


def lr_at_step(
    step: int,
    *,
    lr: float,
    schedule: str = "constant",
    total_steps: int = 0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_steps: int = 0,
) -> float:
    """The learning rate used by the update at ``step`` (all arguments in iterations)."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    factor = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        factor = step / warmup_steps
    if schedule == "constant":
        pass
    elif schedule == "multistep":
        passed = bisect.bisect_right(sorted(milestones), step)
        factor *= gamma**passed
    elif schedule == "cosine":
        span = total_steps - warmup_steps
        progress = 1.0 if span <= 0 else min(max((step - warmup_steps) / span, 0.0), 1.0)
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {schedule!r}: use constant, multistep or cosine")
    return lr * factor


def make_lr_schedule(
    spec: TrainingSpec, iterations_per_epoch: int, total_steps: int | None = None
) -> Callable[[int], float]:
    """``step -> lr`` for a spec, with its step strings converted using ``iterations_per_epoch``."""
    total = to_iterations(spec.steps, iterations_per_epoch) if total_steps is None else total_steps
    milestones = sorted(to_iterations(m, iterations_per_epoch) for m in spec.milestones)
    warmup = to_iterations(spec.warmup, iterations_per_epoch)
    lr, schedule, gamma = spec.lr, spec.schedule, spec.gamma

    def lr_fn(step: int) -> float:
        return lr_at_step(
            step, lr=lr, schedule=schedule, total_steps=total, milestones=milestones, gamma=gamma, warmup_steps=warmup
        )

    return lr_fn
