"""``prunelab train``: train one network and store the run."""

from __future__ import annotations

import argparse

from prunelab.cli.common import (
    EXIT_TRIALS_FAILED,
    add_executor_arguments,
    add_spec_arguments,
    format_table,
    print_json,
    run_study,
    seeds_from_args,
    spec_from_args,
)
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network (dense) and store the run",
        description="Train a network from a preset/config plus dotted overrides. Re-running the same spec "
        "returns the stored result at once; an interrupted run resumes from its last checkpoint.",
    )
    add_spec_arguments(p)
    p.add_argument("--save-steps", help="extra steps whose weights are saved for branching, e.g. 1000it,2000it")
    p.add_argument("--seeds", help="replicate seeds, e.g. 1,2,3 (one run each)")
    p.add_argument("--replicates", type=int, help="run seeds 0..N-1")
    add_executor_arguments(p)
    p.set_defaults(handler=handle, accepts_overrides=True)


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    from prunelab.experiments.study import Study
    from prunelab.experiments.sweeps import train_points

    if args.save_steps:
        overrides = [*overrides, f"--train.save_steps={args.save_steps}"]
    spec = spec_from_args(args, overrides)
    result = run_study(args, Study(train_points(spec, seeds_from_args(args, spec.seed)), RunStore(args.home)))
    summaries = result.summaries()
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
    else:
        print(
            format_table(summaries, ["run_id", "test_accuracy", "test_loss", "density", "final_step", "wall_seconds"])
        )
    return 0 if result.ok else EXIT_TRIALS_FAILED
