"""Data sets as in-memory uint8 tensors and a seeded loader that augments on the training device.

``load_dataset(spec)`` reads one of the supported data sets (see ``docs/data.md``) from the data
root and returns its train and test :class:`ImageDataset`; :class:`BatchLoader` turns one into
normalised, optionally augmented batches whose order and augmentation are pure functions of
``(seed, epoch, batch)``.
"""

from prunelab.data.dataset import Augmentation, DataSplits, ImageDataset
from prunelab.data.errors import DataError
from prunelab.data.loader import BatchLoader, PackedLoader
from prunelab.data.loading import data_root, load_dataset

__all__ = [
    "Augmentation",
    "BatchLoader",
    "DataError",
    "DataSplits",
    "ImageDataset",
    "PackedLoader",
    "data_root",
    "load_dataset",
]
