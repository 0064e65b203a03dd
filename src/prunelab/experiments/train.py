"""The ``train`` stage: train one network (dense, or under a fixed mask) and store the run.

A train run is named by what changes its result (:func:`train_run_id`); which steps' weights it keeps is
not part of that (``train.save_steps`` is not semantic). A run asked for weights of a step it did not save
provides them: while it trains, they are saved on the way; once it has finished, they are recomputed by
training again from the start up to the last such step in a scratch directory inside the run (on a CPU
bit-identical to what the run would have saved), then moved into its ``weights/``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from typing import Any

from prunelab import distributed
from prunelab.experiments.stage import run_stage
from prunelab.experiments.validation import check_training
from prunelab.experiments.workbench import Workbench, train_summary
from prunelab.masks import Mask
from prunelab.specs import ExperimentSpec, spec_to_yaml
from prunelab.steps import to_iterations
from prunelab.store import Run, RunLayout, RunStore
from prunelab.training import CheckpointError

__all__ = ["train_run_id", "run_train", "missing_steps"]

log = logging.getLogger("prunelab")


def train_run_id(spec: ExperimentSpec) -> str:
    """The one identity of a dense training run. Dense training reads neither the pruning nor the
    supermask section, so they are left out of the name: changing a pruning option reuses the same
    dense run (a lottery's level 0 is this run)."""
    return f"train-{spec.for_kind('train').run_hash('train')}"


def run_train(
    spec: ExperimentSpec, *, store: RunStore | None = None, save_steps: Iterable[int | str] = ()
) -> dict[str, Any]:
    """Train ``spec`` densely (or return the stored result). Returns the run's summary.

    ``save_steps`` (iterations or step strings) add to ``spec.train.save_steps``; every one of them is
    saved in the run when this returns, recomputed if the run had finished without it."""
    store = store or RunStore()
    extra = tuple(save_steps)
    if extra or spec.train.save_steps or not store.run(train_run_id(spec)).finished:
        check_training(spec, extra)  # before the run's directory exists, or steps are recomputed

    def body(run: Run) -> dict[str, Any]:
        bench = Workbench.from_spec(spec)
        model = bench.new_model()
        mask = Mask.ones_like(bench.prunable(model))
        result = bench.train(model, run, save_steps=extra)
        mask.save(run.mask_path)
        summary = train_summary(result, mask)
        summary["saved_steps"] = run.saved_steps()
        summary["iterations_per_epoch"] = bench.iterations_per_epoch
        summary["seed"] = spec.seed
        return summary

    # The stored spec is the one that names the run: without a pruning section, so branches of this
    # run never inherit pruning options from whichever command happened to create it.
    run_id = train_run_id(spec)
    summary = run_stage(store, run_id, spec_to_yaml(spec, "train"), body)
    missing = missing_steps(summary, spec, extra)
    if missing:
        summary = _add_saved_steps(store, spec, store.run(run_id), missing)
    return summary


def missing_steps(summary: dict[str, Any], spec: ExperimentSpec, save_steps: Iterable[int | str] = ()) -> list[int]:
    """The steps of ``spec.train.save_steps`` and ``save_steps`` whose weights the finished train run with
    ``summary`` has not saved (in iterations)."""
    wanted = {*spec.train.save_steps, *save_steps}
    if not wanted:
        return []
    ipe = summary.get("iterations_per_epoch") or Workbench.from_spec(spec).iterations_per_epoch
    return sorted({to_iterations(s, ipe) for s in wanted} - set(summary.get("saved_steps") or ()))


def _add_saved_steps(store: RunStore, spec: ExperimentSpec, run: Run, steps: list[int]) -> dict[str, Any]:
    """Give the finished ``run`` the weights of ``steps``: train again from the start, in the run's
    scratch directory, up to the last missing step (resumable like any training), move the weights in,
    then record them in the summary. A reader meanwhile sees the finished run as it was."""
    with store.lock(run.run_id, on_wait=log.warning):
        summary = run.verified_summary()
        missing = sorted(set(steps) - set(summary.get("saved_steps") or ()))
        if not missing:
            return summary
        log.info(
            "run %s did not save the weights of step(s) %s: recomputing them",
            run.run_id,
            ", ".join(f"{s}it" for s in missing),
        )
        scratch = RunLayout(run.more_steps_dir)
        todo = [s for s in missing if not run.weights_path(s).is_file()]  # (a killed attempt may have moved some)
        if todo:
            bench = Workbench.from_spec(spec)

            def recompute() -> None:
                bench.train(
                    bench.new_model(), Run(scratch.path, run.run_id), save_steps=tuple(todo), stop_step=todo[-1]
                )

            try:
                recompute()
                usable = all(scratch.weights_path(s).is_file() for s in todo)
            except CheckpointError:
                usable = False
            if not usable:  # an earlier attempt's scratch checkpoint was past some of the steps wanted now
                shutil.rmtree(scratch.path, ignore_errors=True)
                recompute()
        if distributed.is_writer():
            run.weights_dir.mkdir(parents=True, exist_ok=True)
            for step in todo:
                os.replace(scratch.weights_path(step), run.weights_path(step))
            summary = {**summary, "saved_steps": sorted({*(summary.get("saved_steps") or ()), *missing})}
            run.write_summary(summary)
            shutil.rmtree(scratch.path, ignore_errors=True)
    distributed.barrier()
    return run.verified_summary()
