"""Baseline strategies: magnitude and random scores, and per-layer random shuffling of a mask.

* ``magnitude``: ``|w|`` at the weights the score function sees (already masked).
* ``random``: i.i.d. uniform scores drawn from ``ctx.generator``. With exact-count selection every
  alive weight is equally likely to be kept; scope is the caller's choice.
* ``random_global``: the same scores, meant for global scope (the API rejects another scope); the
  network the NTK rescaling of :mod:`prunelab.pruning.rescale` is defined for.
* ``random_layerwise`` is not a score function: it is "the per-layer densities of a reference
  mask with random positions" — :func:`randomize_layerwise` for a finished mask (the lottery
  ticket *shuffle* control), :func:`prunelab.pruning.api.prune_level` for a lottery level step.
* :func:`randomize_global` keeps only a mask's total count over the considered tensors and draws
  its positions uniformly over all of them (the *global shuffle* control of OpenLTH's
  ``randomly_prune`` branch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from prunelab.masks import Mask
from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.selection import match_patterns

__all__ = [
    "magnitude",
    "magnitude_at",
    "random_scores",
    "random_scores_like",
    "randomize_layerwise",
    "randomize_global",
]


def magnitude_at(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``|w|`` for saved weights (e.g. the trained weights of a lottery level)."""
    return {n: w.detach().abs() for n, w in weights.items()}


def random_scores_like(tensors: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform [0, 1) scores of each tensor's shape, drawn from ``generator`` in mapping order on the
    generator's device (so a seed gives the same scores whatever device the weights are on), then
    moved to the tensor's device."""
    return {
        n: torch.rand(t.shape, generator=generator, device=generator.device).to(t.device) for n, t in tensors.items()
    }


@register_strategy("magnitude", uses_model=False, description="keep the largest |w| (at the current, masked weights)")
def magnitude(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Keep the largest |w| (at the current, masked weights)."""
    return magnitude_at(ctx.params)


@register_strategy(
    "random", uses_model=False, description="uniform random scores (seeded); every alive weight equally likely kept"
)
def random_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Uniform random scores (seeded); every alive weight is equally likely kept."""
    return random_scores_like(ctx.params, ctx.generator)


@register_strategy(
    "random_global", uses_model=False, description="uniform random scores with global scope (Yang & Wang's NTK setting)"
)
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


def randomize_global(
    mask: Mapping[str, torch.Tensor], generator: torch.Generator | None = None, *, ignore: str | Iterable[str] = ()
) -> Mask:
    """The same total number of kept weights over the considered (non-ignored) tensors as ``mask``,
    at positions drawn uniformly at random from all of their positions pooled: the per-layer
    densities are *not* kept (each tensor's count is hypergeometric). Ignored tensors are copied
    unchanged. A new mask, not a pruning step (pruned positions may be chosen). ``generator``
    defaults to a fresh one seeded with 0.

    OpenLTH's ``randomly_prune --strategy=global`` permutes the vectorised mask of *every* prunable
    tensor (its ``--layers_to_ignore`` then resets the named tensors to dense, which adds weights);
    here the ignored tensors take no part, so the considered tensors keep exactly the ticket's count."""
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    ignored = match_patterns(ignore, mask) if ignore else set()
    considered = [n for n in mask if n not in ignored]
    sizes = [mask[n].numel() for n in considered]
    kept = sum(int(mask[n].sum()) for n in considered)
    chosen = torch.zeros(sum(sizes), dtype=torch.bool)
    chosen[torch.randperm(chosen.numel(), generator=generator, device=generator.device)[:kept].cpu()] = True
    out = {name: m.clone() for name, m in mask.items() if name in ignored}
    for name, part in zip(considered, torch.split(chosen, sizes)):
        out[name] = part.reshape(mask[name].shape).to(mask[name].device)
    return Mask({name: out[name] for name in mask})
