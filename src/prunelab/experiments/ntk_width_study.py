"""The settings of the width study of :mod:`prunelab.experiments.ntk_width`, in a module that does not
import torch, so the command line shows their defaults in its help without paying for it."""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.specs import SpecError
from prunelab.specs.pruning import RESCALE_MODES

__all__ = ["PARAMETERIZATIONS", "WidthStudy"]

PARAMETERIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class WidthStudy:
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)
    densities: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
    replicates: int = 3
    inputs: int = 32
    input_dim: int = 10
    depth: int = 3
    parameterization: str = "ntk"
    prune_input_layer: bool = False
    rescale_mode: str = "global"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.widths or min(self.widths) < 1:
            raise SpecError(f"--widths must be positive integers, got {self.widths}")
        if not self.densities or not all(0.0 < d < 1.0 for d in self.densities):
            raise SpecError(f"--densities must lie in (0, 1), got {self.densities}")
        for name in ("replicates", "input_dim", "depth"):
            if getattr(self, name) < 1:
                raise SpecError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.inputs < 2:
            raise SpecError(f"--inputs must be at least 2, got {self.inputs}")
        if self.rescale_mode not in RESCALE_MODES:
            raise SpecError(f"--rescale-mode must be one of {', '.join(RESCALE_MODES)}, got {self.rescale_mode!r}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise SpecError(
                f"--parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {self.parameterization!r}"
            )
