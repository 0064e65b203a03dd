"""Baseline strategies: magnitude and random scores, and per-layer random shuffling of a mask.

* ``magnitude``: ``|w|`` at the weights the score function sees (already masked).
* ``random``: i.i.d. uniform scores drawn from ``ctx.generator``. With exact-count selection every
  alive weight is equally likely to be kept; scope is the caller's choice.
* ``random_global``: the same scores, meant for global scope (the API rejects another scope); the
  network the NTK rescaling of :mod:`prunelab.pruning.rescale` is defined for.
* ``random_layerwise`` is not a score function: it is "the per-layer densities of a reference
  mask with random positions" — :func:`randomize_layerwise` for a finished mask (the lottery
  ticket *shuffle* control), :func:`prunelab.pruning.api.prune_level` for a lottery level step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from prunelab.masks import Mask
from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.selection import match_patterns

__all__ = ["magnitude", "magnitude_at", "random_scores", "random_scores_like", "randomize_layerwise"]


def magnitude_at(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``|w|`` for saved weights (e.g. the trained weights of a lottery level)."""
    return {n: w.detach().abs() for n, w in weights.items()}


def random_scores_like(tensors: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform [0, 1) scores of each tensor's shape, drawn from ``generator`` in mapping order on the
    generator's device (so a seed gives the same scores whatever device the weights are on), then
    moved to the tensor's device."""
    return {
        n: torch.rand(t.shape, generator=generator, device=generator.device).to(t.device)
        for n, t in tensors.items()
    }


@register_strategy("magnitude", description="keep the largest |w| (at the current, masked weights)")
def magnitude(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Keep the largest |w| (at the current, masked weights)."""
    return magnitude_at(ctx.params)


@register_strategy("random", description="uniform random scores (seeded); every alive weight equally likely kept")
def random_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Uniform random scores (seeded); every alive weight is equally likely kept."""
    return random_scores_like(ctx.params, ctx.generator)


@register_strategy("random_global", description="uniform random scores with global scope (Yang & Wang's NTK setting)")
def random_global_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Uniform random scores, selected with global scope."""
    return random_scores_like(ctx.params, ctx.generator)


def randomize_layerwise(
    mask: Mapping[str, torch.Tensor], generator: torch.Generator | None = None, *, ignore: str | Iterable[str] = ()
) -> Mask:
    """The same number of kept weights in every tensor as ``mask``, at uniformly random positions
    (each tensor's kept set is a uniform random subset of its positions; pruned positions may be
    revived — this is a new mask, not a pruning step). Ignored tensors are copied unchanged.
    ``generator`` defaults to a fresh one seeded with 0."""
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    ignored = match_patterns(ignore, mask) if ignore else set()
    out = {}
    for name, m in mask.items():
        if name in ignored:
            out[name] = m.clone()
            continue
        k = int(m.sum())
        order = torch.randperm(m.numel(), generator=generator, device=generator.device)[:k].to(m.device)
        new = torch.zeros(m.numel(), dtype=torch.bool, device=m.device)
        new[order] = True
        out[name] = new.reshape(m.shape)
    return Mask(out)
