"""Pruning: strategies are score functions; selection, scopes and schedules are shared.

Importing this package registers the baselines (``magnitude``, ``random``, ``random_global``) and
the pruning-at-initialisation strategies of :mod:`prunelab.pruning.scores`.
"""

from __future__ import annotations

from prunelab.pruning import baselines as _baselines  # noqa: F401  (registers the baselines)
from prunelab.pruning import scores as _scores  # noqa: F401  (registers the PaI strategies)
from prunelab.pruning.api import LEVEL_STRATEGIES, default_prunable_parameters, prune, prune_level, score
from prunelab.pruning.base import (
    STRATEGIES,
    ScoreContext,
    ScoreFn,
    Strategy,
    get_strategy,
    register_strategy,
    strategy_names,
)
from prunelab.pruning.baselines import magnitude_at, random_scores_like, randomize_global, randomize_layerwise
from prunelab.pruning.rescale import NTK_RESCALE_MODES, ntk_rescale, ntk_scale_factors
from prunelab.pruning.schedules import SCHEDULES, density_schedule
from prunelab.pruning.selection import (
    COUNT_RULES,
    SCOPES,
    LayerCollapseWarning,
    MaskSelectionError,
    NoRevivalWarning,
    openlth_prune_count,
    prune_fraction,
    round_half_up,
    select_by_density,
    select_counts,
    target_count,
)

__all__ = [
    "ScoreContext",
    "ScoreFn",
    "Strategy",
    "STRATEGIES",
    "register_strategy",
    "get_strategy",
    "strategy_names",
    "score",
    "prune",
    "prune_level",
    "LEVEL_STRATEGIES",
    "default_prunable_parameters",
    "select_by_density",
    "prune_fraction",
    "select_counts",
    "round_half_up",
    "target_count",
    "SCOPES",
    "COUNT_RULES",
    "openlth_prune_count",
    "MaskSelectionError",
    "NoRevivalWarning",
    "LayerCollapseWarning",
    "density_schedule",
    "SCHEDULES",
    "magnitude_at",
    "random_scores_like",
    "randomize_layerwise",
    "randomize_global",
    "NTK_RESCALE_MODES",
    "ntk_rescale",
    "ntk_scale_factors",
]
