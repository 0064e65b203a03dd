"""GraSP magnitude: |θ ⊙ Hg| (Frankle, Dziugaite, Roy & Carbin, ICLR 2021, "Pruning Neural
Networks at Initialization: Why are We Missing the Mark?").

The variant studied there ranks weights by the *magnitude* of GraSP's per-weight quantity and
prunes the lowest, as SNIP does, instead of pruning the highest signed scores. ``Hg`` is computed
exactly as for ``grasp``
(temperature, two passes, BatchNorm mode): see :mod:`prunelab.pruning.scores.grasp`.
"""

from __future__ import annotations

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import mask_scores
from prunelab.pruning.scores.grasp import hessian_gradient_product

__all__ = ["grasp_abs"]


@register_strategy("grasp_abs", needs_data=True, default_iterations=1, options=("temperature", "train_mode"))
def grasp_abs(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """GraSP magnitude |θ ⊙ Hg| (Frankle et al. 2021); prune lowest.

    Options as ``grasp``: ``temperature`` (200), ``train_mode`` (True).
    """
    names, theta, hg = hessian_gradient_product(ctx)
    return mask_scores({n: (t * h).abs() for n, t, h in zip(names, theta, hg)}, ctx.mask)
