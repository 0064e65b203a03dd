"""Where a multi-stage experiment keeps its stages: in the run store (resumable, reusable) or in
memory (the Python API on a user's own model, nothing written)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from prunelab.experiments.stage import run_stage
from prunelab.masks import Mask
from prunelab.store import Run, RunStore

__all__ = ["StageResult", "Place", "StorePlace", "MemoryPlace"]


@dataclass(frozen=True)
class StageResult:
    """What a finished training stage hands to the stages after it."""

    summary: dict[str, Any]  # the stage's summary.json
    mask: Mask  # the mask the trained network has
    state: dict[str, torch.Tensor]  # its final state dict
    saved: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)  # in memory: save steps


Body = Callable[[Run | None], StageResult]


class Place:
    """Runs a stage once and hands back its :class:`StageResult`."""

    def stage(self, name: str, spec_yaml: str, body: Body) -> StageResult:
        raise NotImplementedError

    def finished(self, name: str) -> bool:
        """Whether stage ``name`` is stored (so reading it trains nothing)."""
        raise NotImplementedError

    def weights(self, name: str, step: int) -> dict[str, torch.Tensor]:
        """The weights stage ``name`` saved at ``step`` (one of its save steps)."""
        raise NotImplementedError


class StorePlace(Place):
    """Stages are sub-runs ``<parent>/<name>`` of the run store: finished ones are reused, their mask
    and final weights read back from disk (checked against their checksums)."""

    def __init__(self, store: RunStore, parent_id: str, *, stage_info: dict[str, Any] | None = None) -> None:
        self.store = store
        self.parent_id = parent_id
        self.stage_info = stage_info  # written to every stage's stage.json (e.g. a user model's class)

    def run(self, name: str) -> Run:
        return self.store.run(f"{self.parent_id}/{name}")

    def stage(self, name: str, spec_yaml: str, body: Body) -> StageResult:
        def wrapped(run: Run) -> dict[str, Any]:
            result = body(run)
            result.mask.save(run.mask_path)
            return result.summary

        run_id = f"{self.parent_id}/{name}"
        summary = run_stage(self.store, run_id, spec_yaml, wrapped, stage_info=self.stage_info)
        run = self.store.run(run_id)
        return StageResult(summary, Mask.load(run.mask_path), run.load_weights(summary["final_step"]))

    def finished(self, name: str) -> bool:
        return self.run(name).finished

    def weights(self, name: str, step: int) -> dict[str, torch.Tensor]:
        return self.run(name).load_weights(step)


class MemoryPlace(Place):
    """Stages run in memory, once per place object."""

    def __init__(self) -> None:
        self.results: dict[str, StageResult] = {}

    def stage(self, name: str, spec_yaml: str, body: Body) -> StageResult:
        if name not in self.results:
            result = body(None)
            result.summary.setdefault("run_id", name)
            state = {k: v.detach().clone() for k, v in result.state.items()}
            self.results[name] = StageResult(result.summary, result.mask, state, result.saved)
        return self.results[name]

    def finished(self, name: str) -> bool:
        return name in self.results

    def weights(self, name: str, step: int) -> dict[str, torch.Tensor]:
        return self.results[name].saved[step]
