"""One reader per data set: ``reader(spec, root) -> (train, test)`` :class:`ImageDataset` pair.

Readers find (or download) the files under the data root, validate them and decode them into
uint8 tensors; the options that apply to every data set (subsampling, random labels, switching
augmentation off) are applied afterwards by :func:`prunelab.data.load_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prunelab.data.dataset import ImageDataset
from prunelab.data.readers.cifar import load_cifar10, load_cifar100
from prunelab.data.readers.digits import load_digits
from prunelab.data.readers.imagenet import load_imagenet
from prunelab.data.readers.mnist import load_mnist, load_mnist10k
from prunelab.data.readers.synthetic import load_synthetic
from prunelab.data.readers.tinyimagenet import load_tinyimagenet
from prunelab.specs.dataset import DatasetSpec

__all__ = ["READERS", "Reader"]

Reader = Callable[[DatasetSpec, Path], tuple[ImageDataset, ImageDataset]]

READERS: dict[str, Reader] = {
    "digits": load_digits,
    "mnist10k": load_mnist10k,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tinyimagenet": load_tinyimagenet,
    "imagenet": load_imagenet,
    "synthetic": load_synthetic,
}
