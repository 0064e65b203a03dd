"""``prunelab presets``: list the named presets, or print one as YAML."""

from __future__ import annotations

import argparse

from prunelab.cli.common import format_table, print_json
from prunelab.specs import get_preset, preset_names, spec_to_yaml, to_dict
from prunelab.specs.presets import DESCRIPTIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list presets, or print one as a YAML spec")
    p.add_argument("name", nargs="?", help="print this preset's full spec (a starting point for --config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, _: list[str]) -> int:
    if args.name:
        spec = get_preset(args.name)
        if args.json:
            print_json(to_dict(spec))
        else:
            print(spec_to_yaml(spec), end="")
        return 0
    rows = [{"preset": name, "description": DESCRIPTIONS[name]} for name in preset_names()]
    if args.json:
        print_json(rows)
    else:
        print(format_table(rows, ["preset", "description"]))
    return 0
