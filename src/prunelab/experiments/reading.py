"""Reading a stored run back for further work — branching, exporting, analysing: its spec, its mask and
its weights at a saved step **as the ordinary registry model's state dict**, whatever kind of run it is.

A supermask run stores its network's state (frozen weights, scores, tie keys); here it becomes the
effective weights ``w ⊙ m`` under the original parameter names, so every consumer treats it like any
other trained run.
"""

from __future__ import annotations

import torch

from prunelab.experiments.supermask import supermask_network
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.specs import ExperimentSpec, SpecError, from_dict
from prunelab.store import Run, load_tensors
from prunelab.supermask import effective_state_dict, supermask_layers

__all__ = ["run_spec", "run_mask", "run_weights", "check_registry_run"]


def run_spec(run: Run) -> ExperimentSpec:
    """The spec a finished run was trained with."""
    data = run.spec_data()
    if not data:
        raise SpecError(f"run {run.run_id} has no spec.yaml; only trained runs can be read back")
    return from_dict(ExperimentSpec, data)


def check_registry_run(run: Run) -> None:
    """Refuse runs on a user's own module (the Python API): their spec names no registry model."""
    info = run.stage_info()
    if info.get("user_model"):
        raise SpecError(
            f"run {run.run_id} trained a user model ({info['user_model']}), which the command line cannot rebuild; "
            "load its weights in Python (prunelab.store.load_tensors on the run's weights files)"
        )


def run_mask(run: Run) -> Mask:
    """The run's mask (the input mask of weight training, the learned one of a supermask run)."""
    if not run.mask_path.is_file() and run.mask_path not in run.recorded_files():  # (else lost: DamagedFile)
        hint = (
            " (a lottery keeps one per level: use RUN/level_<L>)"
            if run.kind == "lottery" and "/" not in run.run_id
            else ""
        )
        raise SpecError(f"run {run.run_id} has no mask{hint}")
    return Mask.load(run.mask_path)


def no_saved_step(run_id: str, step: int, saved: list[int], flag: str) -> SpecError:
    """The error for a step whose weights ``run_id`` has not saved (or will not save)."""
    listed = ", ".join(f"{s}it" for s in saved) or "none"
    return SpecError(
        f"{flag}: run {run_id} has no weights saved at step {step} (saved: {listed}). "
        "Train the run with --save-steps to keep more steps."
    )


def run_weights(run: Run, step: int, *, flag: str = "step", effective: bool = True) -> dict[str, torch.Tensor]:
    """The ordinary model's state dict at ``step`` (``flag`` names the option that asked, for errors),
    checked against the file's checksum.

    For a supermask run ``effective=False`` gives the frozen weights themselves, pruned ones included
    (the dense network the supermask is a subnetwork of)."""
    path = run.weights_path(step)
    if step not in run.saved_steps():  # saved: on disk or, if since lost, recorded in the summary (DamagedFile)
        raise no_saved_step(run.run_id, step, run.saved_steps(), flag)
    state = load_tensors(path)
    if run.kind != "supermask":
        return state
    spec = run_spec(run)
    network = supermask_network(spec, Workbench.from_spec(spec))
    network.load_state_dict(state)
    plain = {name: value.detach().cpu() for name, value in effective_state_dict(network).items()}
    if not effective:
        for layer_path, layer in supermask_layers(network).items():
            plain[f"{layer_path}.weight"] = layer.weight.detach().cpu().clone()
    return plain
