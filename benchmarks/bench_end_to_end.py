"""End to end: ``prunelab train`` in a fresh process against a minimal standalone PyTorch script
doing the same work in a fresh process, plus the start-up time of ``prunelab --help`` and
``prunelab runs``.

The work is 400 iterations of LeNet-300-100 on mnist10k (``--preset mnist10k_lenet_300_100``: SGD,
lr 0.1, batch 128, an evaluation of the 2,000 test images at step 0, after every epoch and at the
end). The baseline is ``benchmarks/standalone_lenet.py``. Each ``prunelab train`` gets an empty run
store, so it trains (and writes its run: spec, weights at steps 0 and 400, checkpoints, metrics,
mask, summary) instead of returning a stored result. Runs alternate (prunelab first in even pairs)
after one untimed warm-up pair; the figure is the median of the per-pair ratios prunelab /
standalone, in wall-clock time and in CPU time (user + system of the child, steadier on a shared
machine).

    PRUNELAB_DATA=/path/with/mnist-10k python benchmarks/bench_end_to_end.py --pairs 7 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STANDALONE = REPO / "benchmarks" / "standalone_lenet.py"
PRESET = "mnist10k_lenet_300_100"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of running ``argv`` to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="timed pairs after the warm-up pair (default 5)")
    parser.add_argument("--steps", type=int, default=400, help="training iterations (default 400)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of both sides (default: inherited)")
    parser.add_argument(
        "--startup-repeats", type=int, default=5, help="runs of `prunelab --help` and `runs` (default 5)"
    )
    parser.add_argument(
        "--prunelab-args", default="", help="extra arguments of `prunelab train`, e.g. --train.compile=true"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not os.environ.get("PRUNELAB_DATA"):
        raise SystemExit("set PRUNELAB_DATA to a directory holding mnist-10k/ (t10k-images-idx3-ubyte.gz, ...)")

    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    prunelab = [sys.executable, "-m", "prunelab"]
    standalone = [sys.executable, str(STANDALONE), "--steps", str(args.steps)]

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:

        def run_prunelab() -> tuple[float, float]:
            home = tempfile.mkdtemp(dir=scratch)  # an empty store: the run is trained, not reused
            return timed(
                [
                    *prunelab,
                    "train",
                    "--preset",
                    PRESET,
                    f"--train.steps={args.steps}it",
                    "--no-progress",
                    "--home",
                    home,
                    *args.prunelab_args.split(),
                ],
                env,
            )

        def run_standalone() -> tuple[float, float]:
            return timed([*standalone, "--out", tempfile.mkdtemp(dir=scratch)], env)

        run_prunelab(), run_standalone()  # warm-up: byte-code caches, page cache
        pairs = []
        for index in range(args.pairs):
            if index % 2 == 0:
                ours, theirs = run_prunelab(), run_standalone()
            else:
                theirs, ours = run_standalone(), run_prunelab()
            pairs.append({"prunelab": ours, "standalone": theirs})
            print(
                f"pair {index + 1}: prunelab {ours[0]:.2f} s ({ours[1]:.2f} s CPU), standalone {theirs[0]:.2f} s "
                f"({theirs[1]:.2f} s CPU): {ours[0] / theirs[0]:.3f}",
                file=sys.stderr,
            )

        home = tempfile.mkdtemp(dir=scratch)
        timed([*prunelab, "train", "--preset", PRESET, "--train.steps=2it", "--no-progress", "--home", home], env)
        startup = {
            "help": [timed([*prunelab, "--help"], env) for _ in range(args.startup_repeats)],
            "runs": [timed([*prunelab, "runs", "--home", home], env) for _ in range(args.startup_repeats)],
        }

    wall_ratios = [p["prunelab"][0] / p["standalone"][0] for p in pairs]
    cpu_ratios = [p["prunelab"][1] / p["standalone"][1] for p in pairs]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "threads": env.get("OMP_NUM_THREADS", "default"),
        "pairs": len(pairs),
        "prunelab_wall_median": statistics.median(p["prunelab"][0] for p in pairs),
        "standalone_wall_median": statistics.median(p["standalone"][0] for p in pairs),
        "wall_ratio_median": statistics.median(wall_ratios),
        "wall_ratio_range": [min(wall_ratios), max(wall_ratios)],
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "help_seconds_median": statistics.median(w for w, _ in startup["help"]),
        "help_cpu_seconds_median": statistics.median(c for _, c in startup["help"]),
        "runs_seconds_median": statistics.median(w for w, _ in startup["runs"]),
        "runs_cpu_seconds_median": statistics.median(c for _, c in startup["runs"]),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['machine']}, OMP_NUM_THREADS={result['threads']}, {len(pairs)} pairs")
    print(
        f"prunelab train (fresh process, {args.steps} it): {result['prunelab_wall_median']:.2f} s median; "
        f"standalone: {result['standalone_wall_median']:.2f} s"
    )
    print(
        f"ratio prunelab / standalone: wall {result['wall_ratio_median']:.3f} "
        f"(range {min(wall_ratios):.3f}-{max(wall_ratios):.3f}), CPU {result['cpu_ratio_median']:.3f}  (target <= 1.3)"
    )
    print(
        f"prunelab --help: {result['help_seconds_median']:.3f} s ({result['help_cpu_seconds_median']:.3f} s CPU); "
        f"prunelab runs: {result['runs_seconds_median']:.3f} s ({result['runs_cpu_seconds_median']:.3f} s CPU)  "
        "(target for --help < 0.5 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
