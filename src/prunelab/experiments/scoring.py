"""Prune a model with any registered strategy, feeding data-dependent strategies the
class-balanced, un-augmented examples the papers use."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from prunelab.data import BatchLoader, ImageDataset
from prunelab.masks import Mask
from prunelab.pruning.api import prune
from prunelab.pruning.base import get_strategy
from prunelab.specs import PruningSpec

__all__ = ["split_strategy_name", "pruning_data", "prune_to_density"]

_SUFFIX = re.compile(r"^(?P<name>[a-z_]+?)(?P<count>\d+)$")


def split_strategy_name(name: str) -> tuple[str, int | None]:
    """``'snip32'`` → ``('snip', 32)``: the "Missing the Mark" spelling of examples per class."""
    match = _SUFFIX.match(name)
    if match and match.group("name") in ("snip", "grasp", "grasp_abs", "graspabs", "iterative_snip"):
        base = "grasp_abs" if match.group("name") == "graspabs" else match.group("name")
        return base, int(match.group("count"))
    return name, None


def pruning_data(
    dataset: ImageDataset, per_class: int, seed: int, device: torch.device, batch_size: int = 256
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    indices = dataset.class_balanced_indices(per_class, seed)
    loader = BatchLoader(dataset.subset(indices), batch_size, shuffle=False, augment=False, device=device)
    return lambda: iter(loader.epoch(0))


def prune_to_density(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    prune_spec: PruningSpec,
    density: float,
    *,
    train_set: ImageDataset,
    device: torch.device,
    seed: int,
    mask: Mask | None = None,
) -> Mask:
    """The mask of ``prune_spec.strategy`` at ``density`` (scored on ``model``'s current weights).

    Data-dependent strategies get ``examples_per_class`` class-balanced examples in batches of 256.
    NTK-SAP gets the same batches, whose shapes it draws its noise from (``examples_per_class`` ×
    classes examples per round, as the reference's ``--prune-dataset-ratio``/``--prune-batch-size``);
    SynFlow only the input shape."""
    name, count = split_strategy_name(prune_spec.strategy)
    strategy = get_strategy(name)
    data = None
    if strategy.needs_data or strategy.name == "ntksap":
        data = pruning_data(train_set, count or prune_spec.examples_per_class, seed, device)
    options: dict[str, Any] = dict(prune_spec.options)
    if strategy.name == "synflow" and "input_shape" not in options:
        options["input_shape"] = tuple(train_set.input_shape)
    return prune(
        model,
        strategy,
        density,
        data,
        iterations=prune_spec.iterations,
        schedule=prune_spec.schedule,
        scope=prune_spec.scope,
        prune_highest=prune_spec.prune_highest,
        ignore=prune_spec.ignore,
        mask=mask,
        params=params,
        device=device,
        seed=seed,
        **options,
    )
