"""The Python API for users' own models: lottery tickets and pruning in a few lines."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from prunelab.experiments.lottery import Lottery, LotteryResult
from prunelab.experiments.module_bench import ModuleBench, fingerprint
from prunelab.experiments.places import MemoryPlace, Place, StorePlace
from prunelab.pruning.base import Strategy, register_strategy
from prunelab.specs import ExperimentSpec, PruningSpec, TrainingSpec, from_dict, spec_to_yaml
from prunelab.store import RunStore

__all__ = ["lottery"]


def _as(cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return from_dict(cls, value)
    raise TypeError(f"expected a {cls.__name__} or a mapping of its fields, got {type(value).__name__}")


def lottery(
    model: nn.Module,
    data: Any,
    *,
    train: TrainingSpec | Mapping[str, Any] | None = None,
    levels: int = 5,
    prune: PruningSpec | Mapping[str, Any] | None = None,
    rewind: str = "0it",
    controls: Sequence[str] = (),
    seed: int = 0,
    strategy: Any = None,
    store: str | Path | None = None,
    run_name: str | None = None,
) -> LotteryResult:
    """Iterative magnitude pruning with rewinding on any ``nn.Module``.

    ``data``: a dataset name (``"digits"``), ``DataSplits``, ``(train, test)`` ImageDatasets,
    ``((x_train, y_train), (x_test, y_test))`` tensors, or ``(train_loader, test_loader)``.
    ``strategy``: a registered name, or your own score function ``f(ctx) -> {name: scores}`` (kept
    weights are those with the highest scores). With ``store`` (a directory) every level is a
    resumable stage named ``run_name``; without it, everything stays in memory.
    """
    train_spec = _as(TrainingSpec, train)
    prune_spec = _as(PruningSpec, prune)
    if strategy is not None:
        name = strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "custom")
        if callable(strategy) and not isinstance(strategy, (str, Strategy)):
            from prunelab.pruning.base import STRATEGIES

            if name not in STRATEGIES:
                register_strategy(name)(strategy)
            elif STRATEGIES[name].score is not strategy:
                raise ValueError(f"a different strategy is already registered as {name!r}; rename your function")
        prune_spec = replace(prune_spec, strategy=name)
    prune_spec = replace(prune_spec, rewind=rewind)
    spec = ExperimentSpec(train=train_spec, prune=prune_spec, seed=seed)
    bench = ModuleBench(model, data, train_spec, seed=seed)
    place: Place
    if store is None:
        place, run_id = MemoryPlace(), run_name or "lottery-memory"
    else:
        if run_name is None:
            content = hashlib.sha256(f"{spec.run_hash('lottery')}/{fingerprint(model, data)}".encode()).hexdigest()[:12]
            run_id = f"lottery-{type(model).__name__.lower()}-{content}"
        else:
            run_id = run_name
        runs = RunStore(store)
        user_model = {"user_model": type(model).__name__}  # tells the CLI it cannot rebuild these runs
        place = StorePlace(runs, run_id, stage_info=user_model)
    procedure = Lottery(spec, bench, place, run_id)  # validates the strategy before anything is written
    if store is not None:
        with runs.lock(run_id):
            runs.create(
                run_id,
                f"# lottery on a user model ({type(model).__name__})\n" + spec_to_yaml(spec, "lottery"),
                extra=user_model,
            )
    result = procedure.run(levels, controls)
    if store is not None:
        summary = result.summary()
        summary.update(
            {
                "strategy": prune_spec.strategy,
                "fraction": prune_spec.fraction,
                "rewind": rewind,
                "seed": seed,
                "model": type(model).__name__,
                "dataset": "user",
            }
        )
        with runs.lock(run_id):
            runs.run(run_id).write_summary(summary)
    return result
