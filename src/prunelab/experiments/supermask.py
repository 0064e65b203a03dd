"""The ``supermask`` stage: learn a supermask (edge-popup or IteRand) on the frozen random weights of a
registry model, and store the run.

The spec's ``supermask`` section says how (method, density, conventions); ``model.init`` is the law
of the frozen weights; ``train`` is the optimiser and schedule of the *scores*. The run's
``mask.safetensors`` is the learned mask, its ``weights/step_<N>.safetensors`` the supermask
network's state (frozen weights, scores, tie keys). :func:`supermask_network` rebuilds that network
for a spec, which is how export and branches read a supermask run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunelab.experiments.lottery import derived_seed
from prunelab.experiments.stage import run_stage
from prunelab.experiments.validation import check_training
from prunelab.experiments.workbench import Workbench, train_summary
from prunelab.specs import ExperimentSpec, SpecError, spec_to_yaml
from prunelab.specs.supermask import WEIGHT_LAWS
from prunelab.store import Run, RunStore
from prunelab.supermask import SupermaskStep, to_supermask

__all__ = ["supermask_run_id", "supermask_network", "supermask_step", "run_supermask", "check_supermask_spec"]

_SCALE_FAN: dict[str, bool | str] = {"none": False, "kept_fraction": True, "pruned_fraction": "pruned_fraction"}


def supermask_run_id(spec: ExperimentSpec) -> str:
    return f"supermask-{spec.for_kind('supermask').run_hash('supermask')}"


def _weight_law(spec: ExperimentSpec) -> tuple[str, bool | str]:
    """``(weight_init, scale_fan)`` of :func:`to_supermask` for the spec's ``model.init``."""
    init, scale = spec.model.init, _SCALE_FAN[spec.supermask.scale_fan]
    if init == "scaled_signed_constant":
        if spec.supermask.scale_fan != "none":
            raise SpecError(
                "model.init=scaled_signed_constant already scales the fan-in by the kept fraction; "
                "use model.init=signed_constant with supermask.scale_fan, or leave scale_fan at none"
            )
        return "signed_constant", True
    return init, scale


def check_supermask_spec(spec: ExperimentSpec) -> None:
    """Refuse settings a supermask run would otherwise silently ignore."""
    if spec.model.init not in WEIGHT_LAWS:
        raise SpecError(
            f"model.init={spec.model.init!r} is not a supermask weight law; use one of {', '.join(WEIGHT_LAWS)} "
            "(e.g. --model.init=signed_constant, as edge-popup's best networks)"
        )
    if spec.model.bias_init not in (None, "zeros"):
        raise SpecError(
            f"model.bias_init={spec.model.bias_init!r}: the biases of a supermask network's converted layers are "
            "frozen at zero (or learned from zero with supermask.bias=true); leave model.bias_init unset"
        )
    _weight_law(spec)


def supermask_network(spec: ExperimentSpec, bench: Workbench) -> nn.Module:
    """The supermask network of ``spec`` at initialisation: frozen weights from ``model.init``, fresh
    scores, converted from the registry model (on the bench's device). Seeded by ``spec.seed``."""
    check_supermask_spec(spec)
    weight_init, scale_fan = _weight_law(spec)
    sm = spec.supermask
    generator = torch.Generator().manual_seed(derived_seed(spec.seed, "supermask"))
    return to_supermask(
        bench.new_model(),
        sm.density,
        generator=generator,
        method=sm.method,
        scope=sm.scope,
        ranking=sm.ranking,
        weight_init=weight_init,
        score_init=sm.score_init,
        scale_fan=scale_fan,
        bias=sm.bias,
        bn_affine=sm.bn_affine,
        prunable=spec.model.prunable,
        ignore=spec.model.prunable_exclude,
    ).to(bench.device)


def supermask_step(spec: ExperimentSpec) -> SupermaskStep:
    """The update step of ``spec``: edge-popup (no re-randomisation) or IteRand with its settings."""
    sm = spec.supermask
    if sm.method == "edge-popup":
        return SupermaskStep()
    return SupermaskStep(
        rerand_freq=sm.iterand_freq,
        rerand_lambda=sm.iterand_lambda,
        rerand_mode=sm.rerand_mode,
        rerand_mu=sm.rerand_mu,
        rerand_rate=sm.rerand_rate,
        seed=derived_seed(spec.seed, "rerandomize") % (2**63),
    )


def run_supermask(spec: ExperimentSpec, *, store: RunStore | None = None) -> dict[str, Any]:
    """Learn ``spec``'s supermask (or return the stored result). Returns the run's summary."""
    store = store or RunStore()
    check_supermask_spec(spec)
    if not store.run(supermask_run_id(spec)).finished:
        check_training(spec)  # before the run's directory exists
    sm = spec.supermask

    def body(run: Run) -> dict[str, Any]:
        bench = Workbench.from_spec(spec)
        network = supermask_network(spec, bench)
        step = supermask_step(spec)
        result = bench.train(network, run, update=step)
        mask = result.mask
        assert mask is not None  # the supermask step always reports its mask
        mask.save(run.mask_path)
        summary = train_summary(result, mask)
        summary.update(
            {
                "method": sm.method,
                "target_density": sm.density,
                "scope": sm.scope,
                "seed": spec.seed,
                "model": spec.model.name,
                "dataset": spec.dataset.name,
                "weight_init": spec.model.init,
                "rerand_freq": sm.iterand_freq,
                "rerand_lambda": sm.iterand_lambda,
                "rerandomizations": step.rerandomizations,
                "iterations_per_epoch": bench.iterations_per_epoch,
                "collapsed_layers": mask.collapsed_layers(),
            }
        )
        return summary

    return run_stage(
        store,
        supermask_run_id(spec),
        spec_to_yaml(spec, "supermask"),
        body,
        stage_info={"method": sm.method, "density": sm.density},
    )
