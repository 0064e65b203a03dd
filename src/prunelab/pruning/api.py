"""The public pruning API: score a model, prune it to a density, take a lottery-ticket level step.

Scoring never changes the caller's model: a call works on one ``copy.deepcopy`` of the model
(moved to ``device``), its *working copy*, whose prunable weights are multiplied by the current
mask. Before every iteration after the first, the working copy's parameter values, buffers,
train/eval flags and ``requires_grad`` flags are restored from the caller's model and its
gradients cleared (:class:`_Workspace`), which costs a few tensor copies instead of a deep copy
per iteration. A score function may therefore change any of those (replace weights by ``|w|``,
switch to eval mode, run backward passes) and the next iteration sees the caller's model again; if it changes
the module's structure (replaces a submodule, a parameter or its dtype or device, adds a hook), the
next iteration gets a fresh deep copy. Other attributes it sets (a BatchNorm ``momentum``, say) it
must undo itself. The caller's weights, buffers, gradients and modes are untouched. The caller
applies the returned mask.

Randomness: one CPU ``torch.Generator`` seeded with ``seed`` per call is handed to the score
function (``ctx.generator``) and used by selection to break ties, so a call is a pure function of
its arguments and the same seed gives the same mask on any device.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from prunelab.masks import Mask
from prunelab.pruning.base import STRATEGIES, ScoreContext, ScoreFn, Strategy, as_batch_source, get_strategy
from prunelab.pruning.baselines import magnitude_at, random_scores_like
from prunelab.pruning.schedules import SCHEDULES, density_schedule
from prunelab.pruning.selection import (
    LayerCollapseWarning,
    MaskSelectionError,
    Rates,
    _as_patterns,
    _check_density,
    _check_scope,
    match_patterns,
    prune_fraction,
    select_by_density,
    select_counts,
)

__all__ = ["score", "prune", "prune_level", "LEVEL_STRATEGIES", "default_prunable_parameters", "required_scope"]

#: Strategies :func:`prune_level` understands (they need only the weights, not the model or data).
LEVEL_STRATEGIES = ("magnitude", "random", "random_global", "random_layerwise")

#: Strategies whose definition fixes the selection scope.
_REQUIRED_SCOPE = {"random_global": "global"}


def at_init_strategies() -> list[str]:
    """Every registered strategy (custom ones too), in registry order, except the variants whose
    definition only fixes another's scope (``random_global`` is ``random`` at global scope): what
    ``prunelab prune --strategy all`` runs."""
    return [name for name in STRATEGIES if name not in _REQUIRED_SCOPE]


def required_scope(strategy: Strategy) -> str | None:
    """The scope a registered strategy's definition fixes (``random_global``: global), else ``None``."""
    required = _REQUIRED_SCOPE.get(strategy.name)
    return required if STRATEGIES.get(strategy.name) is strategy else None


_NOT_A_SCORE = {
    "random_layerwise": (
        "'random_layerwise' is not a score function: use prune(model, 'random', d, scope='layerwise') "
        "for random positions at the same density in every layer, randomize_layerwise(mask) to shuffle "
        "a mask's positions within each layer, or prune_level(..., 'random_layerwise', ...) for a "
        "lottery level"
    ),
}


