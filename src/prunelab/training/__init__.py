"""The trainer: optimisers, learning-rate schedules, evaluation, checkpoints and resume.

``train(model, train_loader, test_loader, spec, out_dir=...)`` runs a :class:`TrainingSpec`,
keeping pruned weights exactly zero when given a mask, and resumes bit-for-bit from the last
checkpoint in ``out_dir``. See ``docs/training.md``.
"""

from prunelab.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from prunelab.training.device import resolve_device
from prunelab.training.evaluate import Evaluation, evaluate
from prunelab.training.metrics import MetricsWriter, read_metrics
from prunelab.training.optim import build_optimizer
from prunelab.training.schedule import lr_at_step, make_lr_schedule
from prunelab.training.trainer import TrainingDiverged, TrainingPlan, TrainResult, train, weights_path

__all__ = [
    "train",
    "TrainResult",
    "TrainingDiverged",
    "TrainingPlan",
    "evaluate",
    "Evaluation",
    "resolve_device",
    "build_optimizer",
    "lr_at_step",
    "make_lr_schedule",
    "weights_path",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "MetricsWriter",
    "read_metrics",
]
