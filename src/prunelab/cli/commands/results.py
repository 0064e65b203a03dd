"""``prunelab results FILE NAME`` or ``prunelab results --kind K --where KEY=VALUE``: mean ± std over seeds."""

from __future__ import annotations

import argparse
import sys

from prunelab.cli.common import EXIT_TRIALS_FAILED, format_table, print_json
from prunelab.errors import UserError
from prunelab.specs import parse_override_args
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="mean ± std over seeds per grid point of an experiment file's experiment, or of runs matching a filter",
        description="With FILE NAME: the experiment's stored trials, grouped by their grid values other than seed "
        "(overrides select as in `prunelab run`). Without: the store's finished runs of --kind matching every "
        "--where KEY=VALUE (dotted spec keys, or density), grouped by the settings that differ.",
    )
    p.add_argument("file", nargs="?", help="experiment file (YAML)")
    p.add_argument("name", nargs="?", help="the experiment")
    p.add_argument("--kind", help="without FILE: only runs of this kind (train, lottery, prune, branch, supermask)")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="without FILE: only runs whose spec has this value, e.g. prune.strategy=snip (repeatable)",
    )
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=handle, accepts_overrides=True)


def _where(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--where takes KEY=VALUE, e.g. --where prune.strategy=snip; got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _cell(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.4f} ± {std:.4f}" if seeds > 1 else f"{mean:.4f}"


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    from prunelab.experiments.experiment_file import ExperimentFile
    from prunelab.experiments.results import filtered_results, point_results

    store = RunStore(args.home)
    if args.file is not None:
        if args.name is None:
            raise UserError("give the experiment: prunelab results FILE NAME (`prunelab run FILE` lists them)")
        if args.kind or args.where:
            raise UserError("--kind and --where filter the store's runs; with FILE NAME the experiment chooses them")
        points = ExperimentFile(args.file).points(args.name, parse_override_args(overrides), store=store)
        table = point_results(points, store)
        nothing = (
            f"no stored results for experiment {args.name!r} of {args.file}: none of its {table.total} trials "
            f"has finished under {store.root}; run `prunelab run {args.file} {args.name}`"
        )
    else:
        if overrides:
            raise UserError(f"unrecognised arguments: {' '.join(overrides)} (filters are --where KEY=VALUE)")
        where = _where(args.where)
        table = filtered_results(store, kind=args.kind, where=where)
        asked = " ".join(
            [*([f"--kind {args.kind}"] if args.kind else []), *(f"--where {k}={v}" for k, v in where.items())]
        )
        nothing = f"no finished runs match {asked or '(no filter)'} under {store.root} ({table.total} runs looked at)"
    if not table.rows:
        print(f"prunelab: {nothing}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    if args.json:
        print_json({"keys": table.keys, "rows": table.rows, "found": table.found, "total": table.total})
        return 0
    rows = [
        {**row, "test_accuracy": _cell(row["mean_accuracy"], row["std_accuracy"], row["seeds"])} for row in table.rows
    ]
    print(
        format_table(
            rows,
            [*table.keys, "kept_fraction", "test_accuracy", "seeds"],
            [*table.keys, "kept fraction", "test accuracy (mean ± std)", "seeds"],
        )
    )
    if args.file is not None and table.found < table.total:
        print(f"\n{table.found} of {table.total} trials stored; `prunelab run {args.file} {args.name}` runs the rest")
    return 0
