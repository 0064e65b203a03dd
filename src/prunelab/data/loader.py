"""A seeded batch loader with augmentation done on whole batches on the training device.

Reproducibility without loader state: epoch ``e``'s example order is drawn from a generator seeded
by ``(order_seed, e)`` and batch ``b``'s crop offsets and flips from one seeded by
``(augment_seed, e, b)``. Resuming at batch ``k`` therefore yields exactly the batches an
uninterrupted run would have seen from ``k`` on, and checkpoints need not store any loader state.

Speed: each batch is one ``index_select`` of the uint8 image tensor, one transfer to the device, one
gather for crop + flip (still uint8) and one fused conversion to normalised float32. Nothing loops
over samples in Python and nothing passes through NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from prunelab.data.dataset import Augmentation, ImageDataset
from prunelab.data.seeding import generator

__all__ = ["BatchLoader", "PackedLoader", "crop_and_flip", "random_crop_and_flip"]

Batch = tuple[torch.Tensor, torch.Tensor]


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop every image of ``images`` ``[B, C, H, W]`` from its zero-padded version and optionally
    mirror it, with one gather.

    ``offsets[i] = (dy, dx)`` in ``[0, 2 * pad]`` is the crop's top-left corner in the image padded
    by ``pad`` zero pixels on every side; ``flips[i]`` mirrors the crop horizontally. Equivalent to
    ``F.pad(x, [pad] * 4)[..., dy:dy + H, dx:dx + W]`` (then ``.flip(-1)``) per image, without
    materialising the padded batch.
    """
    batch, channels, height, width = images.shape
    device = images.device
    offsets = offsets.to(device)
    flips = flips.to(device)
    out_cols = torch.arange(width, device=device).expand(batch, width)
    # Output column j of a flipped crop is crop column W-1-j; fold that into the source index.
    out_cols = torch.where(flips[:, None], width - 1 - out_cols, out_cols)
    rows = offsets[:, 0:1] - pad + torch.arange(height, device=device)  # source rows [B, H], unpadded coordinates
    cols = offsets[:, 1:2] - pad + out_cols  # source columns [B, W]
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    # One gather over flattened H*W (shared by all channels) is several times faster than
    # four-tensor advanced indexing.
    flat = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    gathered = images.reshape(batch, channels, height * width).gather(
        2, flat.view(batch, 1, -1).expand(batch, channels, -1)
    )
    return gathered.view(batch, channels, height, width).masked_fill_(~inside[:, None], 0)


