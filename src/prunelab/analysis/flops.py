"""Parameter counts, compression and FLOPs of a (pruned) model — the metrics ShrinkBench asks to
report beside accuracy. FLOPs are multiply–accumulates of Conv2d and Linear layers for one example,
counted by running one forward pass with hooks; a pruned weight removes its MACs at every output
position (the theoretical speed-up of unstructured sparsity)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["model_flops", "efficiency_metrics"]


def model_flops(
    model: nn.Module, input_shape: tuple[int, ...], mask: Mapping[str, torch.Tensor] | None = None
) -> dict[str, int]:
    """Dense and pruned MACs for one example of ``input_shape`` (C, H, W or D)."""
    names = {module: name for name, module in model.named_modules()}
    dense = pruned = 0
    hooks = []

    def hook(module: nn.Conv2d | nn.Linear, _: Any, output: torch.Tensor) -> None:
        nonlocal dense, pruned
        weight_name = f"{names[module]}.weight" if names[module] else "weight"
        if isinstance(module, nn.Conv2d):
            positions = output.shape[-1] * output.shape[-2]
        else:
            positions = output[0].numel() // module.weight.shape[0] if output.dim() > 2 else 1
        kept = int(mask[weight_name].sum()) if mask is not None and weight_name in mask else module.weight.numel()
        dense += positions * module.weight.numel()
        pruned += positions * kept

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"dense_flops": dense, "pruned_flops": pruned}


def efficiency_metrics(
    model: nn.Module, input_shape: tuple[int, ...], mask: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    """Parameter counts, compression ratio and FLOPs with the theoretical speed-up."""
    total_params = sum(p.numel() for p in model.parameters())
    prunable = sum(m.numel() for m in mask.values())
    kept = int(sum(int(m.sum()) for m in mask.values()))
    nonzero_params = total_params - prunable + kept
    flops = model_flops(model, input_shape, mask)
    return {
        "total_params": total_params,
        "nonzero_params": nonzero_params,
        "compression_ratio": total_params / nonzero_params if nonzero_params else float("inf"),
        "prunable_compression_ratio": prunable / kept if kept else float("inf"),
        **flops,
        "theoretical_speedup": flops["dense_flops"] / flops["pruned_flops"] if flops["pruned_flops"] else float("inf"),
    }
