"""Which data, how it is subsampled or corrupted, and where it lives."""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.specs.base import check_choice, spec_field

DATASET_NAMES = ("digits", "mnist10k", "mnist", "cifar10", "cifar100", "tinyimagenet", "imagenet", "synthetic")


@dataclass(frozen=True)
class DatasetSpec:
    name: str = spec_field("digits", help=f"one of {', '.join(DATASET_NAMES)}")
    augment: bool = spec_field(True, help="the data set's standard augmentation (crop with padding, flip) when it has one")
    subsample_fraction: float = spec_field(1.0, help="keep this fraction of the training set (seeded by split_seed)")
    random_labels_fraction: float = spec_field(0.0, help="replace this fraction of training labels with random ones")
    split_seed: int = spec_field(0, help="seed for train/test splits, subsampling and random labels")
    image_size: int | None = spec_field(None, help="resize images to this side (ImageNet); None keeps the data set's size")
    synthetic_shape: tuple[int, ...] = spec_field((1, 28, 28), help="synthetic: image shape C,H,W")
    synthetic_classes: int = spec_field(10, help="synthetic: number of classes")
    synthetic_train_size: int = spec_field(1024, help="synthetic: training examples")
    synthetic_test_size: int = spec_field(256, help="synthetic: test examples")
    root: str | None = spec_field(None, semantic=False, help="data root (default: $PRUNELAB_DATA or ~/.prunelab/data)")
    download: bool = spec_field(True, semantic=False, help="download missing files when the network allows")
    num_workers: int = spec_field(4, semantic=False, help="worker processes for decoding image folders")

    def __post_init__(self) -> None:
        check_choice(self.name, DATASET_NAMES, "dataset")
        if not 0.0 < self.subsample_fraction <= 1.0:
            raise ValueError(f"dataset.subsample_fraction must be in (0, 1], got {self.subsample_fraction}")
        if not 0.0 <= self.random_labels_fraction <= 1.0:
            raise ValueError(f"dataset.random_labels_fraction must be in [0, 1], got {self.random_labels_fraction}")
