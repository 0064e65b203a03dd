"""Turning scores into a :class:`~prunelab.masks.Mask` — the selection rules every strategy shares.

Rules (see ``docs/pruning.md``):

* **Exact counts.** A target of ``x`` weights is turned into an integer with
  :func:`round_half_up` (``floor(x + 0.5)``, computed on the decimal value of the density so that
  ``0.285 · 100`` is 28.5, not 28.4999…). Exactly that many weights are kept (or removed).
* **Never revive.** Only weights alive in ``current`` are ranked; a pruned weight stays pruned
  whatever its score and whichever direction (``prune_highest``) is used — as if its score were
  −∞ after the direction is applied. If a target keeps more weights than are alive, all alive
  weights are kept and a :class:`NoRevivalWarning` is issued.
* **Ties.** Weights are ranked by score; among equal scores at the cut-off a uniformly random
  subset drawn from ``generator`` is kept. Equal scores are therefore never pruned in index order
  (no contiguous blocks), and the result is reproducible for a given generator seed.
* **Scopes.** ``global``: one ranking over all considered tensors. ``layerwise``: each tensor is
  ranked and counted on its own.
* **Ignore.** ``ignore`` holds :func:`fnmatch.fnmatchcase` patterns; matching tensors keep their
  current mask unchanged and are excluded from the counts and the ranking. A pattern that matches
  no tensor is an error (a typo must not silently prune the output layer).
* **Count rule of a level** (:func:`prune_fraction`, ``count_rule``): ``"exact"`` removes
  ``round_half_up(f · n_alive)`` of the considered weights; ``"openlth"`` reproduces OpenLTH's
  ``sparse_global`` (see :func:`openlth_prune_count`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import SupportsFloat, SupportsIndex

import numpy as np
import torch

from prunelab.errors import UserError
from prunelab.masks import Mask
from prunelab.specs.base import closest

__all__ = [
    "MaskSelectionError",
    "NoRevivalWarning",
    "LayerCollapseWarning",
    "SCOPES",
    "COUNT_RULES",
    "round_half_up",
    "openlth_prune_count",
    "target_count",
    "select_by_density",
    "prune_fraction",
    "select_counts",
    "match_patterns",
    "rate_for",
    "kth_smallest",
]

SCOPES = ("global", "layerwise")

#: How :func:`prune_fraction` counts the weights a level removes: prunelab's exact rule, or OpenLTH's.
COUNT_RULES = ("exact", "openlth")

Rates = Mapping[str, float] | Iterable[tuple[str, float]] | None


class MaskSelectionError(UserError, ValueError):
    """Scores or selection arguments that cannot be turned into a mask."""


class NoRevivalWarning(UserWarning):
    """A target asked for more weights than are alive; pruned weights are never revived."""


class LayerCollapseWarning(UserWarning):
    """A tensor lost all its weights: no signal passes through it (the network is disconnected unless
    a parallel path, such as a residual branch beside a pruned shortcut, remains)."""


# counting ---------------------------------------------------------------------------------------
def round_half_up(x: float | Fraction) -> int:
    """``floor(x + 0.5)``: 2.5 → 3, 3.5 → 4, 2.4999 → 2 (not Python's banker's rounding)."""
    return math.floor(x + Fraction(1, 2)) if isinstance(x, Fraction) else math.floor(x + 0.5)


def _exact(value: float) -> Fraction:
    """The decimal a float was written as (its shortest repr), so that ``d · n`` has no binary
    representation error: ``_exact(0.285) * 100 == 28.5`` exactly."""
    return Fraction(repr(float(value)))


def target_count(fraction: float, n: int) -> int:
    """``round_half_up(fraction · n)`` with ``fraction`` taken as its decimal value."""
    return round_half_up(_exact(fraction) * n)


def openlth_prune_count(fraction: float, n_alive_all: int) -> int:
    """The number of weights OpenLTH's ``sparse_global`` removes in one level:
    ``ceil(f · n) + 1``, with ``n`` the alive weights of *every* prunable tensor, ignored ones
    included, and ``f · n`` computed in float64 as NumPy does.

    In ``pruning/sparse_global.py`` of facebookresearch/open_lth, ``number_of_weights_to_prune`` is
    ``np.ceil(pruning_fraction * number_of_remaining_weights)`` where the remaining weights are
    summed over the whole current mask (the ignored tensors are in it); the threshold is the sorted
    alive magnitudes of the considered tensors at *that index* and only weights strictly above it
    are kept, which removes one weight more (ties at the threshold aside: all of them go there,
    while prunelab breaks such ties at random and removes exactly this count)."""
    return math.ceil(float(fraction) * int(n_alive_all)) + 1


# validation -------------------------------------------------------------------------------------
def _check_density(density: float) -> float:
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise MaskSelectionError(f"density must be a number in [0, 1], got {density!r}") from None
    if not 0.0 <= d <= 1.0:  # also rejects NaN
        raise MaskSelectionError(f"density must be in [0, 1], got {density!r}")
    return d


def _check_fraction(fraction: object, what: str = "fraction") -> float:
    """``fraction`` as a float in [0, 1); it may be anything a caller passed (a rate read from a spec)."""
    try:
        if not isinstance(fraction, (SupportsFloat, SupportsIndex, str, bytes)):
            raise TypeError  # what float() would raise
        f = float(fraction)
    except (TypeError, ValueError):
        raise MaskSelectionError(f"{what} must be a number in [0, 1), got {fraction!r}") from None
    if not 0.0 <= f < 1.0:
        raise MaskSelectionError(f"{what} must be in [0, 1), got {fraction!r}")
    return f


def _check_count_rule(count_rule: str) -> str:
    if count_rule not in COUNT_RULES:
        raise MaskSelectionError(f"count_rule must be one of {', '.join(map(repr, COUNT_RULES))}, got {count_rule!r}")
    return count_rule


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise MaskSelectionError(f"scope must be one of {', '.join(map(repr, SCOPES))}, got {scope!r}")
    return scope


def _as_patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def match_patterns(patterns: str | Iterable[str], names: Iterable[str], *, what: str = "ignore") -> set[str]:
    """Names matching any of the fnmatch ``patterns`` (case-sensitive). A pattern matching nothing
    raises :class:`MaskSelectionError` with the closest names."""
    names = list(names)
    matched: set[str] = set()
    for pattern in _as_patterns(patterns):
        hits = {n for n in names if fnmatchcase(n, pattern)}
        if not hits:
            near = closest(pattern, names)
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise MaskSelectionError(
                f"{what} pattern {pattern!r} matches no prunable tensor.{hint} The prunable "
                f"tensors are {shown}; patterns are globs such as 'fc.weight' or 'conv*'."
            )
        matched |= hits
    return matched


def _as_rate_pairs(rates: Rates) -> list[tuple[str, float]]:
    if not rates:
        return []
    pairs = list(rates.items()) if isinstance(rates, Mapping) else [tuple(p) for p in rates]
    out = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise MaskSelectionError(f"rates must map glob patterns to fractions, got {pair!r}")
        out.append((pair[0], _check_fraction(pair[1], f"rate for {pair[0]!r}")))
    return out


def rate_for(name: str, rates: Rates) -> float | None:
    """The fraction of the first rate pattern matching ``name`` (``None`` if none does)."""
    for pattern, rate in _as_rate_pairs(rates):
        if fnmatchcase(name, pattern):
            return rate
    return None


def _validated_scores(
    scores: Mapping[str, torch.Tensor], current: Mask, considered: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Check names, shapes and dtypes; return the considered scores as flat float tensors (NaNs are
    checked by :func:`_select_groups`, on the concatenated scores)."""
    if not isinstance(current, Mask):
        current = Mask(current)
    unknown = sorted(set(scores) - set(current))
    if unknown:
        raise MaskSelectionError(f"scores for tensors not in the mask: {unknown[:5]}")
    missing = [n for n in considered if n not in scores]
    if missing:
        raise MaskSelectionError(f"no scores for prunable tensors: {missing[:5]}")
    if not considered:
        return {}
    tensors = {n: torch.as_tensor(scores[n]).detach() for n in considered}
    dtype = torch.float32
    for t in tensors.values():
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype in (torch.complex64, torch.complex128) or not dtype.is_floating_point:
        raise MaskSelectionError(f"scores must be real numbers, got dtype {dtype}")
    device = next(iter(tensors.values())).device
    flat: dict[str, torch.Tensor] = {}
    for n, t in tensors.items():
        if tuple(t.shape) != tuple(current[n].shape):
            raise MaskSelectionError(
                f"scores for {n!r} have shape {tuple(t.shape)}, the mask has {tuple(current[n].shape)}"
            )
        flat[n] = t.to(device=device, dtype=dtype).reshape(-1)
    return flat


