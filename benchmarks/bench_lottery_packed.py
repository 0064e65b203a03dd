"""A 3-seed, 8-level lottery with reinit controls: trials packed into vectorised lanes vs one model at a time.

Each side is the whole command in a fresh process and a fresh run store — ``prunelab lottery --preset
mnist10k_lenet_300_100 --levels 8 --controls reinit --seeds 1,2,3 --pack auto`` against the same with
``--pack 1`` — so start-up, data reading, pruning, training, evaluation and every store write are counted.
Both sides use the same executor settings (``--workers``), so the ratio isolates packing. Runs alternate;
the figure is the median of the per-pair ratios ``wall(packed) / wall(unpacked)`` (below 1: faster).
Training is shortened (``--steps``, default 2 epochs per level) to keep a pair to minutes.
``PRUNELAB_DATA`` must hold ``mnist-10k`` (default: ../shared/data beside the repository).

    python benchmarks/bench_lottery_packed.py [--repeats 3] [--steps 2ep] [--workers 1] [--json]
"""

from __future__ import annotations

import argparse
import json

from paired_commands import pair_summary, summary_line, timed_command


def run_lottery(pack: str, steps: str, workers: int, levels: int) -> float:
    args = ["lottery", "--preset", "mnist10k_lenet_300_100", "--levels", str(levels), "--controls", "reinit"]
    args += ["--seeds", "1,2,3", f"--train.steps={steps}", "--pack", pack, "--workers", str(workers)]
    return timed_command([*args, "--no-progress", "--json"], show_stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--steps", default="2ep", help="training length of each level (default 2ep)")
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="local worker processes on both sides (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pairs = []
    for _ in range(args.repeats):
        packed = run_lottery("auto", args.steps, args.workers, args.levels)
        unpacked = run_lottery("1", args.steps, args.workers, args.levels)
        pairs.append((packed, unpacked))
        if not args.json:
            print(f"packed {packed:7.1f} s   unpacked {unpacked:7.1f} s   ratio {packed / unpacked:.3f}", flush=True)
    result = {
        "levels": args.levels,
        "steps": args.steps,
        "workers": args.workers,
        **pair_summary(pairs, "packed", "unpacked"),
    }
    print(json.dumps(result, indent=2) if args.json else summary_line(result))


if __name__ == "__main__":
    main()
