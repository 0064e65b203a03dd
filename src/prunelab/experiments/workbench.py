"""Turn a spec into the objects a stage trains: data splits, loaders, a seeded model, its prunable
weights. Loaded data is cached per process, keyed by the (frozen) dataset spec, so the many stages
of a lottery or a sweep read the files once."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from prunelab import distributed
from prunelab.data import BatchLoader, DataSplits, load_dataset
from prunelab.experiments.packing import parked_worker
from prunelab.masks import Mask
from prunelab.models import build_model, prunable_from_spec
from prunelab.specs import DatasetSpec, ExperimentSpec
from prunelab.steps import to_iterations
from prunelab.store import Run
from prunelab.training import TrainResult, UpdateStep, resolve_device, train
from prunelab.training.packed import Lane

__all__ = ["Bench", "Workbench", "release_data", "train_summary"]


def _shard() -> tuple[int, int] | None:
    """Under ``torchrun``, this rank's part of every batch; otherwise the whole batch."""
    return (distributed.rank(), distributed.world_size()) if distributed.active() else None


@functools.lru_cache(maxsize=4)
def _cached_splits(spec: DatasetSpec) -> DataSplits:
    return load_dataset(spec)


def release_data() -> None:
    """Drop the data sets this process holds (a study's driver, after checking trials that its workers run)."""
    _cached_splits.cache_clear()


class Bench(Protocol):
    """What multi-stage experiments need from a model-and-data set-up."""

    def new_model(self, seed: int | None = None) -> nn.Module: ...

    def prunable(self, model: nn.Module) -> dict[str, nn.Parameter]: ...

    def to_iterations(self, step: str | int) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

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
    ) -> TrainResult: ...


@dataclass
class Workbench:
    """The :class:`Bench` of a spec: registry model, registry data."""

    spec: ExperimentSpec
    splits: DataSplits
    device: torch.device

    @classmethod
    def from_spec(cls, spec: ExperimentSpec) -> Workbench:
        return cls(spec, _cached_splits(spec.dataset), resolve_device(spec.train.device))

    # data -------------------------------------------------------------------------------------
    def train_loader(self, *, order_seed: int | None = None, augment_seed: int | None = None) -> BatchLoader:
        t = self.spec.train
        return BatchLoader(
            self.splits.train,
            t.batch_size,
            shuffle=True,
            order_seed=order_seed
            if order_seed is not None
            else (t.data_order_seed if t.data_order_seed is not None else self.spec.seed),
            augment_seed=augment_seed
            if augment_seed is not None
            else (t.augment_seed if t.augment_seed is not None else self.spec.seed),
            augment=self.spec.dataset.augment,
            device=self.device,
            shard=_shard(),
        )

    def test_loader(self) -> BatchLoader:
        return BatchLoader(
            self.splits.test,
            self.spec.train.eval_batch_size,
            shuffle=False,
            augment=False,
            device=self.device,
            shard=_shard(),
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits.input_shape)

    @property
    def iterations_per_epoch(self) -> int:
        return self.train_loader().iterations_per_epoch

    def to_iterations(self, step: str | int) -> int:
        return to_iterations(step, self.iterations_per_epoch)

    # model ------------------------------------------------------------------------------------
    def new_model(self, seed: int | None = None) -> nn.Module:
        model = build_model(
            self.spec.model,
            input_shape=self.splits.input_shape,
            num_classes=self.splits.num_classes,
            seed=self.spec.seed if seed is None else seed,
        )
        return model.to(self.device)

    def prunable(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return prunable_from_spec(model, self.spec.model)

    # training ---------------------------------------------------------------------------------
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
        log: Any = None,
        update: UpdateStep | None = None,
    ) -> TrainResult:
        """Train ``model`` (masked weight training by default, or ``update``) into ``run``'s directory.
        In a packed unit (:mod:`prunelab.experiments.packing`) masked training waits there to be trained
        together with the unit's other trainings."""
        extra = tuple(self.to_iterations(s) for s in save_steps)  # train() adds spec.train.save_steps itself
        worker = parked_worker()
        if worker is not None and update is None:
            if log is None and run is not None:  # the unit's models log together: say whose line it is
                log = functools.partial(_tagged_log, run.run_id)
            return worker.train(
                Lane(
                    model,
                    self.train_loader(order_seed=order_seed),
                    self.test_loader(),
                    self.spec.train,
                    out_dir=run.path if run is not None else None,
                    mask=mask,
                    prunable=self.prunable(model),
                    seed=self.spec.seed,
                    device=self.device,
                    save_steps=extra,
                    log=log,
                    start_step=start_step,
                    stop_step=stop_step,
                )
            )
        step_args: dict[str, Any] = (
            {"update": update} if update is not None else {"mask": mask, "prunable": self.prunable(model)}
        )
        return train(
            model,
            self.train_loader(order_seed=order_seed),
            self.test_loader(),
            self.spec.train,
            out_dir=run.path if run is not None else None,
            **step_args,
            seed=self.spec.seed,
            device=self.device,
            save_steps=extra,
            log=log,
            start_step=start_step,
            stop_step=stop_step,
        )


def _tagged_log(run_id: str, message: str) -> None:
    print(f"{run_id}: {message}", file=sys.stderr, flush=True)


def train_summary(result: TrainResult, mask: Mask) -> dict[str, Any]:
    """The summary fields every training stage reports."""
    return {
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "density": mask.density,
        "wall_seconds": round(result.wall_seconds, 3),
        "train_loss": result.train_loss,
        "best_accuracy": result.best_accuracy,
        "best_step": result.best_step,
        "final_step": result.final_step,
        "resumed_from": result.resumed_from,
        "prunable_weights": mask.num_total,
        "kept_weights": mask.num_kept,
        "layer_densities": mask.layer_densities(),
    }
