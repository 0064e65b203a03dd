"""Each reader against fixture files written in the real formats, including damaged files."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import (
    TINY_WNIDS,
    idx_bytes,
    write_cifar10,
    write_cifar100,
    write_cifar_batch,
    write_image,
    write_imagenet,
    write_mnist_split,
    write_tinyimagenet,
)
from prunelab.data import Augmentation, BatchLoader, DataError, load_dataset
from prunelab.data.readers import images as image_reader
from prunelab.data.readers.cifar import read_cifar_batch
from prunelab.data.readers.mnist import read_idx_images, read_idx_labels
from prunelab.specs import DatasetSpec, SpecError


def spec(name: str, root: Path, **kw: object) -> DatasetSpec:
    return DatasetSpec(name=name, root=str(root), download=False, **kw)  # type: ignore[arg-type]


# --- MNIST IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    train_x, train_y = write_mnist_split(tmp_path / "mnist", "train", 12, gz=gz, seed=0)
    test_x, test_y = write_mnist_split(tmp_path / "mnist", "t10k", 5, gz=not gz, seed=1)  # mixed is fine
    splits = load_dataset(spec("mnist", tmp_path))
    assert splits.train.images.shape == (12, 1, 28, 28) and splits.test.images.shape == (5, 1, 28, 28)
    assert np.array_equal(splits.train.images[:, 0].numpy(), train_x) and np.array_equal(
        splits.test.images[:, 0].numpy(), test_x
    )
    assert splits.train.labels.tolist() == train_y.tolist() and splits.test.labels.dtype == torch.int64
    assert splits.train.mean == (0.1307,) and splits.train.std == (0.3081,) and splits.train.augmentation is None


def _idx_file(tmp_path: Path, data: bytes, name: str = "train-images-idx3-ubyte") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_idx_rejects_wrong_magic(tmp_path: Path) -> None:
    labels = _idx_file(tmp_path, idx_bytes(np.zeros(4, np.uint8)), "labels-as-images")
    with pytest.raises(DataError, match=r"labels-as-images is not an IDX image file: magic number 2049, expected 2051"):
        read_idx_images(labels)
    images = _idx_file(tmp_path, idx_bytes(np.zeros((2, 3, 3), np.uint8)), "images-as-labels")
    with pytest.raises(DataError, match=r"images-as-labels is not an IDX label file: magic number 2051, expected 2049"):
        read_idx_labels(images)


def test_idx_rejects_truncated_and_oversized_files(tmp_path: Path) -> None:
    good = idx_bytes(np.ones((3, 4, 4), np.uint8))
    with pytest.raises(
        DataError, match=r"short-raw is truncated: its header promises 3×4×4 values \(48 bytes\) but only 47 follow"
    ):
        read_idx_images(_idx_file(tmp_path, good[:-1], "short-raw"))
    with pytest.raises(DataError, match=r"short-gz is truncated"):
        read_idx_images(_idx_file(tmp_path, gzip.compress(good[:-5]), "short-gz"))
    with pytest.raises(DataError, match=r"tiny is truncated: 6 bytes, shorter than an IDX image header"):
        read_idx_images(_idx_file(tmp_path, good[:6], "tiny"))
    with pytest.raises(DataError, match=r"long is corrupt: it has bytes beyond the 48"):
        read_idx_images(_idx_file(tmp_path, good + b"\0", "long"))
    with pytest.raises(DataError, match=r"cut\.gz could not be decompressed"):
        read_idx_images(_idx_file(tmp_path, gzip.compress(good)[:-12], "cut.gz"))


def test_idx_rejects_bad_labels_and_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bad-labels is corrupt: label 12 is outside 0..9"):
        read_idx_labels(_idx_file(tmp_path, idx_bytes(np.array([1, 12], np.uint8)), "bad-labels"))
    directory = tmp_path / "mnist-10k"
    write_mnist_split(directory, "t10k", 6, gz=True, seed=0)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte.gz holds 6 images but .*t10k-labels-idx1-ubyte.gz holds 5 labels"
    ):
        load_dataset(spec("mnist10k", tmp_path))


def test_missing_files_without_download_name_directory_and_fix(tmp_path: Path) -> None:
    write_mnist_split(tmp_path / "mnist", "train", 3, gz=True, seed=0)
    with pytest.raises(DataError) as info:
        load_dataset(spec("mnist", tmp_path))
    message = str(info.value)
    assert str(tmp_path / "mnist") in message
    assert "t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)" in message and "train-images" not in message
    assert "dataset.download=false" in message and "PRUNELAB_DATA" in message and "--data-root" in message


def test_mnist10k_fixture_split(tmp_path: Path) -> None:
    images, labels = write_mnist_split(tmp_path / "mnist-10k", "t10k", 50, gz=False, seed=4)
    splits = load_dataset(spec("mnist10k", tmp_path, split_seed=2))
    assert (len(splits.train), len(splits.test)) == (40, 10)
    together = torch.cat([splits.train.images, splits.test.images])[:, 0].numpy()
    assert sorted(map(bytes, together.reshape(50, -1))) == sorted(map(bytes, images.reshape(50, -1)))


# --- CIFAR ----------------------------------------------------------------------------------------


def test_cifar10_reads_pickle_batches(tmp_path: Path) -> None:
    batches = write_cifar10(tmp_path, per_batch=4)
    splits = load_dataset(spec("cifar10", tmp_path))
    assert splits.train.images.shape == (20, 3, 32, 32) and splits.test.images.shape == (4, 3, 32, 32)
    data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert splits.train.labels.tolist() == labels and splits.test.labels.tolist() == batches["test_batch"][1]
    # Row layout: 1024 red values, then green, then blue, each a row-major 32×32 plane.
    assert np.array_equal(splits.train.images[7, 0].numpy(), data[7, :1024].reshape(32, 32))
    assert np.array_equal(splits.train.images[7, 2].numpy(), data[7, 2048:].reshape(32, 32))
    assert splits.train.augmentation == Augmentation(pad=4, flip=True) and splits.test.augmentation is None
    assert splits.num_classes == 10 and splits.train.mean == (0.4914, 0.4822, 0.4465)
    assert load_dataset(spec("cifar10", tmp_path, augment=False)).train.augmentation is None


def test_cifar_normalization_and_crop_padding_options(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=4)
    imagenet = load_dataset(spec("cifar10", tmp_path, normalization="imagenet"))  # OpenLTH's datasets/cifar10.py
    for split in (imagenet.train, imagenet.test):
        assert (split.mean, split.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # The loader feeds the model (pixel / 255 - mean) / std with those statistics.
    x, _ = next(iter(BatchLoader.evaluation(imagenet.test, batch_size=4)))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (imagenet.test.images.float() / 255 - mean) / std)
    assert torch.equal(imagenet.train.images, load_dataset(spec("cifar10", tmp_path)).train.images)

    custom = load_dataset(spec("cifar10", tmp_path, normalization="custom", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1)))
    assert (custom.test.mean, custom.test.std) == ((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    with pytest.raises(SpecError, match="gives 1 channel statistics, but cifar10 images have 3"):
        load_dataset(spec("cifar10", tmp_path, normalization="custom", mean=(0.5,), std=(0.2,)))

    flip_only = load_dataset(spec("cifar10", tmp_path, crop_padding=0))
    assert flip_only.train.augmentation == Augmentation(pad=0, flip=True) and flip_only.test.augmentation is None
    assert load_dataset(spec("cifar10", tmp_path, crop_padding=6)).train.augmentation == Augmentation(pad=6, flip=True)


def test_tinyimagenet_crop_padding_replaces_the_default(tmp_path: Path) -> None:
    write_tinyimagenet(tmp_path)
    assert load_dataset(spec("tinyimagenet", tmp_path)).train.augmentation == Augmentation(pad=8, flip=True)
    assert load_dataset(spec("tinyimagenet", tmp_path, crop_padding=4)).train.augmentation == Augmentation(4, True)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    batches = write_cifar100(tmp_path)
    splits = load_dataset(spec("cifar100", tmp_path))
    assert splits.num_classes == 100 and len(splits.train) == 12 and len(splits.test) == 5
    assert splits.train.labels.tolist() == batches["train"][1]
    assert np.array_equal(splits.test.images.reshape(5, -1).numpy(), batches["test"][0])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_any_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    write_cifar_batch(tmp_path / "batch", data, [3, 9], protocol=protocol)
    images, labels = read_cifar_batch(tmp_path / "batch", b"labels", 10)
    assert labels.tolist() == [3, 9] and np.array_equal(images.reshape(2, -1).numpy(), data)


def test_cifar_batches_pickled_by_numpy_1(tmp_path: Path) -> None:
    # The official files (and NumPy 1.x pickles) name numpy.core.multiarray, not numpy._core.
    data = np.full((1, 3072), 7, np.uint8)
    write_cifar_batch(tmp_path / "batch", data, [4], protocol=2)
    raw = (tmp_path / "batch").read_bytes()
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "batch").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    images, labels = read_cifar_batch(tmp_path / "batch", b"labels", 10)
    assert labels.tolist() == [4] and (images == 7).all()


def test_cifar_refuses_disallowed_globals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(DataError, match=r"data_batch_1 refers to os.system, which a CIFAR batch never needs; refusing"):
        read_cifar_batch(evil, b"labels", 10)
    assert not marker.exists()
    evil.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [print]}, protocol=2))
    with pytest.raises(DataError, match=r"refers to (__builtin__|builtins)\.print"):
        read_cifar_batch(evil, b"labels", 10)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not a pickle", r"is not a readable CIFAR batch"),
        (pickle.dumps([1, 2]), r"is not a CIFAR batch: expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), r"expected a dict with keys b'data' and b'labels'"),
        (
            pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
            r"must be a uint8 N×3072 array, found uint8 \(2, 100\)",
        ),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
            r"2 images but b'labels' has shape \(1,\)",
        ),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), r"labels must lie in 0..9"),
    ],
)
def test_cifar_rejects_malformed_batches(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message) as info:
        read_cifar_batch(path, b"labels", 10)
    assert str(path) in str(info.value)


def test_cifar_truncated_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR batch"):
        load_dataset(spec("cifar10", tmp_path))


# --- image folders --------------------------------------------------------------------------------


def pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_tinyimagenet_reads_the_folder_layout(tmp_path: Path) -> None:
    directory = write_tinyimagenet(tmp_path)
    splits = load_dataset(spec("tinyimagenet", tmp_path, num_workers=0))
    wnids = sorted(TINY_WNIDS)
    assert splits.train.images.shape == (6, 3, 64, 64) and splits.test.images.shape == (3, 3, 64, 64)
    assert splits.num_classes == 3 and splits.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    first = directory / "train" / wnids[0] / "images" / f"{wnids[0]}_0.JPEG"
    assert np.array_equal(splits.train.images[0].permute(1, 2, 0).numpy(), pil_rgb(first))
    # val_annotations.txt lists val_0 as the last wnid of the (unsorted) wnids.txt, and so on.
    assert splits.test.labels.tolist() == [wnids.index(w) for w in reversed(TINY_WNIDS)]
    assert np.array_equal(
        splits.test.images[1].permute(1, 2, 0).numpy(), pil_rgb(directory / "val" / "images" / "val_1.JPEG")
    )
    grey = splits.train.images[wnids.index(TINY_WNIDS[0]) * 2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # greyscale JPEG became RGB
    assert splits.train.augmentation == Augmentation(pad=8, flip=True) and splits.train.mean == (0.485, 0.456, 0.406)


def test_folder_images_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = write_tinyimagenet(tmp_path)
    first = load_dataset(spec("tinyimagenet", tmp_path, num_workers=0))
    assert len(list((directory / ".prunelab-cache").glob("*.safetensors"))) == 2

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(image_reader, "decode_images", no_decoding)
    second = load_dataset(spec("tinyimagenet", tmp_path, num_workers=0))
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.images, second.test.images)
    # A changed file list invalidates the cache.
    write_image(directory / "train" / TINY_WNIDS[1] / "images" / "extra.JPEG", 64, 64, 99)
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset(spec("tinyimagenet", tmp_path, num_workers=0))


def test_damaged_cache_is_ignored_and_rewritten(tmp_path: Path) -> None:
    directory = write_imagenet(tmp_path)
    first = load_dataset(spec("imagenet", tmp_path, image_size=8, num_workers=0))
    cache = next((directory / ".prunelab-cache").glob("train-8px-*.safetensors"))
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"ignoring unusable image cache .*train-8px-"):
        second = load_dataset(spec("imagenet", tmp_path, image_size=8, num_workers=0))
    assert torch.equal(first.train.images, second.train.images)
    assert cache.stat().st_size > len(b"garbage")


def test_tinyimagenet_reports_bad_annotations_and_images(tmp_path: Path) -> None:
    directory = write_tinyimagenet(tmp_path)
    annotations = directory / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_9.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt, line 4: expected .* got 'val_9.JPEG"):
        load_dataset(spec("tinyimagenet", tmp_path, num_workers=0))
    broken = tmp_path / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match=r"broken.JPEG is not a readable image"):
        image_reader.decode_image(broken, 64)
    (directory / "wnids.txt").unlink()
    with pytest.raises(DataError, match=r"tiny-imagenet-200 lacks wnids.txt"):
        load_dataset(spec("tinyimagenet", tmp_path))


def test_decode_resizes_shorter_side_and_centre_crops(tmp_path: Path) -> None:
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 32:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = image_reader.decode_image(tmp_path / "wide.png", 16)  # 64×32 → 32×16 → centre 16×16
    assert out.shape == (16, 16, 3)
    assert (out[:, :7] == (255, 0, 0)).all() and (out[:, 9:] == (0, 0, 255)).all()
    gradient = np.broadcast_to(np.arange(40, dtype=np.uint8)[None, :, None] * 5, (20, 40, 3)).copy()
    Image.fromarray(gradient).save(tmp_path / "exact.png")
    assert np.array_equal(image_reader.decode_image(tmp_path / "exact.png", 20), gradient[:, 10:30])


def test_imagenet_class_folders(tmp_path: Path) -> None:
    write_imagenet(tmp_path)
    splits = load_dataset(spec("imagenet", tmp_path, image_size=12, num_workers=0))
    assert splits.train.images.shape == (4, 3, 12, 12) and splits.test.images.shape == (2, 3, 12, 12)
    assert splits.train.labels.tolist() == [0, 0, 1, 1] and splits.test.labels.tolist() == [0, 1]
    assert splits.train.augmentation == Augmentation(pad=1, flip=True) and splits.test.augmentation is None
    assert load_dataset(spec("imagenet", tmp_path, num_workers=0)).input_shape == (3, 224, 224)  # the default size


def test_imagenet_decodes_in_worker_processes(tmp_path: Path) -> None:
    write_imagenet(tmp_path, per_class=40)  # > 64 training images: more than one chunk for the pool
    pooled = load_dataset(spec("imagenet", tmp_path, image_size=8, num_workers=2))
    paths = sorted((tmp_path / "imagenet" / "train").glob("*/*.JPEG"))
    assert len(pooled.train) == 80
    assert torch.equal(pooled.train.images, image_reader.decode_images(paths, 8, num_workers=0))


def test_imagenet_errors_explain_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ImageNet has no public download.*imagenet/train/<wnid>/\*\.JPEG"):
        load_dataset(DatasetSpec(name="imagenet", root=str(tmp_path)))
    write_imagenet(tmp_path)
    write_image(tmp_path / "imagenet" / "val" / "n09999999" / "x.JPEG", 8, 8, 0)
    with pytest.raises(DataError, match=r"class folders \['n09999999'\] that .*train lacks"):
        load_dataset(spec("imagenet", tmp_path, image_size=8, num_workers=0))
