"""``load_dataset``: a :class:`DatasetSpec` in, train and test :class:`ImageDataset` out."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from prunelab.data.dataset import DataSplits, ImageDataset
from prunelab.data.readers import READERS
from prunelab.data.readers.tinyimagenet import IMAGENET_MEAN, IMAGENET_STD
from prunelab.data.seeding import generator
from prunelab.specs.base import SpecError
from prunelab.specs.dataset import DatasetSpec

__all__ = ["DATA_ROOT_ENV", "data_root", "load_dataset", "normalization_statistics", "subsample", "randomize_labels"]

DATA_ROOT_ENV = "PRUNELAB_DATA"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where data sets live: ``root`` if given, else ``$PRUNELAB_DATA``, else ``~/.prunelab/data``."""
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ROOT_ENV) or Path.home() / ".prunelab" / "data"
    return Path(root).expanduser()


def _count(fraction: float, n: int) -> int:
    return int(round(fraction * n))


def subsample(dataset: ImageDataset, fraction: float, seed: int) -> ImageDataset:
    """``round(fraction × N)`` examples (at least one) chosen uniformly by ``seed``, in data set order."""
    keep = max(1, _count(fraction, len(dataset)))
    chosen = torch.randperm(len(dataset), generator=generator("subsample", seed))[:keep].sort().values
    return dataset.subset(chosen)


def randomize_labels(dataset: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, torch.Tensor]:
    """Replace the labels of ``round(fraction × N)`` examples chosen by ``seed`` with labels drawn
    uniformly from all classes (so about 1/num_classes of them keep their true label by chance, as
    in Zhang et al. 2017). Returns the new data set and the sorted indices of the re-drawn labels."""
    rng = generator("random_labels", seed)
    chosen = torch.randperm(len(dataset), generator=rng)[: _count(fraction, len(dataset))].sort().values
    labels = dataset.labels.clone()
    labels[chosen] = torch.randint(0, dataset.num_classes, (len(chosen),), generator=rng).to(labels.device)
    return dataclasses.replace(dataset, labels=labels), chosen


def load_dataset(spec: DatasetSpec) -> DataSplits:
    """Read ``spec.name`` from the data root (downloading missing files if ``spec.download``) and
    apply the spec's options: ``normalization`` (both sets), then to the training set
    ``subsample_fraction``, ``random_labels_fraction`` (both seeded by ``split_seed``),
    ``augment=False`` to drop the augmentation and ``crop_padding`` to change it. The test set's
    images and labels are never altered."""
    train, test = READERS[spec.name](spec, data_root(spec.root))
    statistics = normalization_statistics(spec, train)
    if statistics is not None:
        mean, std = statistics
        train, test = (dataclasses.replace(split, mean=mean, std=std) for split in (train, test))
    if spec.subsample_fraction < 1.0:
        train = subsample(train, spec.subsample_fraction, spec.split_seed)
    if spec.random_labels_fraction > 0.0:
        train, _ = randomize_labels(train, spec.random_labels_fraction, spec.split_seed)
    if not spec.augment:
        train = dataclasses.replace(train, augmentation=None)
    elif spec.crop_padding is not None:
        if train.augmentation is None:
            raise SpecError(f"dataset.crop_padding: {spec.name} has no augmentation to change; leave it unset")
        train = dataclasses.replace(train, augmentation=dataclasses.replace(train.augmentation, pad=spec.crop_padding))
    return DataSplits(train, test)


Statistics = tuple[tuple[float, ...], tuple[float, ...]]


def normalization_statistics(spec: DatasetSpec, dataset: ImageDataset) -> Statistics | None:
    """The ``(mean, std)`` that ``spec.normalization`` asks for instead of the data set's own, or
    ``None`` to keep them: ImageNet's for ``"imagenet"``, ``spec.mean``/``spec.std`` for ``"custom"``.
    Their length must match the images' channels."""
    if spec.normalization == "dataset":
        return None
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if spec.normalization == "imagenet" else (spec.mean, spec.std)
    channels = dataset.input_shape[0]
    if len(mean) != channels:
        hint = "; ImageNet's statistics are for RGB images" if spec.normalization == "imagenet" else ""
        raise SpecError(
            f"dataset.normalization={spec.normalization} gives {len(mean)} channel statistics, but {spec.name} "
            f"images have {channels} channel(s){hint}"
        )
    return tuple(mean), tuple(std)
