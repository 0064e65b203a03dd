"""Checks of a run's input against its model and data, made before anything is trained or stored.

:meth:`Trial.check <prunelab.experiments.trial.Trial.check>` catches what needs neither data nor a model
(an unknown strategy or control); the checks here need the two facts a spec only reveals once its model
and data are known: the names of the prunable weights (every ``ignore`` and ``rates`` pattern must match
one) and the iterations per epoch (every step — training length, save steps, rewind point, a branch's
steps — must fall within training). The model is built on PyTorch's ``meta`` device (shapes, no
memory, no initialisation cost); the data set is read once per process and cached for the training
that follows (:mod:`prunelab.experiments.workbench`). A lottery's level step is run once, dry, on
random weights of the right shapes, so every argument it reads is checked by the code that will read it.

So a typo costs a second, not the dense level of a lottery: :meth:`Study.run
<prunelab.experiments.study.Study.run>` validates every trial still to run before the first one
starts, and the kinds' run functions validate their own input before creating their run directory.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import torch

from prunelab.errors import UserError
from prunelab.experiments.choices import MULTISHOT_ROUND_STEPS
from prunelab.experiments.scoring import split_strategy_name
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.models import build_model, prunable_from_spec
from prunelab.pruning.api import LEVEL_STRATEGIES, prune_level, required_scope
from prunelab.pruning.base import get_strategy
from prunelab.pruning.selection import match_patterns, prune_fraction
from prunelab.specs import (
    DatasetSpec,
    ExperimentSpec,
    ModelSpec,
    PruningSpec,
    SpecError,
    TrainingSpec,
    from_dict,
    to_dict,
)
from prunelab.steps import StepError, to_iterations
from prunelab.store import RunStore
from prunelab.training.loop import TrainingPlan

__all__ = ["check_training", "check_lottery", "check_prune", "check_branch", "prunable_shapes"]


def _prune_key(spec: ExperimentSpec) -> str:
    """The pruning section as a hashable key (it holds mappings, so the section itself is not hashable)."""
    return json.dumps(to_dict(spec.prune), sort_keys=True, default=str)


def _with_prune(dataset: DatasetSpec, model: ModelSpec, train: TrainingSpec, prune: str) -> ExperimentSpec:
    return ExperimentSpec(
        dataset=dataset, model=model, train=train, prune=from_dict(PruningSpec, json.loads(prune), where="prune")
    )


# the facts ------------------------------------------------------------------------------------------
def prunable_shapes(spec: ExperimentSpec) -> dict[str, tuple[int, ...]]:
    """The prunable weights of the spec's model, name → shape, from a model built on the meta device
    (the model name, its options and ``model.prunable_exclude`` are checked on the way)."""
    return dict(_prunable_shapes(spec.dataset, spec.model))


@functools.lru_cache(maxsize=32)
def _prunable_shapes(dataset: DatasetSpec, model: ModelSpec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    splits = Workbench.from_spec(ExperimentSpec(dataset=dataset, model=model)).splits
    try:
        with torch.device("meta"):
            network = build_model(model, input_shape=splits.input_shape, num_classes=splits.num_classes, seed=0)
    except UserError:
        raise
    except Exception:  # a user's factory that cannot build on the meta device: build it for real
        network = build_model(model, input_shape=splits.input_shape, num_classes=splits.num_classes, seed=0)
    return tuple((name, tuple(p.shape)) for name, p in prunable_from_spec(network, model).items())


def _plan(spec: ExperimentSpec, save_steps: Sequence[int | str] = ()) -> TrainingPlan:
    """The training plan: a device that exists here, readable data, a positive length and save steps
    within it (else a :class:`~prunelab.errors.UserError`)."""
    bench = Workbench.from_spec(spec)  # an unknown or unavailable device fails here
    return TrainingPlan.from_spec(spec.train, bench.iterations_per_epoch, save_steps)


def _step_within(step: str, flag: str, plan: TrainingPlan, spec: ExperimentSpec) -> int:
    iterations = to_iterations(step, plan.iterations_per_epoch)
    if iterations > plan.total:
        raise StepError(
            f"{flag} {step} is iteration {iterations}, after the end of training ({plan.total} iterations = "
            f"train.steps {spec.train.steps}, {plan.iterations_per_epoch} iterations per epoch); give a step up to "
            f"{spec.train.steps}, or train longer"
        )
    return iterations


# the checks of each kind ----------------------------------------------------------------------------
def check_training(spec: ExperimentSpec, save_steps: Sequence[int | str] = ()) -> TrainingPlan:
    """What every training run needs: a device that exists here, data that can be read, a model that can
    be built, a positive training length and save steps within it."""
    plan = _plan(spec, save_steps)
    prunable_shapes(spec)
    return plan


def check_lottery(spec: ExperimentSpec, levels: int | None = None, controls: Sequence[str] = ()) -> None:
    """A lottery's input: the training, the rewind point (within training), the number of levels, and
    every argument of its level step (strategy, fraction, scope, rates and ignore patterns, count rule),
    checked by a dry run of the step on random weights."""
    from prunelab.experiments.lottery import check_controls, check_level_strategy

    check_level_strategy(spec.prune.strategy)
    if levels is not None and levels < 0:
        raise SpecError(f"--levels must be >= 0 (pruning levels after the dense level 0), got {levels}")
    check_controls(controls)
    _check_lottery(spec.dataset, spec.model, spec.train, _prune_key(spec))


@functools.lru_cache(maxsize=32)
def _check_lottery(dataset: DatasetSpec, model: ModelSpec, train: TrainingSpec, prune_key: str) -> None:
    spec = _with_prune(dataset, model, train, prune_key)
    plan = check_training(spec)
    _step_within(spec.prune.rewind, "--rewind (prune.rewind)", plan, spec)
    prune = spec.prune
    generator = torch.Generator().manual_seed(0)
    weights = {name: torch.rand(shape, generator=generator) for name, shape in prunable_shapes(spec).items()}
    mask = Mask.ones_like(weights)
    if prune.strategy in LEVEL_STRATEGIES:
        prune_level(
            weights,
            mask,
            prune.strategy,
            prune.fraction,
            scope=prune.scope,
            rates=prune.rates,
            ignore=prune.ignore,
            generator=generator,
            count_rule=prune.count_rule,
        )
    else:  # a registered data-free score function: its selection is prune_fraction's
        get_strategy(prune.strategy).check_options(dict(prune.options))
        prune_fraction(
            weights,
            mask,
            prune.fraction,
            scope=prune.scope,
            rates=prune.rates,
            ignore=prune.ignore,
            generator=generator,
            count_rule=prune.count_rule,
        )


def check_prune(
    spec: ExperimentSpec, *, experiment: str = "singleshot", rounds: int | None = None, round_steps: str | None = None
) -> None:
    """Pruning at initialisation: the training, the strategy's options and scope, the ignore patterns,
    and a multishot schedule's round length (within training)."""
    _check_prune(spec.dataset, spec.model, spec.train, _prune_key(spec), experiment, round_steps)


