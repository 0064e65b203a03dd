"""Pruning-at-initialisation scoring: prunelab's ``prune()`` against the reference code's algorithm.

Each strategy prunes a freshly initialised CIFAR ResNet-20 to 10% density with its published number
of iterations (SynFlow 100, iterative SNIP 100, NTK-SAP 20 with R = 5 rounds, the others 1) on 100
class-balanced synthetic 3x32x32 examples (one batch; the cost does not depend on pixel values).

The reference side cannot import the reference repositories, so it is a minimal re-implementation,
written here, of what their pruning loop does per iteration (Synaptic-Flow's ``prune.py`` and
``Pruners/pruners.py``; NTK-SAP's for ``IterSNIP`` and ``NTKSAP``): the network's Conv/Linear layers
multiply their weights by a ``weight_mask`` buffer in ``forward`` (``Layers/layers.py``; BatchNorm
multiplies its affine parameters by masks too), a pruner's ``score`` runs on that network in place
(SynFlow: ``abs_()`` over the state dict and the signs multiplied back; NTK-SAP: a ``deepcopy``
per call, ``_initialize_weights`` per round), and ``_global_mask`` thresholds the concatenated
scores with ``torch.kthvalue`` (float32 throughout). prunelab's side is ``prune(...)`` with its
defaults. Both sides run on the same model (the same initial weights) and batch; a side's model is
built before its timer starts. Runs alternate (reference first in even pairs, prunelab first in odd
ones) after one untimed single-iteration warm-up pair; the figure is the median of the per-pair
ratios prunelab / reference.

    python benchmarks/bench_scoring.py [--strategies snip,synflow] [--repeats 3] [--threads 1]
                                       [--iterations N] [--device cpu|cuda] [--json]

``--iterations N`` overrides every strategy's iteration count (NTK-SAP's cost per iteration is
constant, so a few iterations give its ratio in less time).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.data import BatchLoader, load_dataset
from prunelab.models import build_model, prunable_parameters
from prunelab.pruning import get_strategy, prune
from prunelab.specs import DatasetSpec, ModelSpec

STRATEGIES = ("random", "magnitude", "snip", "grasp", "grasp_abs", "synflow", "iterative_snip", "ntksap")
DENSITY = 0.1
INPUT_SHAPE = (3, 32, 32)
NTKSAP_ROUNDS = 5
NTKSAP_EPSILON = 0.01


# the reference's network: layers that multiply their weights by mask buffers in forward ------------------
class _MaskedConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias_mask * self.bias if self.bias is not None else None
        return self._conv_forward(x, self.weight_mask * self.weight, bias)


class _MaskedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias_mask * self.bias if self.bias is not None else None
        return F.linear(x, self.weight_mask * self.weight, bias)


class _MaskedBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight_mask * self.weight,
            self.bias_mask * self.bias,
            self.training or not self.track_running_stats,
            factor,
            self.eps,
        )


def reference_network(model: nn.Module) -> tuple[nn.Module, list[tuple[torch.Tensor, nn.Parameter]]]:
    """A copy of ``model`` made of masked layers, and its ``(mask, weight)`` pairs (Conv/Linear weights)."""
    net = copy.deepcopy(model)
    pairs = []
    for module in net.modules():
        swap = {nn.Conv2d: _MaskedConv2d, nn.Linear: _MaskedLinear, nn.BatchNorm2d: _MaskedBatchNorm2d}.get(
            type(module)
        )
        if swap is None:
            continue
        module.__class__ = swap
        module.register_buffer("weight_mask", torch.ones_like(module.weight))
        if module.bias is not None:
            module.register_buffer("bias_mask", torch.ones_like(module.bias))
        if swap is not _MaskedBatchNorm2d:
            pairs.append((module.weight_mask, module.weight))
    return net, pairs


def _initialize_weights(net: nn.Module) -> None:
    """The reference models' ``_initialize_weights``: Kaiming normal Conv/Linear weights, zero biases, BN (1, 0)."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


