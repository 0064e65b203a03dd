"""In-memory image data sets: uint8 pixels plus what is needed to normalise and augment them.

Images stay uint8 (a quarter of float32's memory) until the loader converts a batch on the training
device; normalisation constants and the augmentation recipe travel with the data set so a loader
needs nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prunelab.data.seeding import generator

__all__ = ["Augmentation", "ImageDataset", "DataSplits", "channel_stats"]


@dataclass(frozen=True)
class Augmentation:
    """The standard training augmentation: a random ``H×W`` crop of the image zero-padded by ``pad``
    pixels on each side, then (if ``flip``) a horizontal flip with probability 1/2."""

    pad: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise ValueError(f"augmentation pad must be >= 0, got {self.pad}")

    @property
    def is_identity(self) -> bool:
        return self.pad == 0 and not self.flip


@dataclass(eq=False)
class ImageDataset:
    """``images`` uint8 ``[N, C, H, W]`` and ``labels`` int64 ``[N]`` in ``[0, num_classes)``.

    ``mean``/``std`` are per-channel statistics on the [0, 1] pixel scale, so a loader feeds the
    model ``(pixel / 255 - mean) / std``. ``augmentation`` is ``None`` for data that is never
    augmented (test sets, MNIST).
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"{self.name}: images must be a uint8 [N, C, H, W] tensor, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise ValueError(
                f"{self.name}: labels must be an int64 [N] tensor with N = {len(self.images)}, "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(
                f"{self.name}: need {channels} means and {channels} positive stds, got {self.mean} and {self.std}"
            )
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {self.num_classes}), found "
                f"{int(self.labels.min())}..{int(self.labels.max())}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, augmentation={self.augmentation})"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.images.shape
        return (c, h, w)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """The examples at ``indices`` (in that order), sharing every other attribute."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.labels.device)
        return dataclasses.replace(self, images=self.images[index.to(self.images.device)], labels=self.labels[index])

    def class_balanced_indices(self, per_class: int, seed: int) -> torch.Tensor:
        """Indices of ``per_class`` randomly chosen examples of every class (all of a class's
        examples when it has fewer), sorted ascending.

        Data-dependent pruning scores (SNIP, GraSP) are computed on such a sample so no class
        dominates the gradient. The choice is a pure function of ``seed``.
        """
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        labels = self.labels.cpu()
        perm = torch.randperm(len(labels), generator=generator("class_balanced", seed))
        # Stable-sort a random permutation by label: within each class the order stays random,
        # and an example's rank inside its class says whether it is among the first per_class.
        by_class = perm[torch.argsort(labels[perm], stable=True)]
        counts = torch.bincount(labels, minlength=self.num_classes)
        class_start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(labels)) - class_start[labels[by_class]]
        return by_class[rank < per_class].sort().values


@dataclass(frozen=True)
class DataSplits:
    """The training and test sets of one data set, as :func:`prunelab.data.load_dataset` returns them."""

    train: ImageDataset
    test: ImageDataset

    def __post_init__(self) -> None:
        if self.train.input_shape != self.test.input_shape or self.train.num_classes != self.test.num_classes:
            raise ValueError(
                f"train and test sets disagree: {self.train.input_shape}/{self.train.num_classes} classes "
                f"vs {self.test.input_shape}/{self.test.num_classes} classes"
            )

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.input_shape


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``[N, C, H, W]`` images on the [0, 1] scale,
    for data sets without published constants (digits, synthetic)."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).to(torch.float64) / 255.0
    return tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-6).tolist())
