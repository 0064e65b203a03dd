"""Supermask layers: frozen random weights, learned scores, and the subnet the scores pick.

A supermask layer is its ordinary layer (``SupermaskConv2d`` *is* an ``nn.Conv2d``, so the prunable
convention and every weight name carry over) with

* ``weight`` frozen (``requires_grad=False``), drawn from :attr:`weight_law`;
* ``scores``, a learned parameter of the weight's shape;
* ``tie_break``, a persistent int buffer of distinct keys that breaks ties between equal scores;
* ``density``, the fraction of weights kept, and ``ranking`` (``"abs"``: by ``|s|``, ``"raw"``: by ``s``).

The forward uses ``w ⊙ m`` with ``m = subnet_mask(scores, density)``. The mask is a step function of
the scores; its gradient is taken *straight through* (the identity), as both references do
(``GetSubnet.backward`` returns its input gradient): with ``w_eff = w ⊙ m`` and the ranked score
``r = |s|`` or ``s``,

    ∂L/∂r = ∂L/∂w_eff ⊙ w,        ∂L/∂s = ∂L/∂r ⊙ sign(s)  (ranking "abs"),  ∂L/∂r  (ranking "raw").

Worked case (a unit test): ``x = [1, 2]``, ``w = [0.5, −1]``, ``s = [0.3, −0.9]``, keep 50% by ``|s|``:
``m = [0, 1]``, output ``x · (w ⊙ m) = −2``; for ``L`` = the output, ``∂L/∂w_eff = x = [1, 2]``,
``∂L/∂r = [0.5, −2]`` and ``∂L/∂s = [0.5, −2] ⊙ sign(s) = [0.5, 2.0]``.

Biases: a standalone layer built with ``bias=True`` has a learned bias starting at zero; with
``bias=False`` (the default, as in edge-popup's layers) it has none. :func:`~prunelab.supermask.to_supermask`
keeps the bias *parameter* of a converted layer that had one, so names match the original model, and
makes it a frozen zero unless asked to learn it (IteRand's layers: a zero bias the score-only
optimiser never sees).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.pruning.selection import target_count
from prunelab.supermask.errors import SupermaskError, check_density, check_option
from prunelab.supermask.init import SCORE_INITS, WeightLaw, child_generators, draw_scores
from prunelab.supermask.subnet import RANKINGS, draw_tie_break, mask_keeping

if TYPE_CHECKING:
    from prunelab.supermask.scope import GlobalScope

__all__ = ["SupermaskLayer", "SupermaskLinear", "SupermaskConv1d", "SupermaskConv2d", "SupermaskConv3d"]


class _StraightThrough(torch.autograd.Function):
    """Forward: the 0/1 mask. Backward: the incoming gradient, unchanged, to the ranked scores."""

    @staticmethod
    def forward(ctx: Any, ranked: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return keep.to(ranked.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class SupermaskLayer(nn.Module):
    """What every supermask layer shares; ``isinstance(module, SupermaskLayer)`` finds them."""

    weight: torch.Tensor  # a frozen nn.Parameter (typed as nn.Linear / _ConvNd declare it)
    bias: torch.Tensor | None
    scores: nn.Parameter
    tie_break: torch.Tensor
    ranking: str
    weight_law: WeightLaw
    score_init: str
    learns_bias: bool
    _density: float
    _kept: int
    _scope: GlobalScope | None

    # construction ------------------------------------------------------------------------------
    def _setup(
        self,
        *,
        device: torch.device | str | None,
        density: float,
        ranking: str,
        weight_law: WeightLaw,
        score_init: str,
        learn_bias: bool,
        weight_generator: torch.Generator,
        score_generator: torch.Generator,
        tie_break: torch.Tensor,
    ) -> None:
        """Materialise the (meta) layer on ``device`` and draw its weights, scores and tie keys."""
        check_option(ranking, RANKINGS, "ranking")
        check_option(score_init, SCORE_INITS, "score initialiser")
        self.to_empty(device=torch.empty(0).device if device is None else device)
        self._density = check_density(density)
        self._kept = target_count(self._density, self.weight.numel())
        self._scope = None  # a GlobalScope ranks this layer together with others when set
        self.ranking = ranking
        self.weight_law = weight_law
        self.score_init = score_init
        self.learns_bias = bool(learn_bias and self.bias is not None)
        with torch.no_grad():
            self.weight.copy_(weight_law.draw(self.weight, weight_generator))
            if self.bias is not None:
                self.bias.zero_()
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(self.learns_bias)
        self.scores = nn.Parameter(draw_scores(score_init, self.weight, score_generator).to(self.weight.device))
        # a copy: a slice of the network-wide permutation would share its storage (safetensors refuses that)
        ties = tie_break.reshape(self.weight.shape).to(self.weight.device, copy=True)
        self.register_buffer("tie_break", ties, persistent=True)

    @classmethod
    def _meta_like(cls, layer: nn.Module) -> Self:
        """A layer of ``layer``'s shape and dtype on the meta device, for :meth:`_setup` to draw its values."""
        raise NotImplementedError(f"{cls.__name__} does not convert existing layers")

    def _setup_from(self, generator: torch.Generator, **options: Any) -> None:
        weights, scores, ties = child_generators(generator, 3)
        self._setup(
            weight_generator=weights,
            score_generator=scores,
            tie_break=draw_tie_break(self.weight.numel(), ties),
            **options,
        )

    def reset_parameters(self) -> None:
        if self.weight.is_meta:  # the base class constructor, before _setup draws the real values
            return
        raise SupermaskError(
            "a supermask layer's weights follow its weight_law: re-draw them with prunelab.supermask.rerandomize_ "
            "or build a new layer (reset_parameters would draw from the global RNG)"
        )

    # the subnet ----------------------------------------------------------------------------------
    @property
    def density(self) -> float:
        """Fraction of weights kept: this layer's, or the whole ranking's under a global scope."""
        return self._scope.density if self._scope is not None else self._density

    def keep_mask(self) -> torch.Tensor:
        """The bool keep-mask the current scores select (no gradient)."""
        if self._scope is not None:
            return self._scope.mask_of(self)
        return mask_keeping(self.scores, self._kept, self.ranking, self.tie_break)

    def effective_weight(self) -> torch.Tensor:
        """``w ⊙ m``, differentiable in the scores through the straight-through mask."""
        ranked = self.scores.abs() if self.ranking == "abs" else self.scores
        return self.weight * _StraightThrough.apply(ranked, self.keep_mask())

    def _supermask_repr(self) -> str:
        scope = ", scope=global" if self._scope is not None else ""
        return (
            f"density={self.density}, ranking={self.ranking!r}, weight_init={self.weight_law.describe()!r}, "
            f"score_init={self.score_init!r}{scope}"
        )


