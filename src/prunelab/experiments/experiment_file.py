"""Experiment files: named experiments of every kind in one YAML file, each one trial or a grid of them.

A file is a mapping from experiment names to experiments::

    lenet_pai:
      kind: prune                      # train, lottery, prune, branch or supermask
      preset: mnist10k_lenet_300_100   # a preset (`prunelab presets`), then the sections below on top of it
      prune: {ignore: []}
      density: 0.1
      grid:                            # the cross product of these values, last key fastest
        prune.strategy: [snip, synflow]
        density: [0.1, 0.01]
        seed: [1, 2, 3]

    lenet_pai_long:
      extends: lenet_pai               # everything of lenet_pai, then these keys merged in (mappings merge,
      train: {steps: 80ep}             # lists and values replace)

Keys of every experiment: ``kind``, ``extends``, ``description``, ``grid``; the spec: ``preset``, ``seed``
and the sections ``dataset``, ``model``, ``train``, ``prune``, ``supermask`` (the ones the kind reads);
the kind's own arguments: ``levels``/``controls`` (lottery), ``density`` or ``sparsity`` or
``compression`` and ``experiment``/``rounds``/``round_steps`` (prune), ``branch`` (a mapping of
:class:`OneShotBranch` fields) and ``parent`` (branch; without it the parent is the ``train`` run of the
experiment's own spec, trained first). Grid keys are dotted paths to any of these values.

What an experiment writes itself must be read by its kind; what it inherits through ``extends`` and
its kind does not read is left out (as a supermask sweep's dense baseline leaves out the supermask
section). Every error names the file, the experiment and the key.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prunelab.experiments.branch import OneShotBranch
from prunelab.experiments.prune_init import densities_from
from prunelab.experiments.study import Point
from prunelab.experiments.trial import KINDS, Trial
from prunelab.specs import ExperimentSpec, SpecError, from_dict, load_spec
from prunelab.specs.base import closest
from prunelab.specs.experiment import SECTIONS
from prunelab.store import RunNotFound, RunStore

__all__ = ["ExperimentFile", "COMMON_KEYS", "SPEC_KEYS", "ARGUMENT_KEYS"]

COMMON_KEYS = ("kind", "extends", "description", "grid")
SPEC_SECTIONS = ("dataset", "model", "train", "prune", "supermask")
SPEC_KEYS = ("preset", "seed", *SPEC_SECTIONS)
ARGUMENT_KEYS: dict[str, tuple[str, ...]] = {
    "train": (),
    "lottery": ("levels", "controls"),
    "prune": ("density", "sparsity", "compression", "experiment", "rounds", "round_steps"),
    "branch": ("parent", "branch"),
    "supermask": (),
}
ALL_KEYS = tuple(dict.fromkeys([*COMMON_KEYS, *SPEC_KEYS, *(k for keys in ARGUMENT_KEYS.values() for k in keys)]))
DENSITY_KEYS = ("density", "sparsity", "compression")
#: keys that a grid cannot vary (a lottery's levels are nested: ask for the largest)
_NOT_GRID = {
    "kind": "the kind",
    "extends": "extends",
    "description": "the description",
    "grid": "the grid",
    "levels": "a lottery's levels are nested; set levels to the largest and read the others from it",
    "controls": "every level trains all the controls; list them in controls",
}


@dataclass(frozen=True)
class _LotteryArgs:
    levels: int
    controls: tuple[str, ...] = ()


@dataclass(frozen=True)
class _PruneArgs:
    density: float | None = None
    sparsity: float | None = None
    compression: float | None = None
    experiment: str = "singleshot"
    rounds: int | None = None
    round_steps: str | None = None


def _read_keys(kind: str, data: Mapping[str, Any]) -> set[str]:
    """The top-level keys a ``kind`` of experiment reads."""
    if kind == "branch":  # the parent's spec: a train run's sections, or a given run's own
        spec_keys: tuple[str, ...] = (
            () if data.get("parent") is not None else ("preset", "seed", "dataset", "model", "train")
        )
    else:
        spec_keys = ("preset", "seed", *SECTIONS[kind])
    return {*COMMON_KEYS, *spec_keys, *ARGUMENT_KEYS[kind]}


def _unread_hint(kind: str, key: str, data: Mapping[str, Any]) -> str:
    if kind == "branch" and data.get("parent") is not None and key in SPEC_KEYS:
        return (
            "a branch of a given parent run trains with the parent's spec; drop it, or drop parent: to branch the "
            "train run of this experiment's own spec"
        )
    if kind == "branch" and key == "prune":
        return "a branch's pruning goes under branch: (strategy, prune_fraction, prune_step, ...)"
    readers = [k for k in KINDS if key in _read_keys(k, {})]
    return f"it is read by {', '.join(readers)} experiments; drop it" if readers else "drop it"


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cursor = data
    for i, part in enumerate(parts[:-1]):
        nested = cursor.setdefault(part, {})
        if not isinstance(nested, dict):
            raise SpecError(f"{'.'.join(parts[: i + 1])} is a value, not a mapping, so {dotted} cannot be set")
        cursor = nested
    cursor[parts[-1]] = value


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) and not value else str(value)


class ExperimentFile:
    """An experiment file, read with ``yaml.safe_load``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SpecError(f"experiment file not found: {self.path}")
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise SpecError(f"{self.path} is not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(data, Mapping) or not data:
            raise SpecError(f"{self.path} must hold a mapping of experiment names to experiments")
        self.experiments: dict[str, dict[str, Any]] = {}
        for name, body in data.items():
            if not isinstance(body, Mapping):
                raise SpecError(
                    f"{self.path}: experiment {name!r} must be a mapping of keys (kind, preset, grid, ...), "
                    f"got {body!r}"
                )
            self.experiments[str(name)] = dict(body)

    @property
    def names(self) -> list[str]:
        return list(self.experiments)

    def _error(self, name: str, text: str) -> SpecError:
        return SpecError(f"{self.path}: experiment {name!r}: {text}")

    def _check_name(self, name: str, *, wanted_by: str | None = None) -> None:
        if name in self.experiments:
            return
        near = closest(name, self.experiments)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        where = f"{self.path}: experiment {wanted_by!r} extends" if wanted_by else f"{self.path}: no experiment"
        raise SpecError(f"{where} {name!r}, which is not in the file.{hint} Experiments: {', '.join(self.names)}.")

    def _check_keys(self, name: str, body: Mapping[str, Any]) -> None:
        for key in body:
            if key not in ALL_KEYS:
                near = closest(str(key), ALL_KEYS)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise self._error(name, f"unknown key {key!r}.{hint} Valid keys: {', '.join(ALL_KEYS)}.")

    def _chain(self, name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """The experiment with everything it extends merged under it."""
        if name in seen:
            raise SpecError(f"{self.path}: experiment {seen[0]!r}: extends forms a cycle: {' -> '.join([*seen, name])}")
        body = self.experiments[name]
        self._check_keys(name, body)
        parent = body.get("extends")
        own = {key: value for key, value in body.items() if key != "extends"}
        if parent is None:
            return copy.deepcopy(own)
        if not isinstance(parent, str):
            raise self._error(name, f"extends must name one experiment of this file, got {parent!r}")
        self._check_name(parent, wanted_by=name)
        return _merge(self._chain(parent, (*seen, name)), own)

    # resolving -----------------------------------------------------------------------------------
    def kind(self, name: str) -> str | None:
        self._check_name(name)
        kind = self._chain(name).get("kind")
        return kind if isinstance(kind, str) else None

    def grid_size(self, name: str) -> int:
        """The number of grid points (trials requested) of the experiment."""
        _, data = self.resolve(name)
        return math.prod(len(values) for values in data["grid"].values())

    def resolve(self, name: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """``(kind, data)``: the experiment merged with what it extends and with ``overrides`` (dotted keys,
        as on the command line; a grid key's override replaces that axis by the one value), with the keys
        its kind does not read left out. Errors name the file, the experiment and the key."""
        self._check_name(name)
        data = self._chain(name)
        body = self.experiments[name]
        overrides = dict(overrides or {})
        kind = data.get("kind")
        if "kind" in overrides:
            raise self._error(
                name, f"the kind cannot be overridden; write another experiment (extends: {name}, kind: ...)"
            )
        if kind is None:
            raise self._error(
                name, f"no kind: add kind: one of {', '.join(KINDS)} (or extends: an experiment with one)"
            )
        if kind not in KINDS:
            near = closest(str(kind), KINDS)
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            raise self._error(name, f"unknown kind {kind!r}.{hint} Valid: {', '.join(KINDS)}.")
        grid = data.get("grid") or {}
        if not isinstance(grid, Mapping):
            raise self._error(name, f"grid must map dotted keys to lists of values, got {grid!r}")
        own_grid = dict(body.get("grid") or {}) if isinstance(body.get("grid"), Mapping) else {}
        own = {key for key in body if key != "grid"} | {str(axis).split(".")[0] for axis in own_grid}
        own |= {key.split(".")[0] for key in overrides}
        readable = _read_keys(kind, {**data, **({"parent": overrides["parent"]} if "parent" in overrides else {})})
        for key in sorted(own):
            if key not in ALL_KEYS:
                near = closest(key, ALL_KEYS)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise self._error(name, f"unknown key {key!r}.{hint} Valid keys: {', '.join(ALL_KEYS)}.")
            if key not in readable:
                raise self._error(name, f"{key} is not read by a {kind} experiment: {_unread_hint(kind, key, data)}")
        own_density = own & set(DENSITY_KEYS)
        for key in list(data):  # inherited keys the kind does not read, and alternatives the experiment replaced
            if key not in readable or (key in DENSITY_KEYS and own_density and key not in own_density):
                data.pop(key)
        grid = {
            str(axis): values
            for axis, values in grid.items()
            if str(axis).split(".")[0] in readable
            and not (axis in DENSITY_KEYS and own_density and axis not in own_density)
        }
        for key, value in overrides.items():
            if key in ("grid", "extends", "description"):
                raise self._error(name, f"--{key} cannot be overridden")
            if key in grid:
                grid[key] = [value]
            else:
                if key in DENSITY_KEYS:
                    for other in DENSITY_KEYS:
                        if other != key:
                            data.pop(other, None)
                            grid.pop(other, None)
                try:
                    _set_dotted(data, key, value)
                except SpecError as error:
                    raise self._error(name, f"override --{key}: {error}") from None
        for axis, values in grid.items():
            self._check_axis(name, kind, axis, values)
        data["grid"] = grid
        return kind, data

    def _check_axis(self, name: str, kind: str, axis: str, values: Any) -> None:
        top = axis.split(".")[0]
        if top in _NOT_GRID:
            raise self._error(name, f"grid key {axis!r} cannot vary: {_NOT_GRID[top]}")
        if axis in SPEC_SECTIONS or axis == "branch":
            raise self._error(name, f"grid key {axis!r} is a section; vary one of its fields, e.g. {axis}.<field>")
        if not isinstance(values, list) or not values:
            raise self._error(name, f"grid key {axis!r} must list its values, e.g. {axis}: [a, b], got {values!r}")
        seen: set[str] = set()
        for value in values:
            if isinstance(value, (Mapping, list)) and top not in SPEC_SECTIONS:
                raise self._error(name, f"grid key {axis!r}: bad value {value!r}, a list of single values is expected")
            text = json.dumps(value, sort_keys=True, default=str)
            if text in seen:
                raise self._error(name, f"grid key {axis!r} lists {value!r} twice")
            seen.add(text)

    # expanding ------------------------------------------------------------------------------------
    def points(
        self, name: str, overrides: Mapping[str, Any] | None = None, *, store: RunStore | None = None
    ) -> list[Point]:
        """The experiment's trials, one per grid point (the cross product of the grid's values in the order
        the keys are written, the last key varying fastest), each checked without data. ``store`` resolves
        a branch's ``parent`` (a run id or unique prefix)."""
        kind, data = self.resolve(name, overrides)
        grid = data.pop("grid")
        axes = list(grid)
        points = []
        for combination in itertools.product(*(grid[axis] for axis in axes)):
            values = dict(zip(axes, combination))
            point_data = copy.deepcopy(data)
            for axis, value in values.items():
                _set_dotted(point_data, axis, value)
            where = f"grid point {', '.join(f'{k}={_shown(v)}' for k, v in values.items())}: " if values else ""
            try:
                trial = self._trial(kind, point_data, store)
                trial.check()
            except (SpecError, ValueError, RunNotFound) as error:
                raise self._error(name, f"{where}{' '.join(str(error).split())}") from None
            points.append(Point(trial, values))
        return points

    def _trial(self, kind: str, data: dict[str, Any], store: RunStore | None) -> Trial:
        if kind == "branch" and data.get("parent") is not None:
            spec = ExperimentSpec()
        else:
            sections: dict[str, Any] = {}
            for section in SPEC_SECTIONS:
                if section in data:
                    if not isinstance(data[section], Mapping):
                        raise SpecError(f"{section} must be a mapping of its fields, got {data[section]!r}")
                    sections[section] = data[section]
            if "seed" in data:
                sections["seed"] = data["seed"]
            preset = data.get("preset")
            if preset is not None and not isinstance(preset, str):
                raise SpecError(f"preset must be a preset name, got {preset!r}")
            spec = load_spec(preset, extra_sections=sections)
        if kind in ("train", "supermask"):
            return Trial(kind, spec)
        if kind == "lottery":
            if "levels" not in data:
                raise SpecError(
                    "a lottery needs levels: the number of pruning levels after the dense level 0, e.g. levels: 5"
                )
            lottery = from_dict(_LotteryArgs, {k: data[k] for k in ("levels", "controls") if k in data})
            return Trial("lottery", spec, levels=lottery.levels, controls=lottery.controls)
        if kind == "prune":
            given = [k for k in DENSITY_KEYS if data.get(k) is not None]
            if len(given) != 1:
                raise SpecError(
                    "a prune experiment needs exactly one of density, sparsity or compression (NTK-SAP's "
                    f"c: density 0.8^c){'; it has ' + ', '.join(given) if given else ''}"
                )
            prune = from_dict(_PruneArgs, {k: data[k] for k in ARGUMENT_KEYS["prune"] if k in data})
            (density,) = densities_from(*([getattr(prune, k)] if k == given[0] else [] for k in DENSITY_KEYS))
            return Trial(
                "prune",
                spec,
                density=density,
                experiment=prune.experiment,
                rounds=prune.rounds,
                round_steps=prune.round_steps,
            )
        branch = data.get("branch")
        if not isinstance(branch, Mapping):
            raise SpecError(
                "a branch experiment needs branch: a mapping of its arguments (strategy, prune_fraction, "
                f"prune_step, state_step, ...), got {branch!r}"
            )
        arguments = from_dict(OneShotBranch, branch, where="branch")
        parent = data.get("parent")
        if parent is not None:
            parent = (store or RunStore()).find(str(parent)).run_id
        return Trial("branch", spec, parent=parent, branch=arguments)
