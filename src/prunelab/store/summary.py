"""The one schema of ``summary.json``, checked when a summary is written and when it is read.

Every run's summary is a JSON object with :data:`SUMMARY_KEYS` (``run_id`` and ``kind`` non-empty
strings; ``test_accuracy`` in [0, 1] or null; ``test_loss`` a number or null; ``density`` in [0, 1];
``wall_seconds`` >= 0). Fields that several kinds share are typed when present (``final_step``,
``saved_steps``, ``layer_densities``, ``seed``, ...); a lottery's summary (not those of its stages,
whose ids are ``<lottery>/<stage>``) also needs ``levels``, one object per level with ``level``, ``density`` and
``test_accuracy``. Any other field is allowed: each
kind of run adds its own.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["SUMMARY_KEYS", "summary_problems"]

SUMMARY_KEYS = ("run_id", "kind", "test_accuracy", "test_loss", "density", "wall_seconds")


@functools.cache
def _schema() -> type[BaseModel]:
    """The summary model, built on first use: importing pydantic is left to commands that check summaries."""
    import pydantic
    from pydantic import BaseModel, ConfigDict, Field

    fraction = Annotated[float, Field(ge=0.0, le=1.0)]
    step = Annotated[int, Field(ge=0)]

    class _Level(BaseModel):
        model_config = ConfigDict(strict=True, extra="allow")

        level: step
        density: fraction
        test_accuracy: fraction | None

    class _Summary(BaseModel):
        model_config = ConfigDict(strict=True, extra="allow")

        run_id: Annotated[str, Field(min_length=1)]
        kind: Annotated[str, Field(min_length=1)]
        test_accuracy: fraction | None
        test_loss: float | None
        density: fraction
        wall_seconds: Annotated[float, Field(ge=0.0)]
        # shared by several kinds; typed when present
        final_step: step | None = None
        saved_steps: list[step] | None = None
        best_accuracy: fraction | None = None
        best_step: step | None = None
        resumed_from: step | None = None
        layer_densities: dict[str, fraction] | None = None
        seed: int | None = None
        levels: list[_Level] | None = None

        @pydantic.model_validator(mode="after")
        def _kind_fields(self) -> _Summary:
            if self.kind == "lottery" and "/" not in self.run_id and self.levels is None:  # not one of its stages
                raise ValueError("a lottery summary needs 'levels'")
            return self

    return _Summary


_JSON_TYPES = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def summary_problems(summary: Any) -> list[str]:
    """What is wrong with ``summary`` (empty when it fits the schema), one short phrase per problem."""
    if not isinstance(summary, dict):
        return [f"holds {_JSON_TYPES.get(type(summary), type(summary).__name__)}, not a JSON object"]
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        return [f"lacks required keys {missing}"]
    schema = _schema()
    import pydantic  # imported by _schema already

    try:
        schema.model_validate(summary)
    except pydantic.ValidationError as error:
        problems = []
        for item in error.errors():
            message = item["msg"].removeprefix("Value error, ").rstrip(".")
            where = ".".join(str(part) for part in item["loc"])
            if not where:
                problems.append(message)
                continue
            value = item.get("input")
            shown = (
                repr(value)
                if value is None or isinstance(value, (str, int, float, bool))
                else _JSON_TYPES.get(type(value), type(value).__name__)
            )
            problems.append(f"{where}: {message} (got {shown})")
        return problems
    return []
