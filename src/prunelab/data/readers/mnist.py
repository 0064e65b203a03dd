"""MNIST in the original IDX format (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels), raw or gzipped.

Also ``mnist10k``: the 10,000-image MNIST test split on its own, split 8,000/2,000 with a seed —
a small real data set that needs no 60,000-image download.

IDX layout: a big-endian magic number (2051 for uint8 images with 3 dimensions, 2049 for uint8
labels with 1), one big-endian uint32 per dimension, then the uint8 values. Files are validated
against their headers byte for byte, so a truncated download is reported instead of read as garbage.
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import torch

from prunelab.data.dataset import ImageDataset
from prunelab.data.download import fetch, missing_files_error
from prunelab.data.errors import DataError
from prunelab.data.seeding import seeded_split
from prunelab.specs.dataset import DatasetSpec

__all__ = ["read_idx_images", "read_idx_labels", "load_mnist", "load_mnist10k", "MEAN", "STD"]

MEAN = (0.1307,)
STD = (0.3081,)
NUM_CLASSES = 10
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> io.BufferedIOBase:
    """Open raw or gzip-compressed files alike (told apart by the gzip magic bytes, not the name).
    A compressed file is decompressed in one call (MNIST's largest is 47 MB): streaming it through
    ``gzip.open`` costs about twice as long in Python-level reads."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    return io.BytesIO(gzip.decompress(path.read_bytes())) if compressed else open(path, "rb")


def _read_exact(handle: io.BufferedIOBase, count: int) -> bytearray:
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:
        n = handle.readinto(view[got:])
        if not n:
            break
        got += n
    return buffer[:got] if got < count else buffer


def _read_idx(path: Path, magic: int, kind: str) -> tuple[list[int], bytearray]:
    """The dimensions and the exact payload of an IDX file, or a DataError naming the file."""
    ndim = magic & 0xFF
    try:
        with _open(path) as handle:
            header = _read_exact(handle, 4 + 4 * ndim)
            if len(header) >= 4 and struct.unpack(">I", header[:4])[0] != magic:
                found = struct.unpack(">I", header[:4])[0]
                raise DataError(f"{path} is not an IDX {kind} file: magic number {found}, expected {magic}")
            if len(header) < 4 + 4 * ndim:
                raise DataError(
                    f"{path} is truncated: {len(header)} bytes, shorter than an IDX {kind} header "
                    f"({4 + 4 * ndim} bytes)"
                )
            dims = list(struct.unpack(f">{ndim}I", header[4:]))
            expected = 1
            for dim in dims:
                expected *= dim
            payload = _read_exact(handle, expected)
            if len(payload) < expected:
                shape = "×".join(map(str, dims))
                raise DataError(
                    f"{path} is truncated: its header promises {shape} values ({expected} bytes) but only "
                    f"{len(payload)} follow; "
                    "delete it and download it again"
                )
            if handle.read(1):
                raise DataError(
                    f"{path} is corrupt: it has bytes beyond the {expected} that its header ({dims}) accounts for"
                )
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a cut-off gzip stream raises EOFError
        raise DataError(f"{path} could not be decompressed/read ({error}); delete it and download it again") from error
    return dims, payload


def read_idx_images(path: Path) -> torch.Tensor:
    """uint8 images ``[N, 1, H, W]`` from an IDX image file (magic 2051)."""
    (n, height, width), payload = _read_idx(path, IMAGES_MAGIC, "image")
    return torch.frombuffer(payload, dtype=torch.uint8).view(n, 1, height, width)


def read_idx_labels(path: Path, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """int64 labels ``[N]`` from an IDX label file (magic 2049), checked to lie in ``[0, num_classes)``."""
    (_,), payload = _read_idx(path, LABELS_MAGIC, "label")
    labels = torch.frombuffer(payload, dtype=torch.uint8).to(torch.int64)
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{path} is corrupt: label {int(labels.max())} is outside 0..{num_classes - 1}")
    return labels


def _locate(directory: Path, stems: list[str], spec: DatasetSpec) -> list[Path]:
    """Each stem's file (raw or ``.gz``), downloading the canonical ``.gz`` for missing ones."""
    found = {
        stem: next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None) for stem in stems
    }
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        wanted = [f"{stem}(.gz)" for stem in missing]
        if not spec.download:
            raise missing_files_error(spec.name, directory, wanted, "Downloading is off (dataset.download=false).")
        for stem in missing:
            found[stem] = fetch(f"{stem}.gz", directory, dataset=spec.name, missing=wanted, missing_from=directory)
    return [path for path in found.values() if path is not None]


def _read_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; one of "
            "them is damaged"
        )
    return images, labels


def _dataset(images: torch.Tensor, labels: torch.Tensor, name: str) -> ImageDataset:
    # MNIST is not augmented in the reference set-ups (OpenLTH, Frankle & Carbin).
    return ImageDataset(images, labels, NUM_CLASSES, MEAN, STD, augmentation=None, name=name)


def load_mnist(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """60,000 training and 10,000 test digits from ``<root>/mnist/``."""
    directory = root / "mnist"
    paths = _locate(
        directory,
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
        spec,
    )
    train = _dataset(*_read_pair(paths[0], paths[1]), name="mnist/train")
    test = _dataset(*_read_pair(paths[2], paths[3]), name="mnist/test")
    return train, test


def load_mnist10k(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """MNIST's 10,000 test digits from ``<root>/mnist-10k/``, split 80/20 (8,000/2,000) by ``split_seed``."""
    directory = root / "mnist-10k"
    images_path, labels_path = _locate(directory, ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], spec)
    images, labels = _read_pair(images_path, labels_path)
    train_idx, test_idx = seeded_split(len(labels), round(0.8 * len(labels)), "mnist10k", spec.split_seed)
    # index_select: a third of the time of images[train_idx] for uint8 images
    train = _dataset(images.index_select(0, train_idx), labels.index_select(0, train_idx), "mnist10k/train")
    return train, _dataset(images.index_select(0, test_idx), labels.index_select(0, test_idx), "mnist10k/test")
