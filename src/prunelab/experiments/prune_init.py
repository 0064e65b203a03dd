"""Pruning at initialisation: score the initial weights with a strategy, prune to a density, train.

Single-shot prunes once (in the strategy's number of score–prune iterations) before training.
Multi-shot, as in NTK-SAP's experiments, runs R rounds of (train briefly → prune to d^(r/R) →
rewind the weights to initialisation, keeping the mask), then trains the final mask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from prunelab import distributed
from prunelab.analysis.flops import efficiency_metrics
from prunelab.experiments.branch import complement
from prunelab.experiments.choices import MULTISHOT_ROUND_STEPS, MULTISHOT_ROUNDS, PRUNE_EXPERIMENTS
from prunelab.experiments.lottery import derived_seed
from prunelab.experiments.scoring import prune_to_density
from prunelab.experiments.stage import run_stage
from prunelab.experiments.validation import check_prune
from prunelab.experiments.workbench import Workbench, train_summary
from prunelab.masks import Mask, apply_mask
from prunelab.pruning.selection import LayerCollapseWarning
from prunelab.specs import ExperimentSpec, SpecError, spec_to_yaml
from prunelab.store import Run, RunStore

__all__ = ["EXPERIMENTS", "densities_from", "prune_run_id", "run_prune", "LayerCollapseWarning"]

log = logging.getLogger("prunelab")

EXPERIMENTS = PRUNE_EXPERIMENTS


def densities_from(
    density: Sequence[float] = (), sparsity: Sequence[float] = (), compression: Sequence[float] = ()
) -> list[float]:
    """Target densities from any one of: densities, sparsities (1 - d), NTK-SAP compressions (d = 0.8^c)."""
    given = [
        name for name, values in (("density", density), ("sparsity", sparsity), ("compression", compression)) if values
    ]
    if len(given) != 1:
        raise SpecError(
            "give exactly one of --density, --sparsity or --compression (each accepts a comma-separated list)"
        )
    values = list(density) or [complement(s) for s in sparsity] or [0.8**c for c in compression]
    for d in values:
        if not 0.0 < d <= 1.0:
            raise SpecError(f"target density {d} is outside (0, 1]")
    return values


def prune_run_id(spec: ExperimentSpec, density: float, experiment: str, rounds: int, round_steps: str) -> str:
    extra: dict[str, str | int] = {"density": repr(float(density)), "experiment": experiment}
    if experiment == "multishot":
        extra.update({"rounds": rounds, "round_steps": round_steps})
    text = spec.for_kind("prune").run_hash("prune") + json.dumps(extra, sort_keys=True)
    return f"prune-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def run_prune(
    spec: ExperimentSpec,
    density: float,
    *,
    experiment: str = "singleshot",
    rounds: int = MULTISHOT_ROUNDS,
    round_steps: str = MULTISHOT_ROUND_STEPS,
    store: RunStore | None = None,
) -> dict[str, Any]:
    if experiment not in EXPERIMENTS:
        raise SpecError(f"unknown experiment {experiment!r}; valid: {', '.join(EXPERIMENTS)}")
    if experiment == "multishot" and rounds < 1:
        raise SpecError("--rounds must be >= 1")
    if spec.prune.count_rule != "exact":
        raise SpecError(
            f"prune.count_rule={spec.prune.count_rule} counts lottery levels; pruning to a density keeps "
            "round(d * n) weights, drop the setting"
        )
    store = store or RunStore()
    if not store.run(prune_run_id(spec, density, experiment, rounds, round_steps)).finished:
        check_prune(spec, experiment=experiment, rounds=rounds, round_steps=round_steps)  # before its directory exists

    def body(run: Run) -> dict[str, Any]:
        bench = Workbench.from_spec(spec)
        init_model = bench.new_model()
        init_state = {k: v.detach().clone() for k, v in init_model.state_dict().items()}
        data_seed = derived_seed(spec.seed, "prune-data")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayerCollapseWarning)  # reported once below, with the density
            if experiment == "multishot" or distributed.is_writer():  # multishot trains: every rank takes part
                mask = _prune(bench, init_model, init_state, data_seed)
            else:  # under torchrun rank 0 scores alone; its mask reaches this rank in the training step
                mask = Mask.ones_like(bench.prunable(init_model))
        collapsed = mask.collapsed_layers()
        if collapsed:
            warnings.warn(
                f"layer collapse at density {density}: {', '.join(collapsed)} fully pruned",
                LayerCollapseWarning,
                stacklevel=2,
            )
            log.warning("layer collapse: %s have no weights left", ", ".join(collapsed))
        model = bench.new_model()
        model.load_state_dict(init_state)
        apply_mask(model, mask)
        mask.save(run.mask_path)
        result = bench.train(model, run, mask=mask)
        mask = result.mask if result.mask is not None else mask  # rank 0's, under torchrun
        summary = train_summary(result, mask)
        summary.update(
            {
                "strategy": spec.prune.strategy,
                "target_density": density,
                "experiment": experiment,
                "collapsed_layers": collapsed,
                "layer_collapse": bool(collapsed),
                "seed": spec.seed,
                "model": spec.model.name,
                "dataset": spec.dataset.name,
                **efficiency_metrics(model, tuple(bench.splits.input_shape), mask),
            }
        )
        if experiment == "multishot":
            summary.update({"rounds": rounds, "round_steps": round_steps})
        return summary

    def _prune(bench: Workbench, init_model: torch.nn.Module, init_state: dict, data_seed: int) -> Mask:
        if experiment == "singleshot":
            mask = prune_to_density(
                init_model,
                bench.prunable(init_model),
                spec.prune,
                density,
                train_set=bench.splits.train,
                device=bench.device,
                seed=data_seed,
            )
        else:
            mask = Mask.ones_like(bench.prunable(init_model))
            for r in range(1, rounds + 1):
                model = bench.new_model()
                model.load_state_dict(init_state)
                apply_mask(model, mask)
                bench.train(model, None, mask=mask, stop_step=bench.to_iterations(round_steps))
                mask = prune_to_density(
                    model,
                    bench.prunable(model),
                    spec.prune,
                    density ** (r / rounds),
                    train_set=bench.splits.train,
                    device=bench.device,
                    seed=data_seed + r,
                    mask=mask,
                )
                log.info("multishot round %d/%d: density %.4f", r, rounds, mask.density)
        return mask

    run_id = prune_run_id(spec, density, experiment, rounds, round_steps)
    return run_stage(
        store,
        run_id,
        spec_to_yaml(spec, "prune"),
        body,
        stage_info={"density": density, "experiment": experiment, "rounds": rounds},
    )
