"""The subnet of a supermask layer: the highest-ranked fraction of its scores, with an exact count.

Rules (see ``docs/supermask.md``):

* **Ranking.** ``"abs"`` ranks weights by ``|s|`` (edge-popup, ``SubnetConv.clamped_scores``), ``"raw"``
  by ``s`` itself (IteRand, ``GetSubnet`` on ``weight_score``). Equal scores are ties: ``−0.0`` and
  ``+0.0`` are equal, and under ``"abs"`` so are ``s`` and ``−s``. A NaN score ranks above ``+inf``
  (the training loop's non-finite check is what catches it; the hot path never reads values back).
* **Exact count.** ``k = target_count(density, n)`` = ``round_half_up(density · n)`` on the decimal value
  of the density, prunelab's rule for every mask (:mod:`prunelab.pruning.selection`). Both references
  count differently (edge-popup keeps ``n − int((1 − density) · n)``, IteRand keeps every score ≥ a
  percentile, ties included); the docs list the cases where they differ.
* **Ties.** Every ranked weight carries a *tie-break key*: distinct integers in ``[0, 2³²)``. Among equal
  scores the weight with the larger key ranks higher. Layers draw their keys once, when they are built
  (a uniformly random permutation from a seeded generator, stored as the ``tie_break`` buffer), so the
  mask is a function of the scores alone: the same between forwards, reproducible for a seed, and a
  uniformly random subset of tied weights is kept, never the first ones in memory order.
* **Cost.** One 64-bit key per weight (the order-preserving integer image of the float32 score in the
  high word, the tie key in the low word, so all keys are distinct), one ``kthvalue`` and one
  comparison. ``k`` comes from the density and the shape on the host, so nothing is read back from
  the device: no synchronisation per forward. float64 scores cannot be packed that way and fall back
  to two stable sorts (same result, slower).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prunelab.pruning.selection import kth_smallest, target_count
from prunelab.supermask.errors import SupermaskError, check_density, check_option

__all__ = [
    "RANKINGS",
    "subnet_mask",
    "global_subnet_masks",
    "draw_tie_break",
    "ranking_keys",
    "keep_largest",
    "mask_keeping",
    "masks_keeping",
]

RANKINGS = ("abs", "raw")

_TIE_LIMIT = 2**32  # tie keys live in the low 32 bits of a packed key
_PACKABLE = (torch.float32, torch.float16, torch.bfloat16)


def draw_tie_break(n: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``0 … n−1`` drawn on the generator's device (int32 when it fits)."""
    if n > _TIE_LIMIT:
        raise SupermaskError(f"one ranking over {n} weights exceeds the {_TIE_LIMIT} tie-break keys it can hold")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return perm.to(torch.int32) if n <= 2**31 else perm


def _ranked_values(scores: torch.Tensor, ranking: str) -> torch.Tensor:
    values = scores.detach().reshape(-1)
    if not values.is_floating_point():
        raise SupermaskError(f"scores must be floating point, got dtype {values.dtype}")
    # + 0.0 turns −0.0 into +0.0, so that equal scores are ties (their bit patterns differ)
    values = values.abs() if ranking == "abs" else values + 0.0
    return values.float() if values.dtype in (torch.float16, torch.bfloat16) else values


def ranking_keys(scores: torch.Tensor, ranking: str, tie_break: torch.Tensor) -> torch.Tensor:
    """Distinct int64 keys, flat, ordered like ``(ranked score, tie key)`` lexicographically.

    For float32 (and float16/bfloat16, upcast exactly) the high 32 bits are the score's bit pattern
    made order-preserving (negative floats have their magnitude bits flipped) and the low 32 bits are
    the tie key. Raises for float64, which :func:`_keep_top_stable` handles instead.
    """
    values = _ranked_values(scores, ranking)
    if values.dtype != torch.float32:
        raise SupermaskError(f"packed ranking keys need float32/16 scores, got {values.dtype}")
    bits = values.view(torch.int32)
    if ranking == "raw":  # |s| has no sign bit set, so only raw scores need the flip
        bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    keys = bits.to(torch.int64)
    keys.bitwise_left_shift_(32).bitwise_or_(tie_break.reshape(-1).to(keys.device))
    return keys


