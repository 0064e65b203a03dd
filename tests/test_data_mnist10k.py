"""The real MNIST 10k test split shipped in the shared data directory."""

from __future__ import annotations

import pytest
import torch

from data_fixtures import SHARED_DATA
from prunelab.data import BatchLoader, load_dataset
from prunelab.specs import DatasetSpec

CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / "mnist-10k").is_dir(), reason=f"the real MNIST 10k files are not at {SHARED_DATA / 'mnist-10k'}"
)


def load(split_seed: int = 0):
    return load_dataset(DatasetSpec(name="mnist10k", root=str(SHARED_DATA), download=False, split_seed=split_seed))


def test_real_mnist10k_loads_with_the_canonical_class_counts() -> None:
    splits = load()
    assert (len(splits.train), len(splits.test)) == (8000, 2000)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    labels = torch.cat([splits.train.labels, splits.test.labels])
    assert torch.bincount(labels, minlength=10).tolist() == CLASS_COUNTS
    pixels = torch.cat([splits.train.images, splits.test.images]).float() / 255
    assert abs(pixels.mean().item() - 0.1325) < 1e-3  # the test split's known mean intensity
    assert pixels.max() == 1.0 and pixels.min() == 0.0


def test_real_mnist10k_split_is_seeded() -> None:
    first, again, other = load(0), load(0), load(1)
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.test.labels, again.test.labels)
    assert not torch.equal(first.test.images, other.test.images)
    assert torch.bincount(torch.cat([other.train.labels, other.test.labels]), minlength=10).tolist() == CLASS_COUNTS


def test_real_mnist10k_through_the_loader() -> None:
    splits = load()
    loader = BatchLoader(splits.train, 128, order_seed=0)
    assert loader.iterations_per_epoch == 63  # 62 full batches + one of 64
    x, y = next(loader.epoch(0, start_batch=62))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    full = torch.cat([x for x, _ in BatchLoader.evaluation(splits.test, 500)])
    assert abs(full.mean().item()) < 0.1 and abs(full.std().item() - 1.0) < 0.1  # MNIST's constants fit
