"""Lottery tickets: iterative magnitude pruning with rewinding, and its controls.

Level 0 trains the dense network from step 0, saving the weights of the rewind step on the way. Level
L prunes a fraction of the weights still alive, scored at the end of level L-1, resets the survivors to
the rewind point and trains again from there. Every level and every control is its own stage: an
interrupted lottery resumes at the level it was in, and asking for more levels trains only the new ones.

Level 0 of a lottery over a registry spec is the ``train`` run of that spec (:func:`train_run_id`): a
``prunelab train`` of the same spec and seed, and every lottery that differs only in pruning settings,
share it. The lottery's ``stage.json`` points at it. (A user's own model has no train run: its level 0
is the lottery's own stage ``level_0``, as is that of a lottery stored before level 0 was shared.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from prunelab.experiments.choices import CONTROLS
from prunelab.experiments.places import MemoryPlace, Place, StageResult, StorePlace
from prunelab.experiments.stage import remove_if_unused
from prunelab.experiments.train import run_train, train_run_id
from prunelab.experiments.validation import check_lottery
from prunelab.experiments.workbench import Bench, Workbench, train_summary
from prunelab.masks import Mask, apply_mask
from prunelab.pruning.api import LEVEL_STRATEGIES, prune_level, score
from prunelab.pruning.base import get_strategy
from prunelab.pruning.baselines import randomize_global, randomize_layerwise
from prunelab.pruning.rescale import ntk_rescale
from prunelab.pruning.selection import prune_fraction
from prunelab.specs import ExperimentSpec, SpecError, spec_to_yaml
from prunelab.specs.base import check_choice
from prunelab.store import RunStore
from prunelab.training import TrainingDiverged

__all__ = [
    "CONTROLS",
    "DenseRun",
    "LotteryResult",
    "Lottery",
    "TrainRun",
    "lottery_run_id",
    "lottery_stage_id",
    "run_lottery",
    "run_lottery_stage",
    "derived_seed",
]

log = logging.getLogger("prunelab")


def derived_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (never Python's salted ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def check_controls(controls: Sequence[str]) -> None:
    for name in controls:
        check_choice(name, CONTROLS, "control")


def check_level_strategy(name: str) -> None:
    """A strategy the level step can use: one of :data:`LEVEL_STRATEGIES` or a registered data-free one."""
    if name in LEVEL_STRATEGIES:
        return
    strategy = get_strategy(name)  # unknown names: error with the closest valid ones
    if strategy.needs_data:
        raise SpecError(
            f"strategy {name!r} scores with training data, which lottery levels do not pass; use a data-free "
            f"strategy ({', '.join(LEVEL_STRATEGIES)}, synflow, ntksap or your own) or "
            f"`prunelab branch RUN oneshot --strategy {name}`"
        )


def lottery_run_id(spec: ExperimentSpec) -> str:
    return f"lottery-{spec.for_kind('lottery').run_hash('lottery')}"


def lottery_stage_id(spec: ExperimentSpec, level: int, control: str | None = None) -> str:
    """The run id of one stage of ``spec``'s lottery: level ``level``, or its ``control``. Level 0 is
    the spec's train run."""
    if level == 0 and control is None:
        return train_run_id(spec)
    stage = f"{lottery_run_id(spec)}/level_{level}"
    return f"{stage}/{control}" if control else stage


@dataclass
class LotteryResult:
    """Per-level results: ``levels`` rows with level, density, test_accuracy, best_accuracy,
    best_step and one accuracy per control; ``masks`` the ticket masks by level."""

    run_id: str
    levels: list[dict[str, Any]]
    masks: dict[int, Mask] = field(default_factory=dict, repr=False)
    controls: tuple[str, ...] = ()  # every control stored for some level, whether asked for this time or not

    def summary(self) -> dict[str, Any]:
        last = self.levels[-1]
        return {
            "run_id": self.run_id,
            "kind": "lottery",
            "test_accuracy": last["test_accuracy"],
            "test_loss": last["test_loss"],
            "density": last["density"],
            "wall_seconds": round(sum(row["wall_seconds"] for row in self.levels), 3),
            "controls": list(self.controls),
            "levels": self.levels,
        }

    def table(self) -> str:
        from prunelab.analysis.tables import format_table

        controls = [c for c in CONTROLS if any(c in row for row in self.levels)]
        columns = ["level", "density", "test_accuracy", "best_accuracy", "best_step", *controls]
        return format_table(self.levels, columns)


