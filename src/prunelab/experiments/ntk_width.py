"""Random pruning of wide MLPs and their NTK (Yang & Wang, "On the Neural Tangent Kernel Analysis of
Randomly Pruned Neural Networks", AISTATS 2023), at a scale this CPU can run.

The networks are the reference code's toy model (``toy_example.ipynb`` of VITA-Group/Random-Pruning-NTK,
section "NTK Parameterization"): inputs on the unit sphere of ``R^input_dim``, ``depth`` bias-free
ReLU hidden layers of ``width`` units and one scalar output,

    z_1 = W_1 x,    z_{l+1} = sqrt(2 / n_l) · W_{l+1} relu(z_l),    f(x) = sqrt(2 / n_L) · w_out relu(z_L),

with every weight N(0, 1) (``parameterization="ntk"``). ``"standard"`` draws the weights
N(0, 2 / fan_in) (Kaiming, prunelab's default) and drops the multipliers: the same function at
initialisation, but the NTK is taken with respect to the scaled weights, as training a PyTorch
model does.

Pruning is prunelab's ``random_global``: a uniformly random set of exactly ``round(d · n)`` of the
pruned layers' weights is kept (global scope), the input layer kept dense as in the reference's
study unless ``prune_input_layer``. Rescaling multiplies every pruned layer by ``1/sqrt(d)``, ``d``
the kept fraction of all pruned weights (``rescale_mode="global"``, the reference's single factor;
``"per_layer"`` uses each layer's own density): in the multiplier under the NTK parameterisation
(the reference's ``sqrt(2 / (n · (1 − p)))``), in the stored weights under the standard one
(:func:`prunelab.pruning.rescale.ntk_rescale`).

For each width, density and replicate (fresh weights and mask), the trace NTK of the pruned network
on ``inputs`` points is compared with the dense network's of the same weights (kernel distance,
relative Frobenius difference, after optimal scaling, and the optimal scale); under the NTK
parameterisation the dense network's distance from the infinite-width kernel
(:func:`limit_ntk`) is reported beside it as the finite-width floor.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.analysis.ntk import compare_kernels, empirical_ntk, relative_frobenius_difference
from prunelab.experiments.lottery import derived_seed
from prunelab.experiments.ntk_width_study import WidthStudy
from prunelab.masks import Mask
from prunelab.models import initialize
from prunelab.pruning.baselines import random_scores_like
from prunelab.pruning.rescale import ntk_scale_factors
from prunelab.pruning.selection import select_by_density
from prunelab.store import atomic_write_json

__all__ = ["WidthStudy", "WidthMLP", "limit_ntk", "run_width_study", "sphere_inputs"]


class WidthMLP(nn.Module):
    """The study's MLP: ``hidden.0 … hidden.{depth-1}`` and ``fc``, no biases. ``scales`` holds one
    extra multiplier per layer (the rescaling under the NTK parameterisation); 1 by default."""

    def __init__(self, input_dim: int, width: int, depth: int, parameterization: str) -> None:
        super().__init__()
        sizes = [input_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:]))
        self.fc = nn.Linear(width, 1, bias=False)
        self.ntk = parameterization == "ntk"
        # fan-in multipliers of the NTK parameterisation: none for the first layer (unit-norm inputs)
        self.multipliers = [1.0] + [math.sqrt(2.0 / width)] * depth if self.ntk else [1.0] * (depth + 1)
        self.scales = [1.0] * (depth + 1)

    def layers(self) -> list[nn.Linear]:
        return [*self.hidden, self.fc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for index, layer in enumerate(self.hidden):
            h = F.relu(layer(h) * (self.multipliers[index] * self.scales[index]))
        return self.fc(h) * (self.multipliers[-1] * self.scales[-1])


def sphere_inputs(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points uniform on the unit sphere of ``R^dim`` (normalised Gaussians)."""
    x = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def limit_ntk(x: torch.Tensor, depth: int) -> torch.Tensor:
    """The infinite-width NTK of :class:`WidthMLP` (NTK parameterisation) on unit-norm inputs, by the
    arc-cosine recursion (Jacot et al. 2018; the reference notebook's ``compute_NTK``):

        Σ¹ = x·y,   Σ^{l+1} = (sqrt(1 − ρ²) + (π − arccos ρ) ρ) / π,   Σ̇^{l+1} = (π − arccos ρ) / π,
        Θ¹ = Σ¹,    Θ^{l+1} = Σ^{l+1} + Θ^l Σ̇^{l+1},

    with ``ρ = Σ^l`` (every ``Σ^l(x, x) = 1``); the kernel is ``Θ^{depth+1}``."""
    x = x.to(torch.float64)
    sigma = (x @ x.T).clamp(-1.0, 1.0)
    theta = sigma.clone()
    for _ in range(depth):
        angle = torch.arccos(sigma.clamp(-1.0, 1.0))
        dot = (math.pi - angle) / math.pi
        sigma = (torch.sqrt((1 - sigma**2).clamp_min(0.0)) + (math.pi - angle) * sigma) / math.pi
        theta = sigma + theta * dot
    return theta


