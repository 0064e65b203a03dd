"""``prunelab verify [RUN...]``: check a run store — every tensor file against its checksum, every
summary against the schema, every spec — and say how to recover what is damaged."""

from __future__ import annotations

import argparse
from typing import Any

from prunelab.cli.common import print_json
from prunelab.specs import ExperimentSpec, from_dict
from prunelab.store import RunStore
from prunelab.store.maintenance import verify_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check stored runs: tensor checksums, summaries, specs (exit 1 if anything is damaged)",
        description="Checks every tensor file (weights, masks, checkpoints) against the checksum recorded in it, "
        "every summary.json against the summary schema and every spec.yaml, and that a finished run still holds "
        "its mask and saved weights. Prints one line per problem and a summary; exit code 0 when all is well, "
        "1 when something is damaged.",
    )
    p.add_argument("runs", nargs="*", help="run ids, prefixes or directories (with their stages); default: every run")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.add_argument("--json", action="store_true", help="print the problems and counts as JSON")
    p.set_defaults(handler=handle)


def _check_spec(data: dict[str, Any]) -> None:
    from_dict(ExperimentSpec, data)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    if args.runs:
        runs = []
        for ref in args.runs:
            run = store.find(ref)
            runs += [run, *store.stages(run), *store.linked(run)]  # a lottery: its level 0 (a train run) too
    else:
        runs = store.all_runs()
    report = verify_runs(runs, check_spec=_check_spec)
    if args.json:
        print_json(
            {
                "runs": report.runs,
                "tensor_files": report.files,
                "bytes": report.bytes,
                "seconds": round(report.seconds, 3),
                "unverified": [str(p) for p in report.unverified],
                "problems": [
                    {"run_id": p.run_id, "path": str(p.path), "problem": p.problem, "recovery": p.advice}
                    for p in report.problems
                ],
            }
        )
        return 1 if report.problems else 0
    for problem in report.problems:
        print(f"{problem.path}: {problem.problem}")
    for path in report.unverified:
        print(f"note: {path} has no checksum (written before prunelab recorded checksums); it was not verified")
    damaged = sorted({p.run_id for p in report.problems})
    megabytes = report.bytes / 1e6
    print(
        f"checked {report.runs} run(s), {report.files} tensor file(s) ({megabytes:.1f} MB) in {report.seconds:.2f} s: "
        + (f"{len(report.problems)} problem(s) in {len(damaged)} run(s)" if damaged else "no problems")
    )
    if damaged:
        print("\nto recover:")
        for advice in dict.fromkeys(p.advice for p in report.problems):
            print(f"  {advice}")
    return 1 if report.problems else 0