def _check_nan(values: torch.Tensor, alive: torch.Tensor, names: Sequence[str], sizes: Sequence[int]) -> None:
    """Reject NaN scores at alive weights (pruned weights may score NaN: they are not ranked), naming
    the first tensor that has some."""
    nan = torch.isnan(values)
    if not bool(nan.any()) or not bool(nan.logical_and_(alive).any()):
        return
    for n, part in zip(names, torch.split(nan, list(sizes))):
        bad = int(part.sum())
        if bad:
            raise MaskSelectionError(f"scores for {n!r} contain NaN at {bad} alive weight(s)")


def _considered(current: Mask, ignore: str | Iterable[str]) -> list[str]:
    ignored = match_patterns(ignore, current, what="ignore") if ignore else set()
    return [n for n in current if n not in ignored]


# the core: keep k of the alive weights of a group -----------------------------------------------
def kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest (1-based) element of the 1-D tensor ``values``, as a 0-d tensor on its device.

    On the CPU this is NumPy's introselect, about 7x faster than ``torch.kthvalue`` (which copies and
    selects far more slowly: 10 ms against 1.5 ms for 235,200 float32 values, one thread); elsewhere it
    is ``torch.kthvalue``, which needs no host synchronisation."""
    if values.device.type != "cpu" or values.dtype in (torch.bfloat16, torch.float16):
        return torch.kthvalue(values, k).values
    array = values.detach().contiguous().numpy()
    return torch.from_numpy(np.partition(array, k - 1)[k - 1 : k]).reshape(())


def _keep_top(values: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Bool tensor keeping the ``k`` largest ``values``; ties at the cut-off broken uniformly at
    random (seeded by ``generator``, which is drawn from only when a tie straddles the cut-off)."""
    m = values.numel()
    if k >= m:
        return torch.ones(m, dtype=torch.bool, device=values.device)
    if k <= 0:
        return torch.zeros(m, dtype=torch.bool, device=values.device)
    threshold = kth_smallest(values, m - k + 1)  # the k-th largest value
    keep = values > threshold
    need = k - int(keep.sum())
    at_threshold = values == threshold
    if need < int(at_threshold.sum()):
        ties = torch.nonzero(at_threshold).reshape(-1)
        order = torch.randperm(ties.numel(), generator=generator, device=generator.device).to(ties.device)
        keep[ties[order[:need]]] = True
    else:
        keep |= at_threshold
    return keep


