"""Resolve a spec from a preset, a YAML file and dotted overrides (in that order)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from prunelab.specs.base import SpecError, apply_overrides, from_dict, to_dict
from prunelab.specs.experiment import SECTIONS, ExperimentSpec
from prunelab.specs.presets import get_preset

__all__ = ["load_spec", "parse_override_args", "read_spec_file", "spec_to_yaml"]


def read_spec_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"config {path} is a directory; give a YAML file")
    try:  # read, not stat: a pipe (`--config <(...)`, /dev/fd/N, /dev/stdin) is a file too
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read config file {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SpecError(f"{path} must hold a mapping of spec sections (dataset, model, train, prune, seed)")
    return dict(data)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_override_args(args: Sequence[str]) -> dict[str, str]:
    """``['--train.lr=0.05', '--model.width', '2']`` → ``{'train.lr': '0.05', 'model.width': '2'}``."""
    out: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) <= 2:
            raise SpecError(f"unexpected argument {item!r}: overrides look like --section.field=value")
        key, eq, value = item[2:].partition("=")
        if not eq:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise SpecError(f"override --{key} has no value: write --{key}=VALUE")
            value = items[i + 1]
            i += 1
        key = key.replace("-", "_") if "." not in key else key
        if key in out and out[key] != value:
            raise SpecError(f"--{key} is given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
        i += 1
    return out


def load_spec(
    preset: str | None = None,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    extra_sections: Mapping[str, Any] | None = None,
) -> ExperimentSpec:
    """Preset (or the defaults), then the YAML file, then overrides; unknown keys are errors."""
    data: dict[str, Any] = to_dict(get_preset(preset)) if preset else to_dict(ExperimentSpec())
    if config is not None:
        file_data = read_spec_file(config)
        file_preset = file_data.pop("preset", None)
        if file_preset and not preset:
            data = to_dict(get_preset(file_preset))
        data = _merge(data, file_data)
    if extra_sections:
        data = _merge(data, extra_sections)
    spec = from_dict(ExperimentSpec, data)
    if overrides:
        spec = apply_overrides(spec, overrides)
    return spec


def spec_to_yaml(spec: ExperimentSpec, kind: str | None = None) -> str:
    """The spec as YAML; with ``kind``, only the sections that kind of run reads (and the seed)."""
    data = to_dict(spec)
    if kind is not None:
        data = {key: value for key, value in data.items() if key == "seed" or key in SECTIONS[kind]}
    return yaml.safe_dump(data, sort_keys=False)
