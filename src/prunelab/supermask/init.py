"""The random weights and the initial scores of a supermask network, as the two papers draw them.

Weights (``fan`` = ``fan_in`` = inputs per output unit, gain √2 for ReLU, ``σ = √(2 / fan)``; both
references use ``fan_in`` and the ReLU gain):

- ``signed_constant``: ``±σ`` with a random sign (edge-popup ``Builder._init_conv``, IteRand
  ``SparseModule.init_param_``);
- ``kaiming_normal``: ``N(0, σ²)``;
- ``kaiming_uniform``: ``U(−√3 σ, √3 σ)``, the uniform law with the same variance.

``scale_fan`` replaces ``fan`` by ``fan × f`` (so ``σ → σ / √f``):

- ``False``: ``f = 1``, unscaled (IteRand always; edge-popup without ``--scale-fan``);
- ``True``: ``f = density``, the kept fraction: a kept weight then has the variance of a dense layer
  whose fan-in is the number of weights the mask keeps (the scaling the edge-popup paper describes);
- ``"pruned_fraction"``: ``f = 1 − density``, what the edge-popup *code* does (``fan * (1 - prune_rate)``
  with its ``prune_rate`` being the fraction kept); it equals ``True`` only at 50% density and is offered
  to reproduce the reference exactly.

Scores (``U(−b, b)``):

- ``pytorch_default``: ``b = 1 / √fan_in``, i.e. ``kaiming_uniform_(a=√5)``, PyTorch's default layer
  initialisation, which edge-popup's ``SubnetConv`` applies to its scores;
- ``kaiming_uniform``: ``b = √(6 / fan_in)`` (ReLU gain), which IteRand applies to its scores
  (``init_mode_mask: kaiming_uniform``).

Every draw is made on the generator's device and then copied, so a seed gives the same values on
any device; the draw helpers are shared with :mod:`prunelab.models.init`, so an unscaled
``signed_constant`` / ``kaiming_normal`` / ``kaiming_uniform`` draw equals that module's initialiser of
the same name for the same generator, and ``signed_constant`` with ``scale_fan=True`` equals its
``scaled_signed_constant``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prunelab.models.init import _kaiming_std, _normal, _random_signs
from prunelab.supermask.errors import SupermaskError, check_density, check_option

__all__ = ["WEIGHT_INITS", "SCORE_INITS", "SCALE_FAN", "WeightLaw", "draw_scores", "child_generators"]

WEIGHT_INITS = ("signed_constant", "kaiming_normal", "kaiming_uniform")
SCORE_INITS = ("pytorch_default", "kaiming_uniform")
SCALE_FAN = (False, True, "pruned_fraction")


@dataclass(frozen=True)
class WeightLaw:
    """How a supermask layer's frozen weights are drawn — at construction and at every IteRand re-draw.

    ``density`` is the fraction of weights kept that the layer was built for; only ``scale_fan``
    reads it.
    """

    init: str = "signed_constant"
    scale_fan: bool | str = False
    density: float = 1.0

    def __post_init__(self) -> None:
        check_option(self.init, WEIGHT_INITS, "weight initialiser")
        check_option(self.scale_fan, SCALE_FAN, "scale_fan")
        object.__setattr__(self, "density", check_density(self.density))
        if self.scale_fan == "pruned_fraction" and self.density == 1.0:
            raise SupermaskError(
                "scale_fan='pruned_fraction' multiplies the fan by 1 − density, which is 0 at density 1"
            )

    @property
    def fan_factor(self) -> float:
        """``f`` in ``fan × f``."""
        if self.scale_fan is True:
            return self.density
        if self.scale_fan == "pruned_fraction":
            return 1.0 - self.density
        return 1.0

    def std(self, weight: torch.Tensor) -> float:
        """The standard deviation of a drawn weight (the magnitude, for ``signed_constant``)."""
        factor = self.fan_factor
        sigma = _kaiming_std(weight)
        return sigma if factor == 1.0 else sigma / math.sqrt(factor)

    def draw(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fresh values shaped like ``weight`` (its dtype), on the generator's device."""
        std = self.std(weight)
        if self.init == "signed_constant":
            return _random_signs(weight, generator) * std
        if self.init == "kaiming_normal":
            return _normal(weight, generator) * std
        bound = math.sqrt(3.0) * std
        values = torch.empty(weight.shape, device=generator.device, dtype=weight.dtype)
        return values.uniform_(-bound, bound, generator=generator)

    def describe(self) -> str:
        scale = {False: "", True: ", fan×density", "pruned_fraction": ", fan×(1−density)"}[self.scale_fan]
        return f"{self.init}{scale}"


def draw_scores(init: str, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Initial scores shaped like ``weight``: ``U(−b, b)`` with ``b`` from ``init`` (module docstring)."""
    check_option(init, SCORE_INITS, "score initialiser")
    bound = 1.0 / math.sqrt(weight[0].numel()) if init == "pytorch_default" else math.sqrt(3.0) * _kaiming_std(weight)
    values = torch.empty(weight.shape, device=generator.device, dtype=weight.dtype)
    return values.uniform_(-bound, bound, generator=generator)


def child_generators(generator: torch.Generator, n: int) -> list[torch.Generator]:
    """``n`` independent generators on ``generator``'s device, seeded from it: one stream per kind of
    draw (weights, scores, tie keys), so that changing how the scores are drawn leaves the weights as
    they were for the same seed."""
    if not isinstance(generator, torch.Generator):
        raise SupermaskError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    seeds = torch.randint(0, 2**62, (n,), generator=generator, device=generator.device).tolist()
    return [torch.Generator(device=generator.device).manual_seed(int(seed)) for seed in seeds]
