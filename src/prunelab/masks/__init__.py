"""Pruning masks and the cheap machinery that keeps pruned weights at zero during training."""

from prunelab.masks.mask import Mask

__all__ = ["Mask"]
