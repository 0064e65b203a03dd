"""One supermask training iteration vs one masked weight-training iteration, on the same model.

Both sides run the same hand-written iteration loop on the same batches: forward, cross-entropy,
backward, SGD step (momentum 0.9, weight decay 1e-4). The masked side trains the weights under a
fixed random mask at the same density (gradients masked before the step, weights after it, with
``MaskedParameters``: what prunelab's trainer does); the supermask side trains only the scores of
``to_supermask(model, density)``, so its forward also selects the subnet of every layer (one key per
weight, one ``kthvalue``, one comparison) and its backward runs the straight-through gradient.
Runs alternate (masked, supermask, ...) so machine noise hits both; the figure is the median of the
per-pair time ratios. ``mask_ms`` is the time to compute every layer's mask once (no grad), the part
of the supermask iteration that weight training does not have.

    python benchmarks/bench_supermask.py [--repeats 5] [--models lenet,resnet20] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from prunelab.masks import Mask, MaskedParameters
from prunelab.models import build_model, prunable_parameters
from prunelab.specs import ModelSpec
from prunelab.supermask import supermask_layers, to_supermask

CASES = {
    # name: (model, input shape, batch size, iterations)
    "lenet": ("lenet_300_100", (1, 28, 28), 128, 300),
    "conv2": ("conv2", (3, 32, 32), 64, 20),
    "resnet20": ("cifar_resnet_20", (3, 32, 32), 64, 30),
}


def _batches(shape: tuple[int, ...], batch: int, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn((batch, *shape), generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(count)
    ]


def masked_iterations(model: torch.nn.Module, batches: list, density: float) -> float:
    g = torch.Generator().manual_seed(1)
    prunable = prunable_parameters(model)
    mask = Mask({n: torch.rand(p.shape, generator=g) < density for n, p in prunable.items()})
    masked = MaskedParameters(prunable, mask)
    masked.apply_to_weights()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
    model.train()
    started = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        masked.apply_to_gradients()
        opt.step()
        masked.apply_to_weights()
    return time.perf_counter() - started


def supermask_iterations(model: torch.nn.Module, batches: list, density: float) -> float:
    net = to_supermask(model, density, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(
        [p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True
    )
    net.train()
    started = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return time.perf_counter() - started


def mask_milliseconds(model: torch.nn.Module, density: float, repeats: int = 20) -> float:
    layers = list(supermask_layers(to_supermask(model, density, generator=torch.Generator().manual_seed(1))).values())
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            for layer in layers:
                layer.keep_mask()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def bench(name: str, repeats: int, density: float) -> dict:
    model_name, shape, batch, iterations = CASES[name]
    model = build_model(ModelSpec(name=model_name), input_shape=shape, num_classes=10, seed=0)
    batches = _batches(shape, batch, iterations, seed=0)
    masked_iterations(
        build_model(ModelSpec(name=model_name), input_shape=shape, num_classes=10, seed=0), batches[:3], density
    )  # warm-up
    supermask_iterations(model, batches[:3], density)
    ratios, masked_times, supermask_times = [], [], []
    for _ in range(repeats):
        fresh = build_model(ModelSpec(name=model_name), input_shape=shape, num_classes=10, seed=0)
        masked = masked_iterations(fresh, batches, density)
        supermask = supermask_iterations(model, batches, density)
        masked_times.append(masked)
        supermask_times.append(supermask)
        ratios.append(supermask / masked)
    return {
        "case": name,
        "model": model_name,
        "batch": batch,
        "iterations": iterations,
        "density": density,
        "masked_ms_per_it": statistics.median(masked_times) / iterations * 1e3,
        "supermask_ms_per_it": statistics.median(supermask_times) / iterations * 1e3,
        "mask_ms": mask_milliseconds(model, density),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="lenet,resnet20")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench(name, args.repeats, args.density) for name in args.models.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['case']:>9}: masked {r['masked_ms_per_it']:.2f} ms/it, "
            f"supermask {r['supermask_ms_per_it']:.2f} ms/it (masks {r['mask_ms']:.2f} ms), "
            f"ratio {r['ratio_median']:.3f} ({r['ratio_min']:.3f}–{r['ratio_max']:.3f})"
        )


if __name__ == "__main__":
    main()
