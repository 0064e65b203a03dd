"""``prunelab report [RUN... | FILE [NAME...]]``: the standard figures, an HTML page and a metrics export."""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

from prunelab.cli.common import print_json
from prunelab.errors import UserError
from prunelab.experiments.choices import DEFAULT_REPORT_FORMATS as DEFAULT_FORMATS
from prunelab.experiments.choices import REPORT_FORMATS as FORMATS
from prunelab.store import RunStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="figures (PNG), a self-contained HTML page and a CSV/Parquet export over runs or a study",
        description="Over the given runs, the stored trials of an experiment file's experiments (FILE [NAME ...]), "
        "or every finished run: a table of test accuracy (mean ± std over seeds) on stdout, and in --out the "
        "standard figures, report.html (figures embedded, the table, every run's spec) and, if asked, metrics.csv "
        "or metrics.parquet (one row per trained network).",
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN | FILE NAME",
        help="run ids or prefixes, or an experiment file (.yaml) and the experiments to report "
        "(default: all of its experiments); nothing: all finished runs",
    )
    p.add_argument("--kind", help="only runs of this kind (train, lottery, prune, branch, supermask)")
    p.add_argument(
        "--out",
        help="output directory (default: prunelab-report-<NAME> in the current directory, NAME "
        "from --title, else the experiment file, else --kind, else 'all' or the runs given)",
    )
    p.add_argument("--title", default="", help="title of the figures and the page")
    p.add_argument(
        "--format",
        dest="formats",
        default=",".join(DEFAULT_FORMATS),
        help=f"what to write, comma-separated: {', '.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)})",
    )
    p.add_argument("--csv", action="store_true", help="also write metrics.csv (as if csv were in --format)")
    p.add_argument("--parquet", action="store_true", help="also write metrics.parquet (needs prunelab[parquet])")
    p.add_argument("--no-html", action="store_true", help="do not write report.html (as if html were not in --format)")
    p.add_argument("--home", help="run store root")
    p.add_argument("--json", action="store_true", help="print the rows and the files written as JSON")
    p.set_defaults(handler=handle)


def _study(refs: list[str]) -> tuple[Path | None, list[str]]:
    """An experiment file and its experiments when the first argument names a YAML file, else none."""
    if refs and refs[0].endswith((".yaml", ".yml")):
        path = Path(refs[0])
        if not path.is_file():
            raise UserError(f"no experiment file {refs[0]} (give an existing .yaml file, or run ids)")
        return path, refs[1:]
    return None, []


def default_out(args: argparse.Namespace, study: Path | None) -> Path:
    """Where the report goes without ``--out``: ``prunelab-report-<name>`` in the current directory, named
    after the title, else the experiment file, else the kind, else ``all`` (every finished run) or the runs
    given (up to three run ids; more are a short hash of them all), so different reports never overwrite
    each other."""
    if args.title:
        name = args.title
    elif study is not None:
        name = study.stem
    elif args.runs:
        ids = sorted(args.runs)
        name = "-".join(ids) if len(ids) <= 3 else "runs-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
    else:
        name = args.kind or "all"
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.").lower()[:80] or "all"
    return Path(f"prunelab-report-{slug}")


def handle(args: argparse.Namespace, _: list[str]) -> int:
    from prunelab.analysis.report import config_legend
    from prunelab.experiments.report import parse_formats, select_runs, write_report

    formats = set(parse_formats(args.formats))
    formats |= {name for name, flag in (("csv", args.csv), ("parquet", args.parquet)) if flag}
    if args.no_html:
        formats.discard("html")
    store = RunStore(args.home)
    study, experiments = _study(args.runs)
    if study is not None:
        runs = select_runs(store, kind=args.kind, study=study, experiments=experiments)
    else:
        if args.runs and args.kind:
            raise UserError("--kind chooses among all runs or a study's; with run ids it has nothing to choose")
        runs = select_runs(store, args.runs, kind=args.kind)
    out = Path(args.out) if args.out else default_out(args, study)
    legend = config_legend(runs)
    report = write_report(runs, out, formats=[f for f in FORMATS if f in formats], title=args.title, store=store)
    if args.json:
        print_json(
            {
                "rows": report.rows,
                "plots": [str(p) for p in report.figures],
                **{
                    key: str(path) if path else None
                    for key, path in (("html", report.html), ("csv", report.csv), ("parquet", report.parquet))
                },
                "configs": legend,
            }
        )
    else:
        print(report.table())
        for entry in legend:  # what each [config N] label stands for
            settings = ", ".join(f"{k}={'default' if v is None else v}" for k, v in entry["settings"].items())
            print(
                f"{entry['method']}: {settings or 'see prunelab show'} ({len(entry['runs'])} run(s): "
                f"{', '.join(entry['runs'][:3])}{', ...' if len(entry['runs']) > 3 else ''})"
            )
        if report.files:
            print("\nwritten:\n" + "\n".join(f"  {path}" for path in report.files))
    return 0
