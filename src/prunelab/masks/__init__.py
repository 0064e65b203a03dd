"""Pruning masks and the cheap machinery that keeps pruned weights at zero during training."""

from prunelab.masks.mask import Mask
from prunelab.masks.masked import MaskedParameters, apply_mask

__all__ = ["Mask", "MaskedParameters", "apply_mask"]
