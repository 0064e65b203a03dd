"""``prunelab rm RUN...``: remove runs from the store (a lottery with its stages)."""

from __future__ import annotations

import argparse

from prunelab.store import RunStore
from prunelab.store.maintenance import remove_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rm",
        help="remove runs (with their stages); refuses a run a live process is training",
        description="Removes each run's directory, with the stages inside it (a lottery's levels and controls; "
        "removing one stage, e.g. lottery-<hash>/level_2, removes the stages inside that one too). Re-running "
        "the command that created a run computes it again, bit for bit on a CPU. Nothing is removed while any "
        "of the runs is held by a live process.",
    )
    p.add_argument(
        "runs", nargs="+", help="run ids, unique prefixes, stage ids (lottery-<hash>/level_2) or directories"
    )
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    runs = [store.find(ref) for ref in args.runs]
    verb = "would remove" if args.dry_run else "removed"
    for run, stages in remove_runs(store, runs, dry_run=args.dry_run):
        print(f"{verb} {run.run_id}" + (f" (with {stages} stage{'s' if stages != 1 else ''})" if stages else ""))
    return 0
