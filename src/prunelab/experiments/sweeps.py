"""The sweeps of the command line — seeds × strategies × densities — as study points.

``prunelab train/prune/lottery/supermask`` with lists build their trials here and hand them to a
:class:`~prunelab.experiments.study.Study`, exactly as an experiment file's grid does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from prunelab.experiments.executors import Executor
from prunelab.experiments.study import Point, Study, StudyFailed
from prunelab.experiments.trial import Trial
from prunelab.specs import ExperimentSpec
from prunelab.store import RunStore

__all__ = ["train_points", "prune_points", "lottery_points", "supermask_points", "supermask_sweep"]


def train_points(base: ExperimentSpec, seeds: Sequence[int]) -> list[Point]:
    """One dense training run per seed."""
    return [Point(Trial("train", base.with_seed(seed)), {"seed": seed}) for seed in seeds]


def prune_points(
    base: ExperimentSpec,
    strategies: Sequence[str],
    densities: Sequence[float],
    seeds: Sequence[int],
    *,
    experiment: str = "singleshot",
    rounds: int | None = None,
    round_steps: str | None = None,
) -> list[Point]:
    """Pruning at initialisation for every seed × strategy × density (in that nesting)."""
    points = []
    for seed in seeds:
        for name in strategies:
            spec = base.with_seed(seed).updated(prune=dataclasses.replace(base.prune, strategy=name))
            for density in densities:
                trial = Trial(
                    "prune", spec, density=density, experiment=experiment, rounds=rounds, round_steps=round_steps
                )
                points.append(Point(trial, {"seed": seed, "strategy": name, "density": density}))
    return points


def lottery_points(base: ExperimentSpec, levels: int, controls: Sequence[str], seeds: Sequence[int]) -> list[Point]:
    """One lottery (``levels`` levels, ``controls`` at each pruned level) per seed."""
    return [
        Point(Trial("lottery", base.with_seed(seed), levels=levels, controls=tuple(controls)), {"seed": seed})
        for seed in seeds
    ]


def supermask_points(
    base: ExperimentSpec, densities: Sequence[float], seeds: Sequence[int], *, baseline: bool = False
) -> list[Point]:
    """One supermask per seed × density of ``base`` (its method and settings); with ``baseline`` also the
    weight-trained dense network of the same spec per seed."""
    points = [
        Point(
            Trial(
                "supermask",
                base.with_seed(seed).updated(supermask=dataclasses.replace(base.supermask, density=density)),
            ),
            {"seed": seed, "density": density},
        )
        for seed in seeds
        for density in densities
    ]
    if baseline:
        points += [Point(Trial("train", base.with_seed(seed)), {"seed": seed, "baseline": "train"}) for seed in seeds]
    return points


def supermask_sweep(
    base: ExperimentSpec,
    *,
    densities: Sequence[float],
    seeds: Sequence[int],
    store: RunStore | None = None,
    baseline: bool = False,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """:func:`supermask_points` run as a study on ``executor`` (default: in this process); returns the
    summaries. Every spec is checked before anything trains; a trial that fails raises
    :class:`~prunelab.experiments.study.StudyFailed` once the others have finished."""
    result = Study(supermask_points(base, densities, seeds, baseline=baseline), store).run(executor, progress=False)
    if not result.ok:
        raise StudyFailed(result)
    return result.summaries()
