"""``prunelab report RUN...``: table and plots of accuracy against density."""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

from prunelab.analysis.report import (aggregate, collect_points, config_legend, plot_accuracy_vs_density,
                                      plot_layer_densities, report_table)
from prunelab.cli.commands.runs import skip_damaged
from prunelab.cli.common import print_json
from prunelab.errors import UserError
from prunelab.store import DamagedFile, Run, RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="table and PNG plot of accuracy vs density over runs (mean ± std over seeds)")
    p.add_argument("runs", nargs="*", help="run ids or prefixes (lottery, prune, branch, train); default: all finished runs")
    p.add_argument("--kind", help="with no runs given: only runs of this kind")
    p.add_argument("--out", help="output directory for the PNG plots (default: prunelab-report-<NAME> in the "
                   "current directory, NAME from --title, else --kind, else 'all' or the runs given)")
    p.add_argument("--title", default="", help="plot title")
    p.add_argument("--home", help="run store root")
    p.add_argument("--json", action="store_true", help="print the aggregated rows as JSON")
    p.set_defaults(handler=handle)


def default_out(args: argparse.Namespace) -> Path:
    """Where the plots go without ``--out``: ``prunelab-report-<name>`` in the current directory, named
    after the title, else the kind, else ``all`` (every finished run) or the runs given (up to three
    run ids; more are a short hash of them all), so different reports never overwrite each other."""
    if args.title:
        name = args.title
    elif args.runs:
        ids = sorted(args.runs)
        name = "-".join(ids) if len(ids) <= 3 else "runs-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
    else:
        name = args.kind or "all"
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.").lower()[:80] or "all"
    return Path(f"prunelab-report-{slug}")


def _readable(run: Run) -> bool:
    """Whether the report can use ``run`` (its summary and spec read and fit); else it is named on stderr."""
    try:
        run.summary()
        run.spec_data()
        run.stage_info()
    except DamagedFile as error:
        skip_damaged(run, error)
        return False
    return True


def handle(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    if args.runs:
        runs = [store.find(ref) for ref in args.runs]
    else:
        runs = [r for r in store.runs() if r.finished and (not args.kind or r.kind == args.kind)]
    unfinished = [r.run_id for r in runs if not r.finished]
    if unfinished:
        raise UserError(f"runs not finished: {', '.join(unfinished)}")
    runs = [run for run in runs if _readable(run)]
    if not runs:
        raise UserError(f"no finished runs to report under {store.root}")
    points = collect_points(runs)
    rows = aggregate(points)
    out = Path(args.out) if args.out else default_out(args)
    plot = plot_accuracy_vs_density(rows, out / "accuracy_vs_density.png", args.title)
    layers = plot_layer_densities(points, out / "layer_densities.png")
    legend = config_legend(runs)
    if args.json:
        print_json({"rows": rows, "plots": [str(p) for p in (plot, layers) if p], "configs": legend})
    else:
        print(report_table(rows))
        for entry in legend:  # what each [config N] label stands for
            settings = ", ".join(f"{k}={'default' if v is None else v}" for k, v in entry["settings"].items())
            print(f"{entry['method']}: {settings or 'see prunelab show'} ({len(entry['runs'])} run(s): "
                  f"{', '.join(entry['runs'][:3])}{', ...' if len(entry['runs']) > 3 else ''})")
        print(f"\nplot: {plot}" + (f"\nlayer densities: {layers}" if layers else ""))
    return 0
