"""The report as one self-contained HTML page: the figures embedded as PNG data URIs, the table of mean ±
std over seeds (the numbers ``prunelab report`` prints), and every run with its networks and its spec
one click away. Nothing is loaded from elsewhere (no scripts, styles or fonts from the network), so the
file can be mailed, archived or opened offline.

The page is a Jinja2 template (``templates/report.html.j2``) rendered with auto-escaping on: run ids,
method names, titles and specs are user text and are always escaped."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import jinja2

from prunelab.analysis.report import TABLE_COLUMNS, ReportFigure
from prunelab.analysis.tables import format_cell
from prunelab.store import Run

__all__ = ["NETWORK_COLUMNS", "render_report_html"]

#: what the page shows of each network of a run
NETWORK_COLUMNS = (
    "stage",
    "level",
    "control",
    "density",
    "test_accuracy",
    "test_loss",
    "best_accuracy",
    "wall_seconds",
)

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("prunelab.analysis", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _cell(value: Any) -> dict[str, Any]:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"text": format_cell(value if value != "" else None), "numeric": numeric}


def _png_width(png: bytes) -> int:
    """The width in pixels a PNG's header gives (its IHDR chunk comes first): wide figures get a row of
    their own."""
    return int.from_bytes(png[16:20], "big")


def _version() -> str:
    try:
        return version("prunelab")
    except PackageNotFoundError:
        return "(not installed)"


def render_report_html(
    *,
    title: str,
    figures: Sequence[ReportFigure],
    rows: Sequence[dict[str, Any]],
    points: Sequence[dict[str, Any]],
    runs: Sequence[Run],
    store: str,
    exports: Sequence[str] = (),
) -> str:
    """The page for ``runs``: ``rows`` from :func:`~prunelab.analysis.report.aggregate`, ``points`` from
    :func:`~prunelab.analysis.report.collect_points`, ``exports`` file names beside the page to link to."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        by_run.setdefault(point["run_id"], []).append(point)
    run_entries = []
    for run in runs:
        networks = by_run.get(run.run_id, [])
        first = networks[0] if networks else {}
        if len(networks) == 1:
            outline = f"density {format_cell(first['density'])} · test accuracy {format_cell(first['test_accuracy'])}"
        else:
            outline = f"{len(networks)} networks"
        run_entries.append(
            {
                "run_id": run.run_id,
                "method": first.get("method", run.kind),
                "seed": first.get("seed", "-"),
                "outline": outline,
                "networks": [[_cell(network.get(column)) for column in NETWORK_COLUMNS] for network in networks],
                "spec": run.spec_path.read_text(encoding="utf-8") if run.spec_path.is_file() else "(no spec.yaml)",
            }
        )
    kinds = sorted({run.kind for run in runs})
    return _ENVIRONMENT.get_template("report.html.j2").render(
        title=title,
        kinds=", ".join(kinds),
        networks=len(points),
        store=store,
        version=_version(),
        exports=list(exports),
        figures=[
            {
                "name": f.name,
                "caption": f.caption,
                "data": base64.b64encode(f.png).decode("ascii"),
                "wide": _png_width(f.png) > 1000,
            }
            for f in figures
        ],
        columns=TABLE_COLUMNS,
        rows=[
            {"cells": [_cell(row.get(column)) for column in TABLE_COLUMNS], "run_ids": row.get("run_ids", [])}
            for row in rows
        ],
        network_columns=NETWORK_COLUMNS,
        runs=run_entries,
    )
