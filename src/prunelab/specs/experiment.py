"""The experiment spec: one spec per concern, plus the replicate seed."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from prunelab.specs.base import canonical_hash, spec_field
from prunelab.specs.dataset import DatasetSpec
from prunelab.specs.model import ModelSpec
from prunelab.specs.pruning import PruningSpec
from prunelab.specs.supermask import SupermaskSpec
from prunelab.specs.training import TrainingSpec

#: The sections each kind of run reads. The others are reset to their defaults for the run's name
#: and left out of its stored spec, so an option a run does not read never renames it.
SECTIONS: dict[str, tuple[str, ...]] = {
    "train": ("dataset", "model", "train"),
    "lottery": ("dataset", "model", "train", "prune"),
    "prune": ("dataset", "model", "train", "prune"),
    "branch": ("dataset", "model", "train", "prune"),
    "supermask": ("dataset", "model", "train", "supermask"),
}


@dataclass(frozen=True)
class ExperimentSpec:
    dataset: DatasetSpec = field(default_factory=DatasetSpec, metadata={"semantic": True})
    model: ModelSpec = field(default_factory=ModelSpec, metadata={"semantic": True})
    train: TrainingSpec = field(default_factory=TrainingSpec, metadata={"semantic": True})
    prune: PruningSpec = field(default_factory=PruningSpec, metadata={"semantic": True})
    supermask: SupermaskSpec = field(default_factory=SupermaskSpec, metadata={"semantic": True})
    seed: int = spec_field(0, help="replicate seed: initialisation, and data order unless set separately")

    def run_hash(self, kind: str) -> str:
        """The hash run names are built from: the semantic fields that differ from their defaults, with
        the pruning and supermask sections' rules of resolution applied (:meth:`PruningSpec.resolved`,
        :meth:`SupermaskSpec.resolved`)."""
        return canonical_hash(
            replace(self, prune=self.prune.resolved(), supermask=self.supermask.resolved()), kind=kind
        )

    def for_kind(self, kind: str) -> ExperimentSpec:
        """This spec with the sections a ``kind`` of run does not read reset to their defaults."""
        if kind not in SECTIONS:
            raise ValueError(f"unknown run kind {kind!r}; known: {', '.join(SECTIONS)}")
        read = SECTIONS[kind]
        defaults = {
            f.name: f.default_factory() for f in fields(self) if f.name not in read and f.default_factory is not MISSING
        }
        return replace(self, **defaults)

    def with_seed(self, seed: int) -> ExperimentSpec:
        return replace(self, seed=seed)

    def updated(self, **sections: Any) -> ExperimentSpec:
        return replace(self, **sections)
