"""Building the optimiser a :class:`~prunelab.specs.training.TrainingSpec` asks for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from prunelab.specs.base import SpecError
from prunelab.specs.training import TrainingSpec

__all__ = ["build_optimizer"]


def build_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    spec: TrainingSpec,
    *,
    foreach: bool | None = True,
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, L2 weight decay), Adam (betas, L2 weight decay) or AdamW (betas,
    decoupled weight decay) with ``spec.lr`` as the initial learning rate.

    The multi-tensor (``foreach``) implementations are used by default, also on the CPU where PyTorch
    would otherwise pick the per-tensor loop. The learning rate is later set per step by the trainer
    from :func:`~prunelab.training.schedule.lr_at_step`.
    """
    params = list[Any](params)  # tensors or group dicts, as given (a bare list() of the union types as list[object])
    if not params:
        raise ValueError("the model has no parameters to optimise")
    name = spec.optimizer
    if name == "sgd":
        if spec.nesterov and spec.momentum <= 0:
            raise SpecError("train.nesterov=true needs train.momentum > 0")
        return torch.optim.SGD(
            params,
            lr=spec.lr,
            momentum=spec.momentum,
            nesterov=spec.nesterov,
            weight_decay=spec.weight_decay,
            foreach=foreach,
        )
    if spec.nesterov:
        raise SpecError(f"train.nesterov applies to SGD only, not {name!r}")
    beta1, beta2 = (float(b) for b in spec.betas)
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise SpecError(f"train.betas must lie in [0, 1), got {spec.betas}")
    if name == "adam":
        return torch.optim.Adam(
            params, lr=spec.lr, betas=(beta1, beta2), weight_decay=spec.weight_decay, foreach=foreach
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=spec.lr, betas=(beta1, beta2), weight_decay=spec.weight_decay, foreach=foreach
        )
    raise ValueError(f"unknown optimizer {name!r}")  # unreachable: the spec validates the name
