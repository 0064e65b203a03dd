"""Supermasks: subnetworks of a random, untrained network found by learning one score per weight.

Edge-popup (Ramanujan et al., CVPR 2020) keeps the top fraction of the scores of frozen random
weights; IteRand (Chijiwa et al., NeurIPS 2021) also re-draws part of the pruned weights every few
iterations. ``to_supermask`` converts any model, ``subnet_mask`` is the selection rule, ``rerandomize_``
IteRand's re-draw; ``docs/supermask.md`` lists every convention against the reference code.
"""

from prunelab.supermask.convert import (
    METHODS,
    SCOPES,
    effective_state_dict,
    supermask_layers,
    supermask_masks,
    to_dense,
    to_supermask,
)
from prunelab.supermask.errors import SupermaskError
from prunelab.supermask.init import SCALE_FAN, SCORE_INITS, WEIGHT_INITS, WeightLaw, draw_scores
from prunelab.supermask.layers import (
    SupermaskConv1d,
    SupermaskConv2d,
    SupermaskConv3d,
    SupermaskLayer,
    SupermaskLinear,
)
from prunelab.supermask.rerandomize import RERAND_MODES, eligible_masks, rerandomize_
from prunelab.supermask.scope import GlobalScope
from prunelab.supermask.step import SupermaskStep
from prunelab.supermask.subnet import RANKINGS, global_subnet_masks, subnet_mask

__all__ = [
    "METHODS",
    "RANKINGS",
    "RERAND_MODES",
    "SCALE_FAN",
    "SCOPES",
    "SCORE_INITS",
    "WEIGHT_INITS",
    "GlobalScope",
    "SupermaskConv1d",
    "SupermaskConv2d",
    "SupermaskConv3d",
    "SupermaskError",
    "SupermaskLayer",
    "SupermaskLinear",
    "SupermaskStep",
    "WeightLaw",
    "draw_scores",
    "effective_state_dict",
    "eligible_masks",
    "global_subnet_masks",
    "rerandomize_",
    "subnet_mask",
    "supermask_layers",
    "supermask_masks",
    "to_dense",
    "to_supermask",
]
