"""Pruning-at-initialisation score functions; importing this package registers them.

Each module registers one strategy with :func:`prunelab.pruning.base.register_strategy`. Every
score function works on any ``nn.Module``, gives pruned weights (mask False) a score of exactly 0,
and leaves the model's weights, buffers, dtype, train/eval flags and ``requires_grad`` flags, and
torch's global RNG, as it found them. See ``docs/strategies.md`` for formulas, options and
references.
"""

from prunelab.pruning.scores import grasp, grasp_abs, iterative_snip, ntksap, snip, synflow  # noqa: F401  (registers)

#: The strategies registered by this package (``random`` and ``magnitude`` live in
#: :mod:`prunelab.pruning.baselines`).
SCORE_STRATEGIES: tuple[str, ...] = ("snip", "iterative_snip", "grasp", "grasp_abs", "synflow", "ntksap")

__all__ = ["SCORE_STRATEGIES"]
