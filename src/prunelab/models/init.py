"""Weight and batch-norm initialisers, applied to a model that already exists.

Initialisation is separate from construction so that later stages can re-initialise a model in
place (random-reinitialisation controls, supermasks) with exactly the code ``build_model`` uses.
Every random draw comes from the ``generator`` argument and is made on the generator's device, then
copied into the parameter: the global RNG is never touched and a seed gives the same weights on any
device. Layers are visited in ``model.modules()`` order, which fixes the sequence of draws.

Weight initialisers (Conv1d/2d/3d and Linear weights; ``fan_in`` = inputs per output unit,
``σ = sqrt(2 / fan_in)``, He et al. 2015 with the ReLU gain):

- ``kaiming_normal``: N(0, σ²).
- ``kaiming_uniform``: U(−√3 σ, √3 σ), the uniform law with the same standard deviation.
- ``standard_normal``: N(0, 1), the unscaled control of Frankle et al. 2021 ("Missing the Mark").
- ``signed_constant``: ±σ with a random sign (Ramanujan et al. 2020, edge-popup).
- ``scaled_signed_constant``: ±σ / √density, edge-popup's constant scaled for the fan-in that
  survives pruning to ``density``.
- ``pytorch_default``: the layer's own ``reset_parameters()`` (PyTorch's default, including its
  non-zero biases), with the global CPU RNG seeded from ``generator`` inside a fork.
- ``xavier_normal``: N(0, σ_G²) with ``σ_G = sqrt(2 / (fan_in + fan_out))`` (Glorot & Bengio 2010,
  gain 1; ``fan_out`` = outputs per input unit), the "Gaussian Glorot" of Frankle & Carbin 2019.
- ``xavier_uniform``: U(−√3 σ_G, √3 σ_G) = U(±sqrt(6 / (fan_in + fan_out))).

Biases (``bias_init``): ``None`` sets them to zero under every initialiser but ``pytorch_default``,
which keeps PyTorch's own; ``"zeros"`` always zeroes them; ``"pytorch_default"`` draws
U(±1/sqrt(fan_in)), PyTorch's bias law, which OpenLTH's initialisers leave in place. A bias is drawn
from ``generator`` right after its layer's weight, so each layer's draws stay together.

Batch-norm initialisers (running statistics are always reset too):

- ``ones``: γ = 1, β = 0.
- ``uniform``: γ ~ U(0, 1), β = 0 (OpenLTH's ``batchnorm_init='uniform'``, the default of all its models).
- ``zero_residual``: γ = 0 on the batch norm that ends each residual branch, 1 elsewhere, β = 0
  (Goyal et al. 2017), so every residual block starts as the identity. A block marks that batch
  norm by exposing it as a ``residual_bn`` attribute; a model without such blocks gets ``ones``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from prunelab.models.prunable import WEIGHT_LAYERS
from prunelab.specs.base import check_choice
from prunelab.specs.model import BIAS_INITIALISERS, BN_INITIALISERS, INITIALISERS

__all__ = ["initialize", "BATCH_NORMS"]

BATCH_NORMS: tuple[type[nn.modules.batchnorm._NormBase], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)

# (weight, generator, density) -> new values for the weight, on the generator's device.
WeightInit = Callable[[torch.Tensor, torch.Generator, float], torch.Tensor]


def _kaiming_std(weight: torch.Tensor) -> float:
    return math.sqrt(2.0 / weight[0].numel())


def _xavier_std(weight: torch.Tensor) -> float:
    receptive_field = math.prod(weight.shape[2:])
    fan_in, fan_out = weight.shape[1] * receptive_field, weight.shape[0] * receptive_field
    return math.sqrt(2.0 / (fan_in + fan_out))


def _normal(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(weight.shape, generator=generator, device=generator.device, dtype=weight.dtype)


def _uniform(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> torch.Tensor:
    values = torch.empty(tensor.shape, device=generator.device, dtype=tensor.dtype)
    return values.uniform_(-bound, bound, generator=generator)


def _random_signs(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    bits = torch.randint(0, 2, weight.shape, generator=generator, device=generator.device)
    return (bits * 2 - 1).to(weight.dtype)


def _kaiming_normal(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _normal(weight, generator) * _kaiming_std(weight)


def _kaiming_uniform(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _uniform(weight, math.sqrt(3.0) * _kaiming_std(weight), generator)


def _xavier_normal(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _normal(weight, generator) * _xavier_std(weight)


def _xavier_uniform(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _uniform(weight, math.sqrt(3.0) * _xavier_std(weight), generator)


def _standard_normal(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _normal(weight, generator)


def _signed_constant(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _random_signs(weight, generator) * _kaiming_std(weight)


def _scaled_signed_constant(weight: torch.Tensor, generator: torch.Generator, density: float) -> torch.Tensor:
    return _random_signs(weight, generator) * (_kaiming_std(weight) / math.sqrt(density))


_WEIGHT_INITS: dict[str, WeightInit] = {
    "kaiming_normal": _kaiming_normal,
    "kaiming_uniform": _kaiming_uniform,
    "standard_normal": _standard_normal,
    "signed_constant": _signed_constant,
    "scaled_signed_constant": _scaled_signed_constant,
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
}


def initialize(
    model: nn.Module,
    init: str,
    bn_init: str,
    *,
    generator: torch.Generator,
    density: float = 1.0,
    bias_init: str | None = None,
) -> nn.Module:
    """Re-initialise every Conv/Linear and batch-norm layer of ``model`` in place; returns ``model``.

    ``init`` is one of :data:`~prunelab.specs.model.INITIALISERS`, ``bn_init`` one of
    :data:`~prunelab.specs.model.BN_INITIALISERS`, ``bias_init`` ``None`` or one of
    :data:`~prunelab.specs.model.BIAS_INITIALISERS` (see the module docstring for the formulas).
    ``density`` (in (0, 1], default 1) is the fraction of weights that will be kept; only
    ``scaled_signed_constant`` uses it. Other modules (LayerNorm, embeddings, …) are left alone.
    """
    check_choice(init, INITIALISERS, "initialiser")
    check_choice(bn_init, BN_INITIALISERS, "batch-norm initialiser")
    if bias_init is not None:
        check_choice(bias_init, BIAS_INITIALISERS, "bias initialiser")
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    residual_bns = _residual_batch_norms(model) if bn_init == "zero_residual" else set()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # pytorch_default reseeds the CPU RNG
        if init == "pytorch_default":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            torch.default_generator.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, WEIGHT_LAYERS):
                _init_weight_layer(module, init, bias_init, generator, density)
            elif isinstance(module, BATCH_NORMS):
                _init_batch_norm(module, bn_init, generator, zero=id(module) in residual_bns)
    return model


def _init_weight_layer(
    layer: nn.Linear | nn.modules.conv._ConvNd,
    init: str,
    bias_init: str | None,
    generator: torch.Generator,
    density: float,
) -> None:
    if layer.weight.is_meta:  # a shape-only model (built under torch.device("meta")) has no values to draw
        return
    if init == "pytorch_default":
        # reset_parameters draws from the RNG of the parameters' device; drawing on the CPU (seeded
        # by initialize) keeps the values independent of where the model lives.
        device = layer.weight.device
        layer.to("cpu").reset_parameters()
        layer.to(device)
        if layer.bias is not None and bias_init == "zeros":
            layer.bias.zero_()
        return
    layer.weight.copy_(_WEIGHT_INITS[init](layer.weight, generator, density))
    if layer.bias is None:
        return
    if bias_init == "pytorch_default":
        fan_in = layer.weight[0].numel()
        layer.bias.copy_(_uniform(layer.bias, 1.0 / math.sqrt(fan_in) if fan_in else 0.0, generator))
    else:
        layer.bias.zero_()


def _init_batch_norm(
    bn: nn.modules.batchnorm._NormBase, bn_init: str, generator: torch.Generator, *, zero: bool
) -> None:
    bn.reset_running_stats()
    if not bn.affine:
        return
    if zero:
        bn.weight.zero_()
    elif bn_init == "uniform":
        gamma = torch.rand(bn.weight.shape, generator=generator, device=generator.device, dtype=bn.weight.dtype)
        bn.weight.copy_(gamma)
    else:
        bn.weight.fill_(1.0)
    bn.bias.zero_()


def _residual_batch_norms(model: nn.Module) -> set[int]:
    """ids of the batch norms that blocks declare, via ``residual_bn``, as ending a residual branch."""
    found = (getattr(module, "residual_bn", None) for module in model.modules())
    return {id(bn) for bn in found if isinstance(bn, BATCH_NORMS)}
