"""Keeping pruned weights at exactly zero during training, cheaply.

:class:`MaskedParameters` holds the prunable parameters and their masks as two parallel lists
(masks converted once to the parameters' device and dtype), so that masking every gradient or
every weight is a single ``torch._foreach_mul_`` call. The trainer uses it like this::

    loss.backward()
    masked.apply_to_gradients()   # momentum buffers and weight decay only ever see zeros
    optimizer.step()
    masked.apply_to_weights()     # nothing can drift away from zero

No forward hooks rebuild weights from a dense copy: the parameters *are* the masked weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from prunelab.masks.mask import Mask

__all__ = ["MaskedParameters", "apply_mask"]


def _select(params: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The (name, parameter) pairs the mask covers, in mask order, after checking names and shapes."""
    missing = [name for name in mask if name not in params]
    if missing:
        known = ", ".join(list(params)[:8])
        raise KeyError(
            f"the mask names {len(missing)} tensor(s) that are not among the parameters, e.g. {missing[:3]}; "
            f"parameters include: {known}"
        )
    pairs = []
    for name in mask:
        param = params[name]
        if tuple(mask[name].shape) != tuple(param.shape):
            raise ValueError(
                f"mask shape {tuple(mask[name].shape)} does not match parameter {name!r} of shape {tuple(param.shape)}"
            )
        pairs.append((name, param))
    return pairs


class MaskedParameters:
    """Parameters paired with keep-masks, masked in place with one fused call per operation.

    ``params`` maps names to parameters (typically ``prunable_parameters(model)``); ``mask`` must name
    a subset of them with matching shapes. Parameters the mask does not name are left alone. The masks
    are copied once to each parameter's device and dtype (a float 0/1 tensor multiplies faster than a
    bool one and keeps the call on the fast same-dtype path).
    """

    def __init__(self, params: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> None:
        pairs = _select(params, mask)
        self.names: list[str] = [name for name, _ in pairs]
        self.params: list[torch.Tensor] = [param for _, param in pairs]
        self.masks: list[torch.Tensor] = [
            torch.as_tensor(mask[name]).to(device=param.device, dtype=param.dtype) for name, param in pairs
        ]

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self) -> str:
        kept = sum(int(m.sum()) for m in self.masks)
        total = sum(m.numel() for m in self.masks)
        return f"MaskedParameters({len(self)} tensors, {kept}/{total} kept)"

    def apply_to_weights(self) -> None:
        """Zero the pruned weights in place (one ``_foreach_mul_``)."""
        if self.params:
            with torch.no_grad():
                torch._foreach_mul_(self.params, self.masks)

    def apply_to_gradients(self) -> None:
        """Zero the gradients of pruned weights in place (one ``_foreach_mul_``); ``None`` grads are skipped."""
        grads = []
        masks = []
        for param, keep in zip(self.params, self.masks):
            grad = param.grad
            if grad is not None:
                grads.append(grad)
                masks.append(keep)
        if grads:
            with torch.no_grad():
                torch._foreach_mul_(grads, masks)

    def pruned_nonzero(self) -> int:
        """How many pruned weights are not exactly zero (0 whenever masking is working)."""
        with torch.no_grad():
            return int(sum(int(((m == 0) & (p != 0)).sum()) for p, m in zip(self.params, self.masks)))


def apply_mask(
    model_or_params: nn.Module | Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor] | Mask
) -> None:
    """Zero the pruned weights once, in place: ``model`` (by parameter name) or a name → tensor mapping."""
    if isinstance(model_or_params, nn.Module):
        params: Mapping[str, torch.Tensor] = dict(model_or_params.named_parameters())
    else:
        params = model_or_params
    MaskedParameters(params, mask).apply_to_weights()