def _network(study: WidthStudy, width: int, generator: torch.Generator) -> WidthMLP:
    model = WidthMLP(study.input_dim, width, study.depth, study.parameterization)
    initialize(
        model, "standard_normal" if study.parameterization == "ntk" else "kaiming_normal", "ones", generator=generator
    )  # in place
    return model


def _pruned_names(model: WidthMLP, study: WidthStudy) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    return names if study.prune_input_layer else names[1:]


def _pruned_kernel(model: WidthMLP, x: torch.Tensor, mask: Mask, rescale: bool, mode: str = "global") -> torch.Tensor:
    """The trace NTK of ``model`` under ``mask``, each pruned layer times its ``1/sqrt(d)`` factor
    (:func:`~prunelab.pruning.rescale.ntk_scale_factors` in ``mode``) if asked."""
    factors = ntk_scale_factors(mask, mode=mode) if rescale else {}
    names = [n for n, _ in model.named_parameters()]
    if model.ntk:
        model.scales = [factors.get(n, 1.0) for n in names]
        try:
            return empirical_ntk(model, x, mask=mask)
        finally:
            model.scales = [1.0] * len(names)
    if not factors:
        return empirical_ntk(model, x, mask=mask)
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    try:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.mul_(factors.get(n, 1.0))
        return empirical_ntk(model, x, mask=mask)
    finally:
        model.load_state_dict(saved)


def run_width_study(study: WidthStudy | None = None, *, out: str | Path = "prunelab-ntk") -> dict[str, Any]:
    """Run the study (default: :class:`WidthStudy`'s defaults); write ``ntk_width_study.json`` and
    ``ntk_width_study.png`` into ``out``."""
    study = study if study is not None else WidthStudy()
    started = time.perf_counter()
    x = sphere_inputs(
        study.inputs, study.input_dim, torch.Generator().manual_seed(derived_seed(study.seed, "inputs") % 2**63)
    )
    limit = limit_ntk(x, study.depth) if study.parameterization == "ntk" else None
    x32 = x.to(torch.float32)
    records: list[dict[str, Any]] = []
    for width in study.widths:
        for replicate in range(study.replicates):
            generator = torch.Generator().manual_seed(derived_seed(study.seed, "weights", width, replicate) % 2**63)
            model = _network(study, width, generator)
            dense = empirical_ntk(model, x32).to(torch.float64)
            base = {"width": width, "replicate": replicate}
            if limit is not None:
                records.append(
                    {
                        **base,
                        "density": 1.0,
                        "rescale": None,
                        "distance_to_limit": relative_frobenius_difference(limit, dense),
                    }
                )
            names = _pruned_names(model, study)
            params = dict(model.named_parameters())
            ones = Mask.ones_like({n: params[n] for n in names})
            scores = random_scores_like(
                ones, torch.Generator().manual_seed(derived_seed(study.seed, "mask", width, replicate) % 2**63)
            )
            for density in study.densities:
                mask = select_by_density(scores, ones, density, scope="global")
                for rescale in (False, True):
                    kernel = _pruned_kernel(model, x32, mask, rescale, study.rescale_mode).to(torch.float64)
                    record = {
                        **base,
                        "density": density,
                        "rescale": rescale,
                        "kept": mask.num_kept,
                        "disconnected": not bool(kernel.abs().sum() > 0),
                    }
                    if not record["disconnected"]:  # else no path from input to output survived: no kernel
                        record.update(compare_kernels(dense, kernel))
                        if limit is not None:
                            record["distance_to_limit"] = relative_frobenius_difference(limit, kernel)
                    records.append(record)
    table = _aggregate(records)
    seconds = time.perf_counter() - started
    folder = Path(out)
    result = {
        "format": "prunelab.ntk-width/1",
        "study": dataclasses.asdict(study),
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "table": table,
        "records": records,
        "json": str(folder / "ntk_width_study.json"),
        "plot": str(folder / "ntk_width_study.png"),
    }
    from prunelab.analysis.ntk_plots import plot_width_study

    plot_width_study(table, folder / "ntk_width_study.png", study)
    atomic_write_json(folder / "ntk_width_study.json", json.loads(json.dumps(result)))
    return result


def _aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over replicates per (width, density, rescale); ``*_std`` the standard deviation."""
    groups: dict[tuple[int, float, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["width"], r["density"], r["rescale"])].append(r)
    keys = ("kernel_distance", "rel_frobenius", "rel_frobenius_scaled", "scale", "distance_to_limit")
    table = []
    for (width, density, rescale), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], str(kv[0][2]))):
        entry: dict[str, Any] = {
            "width": width,
            "density": density,
            "rescale": rescale,
            "replicates": len(rows),
            "disconnected": sum(1 for r in rows if r.get("disconnected")),
        }
        for key in keys:
            values = [r[key] for r in rows if r.get(key) is not None]
            entry[key] = statistics.fmean(values) if values else None
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        table.append(entry)
    return table
