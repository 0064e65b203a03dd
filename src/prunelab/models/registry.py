"""The model registry: architecture names → factories, and :func:`build_model`.

A factory is called as ``factory(name, input_shape=..., num_classes=..., width=...)`` and returns
a model whose output layer is an ``nn.Linear`` named ``fc``. Factories only build; ``build_model``
then initialises the model from the spec with its own seeded generator, so every architecture —
including ones users register — gets the same, reproducible initialisation code.

A factory may also accept architecture options of the spec (:data:`ARCHITECTURE_OPTIONS`, e.g.
``conv_bias``) as keywords, declared with ``register_model(..., options=("conv_bias",))``. A spec
option left at ``None`` is not passed (the factory's own default applies); one set for a factory
that does not declare it is an error, never silently ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prunelab.models.init import initialize
from prunelab.specs.base import SpecError, closest
from prunelab.specs.model import ModelSpec

__all__ = ["ARCHITECTURE_OPTIONS", "register_model", "model_names", "build_model", "scaled", "image_shape"]

Factory = Callable[..., nn.Module]

# ModelSpec fields that change how an architecture is built, passed to the factories that declare them.
ARCHITECTURE_OPTIONS = ("conv_bias",)


@dataclass(frozen=True)
class _Family:
    factory: Factory
    pattern: re.Pattern[str]
    form: str


_NAMED: dict[str, Factory] = {}
_FAMILIES: list[_Family] = []
_OPTIONS: dict[Factory, frozenset[str]] = {}


def register_model(
    *names: str, pattern: str | None = None, form: str | None = None, options: tuple[str, ...] = ()
) -> Callable[[Factory], Factory]:
    """Register a factory under the exact ``names`` and, for parameterised families such as
    ``lenet_500_300_100``, a regular expression ``pattern`` that must match a whole name.

    ``model_names()`` lists only the exact names; ``form`` is how the pattern is shown to users
    in error messages (``lenet_<N1>_<N2>...``), defaulting to the pattern itself. ``options`` names
    the :data:`ARCHITECTURE_OPTIONS` the factory accepts as keyword arguments.
    """
    if not names and pattern is None:
        raise ValueError("register_model needs at least one name or a pattern")
    unknown = [option for option in options if option not in ARCHITECTURE_OPTIONS]
    if unknown:
        raise ValueError(f"unknown architecture option {unknown[0]!r}; valid: {', '.join(ARCHITECTURE_OPTIONS)}")

    def wrap(factory: Factory) -> Factory:
        _OPTIONS[factory] = frozenset(options)
        for name in names:
            if name in _NAMED:
                raise ValueError(f"model {name!r} is registered twice")
            _NAMED[name] = factory
        if pattern is not None:
            _FAMILIES.append(_Family(factory, re.compile(pattern), form or pattern))
        return factory

    return wrap


def model_names() -> list[str]:
    """The registered architecture names, sorted (parameterised families show one example each)."""
    return sorted(_NAMED)


def build_model(spec: ModelSpec, *, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """Build ``spec.name`` for inputs of ``input_shape`` (without the batch dimension, e.g.
    ``(3, 32, 32)``) and ``num_classes`` outputs, with hidden widths scaled by ``spec.width``, and
    initialise it with ``spec.init``/``spec.bn_init``/``spec.bias_init`` from ``seed``. The global RNG
    is untouched. Architecture options the spec sets (``spec.conv_bias``) go to the factory."""
    factory = _factory(spec.name)
    shape = tuple(int(d) for d in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be non-empty positive sizes, got {tuple(input_shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    options = _architecture_options(spec, factory)
    # Layer constructors run PyTorch's default initialisation from the global RNG; forking keeps the
    # caller's stream as it was, and initialize() overwrites those values anyway.
    with torch.random.fork_rng(devices=[]):
        model = factory(spec.name, input_shape=shape, num_classes=num_classes, width=spec.width, **options)
    if not isinstance(getattr(model, "fc", None), nn.Linear):
        raise TypeError(f"the factory for {spec.name!r} must name its output layer `fc` (an nn.Linear)")
    generator = torch.Generator().manual_seed(seed)
    return initialize(model, spec.init, spec.bn_init, generator=generator, bias_init=spec.bias_init)


def _architecture_options(spec: ModelSpec, factory: Factory) -> dict[str, object]:
    options = {name: getattr(spec, name) for name in ARCHITECTURE_OPTIONS if getattr(spec, name) is not None}
    accepted = _OPTIONS.get(factory, frozenset())
    for name in options:
        if name not in accepted:
            supporting = sorted(n for n, f in _NAMED.items() if name in _OPTIONS.get(f, frozenset()))
            raise SpecError(
                f"model.{name} does not apply to {spec.name!r}; it applies to {', '.join(supporting) or 'no model'}. "
                f"Leave it unset (null) for {spec.name}."
            )
    return options


def scaled(channels: int, width: float) -> int:
    """A hidden width after the width multiplier: ``channels × width`` rounded half up, at least 1."""
    return max(1, math.floor(channels * width + 0.5))


def image_shape(input_shape: tuple[int, ...], model: str, *, halvings: int = 0) -> tuple[int, int, int]:
    """``input_shape`` as ``(C, H, W)`` for a convolutional model, checking that the image is still
    at least 1×1 after ``halvings`` 2× poolings (so a too-small input fails here, clearly)."""
    if len(input_shape) != 3:
        raise SpecError(f"{model} needs (channels, height, width) inputs, got input_shape={input_shape}")
    channels, height, width = input_shape
    if min(height, width) >> halvings < 1:
        side = 2**halvings
        raise SpecError(
            f"{model} halves the image {halvings} times, so it needs inputs of at least {side}x{side}, "
            f"got {height}x{width}"
        )
    return channels, height, width


def _factory(name: str) -> Factory:
    if name in _NAMED:
        return _NAMED[name]
    for family in _FAMILIES:
        if family.pattern.fullmatch(name):
            return family.factory
    near = closest(name, model_names())
    hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
    forms = ", ".join(family.form for family in _FAMILIES)
    raise SpecError(f"unknown model {name!r}.{hint} Valid: {', '.join(model_names())} (and the families {forms}).")
