"""The report's metrics as a table for pandas users: one row per trained network (a run, or a lottery's
level or control), written as CSV, or as Parquet when pandas and pyarrow are installed
(``pip install 'prunelab[parquet]'``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunelab.analysis.report import METRICS
from prunelab.errors import UserError
from prunelab.store import atomic_write_text
from prunelab.store.atomic import atomic_write

__all__ = ["EXPORT_COLUMNS", "ParquetUnavailable", "export_rows", "require_parquet", "write_csv", "write_parquet"]

#: the export's columns, in order; ``layer_densities`` is a JSON object (layer name → density)
EXPORT_COLUMNS = (
    "run_id",
    "stage",
    "kind",
    "method",
    "strategy",
    "level",
    "control",
    "seed",
    "dataset",
    "model",
    "density",
    "test_accuracy",
    *METRICS,
    "layer_densities",
)


class ParquetUnavailable(UserError, ValueError):
    """Parquet was asked for without pandas and pyarrow installed."""


def export_rows(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points of :func:`prunelab.analysis.report.collect_points` as flat rows of :data:`EXPORT_COLUMNS`."""
    return [
        {**{key: p.get(key) for key in EXPORT_COLUMNS}, "layer_densities": json.dumps(p.get("layer_densities") or {})}
        for p in points
    ]


def write_csv(points: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """A header line, then one line per network; a missing value is an empty field."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(export_rows(points))
    return atomic_write_text(path, text.getvalue())


def require_parquet() -> None:
    """Raise :class:`ParquetUnavailable` unless pandas and pyarrow can be imported."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError as error:
        raise ParquetUnavailable(
            f"the Parquet export needs pandas and pyarrow ({error.name} is not installed): "
            "pip install 'prunelab[parquet]', or export CSV instead"
        ) from None


def write_parquet(points: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The same table as :func:`write_csv`, typed, in a Parquet file."""
    require_parquet()
    import pandas

    frame = pandas.DataFrame(export_rows(points), columns=list(EXPORT_COLUMNS))
    for column in ("level", "seed", "best_step", "final_step"):
        frame[column] = frame[column].astype("Int64")
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))
