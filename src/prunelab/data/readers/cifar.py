"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

The batches are Python pickles, and unpickling can run arbitrary code, so they are read with
:class:`NumpyOnlyUnpickler`, which resolves only the handful of globals needed to rebuild NumPy
arrays and refuses anything else. Each batch is a dict with ``b"data"`` (uint8 ``N×3072``: the
1024 red, then green, then blue values of a 32×32 image, row-major) and ``b"labels"`` (CIFAR-10)
or ``b"fine_labels"`` (CIFAR-100).
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunelab.data.dataset import Augmentation, ImageDataset
from prunelab.data.download import ensure_archive_files
from prunelab.data.errors import DataError
from prunelab.specs.dataset import DatasetSpec

__all__ = ["NumpyOnlyUnpickler", "read_cifar_batch", "load_cifar10", "load_cifar100"]

# Per-channel statistics of each training set's pixels on the [0, 1] scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
AUGMENTATION = Augmentation(pad=4, flip=True)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # Take the reconstructors from NumPy itself so old pickles (numpy.core, protocol 2) and new
    # ones (numpy._core, protocol 5) resolve to the same functions whatever NumPy is installed.
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): codecs.encode}
    for module in ("numpy", "numpy.core", "numpy._core"):
        allowed[(module, "ndarray")] = np.ndarray
        allowed[(module, "dtype")] = np.dtype
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays, dicts, lists, str/bytes and numbers — nothing
    else. Any other global (``os.system``, ``builtins.eval``, ...) raises :class:`DataError`."""

    _ALLOWED = _allowed_globals()

    def __init__(self, file: Any, *, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source} refers to {module}.{name}, which a CIFAR batch never needs; refusing to unpickle it. "
                "The file is not a genuine CIFAR batch: delete it and download it again"
            ) from None


def read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]`` from one pickle batch."""
    try:
        with open(path, "rb") as handle:
            batch = NumpyOnlyUnpickler(handle, source=path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
        raise DataError(
            f"{path} is not a readable CIFAR batch ({type(error).__name__}: {error}); delete it and download it again"
        ) from error
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = list(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"{path} is not a CIFAR batch: expected a dict with keys b'data' and {label_key!r}, found {keys}"
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be a uint8 N×3072 array, found {found}")
    labels = torch.as_tensor(np.asarray(batch[label_key], dtype=np.int64))
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {label_key!r} has shape {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{path}: labels must lie in 0..{num_classes - 1}, found {int(labels.min())}..{int(labels.max())}"
        )
    images = torch.from_numpy(np.require(data, requirements=["C", "W"])).view(len(data), 3, 32, 32)
    return images, labels


def _load(
    spec: DatasetSpec,
    root: Path,
    *,
    subdir: str,
    archive: str,
    train_files: list[str],
    test_file: str,
    label_key: bytes,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> tuple[ImageDataset, ImageDataset]:
    directory = root / subdir
    ensure_archive_files(spec.name, root, directory, [*train_files, test_file], archive, download=spec.download)
    parts = [read_cifar_batch(directory / name, label_key, num_classes) for name in train_files]
    train = ImageDataset(
        torch.cat([images for images, _ in parts]),
        torch.cat([labels for _, labels in parts]),
        num_classes,
        mean,
        std,
        augmentation=AUGMENTATION,
        name=f"{spec.name}/train",
    )
    test_images, test_labels = read_cifar_batch(directory / test_file, label_key, num_classes)
    test = ImageDataset(test_images, test_labels, num_classes, mean, std, augmentation=None, name=f"{spec.name}/test")
    return train, test


def load_cifar10(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """50,000 training and 10,000 test images from ``<root>/cifar-10-batches-py/``."""
    return _load(
        spec,
        root,
        subdir="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        train_files=[f"data_batch_{i}" for i in range(1, 6)],
        test_file="test_batch",
        label_key=b"labels",
        num_classes=10,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def load_cifar100(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """50,000 training and 10,000 test images with the 100 fine labels from ``<root>/cifar-100-python/``."""
    return _load(
        spec,
        root,
        subdir="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        train_files=["train"],
        test_file="test",
        label_key=b"fine_labels",
        num_classes=100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
    )
