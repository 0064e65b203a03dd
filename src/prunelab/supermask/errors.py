"""The one error type of :mod:`prunelab.supermask`, and the checks that raise it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from prunelab.errors import UserError
from prunelab.specs.base import closest

__all__ = ["SupermaskError", "check_option", "check_density", "check_number"]


class SupermaskError(UserError, ValueError):
    """A supermask option, model or state that cannot be used as given (the CLI exits with code 2)."""


def check_option(value: object, valid: Sequence[object], label: str) -> None:
    """Raise :class:`SupermaskError` naming the closest valid choices when ``value`` is not one of them."""
    if any(value is v or (type(value) is type(v) and value == v) for v in valid):
        return
    near = closest(str(value), [str(v) for v in valid])
    hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
    raise SupermaskError(f"unknown {label} {value!r}.{hint} Valid: {', '.join(map(repr, valid))}.")


def check_density(density: object, *, allow_zero: bool = False) -> float:
    """``density`` as a float in (0, 1] (or [0, 1] with ``allow_zero``): the fraction of weights kept."""
    low = "[0, 1]" if allow_zero else "(0, 1]"
    if isinstance(density, bool):
        raise SupermaskError(f"density must be a number in {low} (the fraction of weights kept), got {density!r}")
    try:
        d = float(density)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SupermaskError(
            f"density must be a number in {low} (the fraction of weights kept), got {density!r}"
        ) from None
    if math.isnan(d) or d > 1.0 or d < 0.0 or (d == 0.0 and not allow_zero):
        raise SupermaskError(f"density must be in {low} (the fraction of weights kept), got {density!r}")
    return d


def check_number(value: object, what: str) -> float:
    """``value`` as a finite float; ``what`` names it in the error."""
    if isinstance(value, bool):
        raise SupermaskError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SupermaskError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SupermaskError(f"{what} must be finite, got {value!r}")
    return number
