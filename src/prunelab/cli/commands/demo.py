"""``prunelab demo``: a short lottery-ticket experiment on built-in offline data (scikit-learn
digits), printed as a level table — the quickest way to see the whole pipeline work."""

from __future__ import annotations

import argparse

from prunelab.specs import load_spec
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="a short lottery-ticket run on offline data (digits), with its level table")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.add_argument("--levels", type=int, default=4, help="pruning levels (default 4: down to 41%% density)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    from prunelab.experiments.lottery import LotteryResult, run_lottery

    spec = load_spec("digits_lenet_300_100", overrides={"train.steps": "10ep", "train.progress": "false"})
    print(
        "prunelab demo: lottery ticket (IMP, 20% per level, rewind to init) on scikit-learn digits,\n"
        "LeNet-300-100, with the random re-initialisation control.\n",
        flush=True,
    )
    summary = run_lottery(spec, args.levels, controls=("reinit",), store=RunStore(args.home))
    print(LotteryResult(summary["run_id"], summary["levels"]).table())
    print(f"\nrun {summary['run_id']} in {RunStore(args.home).root}; `prunelab report {summary['run_id']}` plots it.")
    return 0
