"""``prunelab supermask``: learn supermasks (edge-popup, IteRand) on frozen random weights."""

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
from prunelab.specs.supermask import METHODS, RERAND_MODES, SCOPES
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "supermask",
        help="learn supermasks (edge-popup, IteRand) on frozen random weights",
        description="Learn one score per frozen random weight and keep the top fraction (edge-popup); IteRand "
        "also re-draws part of the pruned weights every few iterations. A list of densities runs each one.",
    )
    add_spec_arguments(p)
    g = p.add_argument_group("supermask (shortcuts for --supermask.* overrides)")
    g.add_argument("--method", choices=METHODS, help="edge-popup (default) or iterand")
    g.add_argument("--density", help="kept fraction(s), e.g. 0.5 or 0.1,0.3,0.5,0.7 (default: the spec's)")
    g.add_argument("--scope", choices=SCOPES, help="layerwise (default, as published) or global")
    g.add_argument("--rerand-freq", help="iterand: re-randomise every this many steps, e.g. 300it, 1ep")
    g.add_argument("--rerand-lambda", type=float, help="iterand: re-drawn fraction of the pruned weights (0.1)")
    g.add_argument("--rerand-mode", choices=RERAND_MODES, help="iterand: bernoulli (default) or manual")
    p.add_argument("--seeds", help="replicate seeds, e.g. 1,2,3")
    p.add_argument("--replicates", type=int, help="run seeds 0..N-1")
    p.add_argument("--baseline", action="store_true", help="also train the same model's weights (prunelab train)")
    p.add_argument("--plot", help="directory for the accuracy-vs-density plot")
    add_executor_arguments(p)
    p.set_defaults(handler=handle, accepts_overrides=True)


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    from prunelab.experiments.report import plot_density_study
    from prunelab.experiments.study import Study
    from prunelab.experiments.sweeps import supermask_points

    shortcuts = [
        ("method", args.method),
        ("scope", args.scope),
        ("rerand_freq", args.rerand_freq),
        ("rerand_lambda", args.rerand_lambda),
        ("rerand_mode", args.rerand_mode),
    ]
    overrides = [*overrides, *(f"--supermask.{key}={value}" for key, value in shortcuts if value is not None)]
    base = spec_from_args(args, overrides)
    densities = floats_from(args.density, "--density") or [base.supermask.density]
    store = RunStore(args.home)
    points = supermask_points(base, densities, seeds_from_args(args, base.seed), baseline=args.baseline)
    result = run_study(args, Study(points, store))
    summaries = result.summaries()
    if args.plot and summaries:
        title = f"supermasks: {base.model.name} on {base.dataset.name}"
        plot_density_study(store, [s["run_id"] for s in summaries], args.plot, title, layer_densities=False)
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
    else:
        for summary in summaries:
            summary.setdefault("method", "train (weights)")
        print(
            format_table(
                summaries, ["run_id", "method", "seed", "density", "test_accuracy", "best_accuracy", "wall_seconds"]
            )
        )
        if args.plot and summaries:
            print(f"\nplot in {args.plot}/")
    return 0 if result.ok else EXIT_TRIALS_FAILED
