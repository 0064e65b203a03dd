"""prunelab: research on neural-network pruning — lottery tickets, pruning at initialisation, supermasks.

The public API, in the order data flows: specs → data/models → masks/pruning → training → runs.

Names are imported on first use (module ``__getattr__``), so ``import prunelab`` — and the command
line, which imports a submodule — does not import torch until something needs it;
``from prunelab import X`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunelab.analysis import empirical_ntk, kernel_distance, ntk_eigenvalues, relative_frobenius_difference
    from prunelab.api import lottery
    from prunelab.data import BatchLoader, DataSplits, ImageDataset, load_dataset
    from prunelab.errors import UserError
    from prunelab.experiments.export import export_run, load_exported
    from prunelab.experiments.lottery import LotteryResult, run_lottery
    from prunelab.experiments.prune_init import run_prune
    from prunelab.experiments.report import select_runs, write_report
    from prunelab.experiments.supermask import run_supermask
    from prunelab.experiments.train import run_train
    from prunelab.masks import Mask, MaskedParameters, apply_mask
    from prunelab.models import build_model, initialize, model_names, prunable_parameters, register_model
    from prunelab.pruning import prune, register_strategy, score, strategy_names
    from prunelab.specs import (
        DatasetSpec,
        ExperimentSpec,
        ModelSpec,
        PruningSpec,
        SpecError,
        SupermaskSpec,
        TrainingSpec,
        get_preset,
        load_spec,
        preset_names,
    )
    from prunelab.steps import parse_step, to_iterations
    from prunelab.store import RunLayout, RunStore
    from prunelab.supermask import SupermaskStep, rerandomize_, subnet_mask, to_supermask
    from prunelab.training import (
        Lane,
        MaskedStep,
        PackedStep,
        TrainingDiverged,
        TrainingLoop,
        TrainResult,
        UpdateStep,
        train,
        train_packed,
    )
    from prunelab.training.evaluate import evaluate  # by its module: mypy takes the package's name for the submodule

__version__ = "0.1.0"

#: where each public name lives (the module it is imported from on first use)
_EXPORTS = {
    "prunelab.analysis": ("empirical_ntk", "kernel_distance", "ntk_eigenvalues", "relative_frobenius_difference"),
    "prunelab.api": ("lottery",),
    "prunelab.data": ("BatchLoader", "DataSplits", "ImageDataset", "load_dataset"),
    "prunelab.errors": ("UserError",),
    "prunelab.experiments.export": ("export_run", "load_exported"),
    "prunelab.experiments.lottery": ("LotteryResult", "run_lottery"),
    "prunelab.experiments.prune_init": ("run_prune",),
    "prunelab.experiments.report": ("select_runs", "write_report"),
    "prunelab.experiments.supermask": ("run_supermask",),
    "prunelab.experiments.train": ("run_train",),
    "prunelab.masks": ("Mask", "MaskedParameters", "apply_mask"),
    "prunelab.models": ("build_model", "initialize", "model_names", "prunable_parameters", "register_model"),
    "prunelab.pruning": ("prune", "register_strategy", "score", "strategy_names"),
    "prunelab.specs": (
        "DatasetSpec",
        "ExperimentSpec",
        "ModelSpec",
        "PruningSpec",
        "SpecError",
        "SupermaskSpec",
        "TrainingSpec",
        "get_preset",
        "load_spec",
        "preset_names",
    ),
    "prunelab.steps": ("parse_step", "to_iterations"),
    "prunelab.store": ("RunLayout", "RunStore"),
    "prunelab.supermask": ("SupermaskStep", "rerandomize_", "subnet_mask", "to_supermask"),
    "prunelab.training": (
        "Lane",
        "MaskedStep",
        "PackedStep",
        "TrainingDiverged",
        "TrainingLoop",
        "TrainResult",
        "UpdateStep",
        "evaluate",
        "train",
        "train_packed",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "BatchLoader",
    "DataSplits",
    "DatasetSpec",
    "ExperimentSpec",
    "ImageDataset",
    "Lane",
    "LotteryResult",
    "Mask",
    "MaskedParameters",
    "MaskedStep",
    "ModelSpec",
    "PackedStep",
    "PruningSpec",
    "RunLayout",
    "RunStore",
    "SpecError",
    "SupermaskSpec",
    "SupermaskStep",
    "TrainResult",
    "TrainingDiverged",
    "TrainingLoop",
    "TrainingSpec",
    "UpdateStep",
    "UserError",
    "apply_mask",
    "build_model",
    "empirical_ntk",
    "evaluate",
    "export_run",
    "get_preset",
    "initialize",
    "kernel_distance",
    "load_dataset",
    "load_exported",
    "load_spec",
    "lottery",
    "model_names",
    "ntk_eigenvalues",
    "parse_step",
    "preset_names",
    "prunable_parameters",
    "prune",
    "register_model",
    "register_strategy",
    "relative_frobenius_difference",
    "rerandomize_",
    "run_lottery",
    "run_prune",
    "run_supermask",
    "run_train",
    "score",
    "select_runs",
    "strategy_names",
    "subnet_mask",
    "to_iterations",
    "to_supermask",
    "train",
    "train_packed",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'prunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
