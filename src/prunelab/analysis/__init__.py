"""Analyses of (pruned) networks: the empirical neural tangent kernel and its distances, parameter
counts and FLOPs, and reports over finished runs (:mod:`prunelab.analysis.report`).

The kernel and FLOP functions are imported on first use, so reading reports
(:mod:`prunelab.analysis.report`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunelab.analysis.flops import efficiency_metrics, model_flops
    from prunelab.analysis.ntk import (
        compare_kernels,
        condition_number,
        empirical_ntk,
        kernel_distance,
        kernel_stats,
        ntk_eigenvalues,
        ntk_trace,
        optimal_scale,
        relative_frobenius_difference,
    )

_EXPORTS = {
    "prunelab.analysis.flops": ("efficiency_metrics", "model_flops"),
    "prunelab.analysis.ntk": (
        "compare_kernels",
        "condition_number",
        "empirical_ntk",
        "kernel_distance",
        "kernel_stats",
        "ntk_eigenvalues",
        "ntk_trace",
        "optimal_scale",
        "relative_frobenius_difference",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "compare_kernels",
    "condition_number",
    "efficiency_metrics",
    "empirical_ntk",
    "kernel_distance",
    "kernel_stats",
    "model_flops",
    "ntk_eigenvalues",
    "ntk_trace",
    "optimal_scale",
    "relative_frobenius_difference",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'prunelab.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
