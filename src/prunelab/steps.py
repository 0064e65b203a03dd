"""Training lengths and save points: ``'30000it'``, ``'160ep'``, ``'2ep50it'``.

A step string stays symbolic in specs (so the run hash reflects what the user wrote) and is
converted to an absolute iteration count only once the data set's iterations per epoch are known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prunelab.errors import UserError

__all__ = ["Step", "StepError", "parse_step", "to_iterations"]

_STEP_RE = re.compile(r"^\s*(?:(?P<ep>\d+)\s*ep)?\s*(?:(?P<it>\d+)\s*it)?\s*$")


class StepError(UserError, ValueError):
    """A step that cannot be read, or that does not fit the training it is meant for."""


@dataclass(frozen=True, order=True)
class Step:
    """A point in training: ``epochs`` whole epochs plus ``iterations`` extra iterations."""

    epochs: int = 0
    iterations: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.iterations < 0:
            raise StepError(f"a step cannot be negative: {self.epochs}ep{self.iterations}it")

    def to_iterations(self, iterations_per_epoch: int) -> int:
        if iterations_per_epoch <= 0:
            raise ValueError(f"iterations_per_epoch must be positive, got {iterations_per_epoch}")
        return self.epochs * iterations_per_epoch + self.iterations

    def __str__(self) -> str:
        if self.epochs and self.iterations:
            return f"{self.epochs}ep{self.iterations}it"
        if self.epochs:
            return f"{self.epochs}ep"
        return f"{self.iterations}it"


def parse_step(text: str | int | Step) -> Step:
    """Parse ``'160ep'``, ``'30000it'``, ``'2ep50it'`` (or a bare integer, read as iterations)."""
    if isinstance(text, Step):
        return text
    if isinstance(text, bool):
        raise StepError(f"not a step: {text!r}")
    if isinstance(text, int):
        return Step(0, text)
    match = _STEP_RE.match(str(text))
    if not match or not (match.group("ep") or match.group("it")):
        if str(text).strip().isdigit():
            return Step(0, int(str(text).strip()))
        raise StepError(
            f"cannot read step {text!r}: write it as '<N>it', '<N>ep' or '<N>ep<M>it' "
            "(for example '30000it', '160ep', '2ep50it')"
        )
    return Step(int(match.group("ep") or 0), int(match.group("it") or 0))


def to_iterations(text: str | int | Step, iterations_per_epoch: int) -> int:
    """Convert a step string to an absolute iteration count."""
    return parse_step(text).to_iterations(iterations_per_epoch)
