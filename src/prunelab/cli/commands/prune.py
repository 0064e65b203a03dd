"""``prunelab prune``: pruning at initialisation (single- or multi-shot), then training."""

from __future__ import annotations

import argparse

from prunelab.cli.common import (
    EXIT_TRIALS_FAILED,
    add_executor_arguments,
    add_spec_arguments,
    floats_from,
    format_table,
    print_json,
    run_study,
    seeds_from_args,
    spec_from_args,
)
from prunelab.experiments.choices import MULTISHOT_ROUND_STEPS, MULTISHOT_ROUNDS
from prunelab.experiments.choices import PRUNE_EXPERIMENTS as EXPERIMENTS
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="prune at initialisation with a strategy, then train",
        description="Score the initial weights (SNIP, GraSP, SynFlow, NTK-SAP, ...), keep exactly round(d*n) "
        "weights, train. Lists of strategies and densities run every combination.",
    )
    add_spec_arguments(p)
    p.add_argument(
        "--strategy",
        required=True,
        help="strategy (an unknown name lists the registered ones), comma list, or 'all': every registered "
        "strategy but random_global, which is random at global scope",
    )
    p.add_argument("--density", help="target densities, e.g. 0.1,0.03,0.01")
    p.add_argument("--sparsity", help="target sparsities (1 - density)")
    p.add_argument("--compression", help="NTK-SAP compressions c (density 0.8^c)")
    p.add_argument("--experiment", choices=EXPERIMENTS, default="singleshot")
    p.add_argument("--rounds", type=int, default=MULTISHOT_ROUNDS, help="multishot: prune-rewind-retrain rounds")
    p.add_argument("--round-steps", default=MULTISHOT_ROUND_STEPS, help="multishot: training length of each round")
    p.add_argument("--iterations", type=int, help="score-prune iterations (default: the strategy's own)")
    p.add_argument("--scope", choices=("global", "layerwise"), help="selection scope (default global)")
    p.add_argument("--seeds", help="replicate seeds, e.g. 1,2,3")
    p.add_argument("--replicates", type=int, help="run seeds 0..N-1")
    p.add_argument("--plot", help="directory for the accuracy-vs-density and layer-density plots")
    add_executor_arguments(p)
    p.set_defaults(handler=handle, accepts_overrides=True)


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    from prunelab.experiments.prune_init import densities_from
    from prunelab.experiments.report import plot_density_study
    from prunelab.experiments.study import Study
    from prunelab.experiments.sweeps import prune_points
    from prunelab.pruning.api import at_init_strategies

    densities = densities_from(
        floats_from(args.density, "--density"),
        floats_from(args.sparsity, "--sparsity"),
        floats_from(args.compression, "--compression"),
    )
    names = (
        at_init_strategies() if args.strategy == "all" else [s.strip() for s in args.strategy.split(",") if s.strip()]
    )
    if args.iterations is not None:
        overrides = [*overrides, f"--prune.iterations={args.iterations}"]
    if args.scope:
        overrides = [*overrides, f"--prune.scope={args.scope}"]
    base = spec_from_args(args, overrides)
    store = RunStore(args.home)
    multishot = {"rounds": args.rounds, "round_steps": args.round_steps} if args.experiment == "multishot" else {}
    points = prune_points(
        base, names, densities, seeds_from_args(args, base.seed), experiment=args.experiment, **multishot
    )
    result = run_study(args, Study(points, store))
    summaries = result.summaries()
    if args.plot and summaries:
        title = f"{base.model.name} on {base.dataset.name}"
        plot_density_study(store, [s["run_id"] for s in summaries], args.plot, title)
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
    else:
        print(
            format_table(
                summaries,
                [
                    "run_id",
                    "strategy",
                    "density",
                    "test_accuracy",
                    "layer_collapse",
                    "theoretical_speedup",
                    "wall_seconds",
                ],
            )
        )
        if args.plot and summaries:
            print(f"\nplots in {args.plot}/")
    return 0 if result.ok else EXIT_TRIALS_FAILED
