"""``prunelab run FILE [NAME]``: run one experiment of an experiment file (its whole grid), or list them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from prunelab.cli.common import EXIT_TRIALS_FAILED, add_executor_arguments, format_table, print_json, run_study
from prunelab.errors import UserError
from prunelab.specs import parse_override_args
from prunelab.store import RunStore

if TYPE_CHECKING:
    from prunelab.experiments.experiment_file import ExperimentFile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run an experiment of an experiment file (every trial of its grid), or list the file's experiments",
        description="Trials already stored are reused, interrupted ones resume; re-running runs only what is "
        "missing. Overrides are dotted keys of the experiment (--train.lr=0.05, --density=0.1, --seed=1); one "
        "given for a grid key runs only that value. See docs/studies.md.",
    )
    p.add_argument("file", help="experiment file (YAML)")
    p.add_argument("name", nargs="?", help="the experiment to run (without it: list the file's experiments)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the trials with their run ids and whether each is "
        "stored, partial (resumable) or missing; trains nothing and reads no data",
    )
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.add_argument("--no-progress", action="store_true", help="no live progress on stderr")
    p.add_argument("--json", action="store_true", help="print the plan or the outcomes as JSON")
    add_executor_arguments(p)
    p.set_defaults(handler=handle, accepts_overrides=True)


def _listing(experiments: ExperimentFile, as_json: bool) -> int:
    rows = [
        {
            "experiment": name,
            "kind": experiments.kind(name) or "-",
            "trials": experiments.grid_size(name),
            "description": experiments.experiments[name].get("description", ""),
        }
        for name in experiments.names
    ]
    if as_json:
        print_json(rows)
    else:
        print(format_table(rows, ["experiment", "kind", "trials", "description"]))
    return 0


def handle(args: argparse.Namespace, overrides: list[str]) -> int:
    from prunelab.experiments.experiment_file import ExperimentFile
    from prunelab.experiments.study import Study

    experiments = ExperimentFile(args.file)
    if args.name is None:
        if overrides:
            raise UserError("overrides apply to one experiment: give its NAME")
        return _listing(experiments, args.json)
    store = RunStore(args.home)
    points = experiments.points(args.name, parse_override_args(overrides), store=store)
    study = Study(points, store)
    if args.dry_run:
        plan = study.plan()
        if args.json:
            print_json(plan)
            return 0
        print(format_table(plan, ["run_id", "kind", "trial", "state"]))
        states = [row["state"] for row in plan]
        print(
            f"\n{len(plan)} trials ({len(points)} requested, {len(plan) - len(points)} prerequisites): "
            f"{states.count('stored')} stored, {states.count('partial')} partial, {states.count('missing')} missing; "
            f"store {store.root}"
        )
        return 0
    result = run_study(args, study, progress=not args.no_progress)
    if args.json:
        print_json(
            [
                {**row, "requested": outcome.requested, "values": outcome.values}
                for row, outcome in zip(result.rows(), result.outcomes)
            ]
        )
    else:
        print(
            format_table(
                result.rows(), ["run_id", "kind", "trial", "status", "test_accuracy", "density", "seconds", "error"]
            )
        )
        print(f"\n{result.totals()}")
        print(f"`prunelab results {args.file} {args.name}` averages the seeds of each grid point.", file=sys.stderr)
    return 0 if result.ok else EXIT_TRIALS_FAILED