class DenseRun(Protocol):
    """Where a lottery's level 0 lives: the dense network trained from step 0, with the weights of the
    lottery's rewind step saved."""

    @property
    def run_id(self) -> str | None:
        """Its run in the store (None: the lottery's own stage ``level_0``)."""

    def stage(self) -> StageResult: ...

    def weights(self, step: int) -> dict[str, torch.Tensor]: ...


class TrainRun:
    """Level 0 as the ``train`` run of the lottery's spec (saving the rewind step too, recomputing it if the
    run finished without it)."""

    def __init__(self, spec: ExperimentSpec, store: RunStore, rewind_step: int) -> None:
        self.spec = spec
        self.store = store
        self.run_id = train_run_id(spec)
        self.save_steps = (rewind_step,) if rewind_step else ()

    def stage(self) -> StageResult:
        summary = run_train(self.spec, store=self.store, save_steps=self.save_steps)
        run = self.store.run(self.run_id)
        mask = Mask.load(run.mask_path)
        level = {"level": 0, **summary, "collapsed_layers": mask.collapsed_layers()}
        return StageResult(level, mask, run.load_weights(summary["final_step"]))

    def weights(self, step: int) -> dict[str, torch.Tensor]:
        return self.store.run(self.run_id).load_weights(step)


class _OwnStage:
    """Level 0 as the lottery's own stage ``level_0`` of its place."""

    run_id = None

    def __init__(self, lottery: Lottery) -> None:
        self.lottery = lottery

    def stage(self) -> StageResult:
        return self.lottery.place.stage("level_0", self.lottery._yaml, self.lottery._train_dense)

    def weights(self, step: int) -> dict[str, torch.Tensor]:
        return self.lottery.place.weights("level_0", step)


