"""``prunelab runs`` and ``prunelab show``: look at the run store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from prunelab.cli.common import format_table, print_json
from prunelab.store import DamagedFile, Run, RunStore
from prunelab.store.maintenance import VerifyReport, check_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list stored runs with their key metrics")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.add_argument("--kind", help="only runs of this kind (train, lottery, branch, prune, ...)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(handler=handle_runs)

    s = sub.add_parser("show", help="show one run: its summary and spec, and what is damaged")
    s.add_argument("run", help="run id, unique prefix of it or of its hash, or a run directory")
    s.add_argument("--home", help="run store root")
    s.add_argument("--json", action="store_true", help="print only summary.json")
    s.set_defaults(handler=handle_show)


def skip_damaged(run: Run, error: DamagedFile) -> None:
    """Name an unreadable run on stderr; the command goes on with the others."""
    print(
        f"prunelab: warning: skipping run {run.run_id}: {error.path.name} is {error.problem} "
        f"(`prunelab show {run.run_id}` says more; `prunelab verify` checks the whole store)",
        file=sys.stderr,
    )


def _row(run: Run) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": "finished" if run.finished else "unfinished",
    }
    summary = run.summary() if run.finished else {}
    row.update({k: summary.get(k) for k in ("test_accuracy", "density", "wall_seconds")})  # null while unfinished
    spec = run.spec_data()
    row["model"] = (spec.get("model") or {}).get("name")
    row["dataset"] = (spec.get("dataset") or {}).get("name")
    return row


def _shown(value: Any) -> str:
    """A summary value as ``show`` prints it: ``-`` for none (as in the tables), JSON's spelling of booleans."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def handle_runs(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    rows = []
    for run in store.runs():
        if args.kind and run.kind != args.kind:
            continue
        try:
            rows.append(_row(run))
        except DamagedFile as error:
            skip_damaged(run, error)
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no runs under {store.root}")
    else:
        print(format_table(rows, ["run_id", "status", "dataset", "model", "test_accuracy", "density", "wall_seconds"]))
    return 0


def handle_show(args: argparse.Namespace, _: list[str]) -> int:
    run = RunStore(args.home).find(args.run)
    report = VerifyReport()
    check_run(run, report)
    problems = report.problems
    status = "damaged" if problems else ("finished" if run.finished else "unfinished")
    try:
        summary = run.summary() if run.finished else {"run_id": run.run_id, "status": "unfinished"}
    except DamagedFile:
        summary = {"run_id": run.run_id}
    if args.json:
        if problems:
            summary = {
                **summary,
                "status": "damaged",
                "problems": [{"path": str(p.path), "problem": p.problem, "recovery": p.advice} for p in problems],
            }
        print_json(summary)
        return 0
    print(f"run      {run.run_id}\npath     {run.path}\nstatus   {status}")
    for problem in problems:
        print(f"damaged  {problem.path}: {problem.problem}")
    for advice in dict.fromkeys(p.advice for p in problems):
        print(f"recover  {advice}")
    scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    for key, value in scalars.items():
        print(f"{key:<16} {_shown(value)}")
    if run.spec_path.is_file():
        print("\nspec.yaml:\n" + run.spec_path.read_text(encoding="utf-8", errors="replace"))
    return 0
