"""``prunelab branch RUN oneshot ...``: prune a trained run at any saved step, start from any saved
step, then train."""

from __future__ import annotations

import argparse

from prunelab.cli.common import format_table, print_json
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "branch",
        help="branch a trained run: prune at one saved step, start from another, train",
        description="Lottery-ticket rewinding is --prune-step <last step> --state-step <k>; pruning at "
        "initialisation is --prune-step 0it --state-step 0it.",
    )
    p.add_argument("run", help="the parent run (id, unique prefix, or directory)")
    p.add_argument("branch", choices=("oneshot",), help="branch type")
    p.add_argument(
        "--strategy",
        default="magnitude",
        help="pruning strategy (magnitude, random, snip, grasp, synflow, ...; snipN/graspN = N examples per class)",
    )
    p.add_argument(
        "--prune-fraction", type=float, required=True, help="fraction of prunable weights removed, e.g. 0.75"
    )
    p.add_argument("--prune-step", default="0it", help="score the weights saved at this step")
    p.add_argument("--state-step", default="0it", help="start training from the weights saved at this step")
    p.add_argument(
        "--start-step",
        help="start the learning-rate schedule and data order at this step "
        "(default: the state step; the Missing-the-Mark fork's default is 0it)",
    )
    p.add_argument("--prune-iterations", type=int, help="prune iteratively in N rounds (exponential schedule)")
    p.add_argument("--prune-highest", action="store_true", default=None, help="remove the highest scores instead")
    p.add_argument("--scope", choices=("global", "layerwise"), default="global")
    p.add_argument("--ignore", default="", help="comma-separated glob patterns of weights never pruned, e.g. fc.weight")
    p.add_argument(
        "--randomize-layerwise", action="store_true", help="shuffle each layer's mask (keeps per-layer densities)"
    )
    p.add_argument(
        "--randomize-global",
        action="store_true",
        help="shuffle the mask over all non-ignored layers together (keeps only the total count)",
    )
    p.add_argument("--reinitialize", action="store_true", help="start from a fresh random initialisation")
    p.add_argument("--model-init", help="initialiser for --reinitialize, e.g. standard_normal")
    p.add_argument("--examples-per-class", type=int, help="data for snip/grasp scoring (default 10)")
    p.add_argument("--home", help="run store root")
    p.add_argument("--json", action="store_true", help="print only the summary JSON on stdout")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    from prunelab.experiments.branch import OneShotBranch, run_oneshot_branch

    branch = OneShotBranch(
        strategy=args.strategy,
        prune_fraction=args.prune_fraction,
        prune_step=args.prune_step,
        state_step=args.state_step,
        start_step=args.start_step,
        prune_iterations=args.prune_iterations,
        prune_highest=args.prune_highest,
        randomize_layerwise=args.randomize_layerwise,
        randomize_global=args.randomize_global,
        reinitialize=args.reinitialize,
        model_init=args.model_init,
        scope=args.scope,
        examples_per_class=args.examples_per_class,
        ignore=tuple(p.strip() for p in args.ignore.split(",") if p.strip()),
    )
    summary = run_oneshot_branch(args.run, branch, store=RunStore(args.home))
    if args.json:
        print_json(summary)
    else:
        print(format_table([summary], ["run_id", "parent", "strategy", "density", "test_accuracy", "wall_seconds"]))
    return 0