@functools.lru_cache(maxsize=32)
def _check_prune(
    dataset: DatasetSpec,
    model: ModelSpec,
    train: TrainingSpec,
    prune_key: str,
    experiment: str,
    round_steps: str | None,
) -> None:
    spec = _with_prune(dataset, model, train, prune_key)
    plan = check_training(spec)
    _check_selection(spec.prune.strategy, spec.prune.scope, spec.prune.ignore, dict(spec.prune.options), spec)
    if experiment == "multishot":
        _step_within(round_steps or MULTISHOT_ROUND_STEPS, "--round-steps", plan, spec)


def check_branch(spec: ExperimentSpec, branch: Any, parent: str | None, store: RunStore) -> None:
    """A branch: its strategy, scope and ignore patterns against the parent's model, and its steps against
    the steps the parent saved (a finished parent) or will save (``parent=None``: the spec's train run,
    trained first)."""
    from prunelab.experiments.reading import no_saved_step, run_spec

    if parent is not None:
        run = store.find(parent)
        if not run.finished:
            raise SpecError(f"run {run.run_id} has not finished; finish it (re-run its command) before branching")
        spec, parent_id = run_spec(run), run.run_id
        saved = run.saved_steps()
        plan = _plan(spec)
    else:  # the spec's train run, trained first: it saves step 0, the last step and the save steps
        from prunelab.experiments.train import train_run_id

        plan, parent_id = check_training(spec), train_run_id(spec)
        saved = sorted({0, plan.total, *plan.save_steps})
    _check_selection(branch.strategy, branch.scope, branch.ignore, {}, spec)
    for step, flag in ((branch.prune_step, "--prune-step"), (branch.state_step, "--state-step")):
        iterations = to_iterations(step, plan.iterations_per_epoch)
        if iterations not in saved:
            raise no_saved_step(parent_id, iterations, saved, flag)
    if branch.start_step is not None:
        _step_within(branch.start_step, "--start-step", plan, spec)


def _check_selection(
    strategy_name: str, scope: str, ignore: Sequence[str], options: dict[str, Any], spec: ExperimentSpec
) -> None:
    strategy = get_strategy(split_strategy_name(strategy_name)[0])
    strategy.check_options(options)
    required = required_scope(strategy)
    if required is not None and scope != required:
        raise SpecError(f"strategy {strategy.name!r} is defined with scope={required!r}, got scope={scope!r}")
    if ignore:
        match_patterns(ignore, prunable_shapes(spec), what="ignore")
