"""Global scope: one ranking over the scores of every supermask layer of a network.

A :class:`GlobalScope` is shared by the layers it ranks. It is registered as a forward pre-hook and
an (always called) forward hook on the converted network, so the masks of all layers are computed
*once per forward of the network*, from the scores as they are at that moment, and dropped when the
forward ends. No cache outlives a forward, so nothing can go stale (a score changed through
``.data`` does not bump the tensor's version counter, which a version-keyed cache would miss). A layer
called on its own, outside a forward of the network, computes the global masks afresh.

The work per forward is one key per weight, one ``kthvalue`` over all of them and one comparison per
layer, with no host synchronisation; the count ``round_half_up(density · Σn)`` is fixed when the scope
is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from prunelab.supermask.layers import SupermaskLayer

from prunelab.pruning.selection import target_count
from prunelab.supermask.errors import SupermaskError
from prunelab.supermask.subnet import masks_keeping

__all__ = ["GlobalScope"]


class GlobalScope:
    """The shared ranking of ``layers`` (supermask layers of one network) at ``density`` kept overall."""

    def __init__(self, layers: Sequence[SupermaskLayer], density: float) -> None:
        if not layers:
            raise SupermaskError("a global scope needs at least one supermask layer")
        rankings = {layer.ranking for layer in layers}
        if len(rankings) != 1:
            raise SupermaskError(f"a global scope ranks one kind of score, got rankings {sorted(rankings)}")
        self.layers = list(layers)
        self.density = density
        self.ranking = rankings.pop()
        self.kept = target_count(density, sum(layer.weight.numel() for layer in self.layers))
        self._masks: dict[int, torch.Tensor] | None = None
        self._depth = 0

    def compute(self) -> list[torch.Tensor]:
        """The bool masks of all layers, in ``layers`` order, from their current scores."""
        return masks_keeping(
            [layer.scores for layer in self.layers], self.kept, self.ranking, [layer.tie_break for layer in self.layers]
        )

    def mask_of(self, layer: nn.Module) -> torch.Tensor:
        """``layer``'s mask: the one computed for the current forward of the network, or a fresh one."""
        if self._masks is not None:
            return self._masks[id(layer)]
        for member, mask in zip(self.layers, self.compute()):
            if member is layer:
                return mask
        raise SupermaskError("this layer is not ranked by this global scope")

    # forward hooks on the converted network --------------------------------------------------
    def enter(self, module: nn.Module, args: Any) -> None:
        if self._depth == 0:
            self._masks = {id(layer): mask for layer, mask in zip(self.layers, self.compute())}
        self._depth += 1

    def exit(self, module: nn.Module, args: Any, output: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self._masks = None

    def attach(self, network: nn.Module) -> None:
        """Point every ranked layer at this scope and hook the network's forward."""
        for layer in self.layers:
            layer._scope = self
        network.register_forward_pre_hook(self.enter)
        network.register_forward_hook(self.exit, always_call=True)

    @staticmethod
    def detach_from(network: nn.Module) -> None:
        """Remove the hooks any global scope registered on ``network``."""
        for hooks in (network._forward_pre_hooks, network._forward_hooks):
            for key in [k for k, hook in hooks.items() if isinstance(getattr(hook, "__self__", None), GlobalScope)]:
                del hooks[key]
                network._forward_hooks_always_called.pop(key, None)
