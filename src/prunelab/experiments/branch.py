"""Branches of a trained run ("Pruning Neural Networks at Initialization: Why Are We Missing the
Mark?"): score at the weights of one saved step, start from the weights of another, optionally
shuffle the mask (per layer or globally) or re-initialise, then train from a point of the schedule.

Steps, as in the fork's ``oneshot`` branch: ``prune_step`` chooses the weights that are scored,
``state_step`` the weights training starts from, and ``start_step`` the step at which the
learning-rate schedule and the data order begin (training runs from there to the end of the
parent's schedule). ``start_step=None`` means "the state step" (rewinding: weights and schedule
from step k); the fork's default is step 0 whatever the state step, which is ``start_step="0it"``
here ("weights from step k, full schedule")."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from prunelab.experiments.lottery import derived_seed
from prunelab.experiments.reading import check_registry_run, run_mask, run_spec, run_weights
from prunelab.experiments.scoring import prune_to_density, split_strategy_name
from prunelab.experiments.stage import run_stage
from prunelab.experiments.validation import check_branch
from prunelab.experiments.workbench import Workbench, train_summary
from prunelab.masks import apply_mask
from prunelab.pruning.baselines import randomize_global, randomize_layerwise
from prunelab.specs import SpecError, spec_to_yaml
from prunelab.specs.model import INITIALISERS
from prunelab.steps import parse_step
from prunelab.store import Run, RunStore

__all__ = ["OneShotBranch", "branch_run_id", "run_oneshot_branch", "BRANCHES"]

BRANCHES = ("oneshot",)


@dataclass(frozen=True)
class OneShotBranch:
    strategy: str = "magnitude"
    prune_fraction: float = 0.0
    prune_step: str = "0it"
    state_step: str = "0it"
    start_step: str | None = None
    prune_iterations: int | None = None
    prune_highest: bool | None = None
    randomize_layerwise: bool = False
    randomize_global: bool = False
    reinitialize: bool = False
    model_init: str | None = None
    scope: str = "global"
    examples_per_class: int | None = None
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        base, count = split_strategy_name(self.strategy)
        if count is not None:  # 'snip32' is spelled out, so both spellings name the same branch
            if self.examples_per_class not in (None, count):
                raise SpecError(
                    f"--strategy {self.strategy} says {count} examples per class but "
                    f"--examples-per-class says {self.examples_per_class}"
                )
            object.__setattr__(self, "strategy", base)
            object.__setattr__(self, "examples_per_class", count)
        if not 0.0 <= self.prune_fraction < 1.0:
            raise SpecError(
                f"--prune-fraction is the fraction of weights removed, in [0, 1); got {self.prune_fraction}"
            )
        parse_step(self.prune_step)
        parse_step(self.state_step)
        if self.start_step is not None:
            parse_step(self.start_step)
        if self.randomize_layerwise and self.randomize_global:
            raise SpecError("--randomize-layerwise and --randomize-global are two different shuffles; give one")
        if self.model_init is not None:
            if self.model_init not in INITIALISERS:
                raise SpecError(f"unknown --model-init {self.model_init!r}; valid: {', '.join(INITIALISERS)}")
            if not self.reinitialize:
                raise SpecError("--model-init chooses the distribution of --reinitialize; add --reinitialize")

    def key(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}  # as JSON will read back


def complement(fraction: float) -> float:
    """``1 - fraction`` on decimal values: 1 - 0.9 is 0.1 (whose count rounds as 0.1 · n does),
    not the binary 0.09999999999999998."""
    return float(1 - Fraction(repr(float(fraction))))


def branch_run_id(parent: Run | str, branch: OneShotBranch) -> str:
    """The branch's name from its parent's run id (a :class:`Run` or the id itself) and its arguments."""
    parent_id = parent if isinstance(parent, str) else parent.run_id
    text = json.dumps({"parent": parent_id, "branch": "oneshot", "args": branch.key()}, sort_keys=True)
    return f"branch-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def run_oneshot_branch(parent_ref: str, branch: OneShotBranch, *, store: RunStore | None = None) -> dict[str, Any]:
    store = store or RunStore()
    parent = store.find(parent_ref)
    if not parent.finished:
        raise SpecError(f"run {parent.run_id} has not finished; finish it (re-run its command) before branching")
    check_registry_run(parent)
    spec = run_spec(parent)
    prune_spec = dataclasses.replace(
        spec.prune,
        strategy=branch.strategy,
        iterations=branch.prune_iterations,
        prune_highest=branch.prune_highest,
        scope=branch.scope,
        ignore=branch.ignore,
        examples_per_class=branch.examples_per_class or spec.prune.examples_per_class,
    )
    if branch.model_init:
        spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, init=branch.model_init))
    spec = dataclasses.replace(spec, prune=prune_spec)
    if not store.run(branch_run_id(parent, branch)).finished:
        check_branch(spec, branch, parent.run_id, store)  # before the run's directory exists

    def body(run: Run) -> dict[str, Any]:
        bench = Workbench.from_spec(spec)
        prune_step = bench.to_iterations(branch.prune_step)
        state_step = bench.to_iterations(branch.state_step)
        start_step = state_step if branch.start_step is None else bench.to_iterations(branch.start_step)
        scoring_model = bench.new_model()
        scoring_model.load_state_dict(run_weights(parent, prune_step, flag="--prune-step"))
        # a sparse parent (a pruned run, a lottery level, a supermask) is pruned further: never revived
        parent_mask = run_mask(parent) if parent.mask_path.is_file() else None
        mask = prune_to_density(
            scoring_model,
            bench.prunable(scoring_model),
            prune_spec,
            complement(branch.prune_fraction),
            train_set=bench.splits.train,
            device=bench.device,
            seed=derived_seed(spec.seed, "branch-data"),
            mask=parent_mask,
        )
        if branch.randomize_layerwise:
            mask = randomize_layerwise(mask, torch.Generator().manual_seed(derived_seed(spec.seed, "branch-shuffle")))
        if branch.randomize_global:
            mask = randomize_global(
                mask,
                torch.Generator().manual_seed(derived_seed(spec.seed, "branch-shuffle-global")),
                ignore=branch.ignore,
            )
        if branch.reinitialize:
            model = bench.new_model(derived_seed(spec.seed, "branch-reinit") % (2**31))
        else:
            model = bench.new_model()
            model.load_state_dict(run_weights(parent, state_step, flag="--state-step"))
        apply_mask(model, mask)
        result = bench.train(model, run, mask=mask, start_step=start_step)
        mask.save(run.mask_path)
        summary = train_summary(result, mask)
        summary.update(
            {
                "parent": parent.run_id,
                "branch": "oneshot",
                "args": branch.key(),
                "strategy": branch.strategy,
                "collapsed_layers": mask.collapsed_layers(),
            }
        )
        return summary

    return run_stage(
        store,
        branch_run_id(parent, branch),
        spec_to_yaml(spec, "branch"),
        body,
        stage_info={"parent": parent.run_id, "branch": "oneshot", "args": branch.key()},
    )
