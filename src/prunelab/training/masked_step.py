"""Weight training under a fixed mask — the update step of dense, lottery-ticket and pruned training.

Per iteration it does what a minimal hand-written loop does plus the masking:
``zero_grad(set_to_none=True)``, forward and loss, backward, mask the gradients (so momentum buffers
and weight decay only ever see zeros), ``optimizer.step()`` (``foreach`` implementations), mask the
weights (so nothing can drift away from zero). Without a mask it is plain training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunelab import distributed
from prunelab.masks import Mask, MaskedParameters
from prunelab.training.optim import build_optimizer
from prunelab.training.update import StepContext, UpdateStep

__all__ = ["MaskedStep", "mask_digest"]


def mask_digest(mask: Mapping[str, torch.Tensor] | None) -> str | None:
    """A SHA-256 of a mask's names, shapes and bits (``None`` for no mask)."""
    if mask is None:
        return None
    digest = hashlib.sha256()
    for name in mask:
        tensor = torch.as_tensor(mask[name]).detach().to("cpu", torch.bool).contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("utf-8"))
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


class MaskedStep(UpdateStep):
    """SGD/Adam/AdamW on every trainable parameter, keeping ``mask``'s pruned weights at zero.

    ``mask`` names a subset of ``prunable`` (default: the model's named parameters) with matching
    shapes; ``None`` trains densely.
    """

    name = "masked"

    def __init__(
        self, mask: Mapping[str, torch.Tensor] | None = None, prunable: Mapping[str, nn.Parameter] | None = None
    ) -> None:
        self.mask = None if mask is None else (mask if isinstance(mask, Mask) else Mask(mask))
        self.prunable = prunable
        self.optimizer: torch.optim.Optimizer | None = None
        self.masked: MaskedParameters | None = None

    def bind(self, context: StepContext) -> None:
        model = context.model
        if self.mask is not None:
            if distributed.active():  # every rank trains rank 0's mask, however the others came by theirs
                self.mask = Mask({name: keep.to(context.device) for name, keep in self.mask.items()})
                distributed.broadcast_tensors(list(self.mask.values()))
            params = self.prunable if self.prunable is not None else dict(model.named_parameters())
            self.masked = MaskedParameters(params, self.mask)
            self.masked.apply_to_weights()
        self.optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], context.spec)
        self._zero_grad = self.optimizer.zero_grad
        self._optimizer_step = self.optimizer.step
        self._mask_gradients = self.masked.apply_to_gradients if self.masked is not None else None
        self._mask_weights = self.masked.apply_to_weights if self.masked is not None else None
        self._forward = context.forward
        self._loss = context.loss

    def set_lr(self, lr: float) -> None:
        assert self.optimizer is not None, "bind() the step before setting its learning rate"
        # not cached: load_state_dict replaces the optimiser's param_groups with new dicts
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, x: torch.Tensor, y: torch.Tensor, iteration: int) -> torch.Tensor:
        self._zero_grad(set_to_none=True)
        loss = self._loss(self._forward, x, y)
        loss.backward()
        if self._mask_gradients is not None:
            self._mask_gradients()
        self._optimizer_step()
        if self._mask_weights is not None:
            self._mask_weights()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        assert self.optimizer is not None, "bind() the step before saving its state"
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        assert self.optimizer is not None, "bind() the step before loading its state"
        self.optimizer.load_state_dict(state["optimizer"])
        if self.masked is not None:
            self.masked.apply_to_weights()  # a no-op on a masked checkpoint; guards against a stale one

    def fingerprint(self) -> dict[str, Any]:
        return {"mask": mask_digest(self.mask)}

    def final_mask(self) -> Mask | None:
        return self.mask
