"""``prunelab train``: train one network and store the run."""

from __future__ import annotations

import argparse

from prunelab.cli.common import add_spec_arguments, format_table, print_json, spec_from_args
from prunelab.experiments.train import run_train
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
    p.set_defaults(handler=handle, accepts_overrides=True)


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.save_steps:
        overrides = [*overrides, f"--train.save_steps={args.save_steps}"]
    spec = spec_from_args(args, overrides)
    summary = run_train(spec, store=RunStore(args.home))
    if args.json:
        print_json(summary)
    else:
        print(format_table([summary], ["run_id", "test_accuracy", "test_loss", "density", "final_step", "wall_seconds"]))
    return 0
