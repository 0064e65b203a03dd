"""IteRand's partial re-randomisation of the pruned weights (Chijiwa et al., NeurIPS 2021).

Every few iterations IteRand re-draws part of the weights the current subnet does *not* use, from the
law the weights were first drawn from, so the scores can later pick better values there
(``SparseModule.rerandomize_`` in ``models/networks/sparse_modules.py``). Which weights are eligible,
as in the reference's ``SparseConv2d.rerandomize``: the weights outside
``GetSubnet(scores, sparsity · rerand_rate)``; with the default ``rerand_rate = 1`` that is exactly the
weights outside the current subnet (every pruned weight, no threshold), with ``rerand_rate < 1`` the
lowest-ranked part of them. Here ``rerand_rate`` selects ``round_half_up(rerand_rate · n_pruned)`` of
the pruned weights, lowest ranked first, with the layer's ranking and tie keys (per layer, or over the
whole global ranking under a global scope).

Modes (the reference's ``rerand_mode``), for each eligible weight ``w`` and a fresh draw ``r``:

* ``"bernoulli"``: ``w ← r`` with probability λ (``fraction``), else unchanged;
* ``"manual"``: ``w ← λ·w + μ·r`` (λ = ``fraction``, μ = ``mu``) for every eligible weight.

Kept weights, scores and optimiser state are untouched. Every draw comes from ``generator`` on its
own device and is copied to the weights, so a seed gives the same weights on CPU and CUDA. Per layer
(in ``named_modules()`` order) the draws are the fresh values (one per weight) then, in Bernoulli mode,
one uniform per weight — the same number whatever λ, the masks or the scores, so the generator's
state after a call depends only on the architecture and the mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prunelab.pruning.selection import target_count
from prunelab.supermask.convert import _current_masks, supermask_layers
from prunelab.supermask.errors import SupermaskError, check_number, check_option
from prunelab.supermask.layers import SupermaskLayer
from prunelab.supermask.subnet import _keep_top_stable, _ranked_values, keep_largest, ranking_keys

__all__ = ["RERAND_MODES", "rerandomize_", "eligible_masks"]

RERAND_MODES = ("bernoulli", "manual")

_INT64_MAX = torch.iinfo(torch.int64).max


def _lowest_pruned(layers: list[SupermaskLayer], keeps: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """The ``count`` lowest-ranked weights outside ``keeps``, jointly over ``layers`` (one ranking)."""
    total = sum(keep.numel() for keep in keeps)
    if any(layer.scores.dtype == torch.float64 for layer in layers):
        device = keeps[0].device
        values = torch.cat(
            [
                _ranked_values(layer.scores, layer.ranking)
                .double()
                .to(device)
                .masked_fill(keep.reshape(-1).to(device), math.inf)
                for layer, keep in zip(layers, keeps)
            ]
        )
        ties = torch.cat([layer.tie_break.reshape(-1).to(device=device, dtype=torch.int64) for layer in layers])
        spared = _keep_top_stable(values, ties, total - count)
    else:
        keys = torch.cat(
            [
                ranking_keys(layer.scores, layer.ranking, layer.tie_break).masked_fill_(keep.reshape(-1), _INT64_MAX)
                for layer, keep in zip(layers, keeps)
            ]
        )
        spared = keep_largest(keys, total - count)  # kept weights (at the maximum key) are always spared
    parts = (~spared).split([keep.numel() for keep in keeps])
    return [part.reshape(keep.shape).to(keep.device) for part, keep in zip(parts, keeps)]


def eligible_masks(model: nn.Module, rerand_rate: float = 1.0) -> dict[str, torch.Tensor]:
    """Module path → bool mask of the weights :func:`rerandomize_` may re-draw (see the module docstring)."""
    rate = check_number(rerand_rate, "rerand_rate")
    if not 0.0 <= rate <= 1.0:
        raise SupermaskError(
            f"rerand_rate must be in [0, 1] (the fraction of pruned weights eligible), got {rerand_rate!r}"
        )
    layers = supermask_layers(model)
    if not layers:
        raise SupermaskError(f"{type(model).__name__} has no supermask layer to re-randomise")
    with torch.no_grad():
        keeps = _current_masks(layers)
        if rate == 1.0:
            return {path: ~keep for path, keep in keeps.items()}
        groups: dict[int, list[str]] = {}
        for path, layer in layers.items():  # one group per global scope, one per layer otherwise
            groups.setdefault(id(layer._scope) if layer._scope is not None else id(layer), []).append(path)
        eligible: dict[str, torch.Tensor] = {}
        for paths in groups.values():
            members = [layers[p] for p in paths]
            scope = members[0]._scope
            if scope is not None and len(members) != len(scope.layers):
                raise SupermaskError("this module holds only part of a global ranking; re-randomise the whole network")
            kept = scope.kept if scope is not None else members[0]._kept
            pruned = sum(layer.weight.numel() for layer in members) - kept
            lowest = _lowest_pruned(members, [keeps[p] for p in paths], target_count(rate, pruned))
            eligible.update(zip(paths, lowest))
        return {path: eligible[path] for path in layers}


def rerandomize_(
    model: nn.Module,
    fraction: float,
    *,
    generator: torch.Generator,
    mode: str = "bernoulli",
    mu: float | None = None,
    rerand_rate: float = 1.0,
) -> nn.Module:
    """Re-draw pruned weights of every supermask layer of ``model`` in place; returns ``model``.

    ``fraction`` is λ: in ``"bernoulli"`` mode the probability that an eligible weight is re-drawn (λ = 0
    changes nothing, λ = 1 re-draws every eligible weight); in ``"manual"`` mode the weight kept of the
    old value in ``λ·w + μ·r``, with ``mu`` required. ``rerand_rate`` restricts eligibility to the
    lowest-ranked part of the pruned weights (1: all of them, as in every IteRand experiment).
    """
    check_option(mode, RERAND_MODES, "re-randomisation mode")
    if not isinstance(generator, torch.Generator):
        raise SupermaskError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    lam = check_number(fraction, "fraction (λ)")
    if mode == "bernoulli":
        if not 0.0 <= lam <= 1.0:
            raise SupermaskError(
                f"fraction (λ) is a probability in bernoulli mode and must be in [0, 1], got {fraction!r}"
            )
        if mu is not None:
            raise SupermaskError("mu is used by mode='manual' only; bernoulli mode re-draws with probability λ")
    elif mu is None:
        raise SupermaskError("mode='manual' needs mu: eligible weights become λ·w + μ·r")
    else:
        mu = check_number(mu, "mu")
    eligible = eligible_masks(model, rerand_rate)
    layers = supermask_layers(model)
    with torch.no_grad():
        for path, layer in layers.items():
            weight = layer.weight
            fresh = layer.weight_law.draw(weight, generator).to(weight.device)
            chosen = eligible[path].to(weight.device)
            if mode == "bernoulli":
                coin = torch.rand(weight.shape, generator=generator, device=generator.device) < lam
                weight.copy_(torch.where(chosen & coin.to(weight.device), fresh, weight))
            else:
                assert mu is not None, "manual mode was checked to have mu above"
                weight.copy_(torch.where(chosen, lam * weight + mu * fresh, weight))
    return model
