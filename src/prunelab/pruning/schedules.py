"""Density schedules for iterative pruning (prune → rescore → prune …).

``density_schedule(d, T)`` lists the target density after each of the ``T`` iterations
``k = 1 … T``; the last entry is exactly ``d``.

* ``exponential`` (SynFlow, iterative SNIP): ``d_k = s · (d / s)^(k/T)`` — the same fraction of the
  alive weights is removed at every iteration. With the default start ``s = 1`` this is ``d^(k/T)``.
* ``linear``: ``d_k = s − (s − d) · k/T`` — the same number of weights is removed every iteration.
"""

from __future__ import annotations

from prunelab.pruning.selection import MaskSelectionError

__all__ = ["SCHEDULES", "density_schedule"]

SCHEDULES = ("exponential", "linear")


def density_schedule(
    final_density: float, iterations: int, kind: str = "exponential", start: float = 1.0
) -> list[float]:
    """Per-iteration target densities from ``start`` (exclusive) to ``final_density`` (inclusive)."""
    if kind not in SCHEDULES:
        raise MaskSelectionError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {kind!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise MaskSelectionError(f"iterations must be a positive integer, got {iterations!r}")
    d, s = float(final_density), float(start)
    if not 0.0 <= s <= 1.0:
        raise MaskSelectionError(f"schedule start must be in [0, 1], got {start!r}")
    if not 0.0 <= d <= s:
        raise MaskSelectionError(f"final density must be in [0, start={s}], got {final_density!r}")
    steps = []
    for k in range(1, iterations + 1):
        t = k / iterations
        if kind == "linear":
            steps.append(s - (s - d) * t)
        else:
            steps.append(s * (d / s) ** t if s > 0 else 0.0)
    steps[-1] = d
    return steps