class Lottery:
    """The IMP procedure over any :class:`Bench` (registry model or a user's module) and any
    :class:`Place` (run store or memory). ``dense`` is where level 0 lives (default: the place's stage
    ``level_0``); a lottery whose place already holds a finished ``level_0`` keeps using it."""

    def __init__(
        self, spec: ExperimentSpec, bench: Bench, place: Place, run_id: str, *, dense: DenseRun | None = None
    ) -> None:
        self.spec = spec
        self.bench = bench
        self.place = place
        self.run_id = run_id
        self.prune = spec.prune
        self.rewind_step = bench.to_iterations(spec.prune.rewind)
        self._yaml = spec_to_yaml(spec, "lottery")
        self._rewind: dict[str, torch.Tensor] | None = None
        self._check_strategy()
        if dense is None or place.finished("level_0"):  # (stored before level 0 was shared: stays its own)
            dense = _OwnStage(self)
        self.dense: DenseRun = dense

    def _check_strategy(self) -> None:
        """Fail before any training on a strategy the level step cannot use."""
        check_level_strategy(self.prune.strategy)

    # the rewind point ---------------------------------------------------------------------------
    def rewind_state(self) -> dict[str, torch.Tensor]:
        """The weights survivors are reset to: the initialisation, or level 0's weights at the rewind step."""
        if self._rewind is None:
            if self.rewind_step == 0:
                self._rewind = {k: v.detach().clone() for k, v in self.bench.new_model().state_dict().items()}
            else:
                self.level(0)  # trained (or recomputed) with the rewind step saved
                self._rewind = self.dense.weights(self.rewind_step)
        return self._rewind

    def _train_dense(self, run: Any) -> StageResult:
        """Level 0 when it is the lottery's own stage: the same training as a ``train`` run."""
        model = self.bench.new_model()
        mask = Mask.ones_like(self.bench.prunable(model))
        result = self.bench.train(model, run, save_steps=(self.rewind_step,) if self.rewind_step else ())
        summary = {"level": 0, **train_summary(result, mask), "collapsed_layers": mask.collapsed_layers()}
        return StageResult(summary, mask, model.state_dict(), result.saved_states)

    def _start_model(self, mask: Mask, *, fresh_seed: int | None = None) -> torch.nn.Module:
        """A model at the rewind point (or freshly initialised), masked, NTK-rescaled if asked."""
        model = self.bench.new_model(fresh_seed)
        if fresh_seed is None:
            model.load_state_dict(self.rewind_state())
        if not self.prune.ntk_rescale:
            apply_mask(model, mask)
            return model
        params = self.bench.prunable(model)
        scaled = ntk_rescale(
            {n: p.detach() for n, p in params.items()},
            mask,
            mode=self.prune.resolved_ntk_rescale_mode,
            ignore=self.prune.ignore,
        )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(scaled[name])
        return model

    # levels -------------------------------------------------------------------------------------
    def level(self, level: int) -> StageResult:
        if level == 0:
            return self.dense.stage()
        return self.place.stage(f"level_{level}", self._yaml, lambda run: self._train_level(level, run))

    def _level_mask(self, level: int) -> Mask:
        if level == 0:
            return Mask.ones_like(self.bench.prunable(self.bench.new_model()))
        previous = self.level(level - 1)
        previous_mask, previous_state = previous.mask, previous.state
        weights = {name: previous_state[name] for name in previous_mask}
        generator = torch.Generator().manual_seed(derived_seed(self.spec.seed, "prune", level))
        if self.prune.strategy not in LEVEL_STRATEGIES:
            return self._scored_level_mask(level, previous_state, previous_mask, generator)
        return prune_level(
            weights,
            previous_mask,
            self.prune.strategy,
            self.prune.fraction,
            scope=self.prune.scope,
            rates=self.prune.rates,
            ignore=self.prune.ignore,
            generator=generator,
            count_rule=self.prune.count_rule,
        )

    def _scored_level_mask(
        self, level: int, state: dict[str, torch.Tensor], mask: Mask, generator: torch.Generator
    ) -> Mask:
        """A level step with any other registered, data-free score function (e.g. the user's own
        from :func:`prunelab.api.lottery`): score the previous level's trained weights under its
        mask, then remove ``round_half_up(f · n_alive)`` of the alive weights as ``prune_level`` does."""
        strategy = get_strategy(self.prune.strategy)
        model = self.bench.new_model()
        model.load_state_dict(state)
        options = dict(self.prune.options)
        if "input_shape" in (strategy.options or ()) and "input_shape" not in options:
            options["input_shape"] = tuple(self.bench.input_shape)
        scores = score(
            model,
            strategy,
            mask=mask,
            params=self.bench.prunable(model),
            seed=derived_seed(self.spec.seed, "score", level),
            **options,
        )
        prune_highest = strategy.prune_highest if self.prune.prune_highest is None else self.prune.prune_highest
        return prune_fraction(
            scores,
            mask,
            self.prune.fraction,
            scope=self.prune.scope,
            rates=self.prune.rates,
            ignore=self.prune.ignore,
            prune_highest=prune_highest,
            generator=generator,
            count_rule=self.prune.count_rule,
        )

    def _train_level(self, level: int, run: Any) -> StageResult:
        mask = self._level_mask(level)
        log.info("level %d: density %.4f", level, mask.density)
        model = self._start_model(mask)
        result = self.bench.train(model, run, mask=mask, start_step=self.rewind_step)
        summary = {"level": level, **train_summary(result, mask), "collapsed_layers": mask.collapsed_layers()}
        return StageResult(summary, mask, model.state_dict())

    # controls -----------------------------------------------------------------------------------
    def control(self, level: int, name: str) -> dict[str, Any]:
        check_controls([name])
        stage = self.place.stage(f"level_{level}/{name}", self._yaml, lambda run: self._train_control(level, name, run))
        return stage.summary

    def _train_control(self, level: int, name: str, run: Any) -> StageResult:
        mask = self.level(level).mask
        order_seed = None
        if name == "reinit":
            model = self._start_model(mask, fresh_seed=derived_seed(self.spec.seed, "reinit", level))
        elif name == "shuffle":
            generator = torch.Generator().manual_seed(derived_seed(self.spec.seed, "shuffle", level))
            mask = randomize_layerwise(mask, generator)
            model = self._start_model(mask)
        elif name == "shuffle_global":  # the lottery's ignored tensors keep their mask
            generator = torch.Generator().manual_seed(derived_seed(self.spec.seed, "shuffle_global", level))
            mask = randomize_global(mask, generator, ignore=self.prune.ignore)
            model = self._start_model(mask)
        else:  # retrain: same ticket, different data order
            model = self._start_model(mask)
            order_seed = derived_seed(self.spec.seed, "retrain", level) % (2**31)
        result = self.bench.train(model, run, mask=mask, start_step=self.rewind_step, order_seed=order_seed)
        summary = {"level": level, "control": name, **train_summary(result, mask)}
        return StageResult(summary, mask, model.state_dict())

    # everything ---------------------------------------------------------------------------------
    def run(self, levels: int, controls: Sequence[str] = ()) -> LotteryResult:
        if levels < 0:
            raise SpecError(f"--levels must be >= 0 (pruning levels after the dense level 0), got {levels}")
        check_controls(controls)
        # results only grow: the rows cover every level and control stored, whatever this call asked for
        top = levels
        while self.place.finished(f"level_{top + 1}"):
            top += 1
        names = [*dict.fromkeys(controls), *(c for c in CONTROLS if c not in controls)]
        rows, masks, found = [], {}, set()
        for level in range(top + 1):
            stage = self.level(level)
            summary, mask = stage.summary, stage.mask
            row = {"level": level}
            row.update(
                {
                    key: summary[key]
                    for key in (
                        "density",
                        "test_accuracy",
                        "test_loss",
                        "best_accuracy",
                        "best_step",
                        "wall_seconds",
                        "collapsed_layers",
                    )
                    if key in summary
                }
            )
            if level > 0:
                for name in names:
                    if (name in controls and level <= levels) or self.place.finished(f"level_{level}/{name}"):
                        row[name] = self.control(level, name)["test_accuracy"]
                        found.add(name)
            rows.append(row)
            masks[level] = mask
        return LotteryResult(self.run_id, rows, masks, tuple(c for c in names if c in found))


