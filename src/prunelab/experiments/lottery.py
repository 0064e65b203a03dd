"""Lottery tickets: iterative magnitude pruning with rewinding, and its controls.

Level 0 trains the dense network from the rewind point. Level L prunes a fraction of the weights
still alive, scored at the end of level L-1, resets the survivors to the rewind point and trains
again. Every level and every control is its own stage: an interrupted lottery resumes at the level
it was in, and asking for more levels trains only the new ones.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from prunelab.experiments.choices import CONTROLS
from prunelab.experiments.places import MemoryPlace, Place, StageResult, StorePlace
from prunelab.experiments.workbench import Bench, Workbench, train_summary
from prunelab.masks import Mask, apply_mask
from prunelab.pruning.api import LEVEL_STRATEGIES, prune_level, score
from prunelab.pruning.base import get_strategy
from prunelab.pruning.selection import prune_fraction
from prunelab.pruning.baselines import randomize_global, randomize_layerwise
from prunelab.pruning.rescale import ntk_rescale
from prunelab.specs import ExperimentSpec, SpecError, spec_to_yaml
from prunelab.specs.base import check_choice
from prunelab.store import RunStore

__all__ = ["CONTROLS", "LotteryResult", "Lottery", "lottery_run_id", "lottery_stage_id", "run_lottery", "run_lottery_stage",
           "derived_seed"]

log = logging.getLogger("prunelab")



def derived_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (never Python's salted ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def check_controls(controls: Sequence[str]) -> None:
    for name in controls:
        check_choice(name, CONTROLS, "control")


def lottery_run_id(spec: ExperimentSpec) -> str:
    return f"lottery-{spec.for_kind('lottery').run_hash('lottery')}"


def lottery_stage_id(spec: ExperimentSpec, level: int, control: str | None = None) -> str:
    """The run id of one stage of ``spec``'s lottery: level ``level``, or its ``control``."""
    stage = f"{lottery_run_id(spec)}/level_{level}"
    return f"{stage}/{control}" if control else stage


@dataclass
class LotteryResult:
    """Per-level results: ``levels`` rows with level, density, test_accuracy, best_accuracy,
    best_step and one accuracy per control; ``masks`` the ticket masks by level."""

    run_id: str
    levels: list[dict[str, Any]]
    masks: dict[int, Mask] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        last = self.levels[-1]
        return {
            "run_id": self.run_id,
            "kind": "lottery",
            "test_accuracy": last["test_accuracy"],
            "test_loss": last["test_loss"],
            "density": last["density"],
            "wall_seconds": round(sum(row["wall_seconds"] for row in self.levels), 3),
            "levels": self.levels,
        }

    def table(self) -> str:
        from prunelab.cli.common import format_table

        controls = [c for c in CONTROLS if any(c in row for row in self.levels)]
        columns = ["level", "density", "test_accuracy", "best_accuracy", "best_step", *controls]
        return format_table(self.levels, columns)