# TODO(lead): replace with prunelab.models.prunable_parameters once the models package lands.
def default_prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of all ``nn.Conv2d``/``nn.Linear`` modules, in ``named_parameters()`` order."""
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    return {n: p for n, p in model.named_parameters() if id(p) in weights}


# helpers ----------------------------------------------------------------------------------------
def _strategy(strategy: str | Strategy | ScoreFn) -> Strategy:
    if isinstance(strategy, str) and strategy in _NOT_A_SCORE:
        raise MaskSelectionError(_NOT_A_SCORE[strategy])
    return get_strategy(strategy)


def _resolve(
    model: nn.Module,
    params: Mapping[str, nn.Parameter] | None,
    mask: Mapping[str, torch.Tensor] | None,
    device: str | torch.device | None,
) -> tuple[dict[str, nn.Parameter], torch.device, Mask, torch.device]:
    """(params, compute device, starting mask on the compute device, device to return masks on)."""
    params = dict(params) if params is not None else default_prunable_parameters(model)
    if not params:
        raise MaskSelectionError("the model has no prunable parameters (no Conv2d/Linear weights); pass params=")
    home = next(iter(params.values())).device
    device = torch.device(device) if device is not None else home
    if mask is None:
        mask = Mask.ones_like(params)
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    if set(mask) != set(params):
        diff = sorted(set(mask) ^ set(params))
        raise MaskSelectionError(f"mask and prunable parameters cover different tensors: {diff[:5]}")
    for n, p in params.items():
        if tuple(mask[n].shape) != tuple(p.shape):
            raise MaskSelectionError(f"mask for {n!r} has shape {tuple(mask[n].shape)}, the parameter {tuple(p.shape)}")
    out_device = next(iter(mask.values())).device
    return params, device, Mask({n: mask[n] for n in params}).to(device), out_device


class _Workspace:
    """The working copy of one call: a deep copy of ``model`` on ``device``, refreshed from ``model``
    before each iteration (see the module docstring) and rebuilt only if a score function changed
    its structure.

    A refresh copies every parameter and buffer back (version counters cannot say which were written:
    BatchNorm's kernel updates its running statistics without bumping them, and writes through
    ``.data`` never do), then applies the mask."""

    def __init__(
        self, model: nn.Module, params: Mapping[str, nn.Parameter], device: torch.device, copy_model: bool = True
    ) -> None:
        qualified = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
        missing = [n for n, p in params.items() if id(p) not in qualified]
        if missing:
            raise MaskSelectionError(f"params are not parameters of the model: {missing[:5]}")
        self._source = model
        self._device = device
        self._names = {n: qualified[id(p)] for n, p in params.items()}
        self.model: nn.Module | None = None
        self.params: dict[str, torch.Tensor] = {}
        self._copy_model = copy_model
        self._weights = dict(params)

    def _build(self) -> None:
        work = copy.deepcopy(self._source).to(self._device)
        self.model = work
        self.params = {n: work.get_parameter(q) for n, q in self._names.items()}
        source: dict[str, torch.Tensor] = dict(self._source.named_parameters(remove_duplicate=False))
        source.update(self._source.named_buffers(remove_duplicate=False))
        named = itertools.chain(work.named_parameters(), work.named_buffers())
        self._pairs = [(t, source[n]) for n, t in named]
        self._modules = list(work.modules())
        self._modes = [(m, m.training) for m in self._modules]
        self._flags = [(p, p.requires_grad) for p in work.parameters()]
        self._layout = self._structure()

    def _structure(self) -> list:
        """What a refresh cannot restore: the modules (type, children), their tensors (identity,
        storage, dtype, device, shape) and hooks, as one flat list."""
        out: list = []
        for m in self._modules:
            out.append(type(m))
            out.extend(map(id, m._modules.values()))
            for t in itertools.chain(m._parameters.values(), m._buffers.values()):
                out.append(None if t is None else (id(t), t.data_ptr(), t.dtype, t.device, t.shape))
            out.append(
                (
                    len(m._forward_hooks),
                    len(m._forward_pre_hooks),
                    len(m._backward_hooks),
                    len(m._backward_pre_hooks),
                    len(m._state_dict_hooks),
                    len(m._load_state_dict_pre_hooks),
                )
            )
        return out

    def prepare(self, mask: Mask) -> tuple[nn.Module | None, dict[str, torch.Tensor]]:
        """The working copy equal to the caller's model with its prunable weights multiplied by ``mask``
        (without ``copy_model``: no model, and the masked weights as new tensors)."""
        if not self._copy_model:
            return None, {n: p.detach().to(self._device) * mask[n] for n, p in self._weights.items()}
        if self.model is None or self._structure() != self._layout:
            self._build()
        else:
            with torch.no_grad():
                for t, src in self._pairs:
                    t.copy_(src)
            for m, training in self._modes:
                m.training = training
            for p, flag in self._flags:
                p.requires_grad_(flag)
                p.grad = None
        with torch.no_grad():
            for n, weight in self.params.items():
                weight.mul_(mask[n].to(weight.device))
        assert self.model is not None
        return self.model, self.params


def _run_score(strat: Strategy, ctx: ScoreContext) -> dict[str, torch.Tensor]:
    scores = strat.score(ctx)
    if not isinstance(scores, Mapping):
        raise MaskSelectionError(f"strategy {strat.name!r} returned {type(scores).__name__}, not a dict of tensors")
    if set(scores) != set(ctx.params):
        diff = sorted(set(scores) ^ set(ctx.params))
        raise MaskSelectionError(f"strategy {strat.name!r} returned scores for the wrong tensors: {diff[:5]}")
    out = {}
    for n, p in ctx.params.items():
        s = torch.as_tensor(scores[n]).detach()
        if tuple(s.shape) != tuple(p.shape):
            raise MaskSelectionError(
                f"strategy {strat.name!r} returned scores of shape {tuple(s.shape)} for {n!r}, "
                f"expected {tuple(p.shape)}"
            )
        out[n] = s
    return out


def _context(
    workspace: _Workspace,
    mask: Mask,
    device: torch.device,
    generator: torch.Generator,
    data: Any,
    options: Mapping[str, Any],
    iteration: int,
    iterations: int,
    scratch: dict[str, Any],
) -> ScoreContext:
    work, work_params = workspace.prepare(mask)
    return ScoreContext(
        model=work,
        params=work_params,
        mask=mask,
        device=device,
        generator=generator,
        data=as_batch_source(data, device),
        options=dict(options),
        iteration=iteration,
        iterations=iterations,
        scratch=scratch,
    )


def _check_data(strat: Strategy, data: Any) -> None:
    if strat.needs_data and data is None:
        raise ValueError(f"strategy {strat.name!r} needs data: pass data=(x, y), a DataLoader or a batch iterable")


def _warn_collapse(before: Mask | list[str], after: Mask) -> None:
    """Warn about the tensors empty in ``after`` but not in ``before`` (a mask or its empty tensors' names)."""
    already = set(before.collapsed_layers() if isinstance(before, Mask) else before)
    new = [n for n in after.collapsed_layers() if n not in already]
    if new:
        warnings.warn(
            f"layer collapse: no weight left in {', '.join(new[:5])}{' …' if len(new) > 5 else ''} "
            f"(no signal passes through it; the network is disconnected unless a parallel path remains)",
            LayerCollapseWarning,
            stacklevel=3,
        )


# public API -------------------------------------------------------------------------------------
def score(
    model: nn.Module,
    strategy: str | Strategy | ScoreFn,
    data: Any = None,
    *,
    mask: Mapping[str, torch.Tensor] | None = None,
    params: Mapping[str, nn.Parameter] | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """Scores of ``strategy`` for the prunable weights of ``model`` with ``mask`` applied.

    ``strategy``: a registered name, a :class:`Strategy` or a bare score function
    ``ScoreContext -> dict[name, Tensor]``. ``params`` defaults to the Conv2d/Linear weights.
    ``options`` reach the score function as ``ctx.options``. The model is not modified (scoring runs
    on a deep copy). Returns detached tensors on ``device`` (default: the parameters' device).
    """
    strat = _strategy(strategy)
    _check_data(strat, data)
    strat.check_options(options)
    params, device, mask_, _ = _resolve(model, params, mask, device)
    generator = torch.Generator().manual_seed(int(seed))
    workspace = _Workspace(model, params, device, copy_model=strat.uses_model)
    ctx = _context(workspace, mask_, device, generator, data, options, 0, 1, {})
    return _run_score(strat, ctx)


def prune(
    model: nn.Module,
    strategy: str | Strategy | ScoreFn,
    density: float,
    data: Any = None,
    *,
    iterations: int | None = None,
    schedule: str = "exponential",
    scope: str = "global",
    prune_highest: bool | None = None,
    ignore: str | Iterable[str] = (),
    mask: Mapping[str, torch.Tensor] | None = None,
    params: Mapping[str, nn.Parameter] | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    **options: Any,
) -> Mask:
    """Prune ``model``'s prunable weights to ``density`` with ``strategy`` and return the mask.

    ``density`` is the fraction of the *considered* (non-ignored) prunable weights kept, relative
    to dense. Iteration ``k`` of ``iterations`` (default: the strategy's ``default_iterations``)
    scores the model with the current mask applied and keeps ``d_k`` of the schedule
    (:func:`density_schedule`, starting from the starting mask's considered density). Pruned
    weights are never revived. ``prune_highest=None`` uses the strategy's own direction (GraSP
    removes the highest scores); ``True``/``False`` overrides it. ``ignore``: fnmatch patterns of
    tensors never pruned. ``mask``: a starting mask (default: dense). The model is not modified —
    apply the returned mask yourself. New collapsed layers raise a :class:`LayerCollapseWarning`.
    """
    strat = _strategy(strategy)
    _check_data(strat, data)
    strat.check_options(options)
    _check_scope(scope)
    required = required_scope(strat)
    if required is not None and scope != required:
        raise MaskSelectionError(f"strategy {strat.name!r} is defined with scope={required!r}, got scope={scope!r}")
    if schedule not in SCHEDULES:
        raise MaskSelectionError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {schedule!r}")
    density = _check_density(density)
    params, device, start_mask, out_device = _resolve(model, params, mask, device)
    ignore = _as_patterns(ignore)  # read once per iteration: a one-shot iterable would be empty after the first
    ignored = match_patterns(ignore, start_mask, what="ignore") if ignore else set()
    considered = [n for n in start_mask if n not in ignored]
    alive = {n: int(m.count_nonzero()) for n, m in start_mask.items()}
    total = sum(start_mask[n].numel() for n in considered)
    start = sum(alive[n] for n in considered) / total if total else 1.0
    iterations = strat.default_iterations if iterations is None else iterations
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise MaskSelectionError(f"iterations must be a positive integer, got {iterations!r}")
    targets = density_schedule(density, iterations, schedule, start=start) if density < start else [density]
    highest = strat.prune_highest if prune_highest is None else bool(prune_highest)
    generator = torch.Generator().manual_seed(int(seed))

    current = start_mask
    workspace = _Workspace(model, params, device, copy_model=strat.uses_model)
    scratch: dict[str, Any] = {}
    for k, target in enumerate(targets):
        ctx = _context(workspace, current, device, generator, data, options, k, len(targets), scratch)
        scores = _run_score(strat, ctx)
        current = select_by_density(
            scores, current, target, scope=scope, prune_highest=highest, ignore=ignore, generator=generator
        )
    _warn_collapse([n for n, count in alive.items() if count == 0], current)
    return current.to(out_device)


def prune_level(
    weights: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor],
    strategy: str,
    fraction: float,
    *,
    scope: str = "global",
    rates: Rates = None,
    ignore: str | Iterable[str] = (),
    generator: torch.Generator | None = None,
    count_rule: str = "exact",
) -> Mask:
    """One lottery-ticket level: remove ``round_half_up(f · n_alive)`` alive weights (see
    :func:`prune_fraction` for scopes, ``rates``, ``ignore`` and ``count_rule``, whose
    ``"openlth"`` value removes OpenLTH's ``ceil(f · n_all) + 1``); the result is a subset of ``current``.

    ``weights`` are the weights to score (the trained weights of the level). Strategies:
    ``magnitude`` (keep the largest ``|w|``); ``random`` (uniform random, any scope);
    ``random_global`` (uniform random, scope must be global); ``random_layerwise`` (the per-layer
    counts magnitude pruning would produce, at uniformly random alive positions of each tensor).
    ``generator`` (default: a fresh one seeded with 0) draws random scores and breaks ties — give
    each level its own seeded generator.
    """
    current = current if isinstance(current, Mask) else Mask(current)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    _check_scope(scope)
    ignore = _as_patterns(ignore)  # read twice by random_layerwise

    def level(scores: Mapping[str, torch.Tensor]) -> Mask:
        return prune_fraction(
            scores,
            current,
            fraction,
            scope=scope,
            rates=rates,
            ignore=ignore,
            generator=generator,
            count_rule=count_rule,
        )

    if strategy == "magnitude":
        result = level(magnitude_at(weights))
    elif strategy in ("random", "random_global"):
        if strategy == "random_global" and scope != "global":
            raise MaskSelectionError(f"strategy 'random_global' is defined with scope='global', got scope={scope!r}")
        result = level(random_scores_like(current, generator))
    elif strategy == "random_layerwise":
        reference = level(magnitude_at(weights))
        ignored = match_patterns(ignore, current, what="ignore") if ignore else set()
        counts = {n: int(m.sum()) for n, m in reference.items() if n not in ignored}
        result = select_counts(random_scores_like(current, generator), current, counts, generator=generator)
    else:
        raise MaskSelectionError(
            f"prune_level supports strategies {', '.join(map(repr, LEVEL_STRATEGIES))}, got {strategy!r}"
        )
    _warn_collapse(current, result)
    return result
