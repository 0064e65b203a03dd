"""How a network is pruned: the strategy (a score function), how much, where, and how often.

Lottery tickets read ``fraction`` (removed per level), ``count_rule``, ``rewind``, ``ntk_rescale`` and
``ntk_rescale_mode``; pruning at initialisation reads the target density from the command and
``iterations``/``schedule``.

``ntk_rescale_mode`` defaults to ``"auto"``, a rule: with ``ntk_rescale`` on, ``auto`` means ``"global"``
(the Random-Pruning-NTK reference's single factor) for the ``random_global`` strategy and ``"per_layer"``
for any other. Run names hash :meth:`PruningSpec.resolved`, where ``auto`` is written out as ``global``
for ``random_global``: those lotteries used per-layer factors before the field existed, so the rule
gives them new names instead of reusing results computed with the old factors, while every other
spec (``auto`` = per-layer, as before) keeps its name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from prunelab.specs.base import SpecError, spec_field
from prunelab.steps import parse_step

SCOPES = ("global", "layerwise")
SCHEDULES = ("exponential", "linear")
COUNT_RULES = ("exact", "openlth")
#: ``global``: the reference's one factor from the considered density; ``per_layer``: each tensor's own.
RESCALE_MODES = ("global", "per_layer")
NTK_RESCALE_MODES = ("auto", *RESCALE_MODES)


def _mapping_field(help: str) -> dict:
    return dataclasses.field(default_factory=dict, metadata={"semantic": True, "help": help})


@dataclass(frozen=True)
class PruningSpec:
    strategy: str = spec_field("magnitude", help="score function: magnitude, random, random_global, snip, synflow, ...")
    fraction: float = spec_field(0.2, help="lottery: fraction of the alive weights removed per level")
    scope: str = spec_field("global", help="global: one ranking over all layers; layerwise: per layer")
    rates: dict[str, float] = _mapping_field("per-layer fractions by glob pattern, e.g. {fc.weight: 0.1}")
    ignore: tuple[str, ...] = spec_field((), help="glob patterns of prunable weights never pruned")
    rewind: str = spec_field("0it", help="lottery: the step whose weights survivors are reset to")
    ntk_rescale: bool = spec_field(
        False, help="lottery: rescale survivors by 1/sqrt(density) (random_global NTK control)"
    )
    ntk_rescale_mode: str = spec_field(
        "auto",
        help="lottery: global (one factor from the considered density), per_layer, or auto (global for "
        "random_global, else per_layer)",
    )
    count_rule: str = spec_field(
        "exact",
        help="lottery: weights removed per level: exact (round(f * alive)) or openlth (ceil(f * all alive) + 1)",
    )
    iterations: int | None = spec_field(None, help="prune-score rounds per pruning (None: the strategy's default)")
    schedule: str = spec_field("exponential", help="density schedule over iterations: exponential or linear")
    prune_highest: bool | None = spec_field(None, help="remove the highest scores (None: the strategy's own rule)")
    examples_per_class: int = spec_field(10, help="data-dependent strategies: class-balanced examples per class")
    options: dict[str, Any] = _mapping_field(
        "strategy options, e.g. {temperature: 200, epsilon: 0.01, train_mode: false}"
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise SpecError(f"prune.fraction must be in [0, 1), got {self.fraction}")
        if self.scope not in SCOPES:
            raise SpecError(f"prune.scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.schedule not in SCHEDULES:
            raise SpecError(f"prune.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.count_rule not in COUNT_RULES:
            raise SpecError(f"prune.count_rule must be one of {', '.join(COUNT_RULES)}, got {self.count_rule!r}")
        if self.ntk_rescale_mode not in NTK_RESCALE_MODES:
            raise SpecError(
                f"prune.ntk_rescale_mode must be one of {', '.join(NTK_RESCALE_MODES)}, got {self.ntk_rescale_mode!r}"
            )
        if self.ntk_rescale_mode != "auto" and not self.ntk_rescale:
            raise SpecError(f"prune.ntk_rescale_mode={self.ntk_rescale_mode} needs prune.ntk_rescale=true")
        for pattern, rate in self.rates.items():
            if not 0.0 <= rate < 1.0:
                raise SpecError(f"prune.rates[{pattern!r}] must be in [0, 1), got {rate}")
        if self.iterations is not None and self.iterations < 1:
            raise SpecError(f"prune.iterations must be >= 1, got {self.iterations}")
        if self.examples_per_class < 1:
            raise SpecError("prune.examples_per_class must be >= 1")
        parse_step(self.rewind)

    @property
    def resolved_ntk_rescale_mode(self) -> str:
        """``global`` or ``per_layer``: the factor rule the lottery applies when ``ntk_rescale`` is on."""
        if self.ntk_rescale_mode != "auto":
            return self.ntk_rescale_mode
        return "global" if self.strategy == "random_global" else "per_layer"

    def resolved(self) -> PruningSpec:
        """This spec as run names hash it: ``auto`` written out where it does not mean the per-layer rule
        that runs made before ``ntk_rescale_mode`` existed used (``random_global`` with rescaling)."""
        if self.ntk_rescale and self.ntk_rescale_mode == "auto" and self.resolved_ntk_rescale_mode != "per_layer":
            return dataclasses.replace(self, ntk_rescale_mode=self.resolved_ntk_rescale_mode)
        return self