# the reference's pruners: one score call --------------------------------------------------------------
class ReferencePruner:
    def __init__(self, name: str, pairs: list[tuple[torch.Tensor, nn.Parameter]]) -> None:
        self.name, self.pairs, self.scores = name, pairs, {}

    def score(self, model: nn.Module, batches: list, device: torch.device) -> None:
        getattr(self, "_" + self.name)(model, batches, device)

    def _random(self, model, batches, device) -> None:
        for _, p in self.pairs:
            self.scores[id(p)] = torch.randn_like(p)

    def _magnitude(self, model, batches, device) -> None:
        for _, p in self.pairs:
            self.scores[id(p)] = torch.clone(p.data).detach().abs_()

    def _normalise(self, absolute: bool) -> None:
        total = torch.sum(torch.cat([torch.flatten(v) for v in self.scores.values()]))
        norm = total if not absolute else torch.abs(total) + 1e-10
        for _, p in self.pairs:
            self.scores[id(p)].div_(norm)

    def _snip(self, model, batches, device, of_weights: bool = False) -> None:
        for m, _ in self.pairs:
            m.requires_grad = True
        for x, y in batches:
            F.cross_entropy(model(x), y).backward()
        for m, p in self.pairs:
            self.scores[id(p)] = torch.clone(p.grad * p if of_weights else m.grad).detach().abs_()
            p.grad.data.zero_()
            m.grad.data.zero_()
            m.requires_grad = False
        self._normalise(absolute=False)

    def _iterative_snip(self, model, batches, device) -> None:
        self._snip(model, batches, device, of_weights=True)

    def _grasp(self, model, batches, device, absolute: bool = False) -> None:
        params = [p for _, p in self.pairs]
        stopped = 0
        for x, y in batches:
            grads = torch.autograd.grad(F.cross_entropy(model(x) / 200, y), params)
            stopped += torch.cat([g.reshape(-1) for g in grads])
        for x, y in batches:
            grads = torch.autograd.grad(F.cross_entropy(model(x) / 200, y), params, create_graph=True)
            (stopped * torch.cat([g.reshape(-1) for g in grads])).sum().backward()
        for _, p in self.pairs:
            s = torch.clone(p.grad * p.data).detach()
            self.scores[id(p)] = s.abs_() if absolute else s
            p.grad.data.zero_()
        self._normalise(absolute=True)

    def _grasp_abs(self, model, batches, device) -> None:
        self._grasp(model, batches, device, absolute=True)

    def _synflow(self, model, batches, device) -> None:
        with torch.no_grad():
            signs = {}
            for name, t in model.state_dict().items():
                signs[name] = torch.sign(t)
                t.abs_()
        x, _ = batches[0]
        out = model(torch.ones([1] + list(x[0, :].shape)).to(device))
        torch.sum(out).backward()
        for _, p in self.pairs:
            self.scores[id(p)] = torch.clone(p.grad * p).detach().abs_()
            p.grad.data.zero_()
        with torch.no_grad():
            for name, t in model.state_dict().items():
                t.mul_(signs[name])

    def _ntksap(self, model, batches, device) -> None:
        for m, p in self.pairs:
            m.requires_grad = True
            p.requires_grad = False
        model_mod = copy.deepcopy(model)
        model_mod.eval()
        for module, module_mod in zip(model.modules(), model_mod.modules()):
            if hasattr(module, "weight_mask"):
                module_mod.weight_mask = module.weight_mask
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 1.0
                module_mod.momentum = 1.0
        orig_params = [p for _, p in self.pairs]
        mod_params = [mm.weight for mm in model_mod.modules() if isinstance(mm, (nn.Conv2d, nn.Linear))]
        for _ in range(NTKSAP_ROUNDS):
            for x, _ in batches:
                _initialize_weights(model)
                inputs = torch.randn_like(x).to(device)
                with torch.no_grad():
                    for m in model.modules():
                        if isinstance(m, nn.BatchNorm2d):
                            m.reset_running_stats()
                    model(inputs)
                model.eval()
                out_orig = model(inputs)
                with torch.no_grad():
                    for p_orig, p_copy in zip(orig_params, mod_params):
                        p_copy.data = p_orig.data + NTKSAP_EPSILON * torch.randn_like(p_orig.data)
                for module, module_mod in zip(model.modules(), model_mod.modules()):
                    if isinstance(module, nn.BatchNorm2d):
                        module_mod.running_mean = module.running_mean
                        module_mod.running_var = module.running_var
                        module_mod.num_batches_tracked = module.num_batches_tracked
                out_mod = model_mod(inputs)
                (torch.norm(out_orig - out_mod, dim=-1) ** 2).sum().backward()
                model.train()
        for m, p in self.pairs:
            self.scores[id(p)] = torch.clone(m.grad * (m != 0)).detach().abs_()
            m.grad.data.zero_()
            m.requires_grad = False
            p.requires_grad = True
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1

    def global_mask(self, sparsity: float) -> None:
        """``_global_mask``: keep the scores above the ``kthvalue`` threshold of all of them."""
        scores = torch.cat([torch.flatten(v) for v in self.scores.values()])
        k = int((1.0 - sparsity) * scores.numel())
        if not k < 1:
            threshold, _ = torch.kthvalue(scores, k)
            for mask, p in self.pairs:
                zero, one = torch.tensor([0.0]).to(mask.device), torch.tensor([1.0]).to(mask.device)
                mask.copy_(torch.where(self.scores[id(p)] <= threshold, zero, one))


