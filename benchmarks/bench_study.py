"""A study on two local worker processes vs the same study in one process.

Each side is a whole command in a fresh process and a fresh run store — ``prunelab run
configs/mnist10k_study.yaml pai --workers N`` (8 pruning-at-initialisation trials of LeNet-300-100 on the
real 10k MNIST split: 2 strategies × 2 densities × 2 seeds, 2 epochs each) — so start-up, data reading and
every store write are counted. Runs alternate (2 workers, 1 worker, ...) so the machine's load hits both;
the figure is the median of the per-pair ratios ``wall(2 workers) / wall(1 worker)`` (below 1: faster).
``PRUNELAB_DATA`` must hold ``mnist-10k`` (default: ../shared/data beside the repository).

    python benchmarks/bench_study.py [--repeats 3] [--workers 2] [--experiment pai] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mnist10k_study.yaml"


def run_study(workers: int, experiment: str, steps: str | None) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("PRUNELAB_DATA", str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "prunelab",
                "run",
                str(CONFIG),
                experiment,
                "--workers",
                str(workers),
                "--home",
                home,
                "--no-progress",
                "--json",
                # packing off on both sides: the figure is the executor's parallelism alone
                "--pack",
                "1",
                *([f"--train.steps={steps}"] if steps else []),
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the parallel side (default 2)")
    parser.add_argument("--experiment", default="pai", help="experiment of configs/mnist10k_study.yaml (default pai)")
    parser.add_argument("--steps", help="training length of each trial (default: the experiment's, 2ep)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pairs = []
    for _ in range(args.repeats):
        parallel = run_study(args.workers, args.experiment, args.steps)
        serial = run_study(1, args.experiment, args.steps)
        pairs.append((parallel, serial))
        if not args.json:
            print(
                f"{args.workers} workers {parallel:7.1f} s   1 worker {serial:7.1f} s   ratio {parallel / serial:.3f}",
                flush=True,
            )
    ratios = [p / s for p, s in pairs]
    result = {
        "experiment": args.experiment,
        "workers": args.workers,
        "steps": args.steps,
        "pairs": pairs,
        "median_parallel_s": statistics.median(p for p, _ in pairs),
        "median_serial_s": statistics.median(s for _, s in pairs),
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"median ratio {result['median_ratio']:.3f} (min {result['min_ratio']:.3f}, max "
            f"{result['max_ratio']:.3f}); "
            f"load average {' '.join(f'{x:.2f}' for x in result['load_average'])} on {result['cores']} cores"
        )


if __name__ == "__main__":
    main()
