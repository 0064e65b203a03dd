"""Decoding folders of JPEG/PNG files into one uint8 tensor, in worker processes, with a disk cache.

Used by the Tiny-ImageNet and ImageNet readers. Decoding is CPU-bound Python/Pillow work, so it runs
in ``num_workers`` processes (0 = in this process); every image is resized so its shorter side is
``size`` and centre-cropped to ``size × size``. The decoded tensor is cached as safetensors beside
the images, keyed by the file list (names, sizes, modification times) and ``size``, so the second
load of an unchanged folder reads one file instead of decoding every image again.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from prunelab.data.errors import DataError
from prunelab.store.atomic import atomic_save_tensors, load_tensors

__all__ = ["IMAGE_SUFFIXES", "image_files", "decode_image", "decode_images", "load_or_decode"]

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
_CHUNK = 64


def image_files(directory: Path) -> list[Path]:
    """The image files directly inside ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """One image as uint8 ``[size, size, 3]`` RGB: shorter side resized to ``size``, centre crop."""
    from PIL import Image, UnidentifiedImageError  # here: only image-folder data sets need Pillow

    try:
        with Image.open(path) as opened:
            # For JPEGs, let the decoder downscale by a power of two while staying >= size on both
            # sides: much faster than decoding at full resolution and resizing.
            opened.draft("RGB", (size, size))
            image = opened.convert("RGB")
            width, height = image.size
            if (width, height) != (size, size):
                scale = size / min(width, height)
                new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
                image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
                left, top = (new_w - size) // 2, (new_h - size) // 2
                image = image.crop((left, top, left + size, top + size))
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:  # Pillow raises SyntaxError for some broken headers
        raise DataError(f"{path} is not a readable image ({error}); delete or replace it") from error


def _decode_chunk(paths: Sequence[str], size: int) -> np.ndarray:
    return np.stack([decode_image(path, size) for path in paths])


def decode_images(paths: Sequence[Path], size: int, num_workers: int) -> torch.Tensor:
    """All ``paths`` decoded into uint8 ``[N, 3, size, size]``, in order."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    chunks = [[str(p) for p in paths[i : i + _CHUNK]] for i in range(0, len(paths), _CHUNK)]
    if num_workers > 0 and len(chunks) > 1:
        # "spawn": forking a process that holds PyTorch's thread pools can deadlock the children.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(num_workers, len(chunks)), mp_context=context) as pool:
            decoded = pool.map(_decode_chunk, chunks, repeat(size))
            for start, block in zip(range(0, len(paths), _CHUNK), decoded):
                out[start : start + len(block)] = torch.from_numpy(block).permute(0, 3, 1, 2)
    else:
        for start, chunk in zip(range(0, len(paths), _CHUNK), chunks):
            out[start : start + len(chunk)] = torch.from_numpy(_decode_chunk(chunk, size)).permute(0, 3, 1, 2)
    return out


def _fingerprint(paths: Sequence[Path], base: Path, size: int) -> str:
    digest = hashlib.sha256(f"size={size}\n".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(base).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_or_decode(paths: Sequence[Path], *, base: Path, split: str, size: int, num_workers: int) -> torch.Tensor:
    """:func:`decode_images`, through a cache at ``<base>/.prunelab-cache/<split>-<size>px-<fingerprint>.safetensors``.

    A damaged cache file is ignored (and rewritten); a read-only data root only costs the cache.
    """
    cache = base / ".prunelab-cache" / f"{split}-{size}px-{_fingerprint(paths, base, size)}.safetensors"
    if cache.is_file():
        try:
            images = load_tensors(cache)["images"]
            if images.dtype == torch.uint8 and tuple(images.shape) == (len(paths), 3, size, size):
                return images
        except (ValueError, KeyError):
            pass
        warnings.warn(f"ignoring unusable image cache {cache}; decoding the images again", stacklevel=2)
    images = decode_images(paths, size, num_workers)
    try:
        atomic_save_tensors(cache, {"images": images})
    except OSError as error:
        warnings.warn(
            f"could not write the image cache {cache} ({error}); the next load will decode again", stacklevel=2
        )
    return images
