"""Analyses of (pruned) networks: the empirical neural tangent kernel and its distances, parameter
counts and FLOPs, and reports over finished runs (:mod:`prunelab.analysis.report`)."""

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
