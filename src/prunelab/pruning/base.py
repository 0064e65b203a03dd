"""The strategy protocol: a pruning algorithm is a score function.

A score function receives a :class:`ScoreContext` and returns one score tensor per prunable
parameter (same names and shapes as the mask). Everything else — turning scores into a mask with
exact counts, global or layerwise scope, per-layer rates, ignored layers, ``prune_highest``
inversion, iterative schedules, never reviving pruned weights — is shared machinery in
:mod:`prunelab.pruning.selection` and :mod:`prunelab.pruning.api`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunelab.masks import Mask
from prunelab.specs.base import SpecError, closest

__all__ = ["ScoreContext", "ScoreFn", "Strategy", "register_strategy", "get_strategy", "strategy_names", "STRATEGIES"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ScoreContext:
    """Everything a score function may use.

    ``model``'s prunable weights are already multiplied by ``mask`` when the function is called.
    A strategy registered with ``uses_model=False`` (magnitude, random) gets ``model=None`` and, in
    ``params``, the masked weights as plain tensors: the API then makes no copy of the model. A score
    function that reads the model gets it from :meth:`require_model`, which says what is wrong when
    there is none.
    ``batches()`` returns a fresh iterator over pruning batches ``(x, y)`` on ``device`` (normalised,
    not augmented), or raises if the caller gave no data. ``generator`` is the only source of
    randomness a score function may use, so results are seeded.

    ``scratch`` is a dict that lives as long as one :func:`~prunelab.pruning.api.prune` call: the same
    dict reaches every iteration of the call, so a score function can build something expensive
    once (SynFlow its non-negative network, NTK-SAP its re-initialised copy) and reuse it in later
    iterations. It must hold only the function's own objects — never a reference that lets a later
    iteration write to the caller's model. :func:`~prunelab.pruning.api.score` and a context built
    by hand start with an empty dict.
    """

    model: nn.Module | None
    params: dict[str, torch.Tensor]
    mask: Mask
    device: torch.device
    generator: torch.Generator
    data: Callable[[], Iterator[Batch]] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    iteration: int = 0
    iterations: int = 1
    scratch: dict[str, Any] = field(default_factory=dict)

    def require_model(self) -> nn.Module:
        """``model``, or a ``ValueError`` if this context has none (a ``uses_model=False`` strategy's)."""
        if self.model is None:
            raise ValueError(
                "this score function reads ctx.model but the context has none: register the strategy with "
                "uses_model=True (the default) or build the ScoreContext with model="
            )
        return self.model

    def batches(self) -> Iterator[Batch]:
        if self.data is None:
            raise ValueError("this strategy needs data: pass data=(x, y), a DataLoader or a dataset")
        return self.data()

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)


ScoreFn = Callable[[ScoreContext], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Strategy:
    """A registered score function and how the shared machinery must treat its scores.

    ``prune_highest``: the strategy removes the *highest* scores (GraSP's −θ⊙Hg), so selection keeps
    the lowest. ``needs_data``: scoring uses training examples. ``default_iterations``: how many
    prune–rescore rounds the published method uses (SynFlow: 100). ``uses_model``: the score
    reads ``ctx.model``; ``False`` (magnitude, random) promises it reads only ``ctx.params``, the
    masked weights, so the API skips the working copy of the model.
    """

    name: str
    score: ScoreFn
    prune_highest: bool = False
    needs_data: bool = False
    default_iterations: int = 1
    description: str = ""
    options: tuple[str, ...] | None = ()
    uses_model: bool = True

    def check_options(self, given: Mapping[str, Any]) -> None:
        """Reject options this strategy does not read (``options=None``: a custom function that
        accepts anything)."""
        if self.options is None:
            return
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            valid = ", ".join(self.options) or "none"
            near = [c for name in unknown for c in closest(name, self.options)]
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            raise SpecError(
                f"strategy {self.name!r} has no option {', '.join(map(repr, unknown))}.{hint} Its options: {valid}."
            )


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(
    name: str,
    *,
    prune_highest: bool = False,
    needs_data: bool = False,
    default_iterations: int = 1,
    description: str = "",
    options: tuple[str, ...] | None = (),
    uses_model: bool = True,
) -> Callable[[ScoreFn], ScoreFn]:
    def wrap(fn: ScoreFn) -> ScoreFn:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        summary = description or (fn.__doc__ or "").strip().split("\n")[0]
        STRATEGIES[name] = Strategy(
            name, fn, prune_highest, needs_data, default_iterations, summary, options, uses_model
        )
        return fn

    return wrap


def strategy_names() -> list[str]:
    return sorted(STRATEGIES)


def get_strategy(strategy: str | Strategy | ScoreFn) -> Strategy:
    """Look a strategy up by name; a bare callable is wrapped as a custom score function."""
    if isinstance(strategy, Strategy):
        return strategy
    if callable(strategy):
        return Strategy(getattr(strategy, "__name__", "custom"), strategy, options=None)
    if strategy not in STRATEGIES:
        near = closest(strategy, STRATEGIES)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise SpecError(f"unknown pruning strategy {strategy!r}.{hint} Valid: {', '.join(strategy_names())}.")
    return STRATEGIES[strategy]


def as_batch_source(data: Any, device: torch.device) -> Callable[[], Iterator[Batch]] | None:
    """Normalise user data into a re-iterable batch source: ``None``, an ``(x, y)`` pair, an
    iterable of pairs (e.g. a DataLoader, re-iterated each call), or a callable returning one."""
    if data is None:
        return None
    if callable(data) and not isinstance(data, (nn.Module, Iterable)):
        return lambda: ((x.to(device), y.to(device)) for x, y in data())
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        return lambda: iter([(x.to(device), y.to(device))])
    if isinstance(data, Iterable):
        return lambda: ((x.to(device), y.to(device)) for x, y in data)
    raise TypeError(f"cannot use {type(data).__name__} as pruning data: pass (x, y), a DataLoader or batches")
