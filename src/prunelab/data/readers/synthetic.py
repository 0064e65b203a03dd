"""Seeded random images with learnable labels, for smoke tests of training and pruning code.

Each class has a random prototype image; an example is ``0.35 × prototype + 0.65 × uniform noise``.
A model can learn the classes (so a smoke test sees the loss fall), yet individual pixels are noisy
enough that it is not solved in one step.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prunelab.data.dataset import ImageDataset, channel_stats
from prunelab.data.errors import DataError
from prunelab.data.seeding import generator
from prunelab.specs.dataset import DatasetSpec

__all__ = ["load_synthetic"]

_SIGNAL = 0.35


def load_synthetic(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """``synthetic_train_size``/``synthetic_test_size`` images of ``synthetic_shape`` in
    ``synthetic_classes`` classes, all drawn from ``split_seed``; ``root`` is unused."""
    shape = tuple(spec.synthetic_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"dataset.synthetic_shape must be three positive sizes (C, H, W), got {spec.synthetic_shape}")
    if spec.synthetic_classes < 1 or spec.synthetic_train_size < 1 or spec.synthetic_test_size < 1:
        raise DataError(
            "dataset.synthetic_classes, synthetic_train_size and synthetic_test_size must be >= 1, got "
            f"{spec.synthetic_classes}, {spec.synthetic_train_size}, {spec.synthetic_test_size}"
        )
    rng = generator("synthetic", spec.split_seed)
    prototypes = torch.rand((spec.synthetic_classes, *shape), generator=rng)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, spec.synthetic_classes, (n,), generator=rng)
        noise = torch.rand((n, *shape), generator=rng)
        pixels = (_SIGNAL * prototypes[labels] + (1 - _SIGNAL) * noise) * 255.0
        return pixels.round_().to(torch.uint8), labels

    train_images, train_labels = draw(spec.synthetic_train_size)
    test_images, test_labels = draw(spec.synthetic_test_size)
    mean, std = channel_stats(train_images)

    def part(images: torch.Tensor, labels: torch.Tensor, split: str) -> ImageDataset:
        return ImageDataset(
            images, labels, spec.synthetic_classes, mean, std, augmentation=None, name=f"synthetic/{split}"
        )

    return part(train_images, train_labels, "train"), part(test_images, test_labels, "test")
