"""Tiny-ImageNet (200 classes, 64×64 RGB) from the folder layout of ``tiny-imagenet-200.zip``.

    tiny-imagenet-200/wnids.txt                      one WordNet id per line (the 200 classes)
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 training images per class
    tiny-imagenet-200/val/images/*.JPEG              10,000 validation images
    tiny-imagenet-200/val/val_annotations.txt        "<file>\\t<wnid>\\t<bbox...>" per line

The labelled validation set serves as the test set (the official test set has no labels). Class
indices follow the sorted WordNet ids.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prunelab.data.dataset import Augmentation, ImageDataset
from prunelab.data.download import ensure_archive_files
from prunelab.data.errors import DataError
from prunelab.data.readers.images import image_files, load_or_decode
from prunelab.specs.dataset import DatasetSpec

__all__ = ["load_tinyimagenet", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUBDIR = "tiny-imagenet-200"
ARCHIVE = "tiny-imagenet-200.zip"
_NEEDED = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")


def _read_wnids(path: Path) -> list[str]:
    wnids = sorted({line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()})
    if not wnids:
        raise DataError(f"{path} lists no classes; expected one WordNet id (e.g. n01443537) per line")
    return wnids


def _train_listing(directory: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = directory / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(
                f"{folder} is missing: {directory / 'wnids.txt'} lists class {wnid}, whose training images belong there"
            )
        files = image_files(folder)
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _val_listing(directory: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    annotations = directory / "val" / "val_annotations.txt"
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    for number, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(
                f"{annotations}, line {number}: expected '<file>\\t<wnid>\\t...' with a wnid from wnids.txt, "
                f"got {line!r}"
            )
        path = directory / "val" / "images" / fields[0]
        if not path.is_file():
            raise DataError(f"{annotations}, line {number} names {fields[0]}, but {path} does not exist")
        paths.append(path)
        labels.append(index[fields[1]])
    return paths, labels


def load_tinyimagenet(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """100,000 training and 10,000 validation images from ``<root>/tiny-imagenet-200/``, decoded at
    ``spec.image_size`` (default 64) with ``spec.num_workers`` processes and cached."""
    directory = root / SUBDIR
    ensure_archive_files(spec.name, root, directory, _NEEDED, ARCHIVE, download=spec.download)
    size = spec.image_size or 64
    wnids = _read_wnids(directory / "wnids.txt")
    augmentation = Augmentation(pad=size // 8, flip=True)
    splits = []
    for split, (paths, labels) in (
        ("train", _train_listing(directory, wnids)),
        ("val", _val_listing(directory, wnids)),
    ):
        if not paths:
            raise DataError(f"{directory / split} holds no images (.JPEG/.jpg/.png)")
        images = load_or_decode(paths, base=directory, split=split, size=size, num_workers=spec.num_workers)
        splits.append(
            ImageDataset(
                images,
                torch.tensor(labels, dtype=torch.int64),
                len(wnids),
                IMAGENET_MEAN,
                IMAGENET_STD,
                augmentation=augmentation if split == "train" else None,
                name=f"tinyimagenet/{split}",
            )
        )
    return splits[0], splits[1]