def _keep_top_numpy(values: np.ndarray, alive: np.ndarray, k: int, generator: torch.Generator) -> np.ndarray:
    """:func:`_keep_top` of the ``alive`` entries of ``values``, returned as a mask over all of them,
    in NumPy: the alive positions are listed once (``flatnonzero``), gathered with ``take`` and the
    decision written back through them, which on the CPU is several times cheaper than PyTorch's
    boolean indexing and ``nonzero``. Same threshold, same ties in the same order, same draw."""
    n_alive = int(np.count_nonzero(alive))
    positions = None if n_alive == values.size else np.flatnonzero(alive)
    ranked = values if positions is None else values.take(positions)
    if k >= n_alive:
        keep = np.ones(n_alive, dtype=bool)
    elif k <= 0:
        keep = np.zeros(n_alive, dtype=bool)
    else:
        threshold = np.partition(ranked, n_alive - k)[n_alive - k]  # the k-th largest value
        keep = ranked > threshold
        need = k - int(np.count_nonzero(keep))
        at_threshold = ranked == threshold
        if need < int(np.count_nonzero(at_threshold)):
            ties = np.flatnonzero(at_threshold)
            order = torch.randperm(ties.size, generator=generator, device=generator.device).cpu().numpy()
            keep[ties[order[:need]]] = True
        else:
            keep |= at_threshold
    if positions is None:
        return keep
    full = np.zeros(values.size, dtype=bool)
    full[positions] = keep
    return full


