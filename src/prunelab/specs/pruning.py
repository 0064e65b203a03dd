"""How a network is pruned. Issue [A] only records it; lottery tickets and pruning at
initialisation give these fields their meaning."""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.specs.base import spec_field


@dataclass(frozen=True)
class PruningSpec:
    strategy: str = spec_field("magnitude", help="how weights are scored (magnitude, random, ...)")
    fraction: float = spec_field(0.2, help="fraction of the alive weights removed per pruning level")
    scope: str = spec_field("global", help="global: one threshold for all layers; layerwise: per layer")
    rates: tuple[tuple[str, float], ...] = spec_field((), help="per-layer fractions as (glob pattern, fraction) pairs")
    ignore: tuple[str, ...] = spec_field((), help="glob patterns of prunable weights never pruned")

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"prune.fraction must be in [0, 1), got {self.fraction}")
        if self.scope not in ("global", "layerwise"):
            raise ValueError(f"prune.scope must be 'global' or 'layerwise', got {self.scope!r}")
