"""NTK rescaling of randomly pruned networks (Yang & Wang, 2023, "On the NTK Analysis of Randomly
Pruned Neural Networks"): the surviving weights of a tensor kept with density ``d`` are multiplied
by ``1/sqrt(d)`` so that the pruned layer's pre-activations keep the dense layer's variance.

The rule here never compounds across pruning levels. Level ``L``'s weights are always computed
from the original (rewind-point) weights::

    w_L = w_rewind ⊙ m_L / sqrt(d_L)

where ``d_L`` is the density of ``m_L`` relative to the *dense* tensor, never relative to the
previous level, and never ``w_{L-1} / sqrt(...)``. By default ``d_L`` is each tensor's own density
(``per_layer=True``): the scaling is a per-layer variance correction, and under ``random_global``
selection the per-layer densities equal the global density in expectation. ``per_layer=False``
uses the mask's overall density for every tensor instead. A tensor with nothing kept stays zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunelab.masks import Mask

__all__ = ["ntk_scale_factors", "ntk_rescale"]


def ntk_scale_factors(mask: Mapping[str, torch.Tensor], *, per_layer: bool = True) -> dict[str, float]:
    """``1/sqrt(d)`` per tensor, with ``d`` the tensor's density (or the mask's overall density when
    ``per_layer=False``) relative to dense; 0.0 for a tensor (or mask) with nothing kept."""
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    densities = mask.layer_densities() if per_layer else {n: mask.density for n in mask}
    return {n: (1.0 / math.sqrt(d) if d > 0 else 0.0) for n, d in densities.items()}


def ntk_rescale(
    weights_at_rewind: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], *, per_layer: bool = True
) -> dict[str, torch.Tensor]:
    """``w_rewind ⊙ m / sqrt(d)`` for every tensor in ``mask`` (new tensors; inputs unchanged).

    Always pass the rewind-point weights, not the previous level's rescaled weights. Only the
    mask's tensors are returned; other parameters are not rescaled.
    """
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    missing = [n for n in mask if n not in weights_at_rewind]
    if missing:
        raise KeyError(f"no rewind weights for masked tensors: {missing[:5]}")
    factors = ntk_scale_factors(mask, per_layer=per_layer)
    out = {}
    for n, m in mask.items():
        w = weights_at_rewind[n].detach()
        if tuple(w.shape) != tuple(m.shape):
            raise ValueError(f"rewind weights for {n!r} have shape {tuple(w.shape)}, the mask has {tuple(m.shape)}")
        out[n] = w * m.to(device=w.device, dtype=w.dtype) * factors[n]
    return out