def _crop_and_flip_draws(
    batch: int, augmentation: Augmentation, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The crop offsets ``[batch, 2]`` and flips ``[batch]`` of one batch, drawn from ``rng``."""
    pad = augmentation.pad
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=rng)
    flips = torch.rand(batch, generator=rng) < 0.5
    if not augmentation.flip:
        flips = torch.zeros_like(flips)
    return offsets, flips


def random_crop_and_flip(images: torch.Tensor, augmentation: Augmentation, rng: torch.Generator) -> torch.Tensor:
    """:func:`crop_and_flip` with offsets and flips drawn from ``rng`` (a CPU generator, so the
    draws are identical whatever device the images are on)."""
    offsets, flips = _crop_and_flip_draws(images.shape[0], augmentation, rng)
    return crop_and_flip(images, offsets, flips, augmentation.pad)


class BatchLoader:
    """Batches ``(x, y)`` of a :class:`ImageDataset`: ``x`` float32 normalised, ``y`` int64, both on
    ``device``.

    ``shuffle=False`` keeps the data set's order; ``augment=False`` (or a data set without
    augmentation) yields the images unchanged. ``shard=(rank, world_size)`` yields only that rank's
    part of every batch (``tensor_split`` of the global batch, with the global batch's augmentation),
    for data-parallel training: the shards of a batch together are exactly the unsharded batch. The last batch of
    an epoch may be smaller.
    ``iter(loader)`` runs epoch 0 — convenient for evaluation; training loops call
    :meth:`epoch` with the epoch number so each epoch gets its own order.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        order_seed: int = 0,
        augment_seed: int = 0,
        augment: bool = True,
        device: str | torch.device = "cpu",
        shard: tuple[int, int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        self.shard = shard if shard is not None and shard[1] > 1 else None
        if len(dataset) == 0:
            raise ValueError(f"data set {dataset.name!r} is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.order_seed = order_seed
        self.augment_seed = augment_seed
        self.device = torch.device(device)
        augmentation = dataset.augmentation if augment else None
        self.augmentation = None if augmentation is None or augmentation.is_identity else augmentation
        channels = dataset.input_shape[0]
        mean = torch.tensor(dataset.mean, dtype=torch.float32).view(1, channels, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32).view(1, channels, 1, 1)
        # (pixel / 255 - mean) / std as one multiply-add per element.
        self._scale = (1.0 / (255.0 * std)).to(self.device)
        self._shift = (-mean / std).to(self.device)
        # Page-locked staging lets the host-to-GPU copy run asynchronously.
        self._pin = self.device.type == "cuda" and dataset.images.device.type == "cpu"

    @classmethod
    def evaluation(cls, dataset: ImageDataset, batch_size: int, *, device: str | torch.device = "cpu") -> BatchLoader:
        """A loader for measuring accuracy: data set order, no augmentation."""
        return cls(dataset, batch_size, shuffle=False, augment=False, device=device)

    @property
    def iterations_per_epoch(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def global_batch_size(self, batch: int) -> int:
        """The number of examples in batch ``batch`` of an epoch over all shards (the last may be smaller)."""
        return min(self.batch_size, len(self.dataset) - batch * self.batch_size)

    def __len__(self) -> int:
        return self.iterations_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def order(self, epoch: int) -> torch.Tensor:
        """The example indices of ``epoch`` in the order they are batched (a pure function of
        ``(order_seed, epoch)``)."""
        if self.shuffle:
            return torch.randperm(len(self.dataset), generator=generator("order", self.order_seed, epoch))
        return torch.arange(len(self.dataset))

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch ``start_batch`` on (to resume mid-epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start_batch <= self.iterations_per_epoch:
            raise ValueError(f"start_batch must be in [0, {self.iterations_per_epoch}], got {start_batch}")
        return self._batches(epoch, start_batch)

    def _batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        order = self.order(epoch).to(self.dataset.images.device)
        for batch in range(start_batch, self.iterations_per_epoch):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self._make_batch(index, epoch, batch)

    def _rows(self, size: int) -> torch.Tensor | None:
        """Which rows of a global batch of ``size`` this shard takes (``None``: all of them)."""
        if self.shard is None:
            return None
        rank, world = self.shard
        return torch.arange(size).tensor_split(world)[rank]

    def _make_batch(self, index: torch.Tensor, epoch: int, batch: int) -> Batch:
        rows = self._rows(index.numel())
        if rows is not None:
            index = index[rows.to(index.device)]
        images = self.dataset.images.index_select(0, index)
        labels = self.dataset.labels.index_select(0, index.to(self.dataset.labels.device))
        if self._pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        images = images.to(self.device, non_blocking=self._pin)
        labels = labels.to(self.device, non_blocking=self._pin)
        if self.augmentation is not None:
            # drawn for the whole global batch, so a shard's examples get what one process would give them
            rng = generator("augment", self.augment_seed, epoch, batch)
            offsets, flips = _crop_and_flip_draws(self.global_batch_size(batch), self.augmentation, rng)
            if rows is not None:
                offsets, flips = offsets[rows], flips[rows]
            images = crop_and_flip(images, offsets, flips, self.augmentation.pad)
        x = images.to(torch.float32).mul_(self._scale).add_(self._shift)
        return x, labels


class PackedLoader:
    """The batches of K :class:`BatchLoader` s over one data set, stacked: ``x`` ``[K, B, C, H, W]`` and
    ``y`` ``[K, B]``, lane ``k``'s batch exactly the one ``loaders[k]`` yields (its own order and
    augmentation seeds), made with one ``index_select``, one crop-and-flip gather and one normalisation
    for all lanes — for training K models in lock-step (:mod:`prunelab.training.packed`).

    The loaders must share the data set object, the batch size, the device, shuffling and augmentation,
    and must not be sharded.
    """

    def __init__(self, loaders: Sequence[BatchLoader]) -> None:
        loaders = list(loaders)
        if not loaders:
            raise ValueError("a packed loader needs at least one loader")
        first = loaders[0]
        for loader in loaders:
            if not isinstance(loader, BatchLoader):
                raise TypeError(f"a packed loader stacks BatchLoaders, not {type(loader).__name__}")
            same = (
                loader.dataset is first.dataset
                and loader.batch_size == first.batch_size
                and loader.device == first.device
                and loader.shuffle == first.shuffle
                and loader.augmentation == first.augmentation
                and loader.shard is None
            )
            if not same:
                raise ValueError(
                    "packed loaders must share the data set, batch size, device, shuffling and "
                    "augmentation, and must not be sharded"
                )
        self.loaders = loaders
        self.lanes = len(loaders)
        self.batch_size = first.batch_size
        self.iterations_per_epoch = first.iterations_per_epoch

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """The stacked batches of ``epoch`` from batch ``start_batch`` on."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start_batch <= self.iterations_per_epoch:
            raise ValueError(f"start_batch must be in [0, {self.iterations_per_epoch}], got {start_batch}")
        return self._batches(epoch, start_batch)

    def _batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        first = self.loaders[0]
        dataset, size, lanes = first.dataset, self.batch_size, self.lanes
        orders = torch.stack([loader.order(epoch) for loader in self.loaders]).to(dataset.images.device)
        sample_shape = dataset.images.shape[1:]
        for batch in range(start_batch, self.iterations_per_epoch):
            index = orders[:, batch * size : (batch + 1) * size].reshape(-1)
            rows = index.numel() // lanes
            images = dataset.images.index_select(0, index)
            labels = dataset.labels.index_select(0, index.to(dataset.labels.device))
            if first._pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            images = images.to(first.device, non_blocking=first._pin)
            labels = labels.to(first.device, non_blocking=first._pin)
            if first.augmentation is not None:
                draws = [
                    _crop_and_flip_draws(
                        rows, first.augmentation, generator("augment", loader.augment_seed, epoch, batch)
                    )
                    for loader in self.loaders
                ]
                offsets = torch.cat([offset for offset, _ in draws])
                flips = torch.cat([flip for _, flip in draws])
                images = crop_and_flip(images, offsets, flips, first.augmentation.pad)
            x = images.to(torch.float32).mul_(first._scale).add_(first._shift)
            yield x.view(lanes, rows, *sample_shape), labels.view(lanes, rows)
