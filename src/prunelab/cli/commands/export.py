"""``prunelab export RUN --out DIR``: a trained run as an ordinary model, its mask and a compact sparse form."""

from __future__ import annotations

import argparse

from prunelab.cli.common import format_table, print_json
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained run: effective weights (w*m) as a plain state dict, the mask, a compact sparse form",
        description="Any finished run with a mask (train, prune, branch, a lottery's RUN/level_<L>, supermask). "
        "Load it back with prunelab.load_exported(DIR).",
    )
    p.add_argument("run", help="run id, unique prefix, or directory (a lottery level: LOTTERY_ID/level_<L>)")
    p.add_argument("--out", required=True, help="directory to write (created; existing export files are replaced)")
    p.add_argument("--home", help="run store root")
    p.add_argument("--json", action="store_true", help="print export.json on stdout")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    from prunelab.experiments.export import export_run

    meta = export_run(args.run, args.out, store=RunStore(args.home))
    if args.json:
        print_json(meta)
        return 0
    files = meta["files"]
    dense = files["model.safetensors"]["bytes"]
    rows = [{"file": name, "bytes": info["bytes"], "of_dense": info["bytes"] / dense} for name, info in files.items()]
    print(
        f"exported {meta['run_id']} (density {meta['density']:.4f}, test accuracy "
        f"{meta.get('test_accuracy', meta['run_test_accuracy'])}) to {args.out}"
    )
    print(format_table(rows, ["file", "bytes", "of_dense"]))
    return 0
