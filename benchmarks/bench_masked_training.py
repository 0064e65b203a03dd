"""Masked training with prunelab's trainer vs a minimal hand-written PyTorch loop.

Both train the same model from the same initial weights on the same data for the same number of
steps, with the same data pipeline (uint8 tensors indexed per batch and normalised on the fly) and
one evaluation at the end. prunelab trains under a 90%-sparse mask (gradient and weight masking
every step); the plain loop trains dense. Runs alternate (plain, prunelab, plain, ...) so that
machine noise hits both; the reported figure is the median of the per-pair time ratios.

    python benchmarks/bench_masked_training.py [--repeats 5] [--models lenet,resnet20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from prunelab.data import BatchLoader, load_dataset
from prunelab.masks import Mask
from prunelab.models import build_model, prunable_parameters
from prunelab.specs import DatasetSpec, ModelSpec, TrainingSpec
from prunelab.training import train

CASES = {
    # name: (dataset spec, model, batch size, steps)
    "lenet": (
        DatasetSpec(name="synthetic", synthetic_shape=(1, 28, 28), synthetic_train_size=8000, augment=False),
        "lenet_300_100",
        128,
        1500,
    ),
    "resnet20": (
        DatasetSpec(name="synthetic", synthetic_shape=(3, 32, 32), synthetic_train_size=2048, augment=False),
        "cifar_resnet_20",
        64,
        60,
    ),
}


def random_mask(model: torch.nn.Module, density: float, seed: int) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=g) < density for n, p in prunable_parameters(model).items()})


def plain_loop(model, loader, test_loader, steps: int, lr: float) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    started = time.perf_counter()
    model.train()
    step = 0
    epoch = 0
    while step < steps:
        for x, y in loader.epoch(epoch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    model.eval()
    with torch.no_grad():
        for x, y in test_loader.epoch(0):
            model(x).argmax(1).eq(y).sum()
    return time.perf_counter() - started


def prunelab_loop(model, loader, test_loader, steps: int, lr: float, mask: Mask) -> float:
    spec = TrainingSpec(
        optimizer="sgd",
        lr=lr,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=loader.batch_size,
        steps=f"{steps}it",
        schedule="constant",
        eval_every=None,
        checkpoint_every="1000000it",
        progress=False,
        device="cpu",
    )
    started = time.perf_counter()
    train(model, loader, test_loader, spec, out_dir=None, mask=mask, prunable=prunable_parameters(model))
    return time.perf_counter() - started


def bench(name: str, repeats: int) -> dict:
    dataset_spec, model_name, batch, steps = CASES[name]
    splits = load_dataset(dataset_spec)
    loader = BatchLoader(splits.train, batch, shuffle=True, order_seed=0, augment=False)
    test_loader = BatchLoader(splits.test, 1000, shuffle=False, augment=False)
    spec = ModelSpec(name=model_name)
    ratios, plain_times, masked_times = [], [], []
    for r in range(repeats + 1):
        m1 = build_model(spec, input_shape=splits.input_shape, num_classes=splits.num_classes, seed=r)
        m2 = build_model(spec, input_shape=splits.input_shape, num_classes=splits.num_classes, seed=r)
        mask = random_mask(m2, 0.1, r)
        t_plain = plain_loop(m1, loader, test_loader, steps, 0.05)
        t_masked = prunelab_loop(m2, loader, test_loader, steps, 0.05, mask)
        if r == 0:
            continue  # warm-up pair (allocator, thread pools)
        plain_times.append(t_plain)
        masked_times.append(t_masked)
        ratios.append(t_masked / t_plain)
    return {
        "case": name,
        "model": model_name,
        "batch_size": batch,
        "steps": steps,
        "repeats": repeats,
        "plain_seconds_median": round(statistics.median(plain_times), 3),
        "prunelab_masked_seconds_median": round(statistics.median(masked_times), 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="lenet,resnet20")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both sides (1 keeps a shared 2-core machine's noise down)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench(name.strip(), args.repeats) for name in args.models.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"{r['case']:>9}: plain {r['plain_seconds_median']:.3f}s  prunelab(90% sparse) "
                f"{r['prunelab_masked_seconds_median']:.3f}s  ratio {r['ratio_median']:.3f} "
                f"(min {r['ratio_min']:.3f}, max {r['ratio_max']:.3f}, {r['repeats']} pairs)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
