"""How a network is pruned: the strategy (a score function), how much, where, and how often.

Lottery tickets read ``fraction`` (removed per level), ``rewind`` and ``ntk_rescale``; pruning at
initialisation reads the target density from the command and ``iterations``/``schedule``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from prunelab.specs.base import spec_field
from prunelab.steps import parse_step

SCOPES = ("global", "layerwise")
SCHEDULES = ("exponential", "linear")


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
    ntk_rescale: bool = spec_field(False, help="lottery: rescale survivors by 1/sqrt(density) (random_global NTK control)")
    iterations: int | None = spec_field(None, help="prune-score rounds per pruning (None: the strategy's default)")
    schedule: str = spec_field("exponential", help="density schedule over iterations: exponential or linear")
    prune_highest: bool | None = spec_field(None, help="remove the highest scores (None: the strategy's own rule)")
    examples_per_class: int = spec_field(10, help="data-dependent strategies: class-balanced examples per class")
    options: dict[str, Any] = _mapping_field("strategy options, e.g. {temperature: 200, epsilon: 0.01, train_mode: false}")

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"prune.fraction must be in [0, 1), got {self.fraction}")
        if self.scope not in SCOPES:
            raise ValueError(f"prune.scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"prune.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for pattern, rate in self.rates.items():
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"prune.rates[{pattern!r}] must be in [0, 1), got {rate}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"prune.iterations must be >= 1, got {self.iterations}")
        if self.examples_per_class < 1:
            raise ValueError("prune.examples_per_class must be >= 1")
        parse_step(self.rewind)
