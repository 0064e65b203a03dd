"""scikit-learn's bundled handwritten digits: 1,797 8×8 greyscale images, 10 classes.

It ships inside scikit-learn, so it needs no download and no data root: the zero-set-up default for
tests, demos and quick experiments.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prunelab.data.dataset import ImageDataset, channel_stats
from prunelab.data.seeding import seeded_split
from prunelab.specs.dataset import DatasetSpec

__all__ = ["load_digits"]


def load_digits(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """An 80/20 train/test split (1,438/359) chosen by ``spec.split_seed``; ``root`` is unused.

    The original values 0..16 become uint8 pixels ``round(v * 255 / 16)``. Normalisation uses the
    statistics of all 1,797 images, so it does not depend on the split.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # imported here: scikit-learn is slow to import

    bunch = sklearn_digits()
    values = torch.from_numpy(bunch.images)  # float64 [1797, 8, 8], integers 0..16
    images = torch.round(values * (255.0 / 16.0)).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    mean, std = channel_stats(images)
    train_idx, test_idx = seeded_split(len(labels), round(0.8 * len(labels)), "digits", spec.split_seed)

    def part(index: torch.Tensor, split: str) -> ImageDataset:
        return ImageDataset(images[index], labels[index], 10, mean, std, augmentation=None, name=f"digits/{split}")

    return part(train_idx, "train"), part(test_idx, "test")