def keep_largest(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor keeping exactly the ``k`` largest of the distinct ``keys`` (no host synchronisation)."""
    n = keys.numel()
    if k >= n:
        return torch.ones_like(keys, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    return keys >= kth_smallest(keys, n - k + 1)


def _keep_top_stable(values: torch.Tensor, tie_break: torch.Tensor, k: int) -> torch.Tensor:
    """The float64 path: keep the ``k`` largest values, larger tie key first among equals."""
    n = values.numel()
    keep = torch.zeros(n, dtype=torch.bool, device=values.device)
    if k <= 0:
        return keep
    by_tie = torch.argsort(tie_break.reshape(-1).to(values.device), descending=True)
    order = torch.argsort(values[by_tie], descending=True, stable=True)
    keep[by_tie[order[:k]]] = True
    return keep


def _check_tie_break(tie_break: torch.Tensor, scores: torch.Tensor) -> None:
    if not isinstance(tie_break, torch.Tensor) or tie_break.is_floating_point() or tie_break.dtype == torch.bool:
        raise SupermaskError("tie_break must be an integer tensor (distinct keys in [0, 2**32))")
    if tie_break.numel() != scores.numel():
        raise SupermaskError(f"tie_break has {tie_break.numel()} keys for {scores.numel()} scores")


def mask_keeping(scores: torch.Tensor, k: int, ranking: str, tie_break: torch.Tensor) -> torch.Tensor:
    """The mask keeping the ``k`` highest-ranked scores, without argument checks: the per-forward path
    of the layers, which count ``k`` once when they are built."""
    if scores.dtype == torch.float64:
        keep = _keep_top_stable(_ranked_values(scores, ranking), tie_break, k)
    else:
        keep = keep_largest(ranking_keys(scores, ranking, tie_break), k)
    return keep.reshape(scores.shape)


def subnet_mask(
    scores: torch.Tensor,
    density: float,
    *,
    ranking: str = "abs",
    tie_break: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool keep-mask of ``scores``'s shape keeping exactly ``round_half_up(density · n)`` weights.

    ``ranking`` is ``"abs"`` (rank by ``|s|``) or ``"raw"`` (rank by ``s``). Ties are broken by
    ``tie_break`` (distinct integer keys, larger wins; a supermask layer passes its ``tie_break``
    buffer), or, without one, by a random permutation drawn from ``generator`` (default: a fresh
    generator seeded with 0) — pass one or the other, not both.
    """
    if not isinstance(scores, torch.Tensor):
        raise SupermaskError(f"scores must be a tensor, got {type(scores).__name__}")
    density = check_density(density, allow_zero=True)
    check_option(ranking, RANKINGS, "ranking")
    if tie_break is not None and generator is not None:
        raise SupermaskError("pass tie_break or generator, not both: the tie-break keys already decide every tie")
    if tie_break is None:
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        tie_break = draw_tie_break(scores.numel(), generator)
    _check_tie_break(tie_break, scores)
    return mask_keeping(scores, target_count(density, scores.numel()), ranking, tie_break)


def global_subnet_masks(
    scores: Sequence[torch.Tensor], density: float, *, ranking: str, tie_breaks: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """One ranking over all ``scores`` together: exactly ``round_half_up(density · Σn)`` weights kept in
    total, each tensor getting the mask of its own shape. The tie keys must be distinct across all
    tensors (slices of one permutation, as :func:`~prunelab.supermask.to_supermask` draws them)."""
    density = check_density(density, allow_zero=True)
    check_option(ranking, RANKINGS, "ranking")
    if len(scores) != len(tie_breaks):
        raise SupermaskError(f"{len(scores)} score tensors but {len(tie_breaks)} tie-break tensors")
    for s, t in zip(scores, tie_breaks):
        _check_tie_break(t, s)
    return masks_keeping(scores, target_count(density, sum(s.numel() for s in scores)), ranking, tie_breaks)


def masks_keeping(
    scores: Sequence[torch.Tensor], k: int, ranking: str, tie_breaks: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """:func:`global_subnet_masks` with the count given and no argument checks (the per-forward path)."""
    if not scores:
        return []
    device = scores[0].device
    if any(s.dtype == torch.float64 for s in scores):
        values = torch.cat([_ranked_values(s, ranking).double().to(device) for s in scores])
        ties = torch.cat([t.reshape(-1).to(device=device, dtype=torch.int64) for t in tie_breaks])
        flat = _keep_top_stable(values, ties, k)
        return [part.reshape(s.shape).to(s.device) for part, s in zip(flat.split([s.numel() for s in scores]), scores)]
    keys = [ranking_keys(s, ranking, t) for s, t in zip(scores, tie_breaks)]
    total = sum(key.numel() for key in keys)
    if k >= total or k <= 0:
        return [torch.full(s.shape, k > 0, dtype=torch.bool, device=s.device) for s in scores]
    threshold = kth_smallest(torch.cat([key.to(device) for key in keys]), total - k + 1)
    return [(key >= threshold.to(key.device)).reshape(s.shape) for key, s in zip(keys, scores)]
