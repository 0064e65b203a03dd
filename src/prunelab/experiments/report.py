"""``prunelab report``: the runs of a study or a store selection, drawn, tabled and exported.

The runs are chosen by id, by kind, or as the stored trials of an experiment file's experiments; what
is written to the output directory is chosen by format: ``png`` (the standard figures, one file each),
``html`` (``report.html``: one self-contained page with the figures embedded, the table and every run's
spec), ``csv`` (``metrics.csv``: one row per trained network) and ``parquet`` (``metrics.parquet``, the
same table; needs ``prunelab[parquet]``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunelab.analysis.report import (
    aggregate,
    collect_points,
    plot_accuracy_vs_density,
    plot_layer_densities,
    report_table,
    standard_figures,
)
from prunelab.analysis.report_export import require_parquet, write_csv, write_parquet
from prunelab.analysis.report_html import render_report_html
from prunelab.errors import UserError
from prunelab.experiments.choices import DEFAULT_REPORT_FORMATS, REPORT_FORMATS
from prunelab.experiments.experiment_file import ExperimentFile
from prunelab.store import DamagedFile, Run, RunStore, atomic_write_bytes, atomic_write_text

__all__ = ["DEFAULT_FORMATS", "FORMATS", "Report", "parse_formats", "select_runs", "write_report"]

log = logging.getLogger("prunelab")

FORMATS = REPORT_FORMATS
DEFAULT_FORMATS = DEFAULT_REPORT_FORMATS
HTML_NAME, CSV_NAME, PARQUET_NAME = "report.html", "metrics.csv", "metrics.parquet"


def plot_density_study(
    store: RunStore, run_ids: Sequence[str], directory: str | Path, title: str, *, layer_densities: bool = True
) -> list[Path]:
    """The plots of ``--plot DIR`` for a sweep over densities: accuracy against density (mean and spread
    over seeds, one line per strategy) and, with ``layer_densities``, each layer's kept fraction (when
    the runs have layer statistics). Returns the files written."""
    points = collect_points([store.run(run_id) for run_id in run_ids])  # one per trained network
    written = [plot_accuracy_vs_density(aggregate(points), Path(directory) / "accuracy_vs_density.png", title)]
    layers = plot_layer_densities(points, Path(directory) / "layer_densities.png") if layer_densities else None
    return written if layers is None else [*written, layers]


def parse_formats(text: str) -> tuple[str, ...]:
    """``png,html,csv`` → the formats, in :data:`FORMATS` order; an unknown or empty one is an error."""
    asked = [item.strip().lower() for item in text.split(",") if item.strip()]
    unknown = [item for item in asked if item not in FORMATS]
    if unknown or not asked:
        raise UserError(f"--format takes a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    return tuple(f for f in FORMATS if f in asked)


@dataclass
class Report:
    """What a report found and wrote: ``rows`` (mean ± std over seeds per method and density), ``points``
    (one per trained network), and the paths of the files written."""

    rows: list[dict[str, Any]]
    points: list[dict[str, Any]]
    figures: list[Path] = field(default_factory=list)
    html: Path | None = None
    csv: Path | None = None
    parquet: Path | None = None

    def table(self) -> str:
        """The rows as the command line prints them."""
        return report_table(self.rows)

    @property
    def files(self) -> list[Path]:
        return [*self.figures, *(p for p in (self.html, self.csv, self.parquet) if p is not None)]


def _readable(run: Run) -> bool:
    """Whether the report can use ``run`` (its summary, spec and stage read and fit); else it is named."""
    try:
        run.summary()
        run.spec_data()
        run.stage_info()
    except DamagedFile as error:
        log.warning(
            "prunelab: warning: skipping run %s: %s is %s (`prunelab show %s` says more; `prunelab verify` "
            "checks the whole store)",
            run.run_id,
            error.path.name,
            error.problem,
            run.run_id,
        )
        return False
    return True


def select_runs(
    store: RunStore,
    refs: Sequence[str] = (),
    *,
    kind: str | None = None,
    study: str | Path | None = None,
    experiments: Sequence[str] = (),
) -> list[Run]:
    """The finished, readable runs to report: ``refs`` (ids or unique prefixes, each must be finished); or
    the stored trials of ``experiments`` of the experiment file ``study`` (all of its experiments when none
    is named; trials not run yet are named and left out); or every finished run of the store (of
    ``kind``). Raises ``ValueError`` when nothing is left."""
    if study is not None:
        if refs:
            raise UserError("give runs or an experiment file, not both")
        file = ExperimentFile(study)
        names = list(experiments) or file.names
        ids = list(dict.fromkeys(point.trial.run_id for name in names for point in file.points(name, store=store)))
        runs = [store.run(run_id) for run_id in ids]
        missing = [run.run_id for run in runs if not run.finished]
        if missing:
            log.warning(
                "prunelab: warning: %d of %d trials of %s are not stored yet (`prunelab run %s %s` runs "
                "them); reporting the others",
                len(missing),
                len(ids),
                study,
                study,
                " ".join(names),
            )
        runs = [run for run in runs if run.finished and (kind is None or run.kind == kind)]
        where = f"for {', '.join(names)} of {study} under {store.root}"
    elif refs:
        runs = [store.find(ref) for ref in refs]
        unfinished = [r.run_id for r in runs if not r.finished]
        if unfinished:
            raise UserError(f"runs not finished: {', '.join(unfinished)}")
        where = f"among {', '.join(refs)}"
    else:
        runs = [r for r in store.runs() if r.finished and (not kind or r.kind == kind)]
        where = f"under {store.root}" + (f" of kind {kind}" if kind else "")
    runs = [run for run in runs if _readable(run)]
    if not runs:
        raise UserError(f"no finished runs to report {where}")
    return runs


def write_report(
    runs: Sequence[Run],
    out: str | Path,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    title: str = "",
    store: RunStore | None = None,
) -> Report:
    """Draw, table and export ``runs`` into the directory ``out`` in each of ``formats``. Parquet is
    checked for first, so a report that cannot be written whole writes nothing."""
    if "parquet" in formats:
        require_parquet()
    points = collect_points(runs)
    report = Report(aggregate(points), points)
    out = Path(out)
    figures = standard_figures(points, title) if {"png", "html"} & set(formats) else []
    if "png" in formats:
        report.figures = [atomic_write_bytes(out / figure.name, figure.png) for figure in figures]
    if "csv" in formats:
        report.csv = write_csv(points, out / CSV_NAME)
    if "parquet" in formats:
        report.parquet = write_parquet(points, out / PARQUET_NAME)
    if "html" in formats:
        exports = [path.name for path in (report.csv, report.parquet) if path is not None]
        page = render_report_html(
            title=title or "prunelab report",
            figures=figures,
            rows=report.rows,
            points=points,
            runs=runs,
            store=str(store.root if store else runs[0].path.parent),
            exports=exports,
        )
        report.html = atomic_write_text(out / HTML_NAME, page)
    return report