class Lottery:
    """The IMP procedure over any :class:`Bench` (registry model or a user's module) and any
    :class:`Place` (run store or memory)."""

    def __init__(self, spec: ExperimentSpec, bench: Bench, place: Place, run_id: str) -> None:
        self.spec = spec
        self.bench = bench
        self.place = place
        self.run_id = run_id
        self.prune = spec.prune
        self.rewind_step = bench.to_iterations(spec.prune.rewind)
        self._yaml = spec_to_yaml(spec, "lottery")
        self._rewind: dict[str, torch.Tensor] | None = None
        self._check_strategy()

    def _check_strategy(self) -> None:
        """Fail before any training on a strategy the level step cannot use."""
        name = self.prune.strategy
        if name in LEVEL_STRATEGIES:
            return
        strategy = get_strategy(name)  # unknown names: error with the closest valid ones
        if strategy.needs_data:
            raise SpecError(
                f"strategy {name!r} scores with training data, which lottery levels do not pass; use a data-free "
                f"strategy ({', '.join(LEVEL_STRATEGIES)}, synflow, ntksap or your own) or "
                f"`prunelab branch RUN oneshot --strategy {name}`"
            )

    # the rewind point ---------------------------------------------------------------------------
    def rewind_state(self) -> dict[str, torch.Tensor]:
        if self._rewind is None:
            if self.rewind_step == 0:
                self._rewind = {k: v.detach().clone() for k, v in self.bench.new_model().state_dict().items()}
            else:
                self._rewind = self.place.stage("pretrain", self._yaml, self._pretrain).state
        return self._rewind

    def _pretrain(self, run: Any) -> StageResult:
        model = self.bench.new_model()
        mask = Mask.ones_like(self.bench.prunable(model))
        result = self.bench.train(model, run, mask=None, stop_step=self.rewind_step)
        return StageResult(train_summary(result, mask), mask, model.state_dict())

    def _start_model(self, mask: Mask, *, fresh_seed: int | None = None) -> torch.nn.Module:
        """A model at the rewind point (or freshly initialised), masked, NTK-rescaled if asked."""
        model = self.bench.new_model(fresh_seed)
        if fresh_seed is None:
            model.load_state_dict(self.rewind_state())
        if not self.prune.ntk_rescale:
            apply_mask(model, mask)
            return model
        params = self.bench.prunable(model)
        scaled = ntk_rescale({n: p.detach() for n, p in params.items()}, mask,
                             mode=self.prune.resolved_ntk_rescale_mode, ignore=self.prune.ignore)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(scaled[name])
        return model

    # levels -------------------------------------------------------------------------------------
    def level(self, level: int) -> StageResult:
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
            weights, previous_mask, self.prune.strategy, self.prune.fraction,
            scope=self.prune.scope, rates=self.prune.rates, ignore=self.prune.ignore, generator=generator,
            count_rule=self.prune.count_rule,
        )

    def _scored_level_mask(self, level: int, state: dict[str, torch.Tensor], mask: Mask,
                           generator: torch.Generator) -> Mask:
        """A level step with any other registered, data-free score function (e.g. the user's own
        from :func:`prunelab.api.lottery`): score the previous level's trained weights under its
        mask, then remove ``round_half_up(f · n_alive)`` of the alive weights as ``prune_level`` does."""
        strategy = get_strategy(self.prune.strategy)
        model = self.bench.new_model()
        model.load_state_dict(state)
        options = dict(self.prune.options)
        if "input_shape" in (strategy.options or ()) and "input_shape" not in options:
            options["input_shape"] = tuple(self.bench.input_shape)
        scores = score(model, strategy, mask=mask, params=self.bench.prunable(model),
                       seed=derived_seed(self.spec.seed, "score", level), **options)
        prune_highest = strategy.prune_highest if self.prune.prune_highest is None else self.prune.prune_highest
        return prune_fraction(scores, mask, self.prune.fraction, scope=self.prune.scope, rates=self.prune.rates,
                              ignore=self.prune.ignore, prune_highest=prune_highest, generator=generator,
                              count_rule=self.prune.count_rule)

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
            raise ValueError(f"levels must be >= 0, got {levels}")
        check_controls(controls)
        rows, masks = [], {}
        for level in range(levels + 1):
            stage = self.level(level)
            summary, mask = stage.summary, stage.mask
            row = {key: summary[key] for key in ("level", "density", "test_accuracy", "test_loss", "best_accuracy",
                                                 "best_step", "wall_seconds", "collapsed_layers") if key in summary}
            if level > 0:
                for name in controls:
                    row[name] = self.control(level, name)["test_accuracy"]
            rows.append(row)
            masks[level] = mask
        return LotteryResult(self.run_id, rows, masks)


def run_lottery(
    spec: ExperimentSpec, levels: int, *, controls: Sequence[str] = (), store: RunStore | None = None
) -> dict[str, Any]:
    """Run (or resume, or extend) a lottery in the run store; returns and writes its summary."""
    store = store or RunStore()
    run_id = lottery_run_id(spec)
    check_controls(controls)
    lottery = Lottery(spec, Workbench.from_spec(spec), StorePlace(store, run_id), run_id)  # validates first
    with store.lock(run_id):  # the lottery's own files are written under its lock, its stages under theirs
        store.create(run_id, spec_to_yaml(spec, "lottery"))
    result = lottery.run(levels, controls)
    summary = result.summary()
    summary.update({"strategy": spec.prune.strategy, "fraction": spec.prune.fraction, "rewind": spec.prune.rewind,
                    "seed": spec.seed, "controls": list(controls), "model": spec.model.name, "dataset": spec.dataset.name})
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
    if control is not None:
        check_controls([control])
    lottery = Lottery(spec, Workbench.from_spec(spec), StorePlace(store, run_id), run_id)  # validates first
    store.create(run_id, spec_to_yaml(spec, "lottery"))
    if control is None:
        return lottery.level(level).summary
    return lottery.control(level, control)


def memory_lottery(spec: ExperimentSpec, bench: Bench, levels: int, controls: Sequence[str] = ()) -> LotteryResult:
    return Lottery(spec, bench, MemoryPlace(), "lottery-memory").run(levels, controls)
