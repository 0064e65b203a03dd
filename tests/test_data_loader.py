"""BatchLoader: batch sizes, seeded order, resume equivalence, on-device augmentation, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prunelab.data import Augmentation, BatchLoader, ImageDataset
from prunelab.data.loader import crop_and_flip, random_crop_and_flip
from prunelab.data.seeding import generator, stable_seed


def make_dataset(
    n: int = 10, shape: tuple[int, int, int] = (3, 6, 5), augmentation: Augmentation | None = Augmentation(2, True)
) -> ImageDataset:
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, *shape), dtype=torch.uint8, generator=rng)  # no zeros: padding is visible
    return ImageDataset(
        images, torch.arange(n) % 4, 4, (0.4, 0.5, 0.6)[: shape[0]], (0.2, 0.25, 0.3)[: shape[0]], augmentation, "toy"
    )


GOLDEN = 2882598094482294195  # stable_seed("order", 0, 0); changing the mixing silently changes every seeded run


def batches(loader: BatchLoader, epoch: int = 0, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch(epoch, start))


def test_stable_seed_is_a_fixed_function_of_its_parts() -> None:
    assert stable_seed("order", 0, 0) == stable_seed("order", 0, 0) != stable_seed("order", 0, 1)
    assert stable_seed("order", 1) != stable_seed("augment", 1)
    assert stable_seed("order", 0, 0) == GOLDEN
    assert stable_seed("order", np.int64(0), torch.tensor(0)) == GOLDEN  # integer-likes are integers
    with pytest.raises(TypeError):
        stable_seed("order", 0.0, 0)


def test_iterations_per_epoch_include_the_partial_batch() -> None:
    loader = BatchLoader(make_dataset(10), 4, augment=False)
    assert loader.iterations_per_epoch == len(loader) == 3
    out = batches(loader)
    assert [len(y) for _, y in out] == [4, 4, 2]
    order = loader.order(0)
    assert sorted(order.tolist()) == list(range(10))
    assert torch.equal(torch.cat([y for _, y in out]), loader.dataset.labels[order])
    assert BatchLoader(make_dataset(8), 4).iterations_per_epoch == 2


def test_order_depends_only_on_order_seed_and_epoch() -> None:
    ds = make_dataset(50)
    a = BatchLoader(ds, 8, order_seed=3, augment_seed=1)
    b = BatchLoader(ds, 16, order_seed=3, augment_seed=9)
    assert torch.equal(a.order(2), b.order(2))
    assert torch.equal(a.order(2), torch.randperm(50, generator=generator("order", 3, 2)))
    assert not torch.equal(a.order(2), a.order(3))
    assert not torch.equal(a.order(2), BatchLoader(ds, 8, order_seed=4).order(2))
    assert torch.equal(BatchLoader(ds, 8, shuffle=False).order(5), torch.arange(50))


def test_resume_sees_the_same_batches() -> None:
    loader = BatchLoader(make_dataset(23), 5, order_seed=1, augment_seed=2)
    full = batches(loader, epoch=4)
    for start in (0, 2, 4, 5):
        resumed = batches(loader, epoch=4, start=start)
        assert len(resumed) == len(full) - start
        for (x, y), (rx, ry) in zip(full[start:], resumed):
            assert torch.equal(x, rx) and torch.equal(y, ry)
    # A fresh loader object (as after a restart) gives the same batches too.
    again = batches(BatchLoader(make_dataset(23), 5, order_seed=1, augment_seed=2), epoch=4, start=3)
    assert all(torch.equal(x, rx) for (x, _), (rx, _) in zip(full[3:], again))


def test_augmentation_is_seeded_per_epoch_and_batch() -> None:
    ds = make_dataset(40)
    one = batches(BatchLoader(ds, 8, order_seed=0, augment_seed=7), epoch=1)
    two = batches(BatchLoader(ds, 8, order_seed=0, augment_seed=7), epoch=1)
    other = batches(BatchLoader(ds, 8, order_seed=0, augment_seed=8), epoch=1)
    plain = batches(BatchLoader(ds, 8, order_seed=0, augment=False), epoch=1)
    assert all(torch.equal(x, x2) for (x, _), (x2, _) in zip(one, two))
    assert all(torch.equal(y, y2) for (_, y), (_, y2) in zip(one, other))  # order ignores augment_seed
    assert any(not torch.equal(x, x2) for (x, _), (x2, _) in zip(one, other))
    assert any(not torch.equal(x, x2) for (x, _), (x2, _) in zip(one, plain))


def test_augmented_batch_matches_the_documented_draws() -> None:
    ds = make_dataset(12)
    loader = BatchLoader(ds, 5, order_seed=2, augment_seed=3)
    x, _ = batches(loader, epoch=6)[1]
    index = loader.order(6)[5:10]
    expected = random_crop_and_flip(ds.images[index], Augmentation(2, True), generator("augment", 3, 6, 1))
    scale = torch.tensor([255 * s for s in ds.std]).view(1, 3, 1, 1)
    pixels = (x * scale + torch.tensor(ds.mean).view(1, 3, 1, 1) * 255).round().to(torch.uint8)
    assert torch.equal(pixels, expected)


def test_crop_matches_a_padded_slice() -> None:
    images = torch.randint(1, 256, (4, 2, 5, 7), dtype=torch.uint8)
    pad = 3
    offsets = torch.tensor([[0, 0], [6, 6], [3, 3], [1, 5]])
    flips = torch.tensor([False, False, True, True])
    out = crop_and_flip(images, offsets, flips, pad)
    padded = F.pad(images, [pad] * 4)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        crop = padded[i, :, dy : dy + 5, dx : dx + 7]
        assert torch.equal(out[i], crop.flip(-1) if flips[i] else crop)
    # Offset (pad, pad) without flip is the identity; hand-checked corner: offset (0, 0) shifts the
    # image down-right by pad, so the top-left pad×pad block is zero padding.
    assert torch.equal(out[2].flip(-1), images[2])
    assert (out[0, :, :pad, :] == 0).all() and (out[0, :, :, :pad] == 0).all()
    assert torch.equal(out[0, :, pad:, pad:], images[0, :, : 5 - pad, : 7 - pad])


def test_flip_only_and_identity_augmentations() -> None:
    ds = make_dataset(16, augmentation=Augmentation(pad=0, flip=True))
    loader = BatchLoader(ds, 16, shuffle=False, augment_seed=1)
    plain = BatchLoader.evaluation(ds, 16)
    (x, _), (p, _) = batches(loader)[0], batches(plain)[0]
    same = [torch.equal(x[i], p[i]) for i in range(16)]
    mirrored = [torch.equal(x[i], p[i].flip(-1)) for i in range(16)]
    assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 16
    no_aug = BatchLoader(make_dataset(5, augmentation=Augmentation(0, False)), 5, shuffle=False)
    assert no_aug.augmentation is None


def test_batches_are_normalised_float32_and_int64() -> None:
    ds = make_dataset(7)
    x, y = batches(BatchLoader(ds, 7, shuffle=False, augment=False))[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (7, 3, 6, 5)
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (ds.images.float() / 255 - mean) / std)
    assert torch.equal(y, ds.labels)
    # Zero padding is black: normalised to -mean/std.
    xa, _ = batches(BatchLoader(make_dataset(7, augmentation=Augmentation(6, False)), 7, augment_seed=0))[0]
    padding = xa.isclose((-mean / std).expand_as(xa))
    assert padding.any()


def test_iter_and_evaluation_loader() -> None:
    ds = make_dataset(9)
    loader = BatchLoader.evaluation(ds, 4)
    assert loader.augmentation is None and not loader.shuffle
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(loader, loader.epoch(0)))
    assert torch.equal(torch.cat([y for _, y in loader]), ds.labels)


def test_invalid_arguments() -> None:
    loader = BatchLoader(make_dataset(9), 4)
    with pytest.raises(ValueError, match="start_batch"):
        loader.epoch(0, start_batch=4)
    with pytest.raises(ValueError, match="epoch"):
        loader.epoch(-1)
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(make_dataset(9), 0)
    assert batches(loader, start=3) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu() -> None:
    ds = make_dataset(30)
    cpu = batches(BatchLoader(ds, 8, order_seed=1, augment_seed=2))
    gpu = batches(BatchLoader(ds, 8, order_seed=1, augment_seed=2, device="cuda"))
    for (x, y), (gx, gy) in zip(cpu, gpu):
        assert gx.device.type == "cuda" and gy.device.type == "cuda"
        torch.testing.assert_close(gx.cpu(), x)
        assert torch.equal(gy.cpu(), y)
