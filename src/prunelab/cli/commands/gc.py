"""``prunelab gc``: remove what no run needs — temporary files of interrupted writes, lock files
nobody holds, leftovers of an interrupted ``rm``, and old unfinished runs."""

from __future__ import annotations

import argparse
import re

from prunelab.specs import SpecError
from prunelab.store import RunStore
from prunelab.store.maintenance import collect_garbage

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``'90s'``, ``'30m'``, ``'12h'``, ``'1d'``, ``'2w'`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise SpecError(f"--older-than takes a number and a unit (s, m, h, d, w), e.g. 12h or 7d; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gc",
        help="remove temp files, stale locks and old unfinished runs",
        description="Removes temporary files left by interrupted writes, lock files no process holds, leftovers of "
        "an interrupted `prunelab rm`, the scratch directory of an interrupted recomputation of a saved step, "
        "and unfinished runs that no process holds, that have not changed for "
        "--older-than and that hold no finished stage (a lottery's finished levels are kept). Runs in use are "
        "left alone.",
    )
    p.add_argument(
        "--older-than", default="7d", help="age of unfinished runs to remove (default 7d; units s, m, h, d, w)"
    )
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    store = RunStore(args.home)
    removals, notes = collect_garbage(store, older_than=parse_age(args.older_than), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for removal in removals:
        print(f"{verb} {removal.what} {removal.path}" + (f" ({removal.detail})" if removal.detail else ""))
    for note in notes:
        print(f"note: {note}")
    counts: dict[str, int] = {}
    for removal in removals:
        counts[removal.what] = counts.get(removal.what, 0) + 1
    freed = sum(r.bytes for r in removals) / 1e6
    listed = ", ".join(f"{n} {what}{'s' if n != 1 else ''}" for what, n in counts.items()) or "nothing"
    print(f"{verb} {listed} under {store.root}" + (f" ({freed:.1f} MB)" if freed else ""))
    return 0
