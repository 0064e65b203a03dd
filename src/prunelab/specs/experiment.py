"""The experiment spec: one spec per concern, plus the replicate seed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from prunelab.specs.base import canonical_hash, spec_field
from prunelab.specs.dataset import DatasetSpec
from prunelab.specs.model import ModelSpec
from prunelab.specs.pruning import PruningSpec
from prunelab.specs.training import TrainingSpec


@dataclass(frozen=True)
class ExperimentSpec:
    dataset: DatasetSpec = field(default_factory=DatasetSpec, metadata={"semantic": True})
    model: ModelSpec = field(default_factory=ModelSpec, metadata={"semantic": True})
    train: TrainingSpec = field(default_factory=TrainingSpec, metadata={"semantic": True})
    prune: PruningSpec = field(default_factory=PruningSpec, metadata={"semantic": True})
    seed: int = spec_field(0, help="replicate seed: initialisation, and data order unless set separately")

    def run_hash(self, kind: str) -> str:
        """The hash run names are built from: the semantic fields that differ from their defaults, with
        the pruning section's rules of resolution applied (:meth:`PruningSpec.resolved`)."""
        return canonical_hash(replace(self, prune=self.prune.resolved()), kind=kind)

    def without_pruning(self) -> "ExperimentSpec":
        return replace(self, prune=PruningSpec())

    def with_seed(self, seed: int) -> "ExperimentSpec":
        return replace(self, seed=seed)

    def updated(self, **sections: Any) -> "ExperimentSpec":
        return replace(self, **sections)