def _keep_top_alive(values: torch.Tensor, alive: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Keep the ``k`` largest of the ``alive`` entries of the 1-D ``values`` (``k`` at most their number):
    a bool tensor over all entries, False wherever ``alive`` is."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(_keep_top_numpy(values.numpy(), alive.numpy(), k, generator))
    if bool(alive.all()):
        return _keep_top(values, k, generator)
    return torch.zeros_like(alive).masked_scatter_(alive, _keep_top(values[alive], k, generator))


def _select_groups(
    flat: Mapping[str, torch.Tensor],
    current: Mask,
    groups: Sequence[tuple[Sequence[str], int]],
    *,
    prune_highest: bool,
    generator: torch.Generator | None,
) -> Mask:
    """For each group (tensor names, number to keep), keep that many of the group's alive weights
    ranked jointly by score. Tensors in no group keep their current mask.

    The group's scores are concatenated once and selected in a few passes over the group, whatever
    the number of tensors."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    result: dict[str, torch.Tensor] = {}
    for names, k in groups:
        if not names:
            continue
        device = flat[names[0]].device
        sizes = [flat[n].numel() for n in names]
        values = torch.cat([flat[n] for n in names])
        alive = torch.cat([current[n].to(device).reshape(-1) for n in names])
        _check_nan(values, alive, names, sizes)
        if prune_highest:
            values.neg_()  # a fresh tensor, never the caller's scores
        keep = _keep_top_alive(values, alive, k, generator)
        # clones: the tensors of a mask must not share storage (safetensors refuses views)
        for n, part in zip(names, torch.split(keep, sizes)):
            result[n] = part.reshape(current[n].shape).to(current[n].device).clone()
    return Mask({n: result[n] if n in result else current[n].clone() for n in current})


def _clip_to_alive(k: int, alive: int, where: str) -> int:
    if k > alive:
        warnings.warn(
            f"{where}: the target keeps {k} weights but only {alive} are alive; keeping all alive "
            f"weights (pruned weights are never revived)",
            NoRevivalWarning,
            stacklevel=3,
        )
        return alive
    return k


def _as_mask(current: Mapping[str, torch.Tensor]) -> Mask:
    return current if isinstance(current, Mask) else Mask(current)


# public selection functions ---------------------------------------------------------------------
def select_by_density(
    scores: Mapping[str, torch.Tensor],
    current: Mask,
    density: float,
    *,
    scope: str = "global",
    prune_highest: bool = False,
    ignore: str | Iterable[str] = (),
    generator: torch.Generator | None = None,
) -> Mask:
    """Keep exactly ``round_half_up(density · n)`` of the considered weights, highest scores first.

    ``n`` is the number of considered weights, dense count (pruned ones included): the whole
    considered set for ``scope="global"``, each tensor for ``"layerwise"``. Ignored tensors keep
    their current mask. Only weights alive in ``current`` are candidates (never revive); if the
    target exceeds the alive count, all alive weights are kept with a :class:`NoRevivalWarning`.
    ``prune_highest`` keeps the lowest scores instead. A target of 0 empties the tensor(s): layer
    collapse is reported by the result's :meth:`Mask.collapsed_layers`, warning is the caller's job.
    ``generator`` (default: a fresh one seeded with 0) breaks ties at the cut-off.
    """
    current = _as_mask(current)
    density = _check_density(density)
    _check_scope(scope)
    considered = _considered(current, ignore)
    flat = _validated_scores(scores, current, considered)
    if scope == "global":
        n = sum(current[c].numel() for c in considered)
        alive = sum(int(current[c].count_nonzero()) for c in considered)
        k = _clip_to_alive(target_count(density, n), alive, "select_by_density (global)")
        groups = [(considered, k)]
    else:
        groups = []
        for c in considered:
            k = target_count(density, current[c].numel())
            groups.append(([c], _clip_to_alive(k, int(current[c].count_nonzero()), f"select_by_density ({c})")))
    return _select_groups(flat, current, groups, prune_highest=prune_highest, generator=generator)


def prune_fraction(
    scores: Mapping[str, torch.Tensor],
    current: Mask,
    fraction: float,
    *,
    scope: str = "global",
    rates: Rates = None,
    ignore: str | Iterable[str] = (),
    prune_highest: bool = False,
    generator: torch.Generator | None = None,
    count_rule: str = "exact",
) -> Mask:
    """Remove ``round_half_up(f · n_alive)`` of the currently alive weights (a lottery-ticket level).

    ``scope="global"``: one ranking over the alive weights of all considered tensors without a rate
    of their own; ``"layerwise"``: each tensor removes ``round_half_up(f · n_alive(tensor))``.
    ``rates`` maps fnmatch patterns to fractions that replace ``f`` for matching tensors (first
    matching pattern wins); such tensors are always pruned on their own at their rate, also under
    global scope, and are left out of the global ranking. Ignored tensors are untouched (ignore
    wins over a rate). The result is a subset of ``current``.

    ``count_rule="openlth"`` removes :func:`openlth_prune_count` ``(f, n)`` of the considered
    weights instead, ``n`` counting the alive weights of every tensor of ``current`` (ignored ones
    included), as OpenLTH's ``sparse_global`` does; it is defined for global scope without rates
    only (anything else is an error). With an ignored dense output layer it keeps fewer weights
    than the exact rule: on LeNet-300-100 with ``fc.weight`` ignored, 13 % fewer at level 16
    (``docs/pruning.md`` has the table).
    """
    current = _as_mask(current)
    fraction = _check_fraction(fraction)
    _check_scope(scope)
    _check_count_rule(count_rule)
    pairs = _as_rate_pairs(rates)
    considered = _considered(current, ignore)
    if pairs:
        match_patterns([p for p, _ in pairs], current, what="rates")
    flat = _validated_scores(scores, current, considered)
    if count_rule == "openlth":
        if scope != "global" or pairs:
            raise MaskSelectionError(
                "count_rule='openlth' reproduces OpenLTH's sparse_global, which has global scope and no per-layer "
                "rates; use count_rule='exact' with scope='layerwise' or rates"
            )
        alive = sum(int(current[c].sum()) for c in considered)
        remove = min(openlth_prune_count(fraction, sum(int(m.sum()) for m in current.values())), alive)
        return _select_groups(
            flat, current, [(considered, alive - remove)], prune_highest=prune_highest, generator=generator
        )
    pooled: list[str] = []
    groups: list[tuple[list[str], int]] = []
    for c in considered:
        rate = rate_for(c, pairs)
        if rate is None and scope == "global":
            pooled.append(c)
            continue
        alive = int(current[c].sum())
        groups.append(([c], alive - target_count(fraction if rate is None else rate, alive)))
    if pooled:
        alive = sum(int(current[c].sum()) for c in pooled)
        groups.insert(0, (pooled, alive - target_count(fraction, alive)))
    return _select_groups(flat, current, groups, prune_highest=prune_highest, generator=generator)


def select_counts(
    scores: Mapping[str, torch.Tensor],
    current: Mask,
    counts: Mapping[str, int],
    *,
    prune_highest: bool = False,
    generator: torch.Generator | None = None,
) -> Mask:
    """Keep exactly ``counts[name]`` of each tensor's alive weights (highest scores first); tensors
    not in ``counts`` keep their current mask. Used to copy another mask's per-layer counts."""
    current = _as_mask(current)
    names = [n for n in current if n in counts]
    unknown = sorted(set(counts) - set(current))
    if unknown:
        raise MaskSelectionError(f"counts for tensors not in the mask: {unknown[:5]}")
    flat = _validated_scores(scores, current, names)
    groups = []
    for n in names:
        k = int(counts[n])
        if k < 0:
            raise MaskSelectionError(f"count for {n!r} must be >= 0, got {k}")
        groups.append(([n], _clip_to_alive(k, int(current[n].sum()), f"select_counts ({n})")))
    return _select_groups(flat, current, groups, prune_highest=prune_highest, generator=generator)