def reference_prune(net: nn.Module, pairs, name: str, batches: list, iterations: int, device: torch.device) -> None:
    """``prune_loop`` with the exponential schedule and global scope; BatchNorm in train mode
    (``--prune-train-mode True``, as prunelab's data-dependent defaults) except SynFlow (eval, its default)."""
    pruner = ReferencePruner(name, pairs)
    net.train()
    if name == "synflow":
        net.eval()
    for epoch in range(iterations):
        pruner.score(net, batches, device)
        pruner.global_mask(DENSITY ** ((epoch + 1) / iterations))


# timing ---------------------------------------------------------------------------------------------------
def _timed(run: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure(name: str, iterations: int, repeats: int, batches: list, device: torch.device) -> dict:
    """Median seconds of each side and the median of the per-pair ratios. A timed run repeats the
    whole pruning ``calls`` times (the same on both sides, chosen so that a run lasts about a second)
    so that one-iteration strategies are not timed at the resolution of the machine's noise."""
    strategy = get_strategy(name)
    model = build_model(ModelSpec(name="cifar_resnet_20"), input_shape=INPUT_SHAPE, num_classes=10, seed=0).to(device)
    data = batches if strategy.needs_data else None
    options = {"input_shape": INPUT_SHAPE} if name in ("synflow", "ntksap") else {}
    if name == "ntksap":
        options["rounds"] = NTKSAP_ROUNDS
    params = prunable_parameters(model)

    def ours(n: int, calls: int) -> Callable[[], object]:
        return lambda: [
            prune(model, name, DENSITY, data, iterations=n, params=params, device=device, **options)
            for _ in range(calls)
        ]

    def reference(n: int, calls: int) -> Callable[[], object]:
        torch.manual_seed(0)
        nets = [reference_network(model) for _ in range(calls)]  # built before the timer starts
        return lambda: [reference_prune(net, pairs, name, batches, n, device) for net, pairs in nets]

    warm = _timed(reference(1, 1), device)  # warm-up, one iteration each
    _timed(ours(1, 1), device)
    calls = max(1, round(1.0 / max(warm, 1e-3))) if iterations == 1 else 1
    times: dict[str, list[float]] = {"reference": [], "prunelab": []}
    for r in range(repeats):
        order = ("reference", "prunelab") if r % 2 == 0 else ("prunelab", "reference")
        for side in order:
            run = reference(iterations, calls) if side == "reference" else ours(iterations, calls)
            times[side].append(_timed(run, device) / calls)
    ratios = [o / ref for o, ref in zip(times["prunelab"], times["reference"])]
    return {
        "strategy": name,
        "iterations": iterations,
        "calls_per_run": calls,
        "reference_s": round(statistics.median(times["reference"]), 4),
        "prunelab_s": round(statistics.median(times["prunelab"]), 4),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def pruning_batches(device: torch.device) -> list:
    splits = load_dataset(
        DatasetSpec(
            name="synthetic",
            synthetic_shape=INPUT_SHAPE,
            synthetic_train_size=100,
            synthetic_test_size=10,
            augment=False,
        )
    )
    indices = splits.train.class_balanced_indices(10, 0)
    loader = BatchLoader(splits.train.subset(indices), 100, shuffle=False, augment=False)
    return [(x.to(device), y.to(device)) for x, y in loader.epoch(0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--iterations", type=int, help="override every strategy's iteration count")
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs per strategy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # SynFlow's layer-collapse warning at 10% on ResNet-20
    device = torch.device(args.device)
    batches = pruning_batches(device)
    results = []
    for name in args.strategies.split(","):
        iterations = args.iterations or get_strategy(name).default_iterations
        r = measure(name, iterations, args.repeats, batches, device)
        results.append(r)
        if not args.json:
            print(
                f"{name:>15} ({iterations:>3} it): reference {r['reference_s']:8.3f} s  prunelab "
                f"{r['prunelab_s']:8.3f} s"
                f"  ratio {r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f})",
                flush=True,
            )
    if args.json:
        print(
            json.dumps(
                {
                    "model": "cifar_resnet_20",
                    "threads": args.threads,
                    "device": str(device),
                    "repeats": args.repeats,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
