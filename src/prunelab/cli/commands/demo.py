"""``prunelab demo``: the main job on built-in offline data, with a results table."""

from __future__ import annotations

import argparse

from prunelab.cli.common import format_table
from prunelab.experiments.train import run_train
from prunelab.specs import load_spec
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="a short experiment on offline data (scikit-learn digits)")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    rows = []
    for seed in (0, 1):
        spec = load_spec("digits_lenet_300_100", overrides={"seed": str(seed), "train.progress": "false"})
        rows.append({"seed": seed, **run_train(spec, store=store)})
    print(format_table(rows, ["seed", "run_id", "test_accuracy", "density", "wall_seconds"]))
    return 0
