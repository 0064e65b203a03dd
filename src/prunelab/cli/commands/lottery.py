"""``prunelab lottery``: iterative magnitude pruning with rewinding, controls, replicates."""

from __future__ import annotations

import argparse

from prunelab.cli.common import (
    EXIT_TRIALS_FAILED,
    add_executor_arguments,
    add_spec_arguments,
    print_json,
    run_study,
    seeds_from_args,
    spec_from_args,
)
from prunelab.experiments.choices import CONTROLS
from prunelab.store import RunStore


def add_pruning_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pruning (shortcuts for --prune.* overrides)")
    g.add_argument("--strategy", help="level strategy: magnitude (default), random, random_layerwise, random_global")
    g.add_argument("--prune-fraction", type=float, help="fraction of alive weights removed per level (default 0.2)")
    g.add_argument("--scope", choices=("global", "layerwise"), help="one ranking for all layers, or per layer")
    g.add_argument("--rates", help="per-layer fractions, e.g. fc.weight=0.1,conv*=0.15")
    g.add_argument("--ignore", help="comma-separated glob patterns of weights never pruned")
    g.add_argument("--ntk-rescale", action="store_true", help="rescale survivors by 1/sqrt(density)")
    g.add_argument(
        "--ntk-rescale-mode",
        choices=("auto", "global", "per_layer"),
        help="density of the rescaling (implies --ntk-rescale): global = one factor from the considered "
        "weights (Random-Pruning-NTK), per_layer = each layer's own; auto (default): global for "
        "random_global, else per_layer",
    )
    g.add_argument(
        "--count-rule",
        choices=("exact", "openlth"),
        help="weights removed per level: exact = round(f * alive) of the pruned layers (default); "
        "openlth = ceil(f * alive of all prunable layers) + 1, as OpenLTH's sparse_global",
    )


def pruning_overrides(args: argparse.Namespace) -> list[str]:
    pairs = [
        ("strategy", args.strategy),
        ("fraction", args.prune_fraction),
        ("scope", args.scope),
        ("rates", args.rates),
        ("ignore", args.ignore),
        ("ntk_rescale_mode", args.ntk_rescale_mode),
        ("count_rule", args.count_rule),
    ]
    out = [f"--prune.{key}={value}" for key, value in pairs if value is not None]
    if args.ntk_rescale or args.ntk_rescale_mode is not None:
        out.append("--prune.ntk_rescale=true")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lottery",
        help="iterative magnitude pruning with rewinding (lottery tickets)",
        description="Level 0 trains dense; each level prunes a fraction of the alive weights by magnitude, "
        "rewinds the survivors and retrains. Finished levels are reused; --levels can be raised later.",
    )
    add_spec_arguments(p)
    p.add_argument("--levels", type=int, required=True, help="number of pruning levels after the dense level 0")
    p.add_argument("--rewind", help="rewind point, e.g. 0it (default), 1000it, 2ep")
    p.add_argument("--controls", default="", help=f"comma-separated controls per level: {', '.join(CONTROLS)}")
    p.add_argument("--seeds", help="replicate seeds, e.g. 1,2,3")
    p.add_argument("--replicates", type=int, help="run seeds 0..N-1")
    p.add_argument("--replicate", type=int, help="one replicate index (alias of --seed, as in OpenLTH)")
    add_pruning_flags(p)
    add_executor_arguments(p)
    p.set_defaults(handler=handle, accepts_overrides=True)


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    from prunelab.experiments.lottery import LotteryResult
    from prunelab.experiments.study import Study
    from prunelab.experiments.sweeps import lottery_points

    overrides = [*overrides, *pruning_overrides(args)]
    if args.rewind:
        overrides.append(f"--prune.rewind={args.rewind}")
    controls = [c.strip() for c in args.controls.split(",") if c.strip()]
    base = spec_from_args(args, overrides)
    store = RunStore(args.home)
    # the levels of each lottery run in order; its controls and other seeds' lotteries fan out
    result = run_study(
        args, Study(lottery_points(base, args.levels, controls, seeds_from_args(args, base.seed)), store)
    )
    summaries = result.summaries()
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
        return 0 if result.ok else EXIT_TRIALS_FAILED
    for summary in summaries:
        print(f"lottery {summary['run_id']} (seed {summary['seed']}, strategy {summary['strategy']})")
        print(LotteryResult(summary["run_id"], summary["levels"]).table())
        print()
    return 0 if result.ok else EXIT_TRIALS_FAILED
