"""``prunelab ntk RUN...``: the empirical NTK of stored runs against the dense network and random
masks; ``prunelab ntk --width-study``: random pruning of wide MLPs (Yang & Wang, 2023)."""

from __future__ import annotations

import argparse

from prunelab.cli.common import format_table, print_json
from prunelab.experiments.ntk_width_study import WidthStudy
from prunelab.specs import SpecError
from prunelab.store import RunStore

TABLE = [
    "method",
    "density",
    "step",
    "trace",
    "lambda_max",
    "condition",
    "kernel_distance_dense",
    "rel_frobenius_dense",
    "rel_frobenius_scaled_dense",
    "moved",
]
HEADERS = [
    "method",
    "density",
    "step",
    "trace",
    "lambda_max",
    "cond",
    "dist_dense",
    "relF_dense",
    "relF*_dense",
    "moved",
]


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} takes comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk",
        help="empirical NTK of runs vs the dense network and random masks; --width-study for wide MLPs",
        description="For each mask of the runs (every level of a lottery): the trace NTK on the first --batch "
        "test examples at the saved steps, its spectrum, and its distance from the dense network's kernel and "
        "from random masks of the same density with and without 1/sqrt(density) rescaling. Results and plots go "
        "to <run>/ntk/. With --width-study: random pruning of MLPs of growing width (no runs needed).",
    )
    p.add_argument("runs", nargs="*", help="run ids, unique prefixes or directories (train, prune, branch, lottery)")
    p.add_argument("--batch", type=int, default=100, help="test examples in the kernel (default 100)")
    p.add_argument(
        "--steps", default="", help="saved steps to analyse: init, final, or steps like 1ep,500it (default: all saved)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    p.add_argument("--recompute", action="store_true", help="recompute even if the analysis is stored")
    p.add_argument("--out", help="directory for the plots of several runs together (default prunelab-ntk)")
    defaults = WidthStudy()
    w = p.add_argument_group("width study (--width-study)")
    w.add_argument("--width-study", action="store_true", help="random pruning of MLPs as the width grows")
    widths, densities = ",".join(map(str, defaults.widths)), ",".join(map(str, defaults.densities))
    w.add_argument("--widths", default=widths, help=f"hidden widths (default {widths})")
    w.add_argument("--densities", default=densities, help=f"densities of the pruned layers (default {densities})")
    w.add_argument(
        "--replicates",
        type=int,
        default=defaults.replicates,
        help=f"networks and masks per width (default {defaults.replicates})",
    )
    w.add_argument(
        "--inputs",
        type=int,
        default=defaults.inputs,
        help=f"input points on the unit sphere (default {defaults.inputs})",
    )
    w.add_argument(
        "--input-dim",
        type=int,
        default=defaults.input_dim,
        help=f"dimension of the inputs (default {defaults.input_dim})",
    )
    w.add_argument("--depth", type=int, default=defaults.depth, help=f"hidden layers (default {defaults.depth})")
    w.add_argument(
        "--parameterization",
        choices=("ntk", "standard"),
        default="ntk",
        help="ntk (the reference's: N(0,1) weights, sqrt(2/fan_in) multipliers) or standard (Kaiming weights)",
    )
    w.add_argument("--prune-input-layer", action="store_true", help="prune the input layer too (default: kept dense)")
    w.add_argument(
        "--rescale-mode",
        choices=("global", "per_layer"),
        default=defaults.rescale_mode,
        help="1/sqrt(d) with d the pruned layers' pooled density (global, the reference's) or each layer's own",
    )
    p.add_argument("--home", help="run store root")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    if args.width_study:
        return _width_study(args)
    from prunelab.experiments.ntk import NTKSettings, analyse_runs

    steps = tuple(part.strip() for part in args.steps.split(",") if part.strip())
    settings = NTKSettings(batch=args.batch, steps=steps, seed=args.seed)
    studies, plots = analyse_runs(
        args.runs, settings, store=RunStore(args.home), out=args.out, recompute=args.recompute
    )
    if args.json:
        print_json({"studies": [s.to_json() for s in studies], "plots": plots})
        return 0
    for study in studies:
        print(f"NTK of {study.run_id} ({settings.batch} test examples)")
        print(format_table(study.rows, TABLE, HEADERS))
        print(f"results: {study.directory}/ntk.json" + "".join(f"\nplot: {p}" for p in study.plots) + "\n")
    for path in plots:
        print(f"plot: {path}")
    return 0


def _width_study(args: argparse.Namespace) -> int:
    from prunelab.experiments.ntk_width import run_width_study

    if args.runs:
        raise SpecError("--width-study builds its own networks; give either runs or --width-study, not both")
    study = WidthStudy(
        widths=tuple(_ints(args.widths, "--widths")),
        densities=tuple(_floats(args.densities, "--densities")),
        replicates=args.replicates,
        inputs=args.inputs,
        input_dim=args.input_dim,
        depth=args.depth,
        parameterization=args.parameterization,
        prune_input_layer=args.prune_input_layer,
        rescale_mode=args.rescale_mode,
        seed=args.seed,
    )
    result = run_width_study(study, out=args.out or "prunelab-ntk")
    if args.json:
        print_json(result)
        return 0
    print(
        format_table(
            result["table"],
            [
                "width",
                "density",
                "rescale",
                "kernel_distance",
                "rel_frobenius",
                "rel_frobenius_scaled",
                "scale",
                "distance_to_limit",
                "disconnected",
            ],
        )
    )
    print(f"\nresults: {result['json']}\nplot: {result['plot']}\n({result['seconds']:.0f} s)")
    return 0
