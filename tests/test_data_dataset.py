"""ImageDataset, DataSplits, data_root and the options load_dataset applies (digits, synthetic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prunelab.data import Augmentation, DataSplits, ImageDataset, data_root, load_dataset
from prunelab.data.loading import randomize_labels, subsample
from prunelab.specs import DatasetSpec, SpecError


def make_dataset(n: int = 30, num_classes: int = 3, shape: tuple[int, int, int] = (1, 4, 4)) -> ImageDataset:
    images = torch.arange(n * int(np.prod(shape)), dtype=torch.int64).remainder(256).to(torch.uint8).view(n, *shape)
    labels = torch.arange(n) % num_classes
    return ImageDataset(
        images, labels, num_classes, (0.5,) * shape[0], (0.25,) * shape[0], Augmentation(2, True), "toy"
    )


def test_dataset_basics_and_subset() -> None:
    ds = make_dataset()
    assert len(ds) == 30 and ds.input_shape == (1, 4, 4)
    sub = ds.subset([5, 2])
    assert torch.equal(sub.labels, ds.labels[[5, 2]]) and torch.equal(sub.images, ds.images[[5, 2]])
    assert (sub.num_classes, sub.mean, sub.std, sub.augmentation, sub.name) == (
        3,
        (0.5,),
        (0.25,),
        Augmentation(2, True),
        "toy",
    )
    assert "n=30" in repr(ds)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(images=torch.zeros(2, 1, 4, 4)), "uint8"),
        (dict(labels=torch.zeros(2, dtype=torch.int32)), "int64"),
        (dict(labels=torch.tensor([0, 3])), r"\[0, 3\)"),
        (dict(mean=(0.1, 0.2)), "means"),
        (dict(std=(0.0,)), "positive"),
    ],
)
def test_dataset_validation(change: dict, message: str) -> None:
    fields = dict(
        images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
        labels=torch.tensor([0, 1]),
        num_classes=3,
        mean=(0.5,),
        std=(0.2,),
    )
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        ImageDataset(**fields)


def test_class_balanced_indices_exact_and_seeded() -> None:
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 2)
    ds = ImageDataset(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels, 3, (0.5,), (0.5,))
    picked = ds.class_balanced_indices(3, seed=1)
    assert torch.equal(picked, picked.sort().values) and len(set(picked.tolist())) == len(picked)
    assert torch.bincount(labels[picked], minlength=3).tolist() == [3, 3, 2]  # class 2 has only 2
    assert torch.equal(picked, ds.class_balanced_indices(3, seed=1))
    draws = {tuple(ds.class_balanced_indices(3, seed=s).tolist()) for s in range(6)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="per_class"):
        ds.class_balanced_indices(0, seed=0)


def test_data_splits_properties() -> None:
    splits = DataSplits(make_dataset(), make_dataset(n=6))
    assert splits.num_classes == 3 and splits.input_shape == (1, 4, 4)
    with pytest.raises(ValueError, match="disagree"):
        DataSplits(make_dataset(), make_dataset(num_classes=4))


def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PRUNELAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".prunelab" / "data"
    monkeypatch.setenv("PRUNELAB_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root("~/x") == tmp_path / "home" / "x"


def test_digits_split_and_pixel_values() -> None:
    from sklearn.datasets import load_digits

    splits = load_dataset(DatasetSpec(name="digits"))
    assert (len(splits.train), len(splits.test)) == (1438, 359)
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert splits.train.augmentation is None and splits.train.name == "digits/train"
    bunch = load_digits()
    expected = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    # Every example is a real digit with its own label: match each train image against the source.
    source = {(row.tobytes(), int(label)) for row, label in zip(expected, bunch.target)}
    got = {(img[0].numpy().tobytes(), int(label)) for img, label in zip(splits.train.images, splits.train.labels)}
    assert got <= source
    assert (
        torch.bincount(torch.cat([splits.train.labels, splits.test.labels])).tolist()
        == np.bincount(bunch.target).tolist()
    )
    again = load_dataset(DatasetSpec(name="digits"))
    other = load_dataset(DatasetSpec(name="digits", split_seed=1))
    assert torch.equal(again.train.images, splits.train.images)
    assert not torch.equal(other.train.labels, splits.train.labels)


def test_subsample_is_exact_and_seeded() -> None:
    full = load_dataset(DatasetSpec(name="digits")).train
    half = load_dataset(DatasetSpec(name="digits", subsample_fraction=0.25)).train
    assert len(half) == round(0.25 * len(full)) == 360
    rows = {(img.numpy().tobytes(), int(y)) for img, y in zip(full.images, full.labels)}
    assert all((img.numpy().tobytes(), int(y)) in rows for img, y in zip(half.images, half.labels))
    same = load_dataset(DatasetSpec(name="digits", subsample_fraction=0.25)).train
    other = load_dataset(DatasetSpec(name="digits", subsample_fraction=0.25, split_seed=3)).train
    assert torch.equal(half.images, same.images) and not torch.equal(half.images, other.images)
    assert len(subsample(full, 1e-9, seed=0)) == 1  # never empty


def test_random_labels_are_exact_and_seeded() -> None:
    base = make_dataset(n=1000, num_classes=10)
    relabelled, chosen = randomize_labels(base, 0.3, seed=5)
    assert len(chosen) == 300 and len(set(chosen.tolist())) == 300
    changed = torch.nonzero(relabelled.labels != base.labels).flatten()
    assert set(changed.tolist()) <= set(chosen.tolist())
    assert 0.8 * 300 < len(changed) < 300  # ~1/10 of the re-drawn labels coincide with the truth
    assert torch.equal(relabelled.images, base.images)
    again, chosen_again = randomize_labels(base, 0.3, seed=5)
    assert torch.equal(again.labels, relabelled.labels) and torch.equal(chosen_again, chosen)
    assert not torch.equal(randomize_labels(base, 0.3, seed=6)[0].labels, relabelled.labels)
    everything, all_chosen = randomize_labels(base, 1.0, seed=0)
    assert len(all_chosen) == 1000
    assert torch.bincount(everything.labels, minlength=10).min() > 60  # uniform over classes


def test_load_dataset_applies_options_to_train_only() -> None:
    plain = load_dataset(DatasetSpec(name="digits"))
    spec = DatasetSpec(name="digits", subsample_fraction=0.5, random_labels_fraction=0.5)
    splits = load_dataset(spec)
    assert len(splits.train) == round(0.5 * 1438)
    assert torch.equal(splits.test.labels, plain.test.labels)
    subsampled = subsample(plain.train, 0.5, seed=0)
    expected, chosen = randomize_labels(subsampled, 0.5, seed=0)
    assert len(chosen) == round(0.5 * len(subsampled))
    assert torch.equal(splits.train.labels, expected.labels)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"normalization": "cifar"}, "unknown dataset.normalization 'cifar'"),
        ({"normalization": "custom"}, "needs dataset.mean and dataset.std with one value per channel"),
        ({"normalization": "custom", "mean": (0.5, 0.5), "std": (0.2,)}, "one value per channel each"),
        ({"normalization": "custom", "mean": (0.5,), "std": (0.0,)}, "dataset.std must be positive"),
        ({"mean": (0.5,), "std": (0.2,)}, "read only with dataset.normalization=custom"),
        ({"crop_padding": -1}, "crop_padding must be >= 0"),
        ({"crop_padding": 2, "augment": False}, "dataset.augment is false"),
    ],
)
def test_normalization_and_crop_options_are_checked(fields: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        DatasetSpec(name="digits", **fields)


def test_normalization_replaces_statistics_of_both_splits() -> None:
    plain = load_dataset(DatasetSpec(name="digits"))
    custom = load_dataset(DatasetSpec(name="digits", normalization="custom", mean=(0.25,), std=(0.5,)))
    assert (custom.train.mean, custom.train.std, custom.test.mean, custom.test.std) == ((0.25,), (0.5,)) * 2
    assert torch.equal(custom.train.images, plain.train.images) and custom.train.mean != plain.train.mean
    with pytest.raises(SpecError, match="ImageNet's statistics are for RGB images"):
        load_dataset(DatasetSpec(name="digits", normalization="imagenet"))
    with pytest.raises(SpecError, match="digits has no augmentation to change"):
        load_dataset(DatasetSpec(name="digits", crop_padding=2))


def test_synthetic_is_seeded_and_learnable() -> None:
    spec = DatasetSpec(
        name="synthetic",
        synthetic_shape=(3, 6, 5),
        synthetic_classes=4,
        synthetic_train_size=400,
        synthetic_test_size=100,
    )
    splits = load_dataset(spec)
    assert splits.train.images.shape == (400, 3, 6, 5) and splits.test.images.shape == (100, 3, 6, 5)
    assert splits.num_classes == 4 and set(splits.train.labels.tolist()) == {0, 1, 2, 3}
    assert torch.equal(load_dataset(spec).train.images, splits.train.images)
    # A nearest-class-mean classifier fitted on train must beat chance by far on test.
    x_train = splits.train.images.flatten(1).float()
    centroids = torch.stack([x_train[splits.train.labels == c].mean(0) for c in range(4)])
    predicted = torch.cdist(splits.test.images.flatten(1).float(), centroids).argmin(1)
    assert (predicted == splits.test.labels).float().mean() > 0.9
    with pytest.raises(ValueError, match="synthetic_shape"):
        load_dataset(DatasetSpec(name="synthetic", synthetic_shape=(28, 28)))


def test_docs_example_runs() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "docs/data.md", "exec"), {})
