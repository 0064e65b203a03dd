"""A study on two local worker processes vs the same study in one process.

Each side is a whole command in a fresh process and a fresh run store — ``prunelab run
configs/mnist10k_study.yaml pai --workers N`` (8 pruning-at-initialisation trials of LeNet-300-100 on the
real 10k MNIST split: 2 strategies × 2 densities × 2 seeds, 2 epochs each) — so start-up, data reading and
every store write are counted. Runs alternate (2 workers, 1 worker, ...) so the machine's load hits both;
the figure is the median of the per-pair ratios ``wall(2 workers) / wall(1 worker)`` (below 1: faster).
``PRUNELAB_DATA`` must hold ``mnist-10k`` (default: ../shared/data beside the repository).

    python benchmarks/bench_study.py [--repeats 3] [--steps 10ep] [--workers 2] [--experiment pai] [--json]

The recorded figure (benchmarks/README.md) uses ``--steps 10ep``: with the config's 2-epoch trials the
workers' start-up outweighs the second core.
"""

from __future__ import annotations

import argparse
import json

from paired_commands import ROOT, pair_summary, summary_line, timed_command

CONFIG = ROOT / "configs" / "mnist10k_study.yaml"


def run_study(workers: int, experiment: str, steps: str | None) -> float:
    # packing off on both sides: the figure is the executor's parallelism alone
    args = ["run", str(CONFIG), experiment, "--workers", str(workers), "--no-progress", "--json", "--pack", "1"]
    return timed_command([*args, *([f"--train.steps={steps}"] if steps else [])])


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
    result = {
        "experiment": args.experiment,
        "workers": args.workers,
        "steps": args.steps,
        **pair_summary(pairs, "parallel", "serial"),
    }
    print(json.dumps(result, indent=2) if args.json else summary_line(result))


if __name__ == "__main__":
    main()
