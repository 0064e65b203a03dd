"""Stable seeds derived from tuples of integers and labels.

Every random choice in :mod:`prunelab.data` (shuffling, augmentation, splits, subsampling, random
labels) draws from its own ``torch.Generator`` seeded from a tuple such as
``("order", order_seed, epoch)``. The seed is a hash of that tuple, so it is the same in every
process and Python version (unlike ``hash()``, which is salted per process), and different purposes
get unrelated streams even when the user passes the same integer for all of them.
"""

from __future__ import annotations

import hashlib
import operator

import torch

__all__ = ["stable_seed", "generator", "seeded_split"]


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (in order).

    Integer-like parts (``int``, NumPy integers, 0-d integer tensors) count as the same integer, so
    a caller passing ``numpy.int64(3)`` gets the seed of ``3``; floats are refused rather than
    silently seeding a different stream.
    """
    text = "\x1f".join(f"s:{part}" if isinstance(part, str) else f"i:{operator.index(part)}" for part in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded with :func:`stable_seed` of ``parts`` (never the global RNG)."""
    return torch.Generator().manual_seed(stable_seed(*parts))


def seeded_split(n: int, n_train: int, *parts: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into ``n_train`` training and ``n - n_train`` test indices by a seeded
    permutation. Each part is sorted so the splits keep the source's order."""
    if not 0 < n_train < n:
        raise ValueError(f"cannot split {n} examples into {n_train} training and {n - n_train} test examples")
    perm = torch.randperm(n, generator=generator(*parts))
    return perm[:n_train].sort().values, perm[n_train:].sort().values
