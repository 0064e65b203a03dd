"""prunelab: research on neural-network pruning — lottery tickets, pruning at initialisation, supermasks.

The public API, in the order data flows: specs → data/models → masks/pruning → training → runs.
"""

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
from prunelab.training import (Lane, MaskedStep, PackedStep, TrainingDiverged, TrainingLoop, TrainResult, UpdateStep,
                               evaluate, train, train_packed)

__version__ = "0.1.0"

__all__ = [
    "BatchLoader", "DataSplits", "DatasetSpec", "ExperimentSpec", "ImageDataset", "Lane", "LotteryResult", "Mask",
    "MaskedParameters", "MaskedStep", "ModelSpec", "PackedStep", "PruningSpec", "RunLayout", "RunStore", "SpecError",
    "SupermaskSpec", "SupermaskStep", "TrainResult", "TrainingDiverged", "TrainingLoop", "TrainingSpec", "UpdateStep",
    "UserError", "apply_mask",
    "build_model", "empirical_ntk", "evaluate", "export_run", "get_preset", "initialize", "kernel_distance", "load_dataset", "load_exported",
    "load_spec", "lottery", "model_names", "ntk_eigenvalues", "parse_step", "preset_names", "prunable_parameters", "prune",
    "register_model", "register_strategy", "relative_frobenius_difference", "rerandomize_", "run_lottery", "run_prune", "run_supermask",
    "run_train", "score", "select_runs", "strategy_names", "subnet_mask", "to_iterations", "to_supermask", "train", "train_packed", "write_report",
]
