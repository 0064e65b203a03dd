"""Iterative SNIP: SNIP re-scored on the live (masked) weights over several prune–rescore rounds.

Proposed alongside FORCE by de Jorge et al. (ICLR 2021, "Progressive Skeletonization") and run as
``itersnip`` in the SynFlow/NTK-SAP code bases. The score of one round is exactly SNIP's,
``|g ⊙ w| ⊙ m`` at the current mask; the rounds (an exponential density schedule, the scores
recomputed each round with the updated mask applied) are the shared machinery's job.
"""

from __future__ import annotations

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores.snip import connection_sensitivity

__all__ = ["iterative_snip"]


@register_strategy("iterative_snip", needs_data=True, default_iterations=100, options=("train_mode", "aggregate"))
def iterative_snip(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Iterative SNIP: |g ⊙ w| re-scored on the masked weights each round; prune lowest.

    ``default_iterations=100``, the same exponential schedule length as SynFlow (the SynFlow and
    NTK-SAP codes take the number of rounds from their ``--prune-epochs`` setting, shared by all
    iterative pruners). Options and BatchNorm handling as ``snip`` (``train_mode``, default True;
    ``aggregate``, default ``"total"``).
    """
    return connection_sensitivity(ctx, "iterative_snip")
