"""Where a multi-stage experiment keeps its stages: in the run store (resumable, reusable) or in
memory (the Python API on a user's own model, nothing written)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from prunelab.experiments.stage import run_stage
from prunelab.masks import Mask
from prunelab.store import Run, RunStore, load_tensors

__all__ = ["Place", "StorePlace", "MemoryPlace"]

Body = Callable[[Run | None], tuple[dict[str, Any], Mask, dict[str, torch.Tensor]]]


class Place:
    """Runs a stage once and hands back its summary, mask and final weights."""

    def stage(self, name: str, spec_yaml: str, body: Body) -> tuple[dict[str, Any], Mask, dict[str, torch.Tensor]]:
        raise NotImplementedError


class StorePlace(Place):
    """Stages are sub-runs ``<parent>/<name>`` of the run store: finished ones are reused, their mask
    and final weights read back from disk."""

    def __init__(self, store: RunStore, parent_id: str) -> None:
        self.store = store
        self.parent_id = parent_id

    def run(self, name: str) -> Run:
        return self.store.run(f"{self.parent_id}/{name}")

    def stage(self, name: str, spec_yaml: str, body: Body) -> tuple[dict[str, Any], Mask, dict[str, torch.Tensor]]:
        def wrapped(run: Run) -> dict[str, Any]:
            summary, mask, state = body(run)
            mask.save(run.path / "mask.safetensors")
            return summary

        run_id = f"{self.parent_id}/{name}"
        summary = run_stage(self.store, run_id, spec_yaml, wrapped)
        run = self.store.run(run_id)
        mask = Mask.load(run.path / "mask.safetensors")
        state = load_tensors(run.weights_path(summary["final_step"]))
        return summary, mask, state


class MemoryPlace(Place):
    """Stages run in memory, once per place object."""

    def __init__(self) -> None:
        self.results: dict[str, tuple[dict[str, Any], Mask, dict[str, torch.Tensor]]] = {}

    def stage(self, name: str, spec_yaml: str, body: Body) -> tuple[dict[str, Any], Mask, dict[str, torch.Tensor]]:
        if name not in self.results:
            summary, mask, state = body(None)
            summary.setdefault("run_id", name)
            self.results[name] = (summary, mask, {k: v.detach().clone() for k, v in state.items()})
        return self.results[name]
