"""GraSP magnitude: |θ ⊙ Hg| (Frankle, Dziugaite, Roy & Carbin, ICLR 2021, "Pruning Neural
Networks at Initialization: Why are We Missing the Mark?").

The variant studied there ranks weights by the *magnitude* of GraSP's per-weight quantity and
prunes the lowest, as SNIP does, instead of pruning the highest signed scores. ``Hg`` is computed
exactly as for ``grasp``
(temperature, two passes, BatchNorm mode, ``aggregate``): see :mod:`prunelab.pruning.scores.grasp`.

``aggregate`` defaults to ``"total"``, as for ``grasp``, so that ``grasp_abs`` is exactly the
magnitude of ``grasp``'s score. The fork, the only reference code of this variant, uses per-batch
gradients (``aggregate="per_batch"``: ``|θ ⊙ Σ_b (B_b/N) H_b g_b|``); the two agree whenever the
pruning examples fit in one batch (e.g. 10 per class on CIFAR-10).
"""

from __future__ import annotations

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import mask_scores
from prunelab.pruning.scores.grasp import hessian_gradient_product

__all__ = ["grasp_abs"]


@register_strategy(
    "grasp_abs", needs_data=True, default_iterations=1, options=("temperature", "train_mode", "aggregate")
)
def grasp_abs(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """GraSP magnitude |θ ⊙ Hg| (Frankle et al. 2021); prune lowest.

    Options as ``grasp``: ``temperature`` (200), ``train_mode`` (True), ``aggregate`` (``"total"``;
    ``"per_batch"`` is the fork's convention).
    """
    names, theta, hg = hessian_gradient_product(ctx, "grasp_abs")
    return mask_scores({n: (t * h).abs() for n, t, h in zip(names, theta, hg)}, ctx.mask)
