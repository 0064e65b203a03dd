"""Seconds to compute each pruning-at-initialisation strategy's mask on CIFAR ResNet-20 (CPU).

Each strategy prunes a freshly initialised ResNet-20 to 10% density with its published number of
iterations (SynFlow 100, iterative SNIP 100, NTK-SAP 20, the others 1) on 10 examples per class of
synthetic 3x32x32 data (the cost does not depend on pixel values). ``--iterations N`` overrides the
iteration count for every strategy, to compare per-iteration cost.

    python benchmarks/bench_scoring.py [--strategies snip,synflow] [--iterations N] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from prunelab.data import BatchLoader, load_dataset
from prunelab.models import build_model, prunable_parameters
from prunelab.pruning import get_strategy, prune
from prunelab.specs import DatasetSpec, ModelSpec

STRATEGIES = ("random", "magnitude", "snip", "grasp", "grasp_abs", "synflow", "iterative_snip", "ntksap")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--iterations", type=int, help="override every strategy's iteration count")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset(DatasetSpec(name="synthetic", synthetic_shape=(3, 32, 32), synthetic_train_size=100,
                                      synthetic_test_size=10, augment=False))
    indices = splits.train.class_balanced_indices(10, 0)
    loader = BatchLoader(splits.train.subset(indices), 100, shuffle=False, augment=False)
    batches = list(loader.epoch(0))
    results = []
    for name in args.strategies.split(","):
        strategy = get_strategy(name)
        model = build_model(ModelSpec(name="cifar_resnet_20"), input_shape=(3, 32, 32), num_classes=10, seed=0)
        iterations = args.iterations or strategy.default_iterations
        options = {"input_shape": (3, 32, 32)} if name in ("synflow", "ntksap") else {}
        started = time.perf_counter()
        mask = prune(model, name, 0.1, batches if strategy.needs_data else None, iterations=iterations,
                     params=prunable_parameters(model), **options)
        seconds = time.perf_counter() - started
        results.append({"strategy": name, "iterations": iterations, "seconds": round(seconds, 2),
                        "seconds_per_iteration": round(seconds / iterations, 3), "density": round(mask.density, 4)})
        if not args.json:
            r = results[-1]
            print(f"{name:>15}: {r['seconds']:8.2f} s  ({iterations} iterations, {r['seconds_per_iteration']:.3f} s each)",
                  flush=True)
    if args.json:
        print(json.dumps({"model": "cifar_resnet_20", "threads": args.threads, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