def run_lottery(
    spec: ExperimentSpec, levels: int, *, controls: Sequence[str] = (), store: RunStore | None = None
) -> dict[str, Any]:
    """Run (or resume, or extend) a lottery in the run store; returns and writes its summary."""
    store = store or RunStore()
    run_id = lottery_run_id(spec)
    check_lottery(spec, levels, controls)  # every input against the model and data, before any directory exists
    lottery = _store_lottery(spec, store, run_id)  # validates first
    with store.lock(run_id):  # the lottery's own files are written under its lock, its stages under theirs
        _create(store, lottery)
    try:
        result = lottery.run(levels, controls)
    except TrainingDiverged:  # the stage is gone; so is the lottery if nothing else of it is stored
        remove_if_unused(store, run_id)
        raise
    summary = result.summary()
    summary.update(
        {
            "strategy": spec.prune.strategy,
            "fraction": spec.prune.fraction,
            "rewind": spec.prune.rewind,
            "seed": spec.seed,
            "model": spec.model.name,
            "dataset": spec.dataset.name,
        }
    )
    with store.lock(run_id):
        store.run(run_id).write_summary(summary)
    return summary


def run_lottery_stage(
    spec: ExperimentSpec, level: int, control: str | None = None, *, store: RunStore | None = None
) -> dict[str, Any]:
    """One stage of ``spec``'s lottery in the run store: level ``level`` or one ``control`` of it (the levels
    it needs are trained first unless stored). Studies hand each stage to an executor this way; the
    lottery's own summary is written by :func:`run_lottery` once every stage is stored."""
    store = store or RunStore()
    run_id = lottery_run_id(spec)
    check_lottery(spec, level, [control] if control is not None else [])
    lottery = _store_lottery(spec, store, run_id)  # validates first
    _create(store, lottery)
    try:
        if control is None:
            return lottery.level(level).summary
        return lottery.control(level, control)
    except TrainingDiverged:  # the stage is gone; so is the lottery if nothing else of it is stored
        remove_if_unused(store, run_id)
        raise


def _store_lottery(spec: ExperimentSpec, store: RunStore, run_id: str) -> Lottery:
    bench = Workbench.from_spec(spec)
    return Lottery(
        spec,
        bench,
        StorePlace(store, run_id),
        run_id,
        dense=TrainRun(spec, store, bench.to_iterations(spec.prune.rewind)),
    )


def _create(store: RunStore, lottery: Lottery) -> None:
    """The lottery's directory with its spec and, in its ``stage.json``, where its level 0 lives."""
    pointer = {"stages": {"level_0": lottery.dense.run_id}} if lottery.dense.run_id else None
    if pointer is not None and store.run(lottery.run_id).stage_info() == pointer:
        pointer = None  # written once: a study's stages create the lottery concurrently, without its lock
    store.create(lottery.run_id, spec_to_yaml(lottery.spec, "lottery"), extra=pointer)


def memory_lottery(spec: ExperimentSpec, bench: Bench, levels: int, controls: Sequence[str] = ()) -> LotteryResult:
    return Lottery(spec, bench, MemoryPlace(), "lottery-memory").run(levels, controls)
