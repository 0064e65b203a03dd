"""Packed (vectorised) training of K models vs the same K trainings one after another.

For each model and K, both sides train K models — each with its own seed, 50%-density mask and data
order — for the same number of steps with masked SGD (momentum 0.9, weight decay 1e-4), then evaluate
once (and every ``--eval-every`` steps, on ``--test-size`` examples): the sequential side calls
``prunelab.training.train`` K times, the packed side calls
``train_packed`` once with K lanes. Runs alternate (sequential, packed, sequential, ...) so machine
noise hits both; the figure is the median over the pairs of ``sequential time / packed time`` (the
speed-up; above 1 the packed trainer is faster).

    python benchmarks/bench_packed.py [--models lenet,conv6,resnet20] [--lanes 1,2,4,8,16] [--repeats 3]
    python benchmarks/bench_packed.py --quick          # a few steps, K <= 8: a minute on a quiet CPU
    python benchmarks/bench_packed.py --models lenet --eval-every 57 --test-size 10000 --steps 400  # a whole run
    python benchmarks/bench_packed.py --device cuda    # where a GPU is present
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from prunelab.data import BatchLoader, load_dataset
from prunelab.masks import Mask
from prunelab.models import build_model, prunable_parameters
from prunelab.specs import DatasetSpec, ModelSpec, TrainingSpec
from prunelab.training import Lane, train, train_packed

CASES = {
    # name: (input shape, model, batch size, steps, quick steps)
    "lenet": ((1, 28, 28), "lenet_300_100", 60, 200, 40),
    "lenet-digits": ((1, 8, 8), "lenet_300_100", 64, 400, 100),  # the offline digits presets' size
    "conv6": ((3, 32, 32), "conv6", 60, 12, 3),
    "resnet20": ((3, 32, 32), "cifar_resnet_20", 64, 8, 2),
}


def _mask(model: torch.nn.Module, seed: int) -> Mask:
    generator = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=generator) < 0.5 for n, p in prunable_parameters(model).items()})


def _lanes(
    case: str, lanes: int, steps: int, device: torch.device, splits, eval_every: int | None = None
) -> list[Lane]:
    shape, name, batch, _, _ = CASES[case]
    spec = TrainingSpec(
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=batch,
        steps=f"{steps}it",
        schedule="constant",
        eval_every=f"{eval_every}it" if eval_every else None,
        checkpoint_every="0it",
        progress=False,
        device=str(device),
    )
    test = BatchLoader.evaluation(splits.test, 256, device=device)
    out = []
    for k in range(lanes):
        model = build_model(ModelSpec(name=name), input_shape=shape, num_classes=10, seed=k).to(device)
        prunable = prunable_parameters(model)
        out.append(
            Lane(
                model,
                BatchLoader(splits.train, batch, order_seed=k, augment=False, device=device),
                test,
                spec,
                mask=_mask(model, k),
                prunable=prunable,
                seed=k,
                device=device,
                log=lambda _: None,
            )
        )
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sequential(lanes: list[Lane], device: torch.device) -> float:
    started = time.perf_counter()
    for lane in lanes:
        train(
            lane.model,
            lane.train_loader,
            lane.test_loader,
            lane.spec,
            out_dir=None,
            mask=lane.mask,
            prunable=lane.prunable,
            seed=lane.seed,
            device=device,
            log=lane.log,
        )
    _sync(device)
    return time.perf_counter() - started


def _packed(lanes: list[Lane], device: torch.device) -> float:
    started = time.perf_counter()
    for result in train_packed(lanes):
        if isinstance(result, Exception):
            raise result
    _sync(device)
    return time.perf_counter() - started


def measure(
    case: str,
    lanes: int,
    steps: int,
    repeats: int,
    device: torch.device,
    *,
    eval_every: int | None = None,
    test_size: int = 256,
) -> dict:
    shape = CASES[case][0]
    splits = load_dataset(
        DatasetSpec(
            name="synthetic",
            synthetic_shape=shape,
            synthetic_train_size=2048,
            synthetic_test_size=test_size,
            augment=False,
        )
    )
    _packed(_lanes(case, lanes, 2, device, splits), device)  # warm-up (vmap tracing, allocator)
    sequential, packed, ratios = [], [], []
    for _ in range(repeats):
        s = _sequential(_lanes(case, lanes, steps, device, splits, eval_every), device)
        p = _packed(_lanes(case, lanes, steps, device, splits, eval_every), device)
        sequential.append(s)
        packed.append(p)
        ratios.append(s / p)
    return {
        "case": case,
        "K": lanes,
        "steps": steps,
        "sequential_s": round(statistics.median(sequential), 3),
        "packed_s": round(statistics.median(packed), 3),
        "speedup": round(statistics.median(ratios), 3),
        "speedup_min": round(min(ratios), 3),
        "speedup_max": round(max(ratios), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="lenet,lenet-digits,conv6,resnet20", help=f"comma-separated: {', '.join(CASES)}"
    )
    parser.add_argument("--lanes", help="comma-separated K (default 1,2,4,8,16; --quick: 1,2,4,8)")
    parser.add_argument("--steps", type=int, help="training steps per model (default: per model)")
    parser.add_argument("--repeats", type=int, help="alternating pairs per figure (default 3; --quick: 1)")
    parser.add_argument("--eval-every", type=int, help="evaluate every this many steps too (default: only at the end)")
    parser.add_argument("--test-size", type=int, default=256, help="test examples per evaluation (default 256)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="few steps, K <= 8, one pair")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lanes = [int(k) for k in (args.lanes or ("1,2,4,8" if args.quick else "1,2,4,8,16")).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    rows = []
    for case in args.models.split(","):
        if case not in CASES:
            print(f"unknown model {case!r}: use {', '.join(CASES)}", file=sys.stderr)
            return 2
        steps = args.steps or CASES[case][4 if args.quick else 3]
        for k in lanes:
            row = measure(case, k, steps, repeats, device, eval_every=args.eval_every, test_size=args.test_size)
            rows.append(row)
            if not args.json:
                print(
                    f"{case:9s} K={k:<3d} {steps:4d} steps  sequential {row['sequential_s']:8.3f} s  packed "
                    f"{row['packed_s']:8.3f} s  speed-up {row['speedup']:6.2f}x ({row['speedup_min']:.2f}-"
                    f"{row['speedup_max']:.2f})",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
