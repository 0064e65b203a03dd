"""ImageNet (ILSVRC-2012) from class folders, resized to ``spec.image_size`` (default 224).

    imagenet/train/<wnid>/*.JPEG
    imagenet/val/<wnid>/*.JPEG       (the validation images sorted into class folders)

There is no public download: the images must be obtained from image-net.org and placed there.
Classes are the sorted training folder names. All decoded images are held in memory as uint8, which
costs ``N × 3 × size²`` bytes — about 193 GB for the 1.28 M training images at 224 px, 15.7 GB at
64 px — so the full set only fits at small sizes; class-folder subsets work at any size.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prunelab.data.dataset import Augmentation, ImageDataset
from prunelab.data.errors import DataError
from prunelab.data.readers.images import image_files, load_or_decode
from prunelab.data.readers.tinyimagenet import IMAGENET_MEAN, IMAGENET_STD
from prunelab.specs.dataset import DatasetSpec

__all__ = ["load_imagenet", "DEFAULT_SIZE"]

DEFAULT_SIZE = 224
SUBDIR = "imagenet"


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _listing(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    index = {wnid: i for i, wnid in enumerate(classes)}
    unknown = [name for name in _class_dirs(folder) if name not in index]
    if unknown:
        raise DataError(
            f"{folder} has class folders {unknown[:5]} that {folder.parent / 'train'} lacks; both splits need "
            "the same classes"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for wnid in classes:
        if (folder / wnid).is_dir():
            files = image_files(folder / wnid)
            paths += files
            labels += [index[wnid]] * len(files)
    if not paths:
        raise DataError(f"{folder} holds no images: expected {folder}/<wnid>/*.JPEG")
    return paths, labels


def load_imagenet(spec: DatasetSpec, root: Path) -> tuple[ImageDataset, ImageDataset]:
    """The train and val class folders under ``<root>/imagenet/``, decoded with ``spec.num_workers``
    processes and cached as safetensors under ``<root>/imagenet/.prunelab-cache/``."""
    directory = root / SUBDIR
    missing = [split for split in ("train", "val") if not (directory / split).is_dir()]
    if missing:
        raise DataError(
            f"imagenet: {directory} lacks {' and '.join(f'{s}/' for s in missing)}. ImageNet has no public "
            "download: get the "
            f"ILSVRC-2012 images from image-net.org and place them as {directory}/train/<wnid>/*.JPEG and "
            f"{directory}/val/<wnid>/*.JPEG, or point the data root at a directory holding imagenet/ "
            "with --data-root DIR (or PRUNELAB_DATA=DIR)."
        )
    classes = _class_dirs(directory / "train")
    if not classes:
        raise DataError(f"{directory / 'train'} has no class folders: expected {directory}/train/<wnid>/*.JPEG")
    size = spec.image_size or DEFAULT_SIZE
    splits = []
    for split in ("train", "val"):
        paths, labels = _listing(directory / split, classes)
        images = load_or_decode(paths, base=directory, split=split, size=size, num_workers=spec.num_workers)
        splits.append(
            ImageDataset(
                images,
                torch.tensor(labels, dtype=torch.int64),
                len(classes),
                IMAGENET_MEAN,
                IMAGENET_STD,
                # Crop-with-padding + flip, the augmentation this loader can do on the device; the
                # reference ImageNet pipelines use random-resized crops instead.
                augmentation=Augmentation(pad=size // 8, flip=True) if split == "train" else None,
                name=f"imagenet/{split}",
            )
        )
    return splits[0], splits[1]