# torch types nn.Linear.bias as a Parameter, but nn.Linear(bias=False) registers None (as SupermaskLayer declares)
class SupermaskLinear(SupermaskLayer, nn.Linear):  # type: ignore[misc]
    """``nn.Linear`` with frozen weights and a learned subnet (see the module docstring)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        density: float,
        generator: torch.Generator,
        ranking: str = "abs",
        weight_init: str = "signed_constant",
        score_init: str = "pytorch_default",
        scale_fan: bool | str = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device="meta", dtype=dtype)
        self._setup_from(
            generator,
            device=device,
            density=density,
            ranking=ranking,
            weight_law=WeightLaw(weight_init, scale_fan, density),
            score_init=score_init,
            learn_bias=bias,
        )

    @classmethod
    def _meta_like(cls, layer: nn.Module) -> Self:
        assert isinstance(layer, nn.Linear), f"a SupermaskLinear replaces an nn.Linear, not {type(layer).__name__}"
        new = cls.__new__(cls)
        nn.Linear.__init__(
            new, layer.in_features, layer.out_features, layer.bias is not None, device="meta", dtype=layer.weight.dtype
        )
        return new

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._supermask_repr()}"


def meta_conv_options(layer: nn.modules.conv._ConvNd) -> dict[str, Any]:
    """The keyword arguments that rebuild a convolution of ``layer``'s shape on the meta device (after its
    channels and kernel size)."""
    return {
        "stride": layer.stride,
        "padding": layer.padding,
        "dilation": layer.dilation,
        "groups": layer.groups,
        "bias": layer.bias is not None,
        "padding_mode": layer.padding_mode,
        "device": "meta",
        "dtype": layer.weight.dtype,
    }


class _SupermaskConv(SupermaskLayer, nn.modules.conv._ConvNd):
    """Shared by the 1-, 2- and 3-d convolutions; ``_base`` is the ordinary class (which comes before
    ``_ConvNd`` in each subclass's method order, so ``_ConvNd`` adds nothing but its attributes' types)."""

    _base: type[nn.Module]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        *,
        density: float,
        generator: torch.Generator,
        ranking: str = "abs",
        weight_init: str = "signed_constant",
        score_init: str = "pytorch_default",
        scale_fan: bool | str = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self._base.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device="meta",
            dtype=dtype,
        )
        self._setup_from(
            generator,
            device=device,
            density=density,
            ranking=ranking,
            weight_law=WeightLaw(weight_init, scale_fan, density),
            score_init=score_init,
            learn_bias=bias,
        )

    @classmethod
    def _meta_like(cls, layer: nn.Module) -> Self:
        assert isinstance(layer, nn.modules.conv._ConvNd) and isinstance(layer, cls._base), (
            f"a {cls.__name__} replaces an {cls._base.__name__}, not {type(layer).__name__}"
        )
        new = cls.__new__(cls)
        cls._base.__init__(new, layer.in_channels, layer.out_channels, layer.kernel_size, **meta_conv_options(layer))
        return new

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(input, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self._base.extra_repr(self)}, {self._supermask_repr()}"


class SupermaskConv1d(_SupermaskConv, nn.Conv1d):
    """``nn.Conv1d`` with frozen weights and a learned subnet."""

    _base = nn.Conv1d


class SupermaskConv2d(_SupermaskConv, nn.Conv2d):
    """``nn.Conv2d`` with frozen weights and a learned subnet."""

    _base = nn.Conv2d


class SupermaskConv3d(_SupermaskConv, nn.Conv3d):
    """``nn.Conv3d`` with frozen weights and a learned subnet."""

    _base = nn.Conv3d


#: The supermask class that replaces each ordinary layer class.
SUPERMASK_OF: dict[type[nn.Module], type[SupermaskLayer]] = {
    nn.Linear: SupermaskLinear,
    nn.Conv1d: SupermaskConv1d,
    nn.Conv2d: SupermaskConv2d,
    nn.Conv3d: SupermaskConv3d,
}
