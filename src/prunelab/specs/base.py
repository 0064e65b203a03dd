"""Shared machinery for the typed spec dataclasses: strict construction from dicts, dotted
overrides, canonical hashing.

Each concern (data, model, training, pruning) has a frozen dataclass. Field metadata marks
fields that do not change results (device, data location, logging) with ``semantic=False``;
those never enter the run hash.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from prunelab.errors import UserError

if TYPE_CHECKING:
    import pydantic
    from _typeshed import DataclassInstance

__all__ = [
    "SpecError",
    "spec_field",
    "from_dict",
    "to_dict",
    "semantic_dict",
    "canonical_hash",
    "apply_overrides",
    "parse_override_value",
    "closest",
    "check_choice",
]

S = TypeVar("S", bound="DataclassInstance")


class SpecError(UserError, ValueError):
    """A spec, preset, override or config file that cannot be used as given."""


def spec_field(default: Any = dataclasses.MISSING, *, semantic: bool = True, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with a help string and a flag for whether it changes results."""
    metadata = {"semantic": semantic, "help": help}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata, **kwargs)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults: specs are frozen")
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def closest(name: str, candidates: typing.Iterable[str], n: int = 3) -> list[str]:
    """The candidates most similar to ``name`` (for 'did you mean' messages)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if not found:
        found = [c for c in candidates if name.lower() in c.lower() or c.lower() in name.lower()][:n]
    return found


def check_choice(value: str, valid: typing.Sequence[str], label: str) -> None:
    """Raise a :class:`SpecError` naming the closest valid choices when ``value`` is not one of them."""
    if value not in valid:
        near = closest(value, valid)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise SpecError(f"unknown {label} {value!r}.{hint} Valid: {', '.join(valid)}.")


def _did_you_mean(name: str, candidates: typing.Iterable[str]) -> str:
    candidates = sorted(candidates)
    near = closest(name, candidates)
    hint = f" Did you mean {', '.join(repr(c) for c in near)}?" if near else ""
    return f"{hint} Valid: {', '.join(candidates)}."


def _is_spec(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    """One validator per field type: building one costs a millisecond, and a study builds thousands of specs.
    pydantic is imported here, on first use, so commands that build no spec do not pay for it."""
    import pydantic

    return pydantic.TypeAdapter(tp)


def from_dict(cls: type[S], data: Mapping[str, Any] | None, *, where: str = "") -> S:
    """Build a spec from plain data, rejecting unknown keys (with the closest valid names) and
    coercing values to the declared types (``"0.1"`` → ``0.1``, ``"80ep,120ep"`` → a tuple)."""
    data = dict(data or {})
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _field_types(cls)
    unknown = [key for key in data if key not in names]
    if unknown:
        key = unknown[0]
        label = f"{where}.{key}" if where else key
        raise SpecError(f"unknown key {label!r} in {cls.__name__}.{_did_you_mean(key, names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        label = f"{where}.{key}" if where else key
        tp = hints[key]
        if _is_spec(tp):
            if isinstance(value, tp):
                kwargs[key] = value
            elif isinstance(value, Mapping):
                kwargs[key] = from_dict(tp, value, where=label)
            else:
                raise SpecError(f"{label} must be a mapping of {tp.__name__} fields, got {value!r}")
        else:
            kwargs[key] = _coerce(tp, value, label)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        if isinstance(error, SpecError):
            raise
        raise SpecError(f"invalid {where or cls.__name__}: {error}") from error


_SCALARS = (bool, int, float, str)


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` already is exactly what validating it as ``tp`` returns (a float for a float
    field, a tuple of str for ``tuple[str, ...]``, ...), so validation can be skipped: presets and stored
    specs are mostly such values, and skipping spares building validators (and importing pydantic)."""
    if tp is Any:
        return True
    if tp in _SCALARS:
        return type(value) is tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            return type(None) in args
        others = [arg for arg in args if arg is not type(None)]
        return len(others) == 1 and _fits(others[0], value)  # several: pydantic's union rules decide
    if origin is tuple and type(value) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(args[0], item) for item in value)
        return len(args) == len(value) and all(_fits(arg, item) for arg, item in zip(args, value))
    if origin is dict and type(value) is dict:
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        return all(_fits(key_type, key) and _fits(value_type, item) for key, item in value.items())
    return False


