"""NTK rescaling of randomly pruned networks (Yang & Wang, 2023, "On the NTK Analysis of Randomly
Pruned Neural Networks"): the surviving weights of a tensor kept with density ``d`` are multiplied
by ``1/sqrt(d)`` so that the pruned layer's pre-activations keep the dense layer's variance.

The rule here never compounds across pruning levels. Level ``L``'s weights are always computed
from the original (rewind-point) weights::

    w_L = w_rewind ⊙ m_L · c_L

with ``c_L = 1/sqrt(d_L)`` and ``d_L`` a density relative to the *dense* tensors, never relative to
the previous level, and never ``w_{L-1} · c``. Two modes choose ``d_L``:

* ``"global"`` — the reference code's rule (``pruning/random_rescale_global.py`` of
  VITA-Group/Random-Pruning-NTK): one factor for every considered tensor, ``d_L`` the kept
  fraction of the *considered* weights pooled (``1 − p`` with ``p`` the pruned fraction), and
  ignored tensors unscaled (factor 1). The reference multiplies the mask values by ``1/sqrt(1 − f)``
  at every level, so level ``L``'s mask carries the nominal ``(1 − f)^(−L/2)``, and applies that
  scaled mask once to the rewind weights; with prunelab's exact counts the considered density is
  that nominal ``(1 − f)^L`` up to the rounding of the counts.
* ``"per_layer"`` — each considered tensor's own realised density (a per-layer variance
  correction; under global random selection the per-layer densities equal the global one in
  expectation). Ignored tensors are unscaled.

A tensor (or, globally, a considered set) with nothing kept gets the factor 0: it stays zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from prunelab.masks import Mask
from prunelab.pruning.selection import MaskSelectionError, match_patterns
from prunelab.specs.pruning import RESCALE_MODES as NTK_RESCALE_MODES

__all__ = ["NTK_RESCALE_MODES", "ntk_scale_factors", "ntk_rescale"]


def _inverse_sqrt(density: float) -> float:
    return 1.0 / math.sqrt(density) if density > 0 else 0.0


def ntk_scale_factors(
    mask: Mapping[str, torch.Tensor], *, mode: str = "per_layer", ignore: str | Iterable[str] = ()
) -> dict[str, float]:
    """``1/sqrt(d)`` per tensor (see the module docstring for ``mode``); 1.0 for ignored tensors
    (fnmatch patterns, a pattern matching nothing is an error), 0.0 where nothing is kept.

    Example: ``a`` at 25 % density beside an ignored dense ``fc`` gives ``{a: 2, fc: 1}`` in both
    modes; a second considered tensor ``b`` at 75 % of the same size gives, globally, ``1/sqrt(0.5)``
    to both ``a`` and ``b``."""
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    if mode not in NTK_RESCALE_MODES:
        raise MaskSelectionError(
            f"NTK rescale mode must be one of {', '.join(map(repr, NTK_RESCALE_MODES))}, got {mode!r}"
        )
    ignored = match_patterns(ignore, mask, what="ignore") if ignore else set()
    considered = [n for n in mask if n not in ignored]
    factors = {n: 1.0 for n in ignored}
    if mode == "per_layer":
        densities = mask.layer_densities()
        factors.update({n: _inverse_sqrt(densities[n]) for n in considered})
    elif considered:
        total = sum(mask[n].numel() for n in considered)
        kept = sum(int(mask[n].sum()) for n in considered)
        factor = _inverse_sqrt(kept / total) if total else 1.0
        factors.update({n: factor for n in considered})
    return {n: factors[n] for n in mask}


def ntk_rescale(
    weights_at_rewind: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    *,
    mode: str = "per_layer",
    ignore: str | Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """``w_rewind ⊙ m · c`` for every tensor in ``mask`` with the factors of
    :func:`ntk_scale_factors` (new tensors; inputs unchanged).

    Always pass the rewind-point weights, not the previous level's rescaled weights. Only the
    mask's tensors are returned; other parameters are not rescaled.
    """
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    missing = [n for n in mask if n not in weights_at_rewind]
    if missing:
        raise KeyError(f"no rewind weights for masked tensors: {missing[:5]}")
    factors = ntk_scale_factors(mask, mode=mode, ignore=ignore)
    out = {}
    for n, m in mask.items():
        w = weights_at_rewind[n].detach()
        if tuple(w.shape) != tuple(m.shape):
            raise ValueError(f"rewind weights for {n!r} have shape {tuple(w.shape)}, the mask has {tuple(m.shape)}")
        out[n] = w * m.to(device=w.device, dtype=w.dtype) * factors[n]
    return out
