"""Results of a study: mean ± standard deviation over seeds per grid point, read from the run store.

Two ways to choose the runs: the trials of an experiment file's experiment (grouped by their grid values
other than ``seed``), or a filter over the store's finished runs (a kind and dotted ``key=value``
conditions on their specs, grouped by whatever settings differ between the matching runs). A lottery
gives one row per level, and one per control of each level.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prunelab.experiments.study import Point
from prunelab.specs import ExperimentSpec, SpecError, apply_overrides, from_dict, semantic_dict
from prunelab.specs.experiment import SECTIONS
from prunelab.store import DamagedFile, Run, RunStore

__all__ = ["ResultTable", "point_results", "filtered_results"]

log = logging.getLogger("prunelab")


@dataclass
class ResultTable:
    """``rows`` (each: the group's values, then ``kept_fraction`` — the mean density the runs reached —,
    ``mean_accuracy``, ``std_accuracy`` and ``seeds``),
    ``keys`` the group columns, and how many trials or runs were found of how many asked for."""

    keys: list[str]
    rows: list[dict[str, Any]]
    found: int
    total: int
    missing: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.keys, "kept_fraction", "mean_accuracy", "std_accuracy", "seeds"]


#: ``(group values, density, accuracy)`` of one trained network
_Record = tuple[dict[str, Any], float, float]


def _records(summary: Mapping[str, Any], group: dict[str, Any]) -> Iterable[_Record]:
    """``(group values, density, accuracy)`` per trained network of a run: one for most runs, one per level
    and control of a lottery."""
    if summary.get("kind") == "lottery" and "levels" in summary:
        controls = summary.get("controls") or []
        for row in summary["levels"]:
            yield {**group, "level": row["level"]}, row["density"], row["test_accuracy"]
            for name in controls:
                if name in row:
                    yield {**group, "level": row["level"], "control": name}, row["density"], row[name]
        return
    yield group, summary["density"], summary["test_accuracy"]


def _aggregate(records: Iterable[_Record]) -> tuple[list[str], list[dict[str, Any]]]:
    groups: dict[tuple, list[tuple[float, float]]] = {}
    values: dict[tuple, dict[str, Any]] = {}
    keys: list[str] = []
    for group, density, accuracy in records:
        for key in group:
            if key not in keys:
                keys.append(key)
        marker = tuple(sorted((k, repr(v)) for k, v in group.items()))
        groups.setdefault(marker, []).append((density, accuracy))
        values[marker] = group
    rows = []
    for marker, found in groups.items():
        accuracies = [a for _, a in found]
        rows.append(
            {
                **values[marker],
                "kept_fraction": statistics.fmean(d for d, _ in found),
                "mean_accuracy": statistics.fmean(accuracies),
                "std_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "seeds": len(accuracies),
            }
        )
    return keys, rows


def point_results(points: Sequence[Point], store: RunStore) -> ResultTable:
    """Mean ± std over seeds per grid point (the points' values without ``seed``) of the stored trials."""
    records: list[_Record] = []
    missing: list[str] = []
    for point in points:
        trial = point.trial
        if not trial.is_stored(store):
            missing.append(trial.run_id)
            continue
        group = {k: v for k, v in point.values.items() if k != "seed"}
        records.extend(_records(store.run(trial.run_id).summary(), group))
    keys, rows = _aggregate(records)
    return ResultTable(keys, rows, len(points) - len(missing), len(points), missing)


def _run_settings(run: Run, spec: ExperimentSpec) -> dict[str, Any]:
    """What a run is apart from its seed: the semantic spec its kind reads, flattened to dotted keys, and its
    stage arguments (target density, multishot, branch arguments)."""
    kind = run.kind
    settings = _flatten(semantic_dict(spec.for_kind(kind) if kind in SECTIONS else spec))
    settings.pop("seed", None)
    info = run.stage_info()
    for key in ("experiment", "rounds", "method"):
        if info.get(key) is not None:
            settings[key] = info[key]
    if "density" in info and kind != "supermask":
        settings["target_density"] = info["density"]
    for key, value in (info.get("args") or {}).items():
        settings[f"branch.{key}"] = value
    return {"kind": kind, **settings}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def _matches(spec: ExperimentSpec, settings: Mapping[str, Any], key: str, value: str) -> bool:
    if key in ("density", "target_density"):
        target = settings.get("target_density", settings.get("supermask.density"))
        return target is not None and math.isclose(float(target), float(value), rel_tol=1e-9)
    try:
        return apply_overrides(spec, {key: value}) == spec
    except SpecError:
        if key in settings:
            return str(settings[key]) == value
        raise


def filtered_results(
    store: RunStore, *, kind: str | None = None, where: Mapping[str, str] | None = None
) -> ResultTable:
    """Mean ± std over seeds of the store's finished runs of ``kind`` whose specs match every ``where``
    condition (dotted spec keys as in overrides, or ``density``), grouped by the settings that differ."""
    where = dict(where or {})
    chosen: list[tuple[Run, dict[str, Any]]] = []
    runs = [run for run in store.runs() if run.finished and (kind is None or run.kind == kind)]
    for run in runs:
        try:
            spec = from_dict(ExperimentSpec, run.spec_data())
            run.summary()
        except DamagedFile as error:
            log.warning(
                "prunelab: warning: skipping run %s: %s is %s (`prunelab verify` checks the store)",
                run.run_id,
                error.path.name,
                error.problem,
            )
            continue
        except SpecError:
            continue  # a run of a user's own model: nothing to compare
        settings = _run_settings(run, spec)
        if all(_matches(spec, settings, key, value) for key, value in where.items()):
            chosen.append((run, settings))
    varying = [
        key for key in dict.fromkeys(k for _, s in chosen for k in s) if len({repr(s.get(key)) for _, s in chosen}) > 1
    ]
    records: list[_Record] = []
    for run, settings in chosen:
        records.extend(_records(run.summary(), {key: settings.get(key) for key in varying}))
    keys, rows = _aggregate(records)
    return ResultTable(keys, rows, len(chosen), len(runs))
