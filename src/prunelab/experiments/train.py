"""The ``train`` stage: train one network (dense, or under a fixed mask) and store the run."""

from __future__ import annotations

from typing import Any

from prunelab.experiments.stage import run_stage
from prunelab.experiments.validation import check_training
from prunelab.experiments.workbench import Workbench, train_summary
from prunelab.masks import Mask
from prunelab.specs import ExperimentSpec, spec_to_yaml
from prunelab.store import Run, RunStore

__all__ = ["train_run_id", "run_train"]


def train_run_id(spec: ExperimentSpec) -> str:
    """Dense training reads neither the pruning nor the supermask section, so they are left out of the
    name: changing a pruning option reuses the same dense run."""
    return f"train-{spec.for_kind('train').run_hash('train')}"


def run_train(spec: ExperimentSpec, *, store: RunStore | None = None) -> dict[str, Any]:
    """Train ``spec`` densely (or return the stored result). Returns the run's summary."""
    store = store or RunStore()
    if not store.run(train_run_id(spec)).finished:
        check_training(spec)  # before the run's directory exists

    def body(run: Run) -> dict[str, Any]:
        bench = Workbench.from_spec(spec)
        model = bench.new_model()
        mask = Mask.ones_like(bench.prunable(model))
        result = bench.train(model, run)
        mask.save(run.mask_path)
        summary = train_summary(result, mask)
        summary["saved_steps"] = run.saved_steps()
        summary["iterations_per_epoch"] = bench.iterations_per_epoch
        summary["seed"] = spec.seed
        return summary

    # The stored spec is the one that names the run: without a pruning section, so branches of this
    # run never inherit pruning options from whichever command happened to create it.
    return run_stage(store, train_run_id(spec), spec_to_yaml(spec, "train"), body)
