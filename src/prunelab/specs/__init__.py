"""Typed, frozen experiment specs; presets; YAML files; dotted overrides; canonical hashing."""

from prunelab.specs.base import SpecError, apply_overrides, canonical_hash, from_dict, semantic_dict, to_dict
from prunelab.specs.dataset import DatasetSpec
from prunelab.specs.experiment import ExperimentSpec
from prunelab.specs.loading import load_spec, parse_override_args, read_spec_file, spec_to_yaml
from prunelab.specs.model import ModelSpec
from prunelab.specs.presets import get_preset, preset_names
from prunelab.specs.pruning import PruningSpec
from prunelab.specs.supermask import SupermaskSpec
from prunelab.specs.training import TrainingSpec

__all__ = [
    "DatasetSpec",
    "ExperimentSpec",
    "ModelSpec",
    "PruningSpec",
    "SpecError",
    "SupermaskSpec",
    "TrainingSpec",
    "apply_overrides",
    "canonical_hash",
    "from_dict",
    "get_preset",
    "load_spec",
    "parse_override_args",
    "preset_names",
    "read_spec_file",
    "semantic_dict",
    "spec_to_yaml",
    "to_dict",
]
