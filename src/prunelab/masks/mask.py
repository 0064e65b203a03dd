"""A pruning mask: parameter name → bool tensor of the parameter's shape (True = kept)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from prunelab.store.atomic import atomic_save_tensors, load_tensor_file

__all__ = ["Mask"]


class Mask(Mapping[str, torch.Tensor]):
    """An immutable-by-convention mapping from prunable parameter names to boolean keep-masks.

    Densities are fractions of the weights *in the mask* (the prunable weights) that are kept.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor] | None = None) -> None:
        self._masks: dict[str, torch.Tensor] = {}
        for name, value in (masks or {}).items():
            tensor = torch.as_tensor(value)
            if tensor.dtype != torch.bool:
                if tensor.is_floating_point() and not torch.all((tensor == 0) | (tensor == 1)):
                    raise ValueError(f"mask {name!r} must be boolean or 0/1, got other values")
                tensor = tensor != 0
            self._masks[name] = tensor

    # construction -----------------------------------------------------------------------------
    @classmethod
    def ones_like(cls, tensors: Mapping[str, torch.Tensor] | nn.Module, names: Iterable[str] | None = None) -> Mask:
        """An all-kept mask for the given tensors (or for the named parameters of a module)."""
        if isinstance(tensors, nn.Module):
            params = dict(tensors.named_parameters())
            tensors = {n: params[n] for n in names} if names is not None else params
        return cls({name: torch.ones_like(t, dtype=torch.bool) for name, t in tensors.items()})

    # mapping protocol -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if list(self.keys()) != list(other.keys()) and set(self.keys()) != set(other.keys()):
            return False
        return all(
            self[n].shape == other[n].shape and bool(torch.equal(self[n].cpu(), torch.as_tensor(other[n]).bool().cpu()))
            for n in self
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.num_kept}/{self.num_total} kept, density={self.density:.4f})"

    # statistics -------------------------------------------------------------------------------
    @property
    def num_total(self) -> int:
        return sum(m.numel() for m in self._masks.values())

    @property
    def num_kept(self) -> int:
        return int(sum(int(m.sum()) for m in self._masks.values()))

    @property
    def density(self) -> float:
        total = self.num_total
        return self.num_kept / total if total else 1.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def layer_densities(self) -> dict[str, float]:
        return {n: (float(m.sum()) / m.numel() if m.numel() else 1.0) for n, m in self._masks.items()}

    def layer_report(self) -> list[dict[str, object]]:
        """One row per tensor: name, shape, kept, total, density."""
        return [
            {
                "name": n,
                "shape": list(m.shape),
                "kept": int(m.sum()),
                "total": m.numel(),
                "density": (float(m.sum()) / m.numel() if m.numel() else 1.0),
            }
            for n, m in self._masks.items()
        ]

    def collapsed_layers(self) -> list[str]:
        """Names of tensors with no weight kept (a layer collapse disconnects the network)."""
        return [n for n, m in self._masks.items() if m.numel() and not bool(m.any())]

    # set algebra ------------------------------------------------------------------------------
    def _check_compatible(self, other: Mapping[str, torch.Tensor]) -> None:
        if set(self) != set(other):
            missing = sorted(set(self) ^ set(other))
            raise ValueError(f"masks cover different tensors: {missing[:5]}")
        for n in self:
            if self[n].shape != other[n].shape:
                raise ValueError(f"mask shapes differ for {n!r}: {tuple(self[n].shape)} vs {tuple(other[n].shape)}")

    def __and__(self, other: Mapping[str, torch.Tensor]) -> Mask:
        self._check_compatible(other)
        return Mask({n: self[n] & other[n].to(self[n].device) for n in self})

    def __or__(self, other: Mapping[str, torch.Tensor]) -> Mask:
        self._check_compatible(other)
        return Mask({n: self[n] | other[n].to(self[n].device) for n in self})

    def intersection_count(self, other: Mapping[str, torch.Tensor]) -> int:
        return (self & other).num_kept

    def overlap(self, other: Mapping[str, torch.Tensor]) -> float:
        """Jaccard overlap of the kept sets: |A ∩ B| / |A ∪ B| (1.0 for two empty masks)."""
        union = (self | other).num_kept
        return self.intersection_count(other) / union if union else 1.0

    def is_subset_of(self, other: Mapping[str, torch.Tensor]) -> bool:
        """True when every weight kept here is also kept in ``other`` (masks nest across levels)."""
        self._check_compatible(other)
        return all(not bool((self[n] & ~other[n].to(self[n].device)).any()) for n in self)

    # conversion and persistence ---------------------------------------------------------------
    def to(self, device: str | torch.device) -> Mask:
        return Mask({n: m.to(device) for n, m in self._masks.items()})

    def cpu(self) -> Mask:
        return self.to("cpu")

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._masks)

    def save(self, path: str | os.PathLike) -> Path:
        """Save as safetensors (bool tensors) with the density in the metadata, atomically."""
        meta = {"format": "prunelab.mask/1", "density": repr(self.density), "order": json.dumps(list(self))}
        return atomic_save_tensors(path, self._masks, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Mask:
        """A saved mask, checked against its checksum (:class:`~prunelab.store.DamagedFile` if it fails)."""
        tensors, meta = load_tensor_file(path, device=device)
        if meta.get("format") != "prunelab.mask/1":
            raise ValueError(f"{path} is not a prunelab mask file (format tag {meta.get('format')!r})")
        order = json.loads(meta.get("order", "[]")) or sorted(tensors)
        return cls({n: tensors[n] for n in order})
