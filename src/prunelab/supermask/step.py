"""The supermask update step: train the scores of frozen random weights; the mask is the output.

Per iteration: ``zero_grad``, forward and loss, backward (the straight-through gradient reaches the
scores), optimiser step over every trainable parameter — the scores, plus learned biases when the
network was converted with ``bias=True`` (both references optimise the scores only; weight decay
applies to them, as in both). With ``rerand_freq`` it is IteRand: before the update with index
``iteration`` (the number of updates done before it) with ``(iteration + 1) % K == 0``, the pruned
weights are partially re-drawn by :func:`~prunelab.supermask.rerandomize_` — the reference's
``rerand_callback``, which runs before the optimiser step of the iterations ``K−1, 2K−1, …``. λ = 0
(or no ``rerand_freq``) is edge-popup: no re-draws at all.

The re-draws use a dedicated CPU generator seeded with ``seed``; its state and the optimiser's are
the step's :meth:`state_dict`, which the training loop stores in every checkpoint (the weights and
scores are in the model's own state), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from prunelab.masks import Mask
from prunelab.steps import Step, parse_step
from prunelab.supermask.convert import supermask_layers, supermask_masks
from prunelab.supermask.errors import SupermaskError, check_number, check_option
from prunelab.supermask.rerandomize import RERAND_MODES, rerandomize_
from prunelab.training.optim import build_optimizer
from prunelab.training.update import StepContext, UpdateStep

__all__ = ["SupermaskStep"]


class SupermaskStep(UpdateStep):
    """Edge-popup (``rerand_freq=None``) or IteRand on a network made by :func:`~prunelab.supermask.to_supermask`.

    ``rerand_freq`` is a step string (``"300it"``, ``"1ep"``) or an iteration count: the period K of the
    re-randomisation. ``rerand_lambda`` (λ), ``rerand_mode``, ``rerand_mu`` and ``rerand_rate`` are
    :func:`~prunelab.supermask.rerandomize_`'s ``fraction``, ``mode``, ``mu`` and ``rerand_rate``.
    """

    name = "supermask"

    def __init__(
        self,
        *,
        rerand_freq: str | int | Step | None = None,
        rerand_lambda: float = 0.0,
        rerand_mode: str = "bernoulli",
        rerand_mu: float | None = None,
        rerand_rate: float = 1.0,
        seed: int = 0,
    ) -> None:
        check_option(rerand_mode, RERAND_MODES, "re-randomisation mode")
        self.rerand_freq = None if rerand_freq is None else parse_step(rerand_freq)
        if self.rerand_freq is not None and self.rerand_freq == Step(0, 0):
            raise SupermaskError("rerand_freq must be at least one iteration (or None for edge-popup)")
        self.rerand_lambda = check_number(rerand_lambda, "rerand_lambda")
        self.rerand_mode = rerand_mode
        self.rerand_mu = None if rerand_mu is None else check_number(rerand_mu, "rerand_mu")
        self.rerand_rate = check_number(rerand_rate, "rerand_rate")
        if not 0.0 <= self.rerand_rate <= 1.0:
            raise SupermaskError(
                f"rerand_rate must be in [0, 1] (the fraction of pruned weights eligible), got {rerand_rate!r}"
            )
        if rerand_mode == "bernoulli" and not 0.0 <= self.rerand_lambda <= 1.0:
            raise SupermaskError(
                f"rerand_lambda is a probability in bernoulli mode and must be in [0, 1], got {rerand_lambda!r}"
            )
        if (rerand_mode == "manual") != (rerand_mu is not None):
            raise SupermaskError("rerand_mu goes with rerand_mode='manual' (w ← λ·w + μ·r), and only with it")
        if self.rerand_freq is None and (rerand_lambda or rerand_mu is not None or rerand_mode != "bernoulli"):
            raise SupermaskError("re-randomisation options need rerand_freq (how often to re-draw)")
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rerandomizations = 0
        self.period: int | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def rerandomizes(self) -> bool:
        return self.rerand_freq is not None and not (self.rerand_mode == "bernoulli" and self.rerand_lambda == 0.0)

    def bind(self, context: StepContext) -> None:
        self.model = context.model
        self.layers = supermask_layers(self.model)
        if not self.layers:
            raise SupermaskError(
                f"{type(self.model).__name__} has no supermask layer; convert it with prunelab.supermask.to_supermask"
            )
        if self.rerand_freq is not None:
            self.period = self.rerand_freq.to_iterations(context.iterations_per_epoch)
        self.optimizer = build_optimizer([p for p in self.model.parameters() if p.requires_grad], context.spec)
        self._zero_grad = self.optimizer.zero_grad
        self._optimizer_step = self.optimizer.step
        self._forward = context.forward
        self._loss = context.loss

    def set_lr(self, lr: float) -> None:
        assert self.optimizer is not None, "bind() the step before setting its learning rate"
        for group in self.optimizer.param_groups:  # not cached: load_state_dict replaces the groups
            group["lr"] = lr

    def step(self, x: torch.Tensor, y: torch.Tensor, iteration: int) -> torch.Tensor:
        if self.period is not None and (iteration + 1) % self.period == 0 and self.rerandomizes:
            rerandomize_(
                self.model,
                self.rerand_lambda,
                generator=self.generator,
                mode=self.rerand_mode,
                mu=self.rerand_mu,
                rerand_rate=self.rerand_rate,
            )
            self.rerandomizations += 1
        self._zero_grad(set_to_none=True)
        loss = self._loss(self._forward, x, y)
        loss.backward()
        self._optimizer_step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        assert self.optimizer is not None, "bind() the step before saving its state"
        return {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "rerandomizations": self.rerandomizations,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        assert self.optimizer is not None, "bind() the step before loading its state"
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.rerandomizations = int(state["rerandomizations"])

    def fingerprint(self) -> dict[str, Any]:
        layers = [
            (path, layer.density, layer.ranking, layer.weight_law.describe(), layer._scope is not None)
            for path, layer in self.layers.items()
        ]
        return {
            "update": self.name,
            "supermask": [list(entry) for entry in layers],
            "rerand": None
            if self.rerand_freq is None
            else {
                "period": self.period,
                "lambda": self.rerand_lambda,
                "mode": self.rerand_mode,
                "mu": self.rerand_mu,
                "rate": self.rerand_rate,
                "seed": self.seed,
            },
        }

    def final_mask(self) -> Mask:
        return supermask_masks(self.model)
