"""Which parameters may be pruned: the weights of convolutional and fully connected layers.

Biases and normalisation parameters are never prunable; shortcut convolutions and the classifier
are, because that is how the lottery-ticket and pruning-at-initialisation literature counts
weights (pruning code that must spare the output layer excludes :func:`output_layer_name`
explicitly). The rule looks only at module types, so it applies to any ``nn.Module`` a user brings,
not only to registry models.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from torch import nn

from prunelab.specs.base import SpecError, closest
from prunelab.specs.model import ModelSpec

__all__ = [
    "CONV_LAYERS",
    "LINEAR_LAYERS",
    "WEIGHT_LAYERS",
    "prunable_parameters",
    "prunable_from_spec",
    "output_layer_name",
]

CONV_LAYERS: tuple[type[nn.modules.conv._ConvNd], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LINEAR_LAYERS: tuple[type[nn.Linear], ...] = (nn.Linear,)
WEIGHT_LAYERS: tuple[type[nn.modules.conv._ConvNd] | type[nn.Linear], ...] = CONV_LAYERS + LINEAR_LAYERS
"""The layers whose weights are prunable and which the weight initialisers touch."""

_LAYERS_OF_KIND = {"conv_linear": WEIGHT_LAYERS, "conv": CONV_LAYERS, "linear": LINEAR_LAYERS}


def prunable_parameters(
    model: nn.Module, kind: str = "conv_linear", exclude: Iterable[str] | str = ()
) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model`` by parameter name, in ``named_parameters()`` order.

    ``kind`` is ``"conv_linear"`` (both), ``"conv"`` or ``"linear"``. ``exclude`` holds glob
    patterns (:func:`fnmatch.fnmatchcase`, e.g. ``"fc.weight"``, ``"*shortcut*"``) of names to leave
    out. A pattern that matches no parameter of the model at all is almost certainly a typo that
    would otherwise silently prune what it meant to protect, so it raises :class:`SpecError`.
    A weight shared by several layers appears once, under its first name.
    """
    if kind not in _LAYERS_OF_KIND:
        near = closest(kind, _LAYERS_OF_KIND)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise SpecError(f"unknown prunable kind {kind!r}.{hint} Valid: {', '.join(_LAYERS_OF_KIND)}.")
    patterns = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    named = list(model.named_parameters())
    _check_patterns_match(patterns, [name for name, _ in named], model)
    layer_types = _LAYERS_OF_KIND[kind]
    weights = {id(m.weight) for m in model.modules() if isinstance(m, layer_types)}
    return {
        name: param
        for name, param in named
        if id(param) in weights and not any(fnmatchcase(name, pattern) for pattern in patterns)
    }


def prunable_from_spec(model: nn.Module, spec: ModelSpec) -> dict[str, nn.Parameter]:
    """:func:`prunable_parameters` with the kind and exclusions a :class:`ModelSpec` asks for."""
    return prunable_parameters(model, spec.prunable, spec.prunable_exclude)


def output_layer_name(model: nn.Module) -> str:
    """The name of the output layer's weight: ``"fc.weight"`` for registry models (and any model
    with an ``nn.Linear`` called ``fc``), otherwise the last ``nn.Linear`` weight in
    ``named_parameters()`` order, which is the output layer for the usual feed-forward layout."""
    linear = prunable_parameters(model, "linear")
    if "fc.weight" in linear:
        return "fc.weight"
    if not linear:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer, so it has no output layer to name")
    return next(reversed(linear))


def _check_patterns_match(patterns: tuple[str, ...], names: list[str], model: nn.Module) -> None:
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            near = closest(pattern, names)
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            raise SpecError(f"exclude pattern {pattern!r} matches no parameter of {type(model).__name__}.{hint}")
