"""Plain fixed-width text tables, and the one rule for how a value is shown in a table cell (the command
line's tables and the HTML report's show the same text)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["format_cell", "format_table"]


def format_cell(value: Any) -> str:
    """``-`` for a missing value, four decimals for a float, else ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A plain fixed-width text table: numeric columns right-aligned, the others left-aligned."""
    rows = list(rows)
    headers = list(headers or columns)
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]
    for r in cells:
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)