def _coerce(tp: Any, value: Any, label: str) -> Any:
    if isinstance(value, str):
        value = parse_override_value(tp, value)
    if isinstance(value, list):
        value = tuple(value)
    if _fits(tp, value):
        return dict(value) if type(value) is dict else value  # a mapping is copied, as validation would
    adapter = _adapter(tp)
    import pydantic  # imported by _adapter already

    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as error:
        problem = "; ".join(e["msg"] for e in error.errors())
        raise SpecError(f"{label}={value!r} does not fit type {_type_name(tp)}: {problem}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _tuple_like(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_tuple_like(arg) for arg in typing.get_args(tp) if arg is not type(None))
    return origin in (tuple, list)


def _optional(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def parse_override_value(tp: Any, text: str) -> Any:
    """Read a command-line string for a field of type ``tp``.

    Sequences are comma separated (``80ep,120ep``) or YAML lists (``[80ep, 120ep]``); an empty
    string is an empty sequence. ``none``/``null`` clears an optional field. Scalars are left as
    strings for pydantic's lax coercion (``"0.1"`` → ``0.1``, ``"true"`` → ``True``).
    """
    stripped = text.strip()
    if _optional(tp) and stripped.lower() in ("none", "null", "~"):
        return None
    if _tuple_like(tp):
        if stripped.startswith("["):
            loaded = yaml.safe_load(stripped)
            return tuple(loaded or ())
        return tuple(part.strip() for part in stripped.split(",") if part.strip())
    if _mapping_like(tp):
        if stripped.startswith("{"):
            return yaml.safe_load(stripped) or {}
        pairs = [part.split("=", 1) for part in stripped.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise SpecError(f"cannot read {text!r} as a mapping: write key=value,key2=value2 or {{key: value}}")
        value_type = (typing.get_args(tp) or (None, None))[-1]
        if value_type is Any:  # untyped values read as YAML scalars: false, 0.01, [3, 32, 32]
            return {key.strip(): yaml.safe_load(value.strip()) for key, value in pairs}
        return {key.strip(): value.strip() for key, value in pairs}
    return stripped


def _mapping_like(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_mapping_like(arg) for arg in typing.get_args(tp) if arg is not type(None))
    return origin in (dict, Mapping) or tp is dict


def to_dict(spec: Any) -> dict[str, Any]:
    """The spec as plain data (tuples as lists), every field included — for YAML files."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def semantic_dict(spec: Any) -> dict[str, Any]:
    """The fields that define the result: semantic fields whose value differs from the field's
    default. Leaving defaults out is what keeps run names stable when a new field (whose default
    reproduces the old behaviour) is added. The corollary — a default, once released, never
    changes — is pinned by golden-hash tests."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        if not f.metadata.get("semantic", True):
            continue
        value = getattr(spec, f.name)
        if dataclasses.is_dataclass(value):
            nested = semantic_dict(value)
            if nested:
                out[f.name] = nested
            continue
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        out[f.name] = _plain(value)
    return out


def canonical_hash(spec: Any, *, kind: str = "", length: int = 12) -> str:
    """A stable hex digest of the spec's semantic content (sorted-key JSON, floats via repr)."""
    payload = {"kind": kind, "spec": semantic_dict(spec)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def apply_overrides(spec: S, overrides: Mapping[str, Any]) -> S:
    """Return a copy of ``spec`` with dotted-path values replaced (``{"train.lr": "0.05"}``)."""
    data = to_dict(spec)
    for dotted, value in overrides.items():
        parts = [p for p in dotted.split(".") if p]
        if not parts:
            raise SpecError(f"empty override key {dotted!r}")
        cursor: dict[str, Any] = data
        cls: Any = type(spec)
        for depth, part in enumerate(parts):
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                prefix = ".".join(parts[:depth])
                where = f" under {prefix!r}" if prefix else ""
                choices = (
                    names
                    if depth
                    else names
                    + [
                        f"{f.name}.{g.name}"
                        for f in dataclasses.fields(cls)
                        if _is_spec(_field_types(cls)[f.name])
                        for g in dataclasses.fields(_field_types(cls)[f.name])
                    ]
                )
                target = part if depth else dotted
                prefix_dot = ".".join(parts[:depth]) + "." if depth else ""
                near = closest(target, choices)
                hint = f" Did you mean {', '.join('--' + prefix_dot + c for c in near)}?" if near else ""
                raise SpecError(
                    f"unknown override {'--' + dotted!r}{where}.{hint} Valid {'fields' if depth else 'sections'}: "
                    f"{', '.join(sorted(names))}."
                )
            tp = _field_types(cls)[part]
            if depth == len(parts) - 1:
                if _is_spec(tp) and not isinstance(value, Mapping):
                    raise SpecError(f"--{dotted} is a section; set one of its fields, e.g. --{dotted}.<field>=...")
                cursor[part] = value
            else:
                if not _is_spec(tp):
                    raise SpecError(f"--{'.'.join(parts[: depth + 1])} is a value, not a section")
                cursor = cursor[part]
                cls = tp
    return from_dict(type(spec), data)
