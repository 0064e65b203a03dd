"""Which data, how it is subsampled or corrupted, and where it lives."""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.specs.base import SpecError, check_choice, spec_field

DATASET_NAMES = ("digits", "mnist10k", "mnist", "cifar10", "cifar100", "tinyimagenet", "imagenet", "synthetic")
NORMALIZATIONS = ("dataset", "imagenet", "custom")


@dataclass(frozen=True)
class DatasetSpec:
    name: str = spec_field("digits", help=f"one of {', '.join(DATASET_NAMES)}")
    augment: bool = spec_field(
        True, help="the data set's standard augmentation (crop with padding, flip) when it has one"
    )
    subsample_fraction: float = spec_field(1.0, help="keep this fraction of the training set (seeded by split_seed)")
    random_labels_fraction: float = spec_field(0.0, help="replace this fraction of training labels with random ones")
    split_seed: int = spec_field(0, help="seed for train/test splits, subsampling and random labels")
    image_size: int | None = spec_field(
        None, help="resize images to this side (ImageNet); None keeps the data set's size"
    )
    synthetic_shape: tuple[int, ...] = spec_field((1, 28, 28), help="synthetic: image shape C,H,W")
    synthetic_classes: int = spec_field(10, help="synthetic: number of classes")
    synthetic_train_size: int = spec_field(1024, help="synthetic: training examples")
    synthetic_test_size: int = spec_field(256, help="synthetic: test examples")
    root: str | None = spec_field(None, semantic=False, help="data root (default: $PRUNELAB_DATA or ~/.prunelab/data)")
    download: bool = spec_field(True, semantic=False, help="download missing files when the network allows")
    num_workers: int = spec_field(4, semantic=False, help="worker processes for decoding image folders")
    normalization: str = spec_field(
        "dataset",
        help="dataset: the data set's own mean/std; imagenet: ImageNet's (OpenLTH's choice for CIFAR-10); "
        "custom: dataset.mean and dataset.std",
    )
    mean: tuple[float, ...] = spec_field((), help="normalization=custom: per-channel mean on the [0, 1] pixel scale")
    std: tuple[float, ...] = spec_field((), help="normalization=custom: per-channel standard deviation, [0, 1] scale")
    crop_padding: int | None = spec_field(
        None, help="augmentation: zero padding of the random crop (None: the data set's own, e.g. 4 for CIFAR)"
    )

    def __post_init__(self) -> None:
        check_choice(self.name, DATASET_NAMES, "dataset")
        check_choice(self.normalization, NORMALIZATIONS, "dataset.normalization")
        if self.normalization == "custom":
            if not self.mean or len(self.mean) != len(self.std):
                raise SpecError(
                    "dataset.normalization=custom needs dataset.mean and dataset.std with one value per channel each, "
                    f"got mean={list(self.mean)} and std={list(self.std)}"
                )
            if min(self.std) <= 0:
                raise SpecError(f"dataset.std must be positive, got {list(self.std)}")
        elif self.mean or self.std:
            raise SpecError(
                "dataset.mean/dataset.std are read only with dataset.normalization=custom "
                f"(it is {self.normalization!r}): add --dataset.normalization=custom or drop them"
            )
        if self.crop_padding is not None:
            if self.crop_padding < 0:
                raise SpecError(f"dataset.crop_padding must be >= 0, got {self.crop_padding}")
            if not self.augment:
                raise SpecError("dataset.crop_padding sets the augmentation's crop, but dataset.augment is false")
        if not 0.0 < self.subsample_fraction <= 1.0:
            raise SpecError(f"dataset.subsample_fraction must be in (0, 1], got {self.subsample_fraction}")
        if not 0.0 <= self.random_labels_fraction <= 1.0:
            raise SpecError(f"dataset.random_labels_fraction must be in [0, 1], got {self.random_labels_fraction}")
