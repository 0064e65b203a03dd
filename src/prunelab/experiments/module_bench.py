"""A :class:`~prunelab.experiments.workbench.Bench` over a user's own ``nn.Module`` and data, so the
lottery and pruning procedures run on models that are not in the registry."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from prunelab.data import BatchLoader, DataSplits, ImageDataset, load_dataset
from prunelab.masks import Mask
from prunelab.models import initialize, prunable_parameters
from prunelab.specs import DatasetSpec, SpecError, TrainingSpec
from prunelab.steps import to_iterations
from prunelab.store import Run
from prunelab.training import TrainResult, UpdateStep, resolve_device, train

__all__ = ["ModuleBench", "TensorLoader", "DataLoaderAdapter", "loaders_from", "fingerprint"]


class TensorLoader:
    """Batches of in-memory tensors with a seeded order per epoch (the loader protocol)."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, order_seed: int, device: torch.device
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.batch_size, self.shuffle, self.order_seed, self.device = (
            x,
            y,
            batch_size,
            shuffle,
            order_seed,
            device,
        )
        self.iterations_per_epoch = math.ceil(len(x) / batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(self.order_seed * 1_000_003 + epoch))
            if self.shuffle
            else torch.arange(n)
        )
        for b in range(start_batch, self.iterations_per_epoch):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[idx].to(self.device), self.y[idx].to(self.device)


class DataLoaderAdapter:
    """A user's iterable of ``(x, y)`` batches (e.g. a torch DataLoader). Its order is the user's:
    resuming mid-epoch replays the epoch from its start and skips batches, which is exact only when
    the DataLoader's order is seeded per epoch."""

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device = loader, device
        self.iterations_per_epoch = len(loader)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b, (x, y) in enumerate(self.loader):
            if b >= start_batch:
                yield x.to(self.device), y.to(self.device)


def loaders_from(
    data: Any, batch_size: int, eval_batch_size: int, device: torch.device, order_seed: int
) -> tuple[Any, Any, bool]:
    """Train and test loaders from the forms users pass; the flag says whether the data order can be
    reseeded (needed by the ``retrain`` control)."""
    if isinstance(data, (str, DatasetSpec)):
        data = load_dataset(DatasetSpec(name=data) if isinstance(data, str) else data)
    if isinstance(data, DataSplits):
        data = (data.train, data.test)
    if not isinstance(data, Sequence) or len(data) != 2:
        raise TypeError(
            "data must be a dataset name, DataSplits, (train, test) ImageDatasets, "
            "((x_train, y_train), (x_test, y_test)) tensors, or (train_loader, test_loader)"
        )
    train_part, test_part = data
    if isinstance(train_part, ImageDataset):
        return (
            BatchLoader(
                train_part, batch_size, shuffle=True, order_seed=order_seed, augment_seed=order_seed, device=device
            ),
            BatchLoader(test_part, eval_batch_size, shuffle=False, augment=False, device=device),
            True,
        )
    if isinstance(train_part, Sequence) and len(train_part) == 2 and isinstance(train_part[0], torch.Tensor):
        (x_train, y_train), (x_test, y_test) = train_part, test_part
        return (
            TensorLoader(x_train, y_train, batch_size, shuffle=True, order_seed=order_seed, device=device),
            TensorLoader(x_test, y_test, eval_batch_size, shuffle=False, order_seed=0, device=device),
            True,
        )
    return DataLoaderAdapter(train_part, device), DataLoaderAdapter(test_part, device), False


def _hash_tensor(digest: hashlib._Hash, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous()
    digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
    digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def fingerprint(model: nn.Module, data: Any) -> str:
    """A digest of a model's architecture and initial weights and of the data, so that stored
    stages of a user's experiment are never reused for another model or data set. An iterable of
    batches (a DataLoader) has no content to hash: pass ``run_name`` instead."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        _hash_tensor(digest, tensor)
    digest.update(repr(model).encode())

    def visit(part: Any) -> None:
        if isinstance(part, torch.Tensor):
            _hash_tensor(digest, part)
        elif isinstance(part, ImageDataset):
            _hash_tensor(digest, part.images)
            _hash_tensor(digest, part.labels)
        elif isinstance(part, DataSplits):
            visit(part.train)
            visit(part.test)
        elif isinstance(part, DatasetSpec):
            digest.update(repr(sorted(dataclasses.asdict(part).items())).encode())
        elif isinstance(part, str):
            digest.update(part.encode())
        elif isinstance(part, (tuple, list)):
            for item in part:
                visit(item)
        else:
            raise SpecError(
                f"cannot fingerprint data of type {type(part).__name__} for the run store; "
                "pass run_name= to name the run yourself"
            )

    visit(data)
    return digest.hexdigest()[:12]


class ModuleBench:
    """Experiments on ``model`` (its current weights are the initialisation) and ``data``."""

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        train_spec: TrainingSpec,
        *,
        seed: int = 0,
        init: str = "pytorch_default",
        prunable: Sequence[str] | None = None,
    ) -> None:
        self.device = resolve_device(train_spec.device)
        self.template = copy.deepcopy(model).to(self.device)
        self.spec = train_spec
        self.seed = seed
        self.init = init
        self.data = data
        self.prunable_names = list(prunable) if prunable is not None else None
        self._train_loader, self._test_loader, self.reseedable = loaders_from(
            data, train_spec.batch_size, train_spec.eval_batch_size, self.device, seed
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, read from the first training batch (for data-free scorers)."""
        x, _ = next(iter(self._train_loader.epoch(0)))
        return tuple(x.shape[1:])

    def new_model(self, seed: int | None = None) -> nn.Module:
        model = copy.deepcopy(self.template)
        if seed is not None:
            initialize(model, self.init, "ones", generator=torch.Generator().manual_seed(seed))
        return model

    def prunable(self, model: nn.Module) -> dict[str, nn.Parameter]:
        if self.prunable_names is None:
            return prunable_parameters(model)
        params = dict(model.named_parameters())
        missing = [n for n in self.prunable_names if n not in params]
        if missing:
            raise SpecError(f"prunable names not in the model: {missing}; parameters are {list(params)[:8]}...")
        return {n: params[n] for n in self.prunable_names}

    def to_iterations(self, step: str | int) -> int:
        return to_iterations(step, self._train_loader.iterations_per_epoch)

    def train(
        self,
        model: nn.Module,
        run: Run | None,
        *,
        mask: Mask | None = None,
        order_seed: int | None = None,
        start_step: int = 0,
        stop_step: int | None = None,
        save_steps: tuple[int | str, ...] = (),
        update: UpdateStep | None = None,
    ) -> TrainResult:
        loader = self._train_loader
        if order_seed is not None:
            if not self.reseedable:
                raise SpecError(
                    "the retrain control needs a reseedable data order: pass ImageDatasets or tensors, not a DataLoader"
                )
            loader, _, _ = loaders_from(
                self.data, self.spec.batch_size, self.spec.eval_batch_size, self.device, order_seed
            )
        step_args: dict[str, Any] = (
            {"update": update} if update is not None else {"mask": mask, "prunable": self.prunable(model)}
        )
        return train(
            model,
            loader,
            self._test_loader,
            self.spec,
            out_dir=run.path if run is not None else None,
            seed=self.seed,
            device=self.device,
            start_step=start_step,
            stop_step=stop_step,
            save_steps=save_steps,
            **step_args,
        )
