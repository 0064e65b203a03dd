"""``train.compile``: masked training with the forward compiled by ``torch.compile`` vs eager.

For each model, a 50%-dense mask is trained with prunelab's ``train()`` (SGD, momentum 0.9) on
synthetic data, once eager and once compiled. The compiled side first runs a warm-up call of
``--warmup`` steps that pays the compilation (reported as the compile time: that call's time
minus its steps at the steady rate); then eager and compiled timed calls of ``--steps`` steps
alternate. The figure is the median of the per-pair ratios compiled / eager of the steady-state
time (below 1: compiling helps), and the break-even run length (steps after which the
compilation has paid for itself).

    python benchmarks/bench_compile.py --threads 1 --pairs 3 [--models lenet,conv6]
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
from prunelab.training import train

CASES = {
    # name: (input shape, model, batch size, default steps)
    "lenet": ((1, 28, 28), "lenet_300_100", 128, 400),
    "conv6": ((3, 32, 32), "conv6", 60, 40),
}


def run(model, loader, steps: int, mask: Mask, compiled: bool) -> float:
    spec = TrainingSpec(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=loader.batch_size,
        steps=f"{steps}it",
        schedule="constant",
        eval_every=None,
        checkpoint_every="1000000it",
        progress=False,
        device="cpu",
        compile=compiled,
    )
    started = time.perf_counter()
    train(model, loader, None, spec, out_dir=None, mask=mask, prunable=prunable_parameters(model), log=lambda _: None)
    return time.perf_counter() - started


def bench(name: str, pairs: int, steps: int | None, warmup: int) -> dict:
    shape, model_name, batch, default_steps = CASES[name]
    steps = steps or default_steps
    data = load_dataset(
        DatasetSpec(name="synthetic", synthetic_shape=shape, synthetic_train_size=batch * 50, augment=False)
    )
    loader = BatchLoader(data.train, batch, shuffle=True, order_seed=0, augment=False)

    def fresh() -> tuple[torch.nn.Module, Mask]:
        model = build_model(ModelSpec(name=model_name), input_shape=shape, num_classes=10, seed=0)
        g = torch.Generator().manual_seed(0)
        return model, Mask({n: torch.rand(p.shape, generator=g) < 0.5 for n, p in prunable_parameters(model).items()})

    eager_model, eager_mask = fresh()
    compiled_model, compiled_mask = fresh()
    run(eager_model, loader, warmup, eager_mask, compiled=False)
    first = run(compiled_model, loader, warmup, compiled_mask, compiled=True)  # pays the compilation
    eager_times, compiled_times = [], []
    for index in range(pairs):
        order = (False, True) if index % 2 == 0 else (True, False)
        for compiled in order:
            model, mask = (compiled_model, compiled_mask) if compiled else (eager_model, eager_mask)
            (compiled_times if compiled else eager_times).append(run(model, loader, steps, mask, compiled))
    ratios = [c / e for c, e in zip(compiled_times, eager_times)]
    eager_step = statistics.median(eager_times) / steps
    compiled_step = statistics.median(compiled_times) / steps
    compile_seconds = max(0.0, first - warmup * compiled_step)
    saving = eager_step - compiled_step
    return {
        "model": name,
        "steps": steps,
        "batch": batch,
        "pairs": pairs,
        "eager_ms_per_step": 1e3 * eager_step,
        "compiled_ms_per_step": 1e3 * compiled_step,
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "compile_seconds": compile_seconds,
        "break_even_steps": round(compile_seconds / saving) if saving > 0 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, help="steps per timed call (default: per model)")
    parser.add_argument("--warmup", type=int, default=5, help="steps of the untimed warm-up calls (default 5)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench(name.strip(), args.pairs, args.steps, args.warmup) for name in args.models.split(",") if name.strip()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for r in rows:
        even = f"{r['break_even_steps']} steps" if r["break_even_steps"] is not None else "never"
        print(
            f"{r['model']:>6}: eager {r['eager_ms_per_step']:.2f} ms/step, compiled {r['compiled_ms_per_step']:.2f} "
            f"ms/step, ratio {r['ratio_median']:.3f} ({r['ratio_range'][0]:.3f}-{r['ratio_range'][1]:.3f}); "
            f"compilation {r['compile_seconds']:.1f} s, pays for itself after {even}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
