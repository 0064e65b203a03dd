"""How a supermask is learned on frozen random weights: edge-popup or IteRand, how dense, which
conventions. Read only by ``supermask`` runs; the frozen weights' law is ``model.init``.

Edge-popup is IteRand with λ = 0: a spec may carry a re-randomisation period (a preset meant for both
methods does) and edge-popup simply never re-draws; a non-zero λ with edge-popup is an error."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from prunelab.specs.base import SpecError, check_choice, spec_field
from prunelab.steps import parse_step

METHODS = ("edge-popup", "iterand")
SCOPES = ("layerwise", "global")
RANKINGS = ("abs", "raw")
SCORE_INITS = ("pytorch_default", "kaiming_uniform")
SCALE_FAN = ("none", "kept_fraction", "pruned_fraction")
RERAND_MODES = ("bernoulli", "manual")
#: model.init values that are supermask weight laws (the rest are weight-training initialisers)
WEIGHT_LAWS = ("signed_constant", "scaled_signed_constant", "kaiming_normal", "kaiming_uniform")

#: IteRand's defaults when the method is iterand and the field is left unset
ITERAND_FREQ = "300it"
ITERAND_LAMBDA = 0.1


@dataclass(frozen=True)
class SupermaskSpec:
    method: str = spec_field("edge-popup", help=f"{', '.join(METHODS)}: edge-popup is IteRand with lambda = 0")
    density: float = spec_field(0.5, help="fraction of the weights of every converted layer that is kept")
    scope: str = spec_field(
        "layerwise", help="layerwise (as published): each layer keeps `density`; global: one ranking"
    )
    ranking: str | None = spec_field(None, help="abs or raw score ranking (None: the method's reference convention)")
    score_init: str | None = spec_field(
        None, help=f"{', '.join(SCORE_INITS)} (None: the method's reference convention)"
    )
    scale_fan: str = spec_field(
        "none",
        help="scale the weight law's fan-in by the kept fraction (kept_fraction) or, as the edge-popup "
        "code does, by the pruned fraction (pruned_fraction); none: the dense fan-in",
    )
    bias: bool = spec_field(
        False, help="learn the biases of converted layers (from zero) instead of freezing them at 0"
    )
    bn_affine: bool = spec_field(False, help="keep batch norms' affine parameters (frozen); both papers drop them")
    rerand_freq: str | None = spec_field(
        None, help=f"iterand: re-randomise every this many steps (None: {ITERAND_FREQ})"
    )
    rerand_lambda: float | None = spec_field(
        None, help=f"iterand: re-drawn fraction of the eligible weights (None: {ITERAND_LAMBDA})"
    )
    rerand_mode: str = spec_field(
        "bernoulli", help="iterand: bernoulli (w <- r with probability lambda) or manual (w <- lambda w + mu r)"
    )
    rerand_mu: float | None = spec_field(None, help="iterand, manual mode: the weight of the fresh draw")
    rerand_rate: float = spec_field(1.0, help="iterand: fraction of the pruned weights eligible, lowest ranked first")

    def __post_init__(self) -> None:
        check_choice(self.method, METHODS, "supermask.method")
        check_choice(self.scope, SCOPES, "supermask.scope")
        check_choice(self.scale_fan, SCALE_FAN, "supermask.scale_fan")
        check_choice(self.rerand_mode, RERAND_MODES, "supermask.rerand_mode")
        if self.ranking is not None:
            check_choice(self.ranking, RANKINGS, "supermask.ranking")
        if self.score_init is not None:
            check_choice(self.score_init, SCORE_INITS, "supermask.score_init")
        if not 0.0 < self.density <= 1.0:
            raise SpecError(f"supermask.density is the kept fraction, in (0, 1]; got {self.density}")
        if not 0.0 <= self.rerand_rate <= 1.0:
            raise SpecError(f"supermask.rerand_rate must be in [0, 1], got {self.rerand_rate}")
        if self.rerand_freq is not None:
            parse_step(self.rerand_freq)
        if self.rerand_lambda is not None and not self.rerand_lambda >= 0:
            raise SpecError(f"supermask.rerand_lambda must be >= 0, got {self.rerand_lambda}")
        if self.rerand_mode == "bernoulli" and (self.rerand_lambda or 0.0) > 1.0:
            raise SpecError(
                f"supermask.rerand_lambda is a probability in bernoulli mode, in [0, 1]; got {self.rerand_lambda}"
            )
        if (self.rerand_mode == "manual") != (self.rerand_mu is not None):
            raise SpecError(
                "supermask.rerand_mu goes with supermask.rerand_mode=manual (w <- lambda w + mu r), and only with it"
            )
        if self.method == "edge-popup" and (self.rerand_lambda or self.rerand_mu is not None):
            raise SpecError(
                "edge-popup does not re-randomise (it is IteRand with lambda = 0), but supermask.rerand_lambda or "
                "rerand_mu is set; use --method iterand"
            )

    def resolved(self) -> SupermaskSpec:
        """This spec as run names hash it: edge-popup never re-randomises, so the re-randomisation period,
        mode and rate it carries (e.g. from a preset meant for both methods) do not rename its runs."""
        if self.method == "edge-popup":
            return dataclasses.replace(
                self, rerand_freq=None, rerand_lambda=None, rerand_mode="bernoulli", rerand_mu=None, rerand_rate=1.0
            )
        return self

    @property
    def iterand_freq(self) -> str | None:
        """The re-randomisation period in effect (None for edge-popup)."""
        if self.method != "iterand":
            return None
        return self.rerand_freq if self.rerand_freq is not None else ITERAND_FREQ

    @property
    def iterand_lambda(self) -> float:
        """The re-randomisation fraction in effect (0 for edge-popup)."""
        if self.method != "iterand":
            return 0.0
        return self.rerand_lambda if self.rerand_lambda is not None else ITERAND_LAMBDA
