"""Training: one loop, pluggable update steps, optimisers, schedules, evaluation, checkpoints.

``train(model, train_loader, test_loader, spec, out_dir=...)`` runs a :class:`TrainingSpec` with the
masked weight-training step (pruned weights kept exactly zero), or with any other
:class:`UpdateStep` (``update=``), and resumes bit-for-bit from the last checkpoint in ``out_dir``.
``train_packed(lanes)`` trains K such runs of one architecture together, in lock-step. See
``docs/training.md``.
"""

from prunelab.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointWriteError,
    load_checkpoint,
    save_checkpoint,
)
from prunelab.training.device import resolve_device
from prunelab.training.evaluate import Evaluation, evaluate
from prunelab.training.loop import CompileUnavailable, TrainingDiverged, TrainingLoop, TrainingPlan, TrainResult
from prunelab.training.masked_step import MaskedStep
from prunelab.training.metrics import MetricsWriter, read_metrics
from prunelab.training.optim import build_optimizer
from prunelab.training.packed import Lane, train_packed
from prunelab.training.packed_step import PackedStep
from prunelab.training.schedule import lr_at_step, make_lr_schedule
from prunelab.training.trainer import train, weights_path
from prunelab.training.update import StepContext, UpdateStep, classification_loss

__all__ = [
    "train",
    "TrainResult",
    "TrainingDiverged",
    "CompileUnavailable",
    "TrainingLoop",
    "TrainingPlan",
    "UpdateStep",
    "StepContext",
    "MaskedStep",
    "PackedStep",
    "Lane",
    "train_packed",
    "classification_loss",
    "evaluate",
    "Evaluation",
    "resolve_device",
    "build_optimizer",
    "lr_at_step",
    "make_lr_schedule",
    "weights_path",
    "Checkpoint",
    "CheckpointError",
    "CheckpointWriteError",
    "load_checkpoint",
    "save_checkpoint",
    "MetricsWriter",
    "read_metrics",
]
