"""``prunelab runs`` and ``prunelab show``: look at the run store."""

from __future__ import annotations

import argparse

from prunelab.cli.common import format_table, print_json
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list stored runs with their key metrics")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.add_argument("--kind", help="only runs of this kind (train, lottery, branch, prune, ...)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(handler=handle_runs)

    s = sub.add_parser("show", help="show one run: its summary and spec")
    s.add_argument("run", help="run id, unique prefix of it or of its hash, or a run directory")
    s.add_argument("--home", help="run store root")
    s.add_argument("--json", action="store_true", help="print only summary.json")
    s.set_defaults(handler=handle_show)


def handle_runs(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    rows = []
    for run in store.runs():
        if args.kind and run.kind != args.kind:
            continue
        row = {"run_id": run.run_id, "kind": run.kind, "status": "finished" if run.finished else "unfinished"}
        if run.finished:
            summary = run.summary()
            row.update({k: summary.get(k) for k in ("test_accuracy", "density", "wall_seconds")})
        spec = run.spec_data()
        row["model"] = (spec.get("model") or {}).get("name")
        row["dataset"] = (spec.get("dataset") or {}).get("name")
        rows.append(row)
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no runs under {store.root}")
    else:
        print(format_table(rows, ["run_id", "status", "dataset", "model", "test_accuracy", "density", "wall_seconds"]))
    return 0


def handle_show(args: argparse.Namespace, _: list[str]) -> int:
    run = RunStore(args.home).find(args.run)
    summary = run.summary() if run.finished else {"run_id": run.run_id, "status": "unfinished"}
    if args.json:
        print_json(summary)
        return 0
    print(f"run      {run.run_id}\npath     {run.path}\nstatus   {'finished' if run.finished else 'unfinished'}")
    scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    for key, value in scalars.items():
        print(f"{key:<16} {value}")
    if run.spec_path.is_file():
        print("\nspec.yaml:\n" + run.spec_path.read_text(encoding="utf-8"))
    return 0
