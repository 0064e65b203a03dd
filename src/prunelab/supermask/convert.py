"""Turning any model into a supermask network, and a supermask network back into an ordinary one.

:func:`to_supermask` returns a converted deep copy: its prunable layers (prunelab's single rule,
:func:`prunelab.models.prunable_parameters`, with the same kinds and ignore patterns) become supermask
layers *at the same paths*, so ``hidden.0.weight`` is still ``hidden.0.weight`` and the learned scores
appear beside it as ``hidden.0.scores``. Masks keyed by the original names come straight out of
:func:`supermask_masks`, and :func:`effective_state_dict` loads into the original architecture.

Everything that is not a score is frozen (``requires_grad=False``): non-converted layers keep the values
they had (random, for a freshly built model), as in both references, where edge-popup's
``freeze_model_weights`` freezes every module's weight and bias and IteRand's score-only optimiser sees
the scores alone. Batch norms lose their affine parameters unless ``bn_affine=True`` (``NonAffineBatchNorm``
in edge-popup, ``bn_affine: False`` in every IteRand supermask config); their running statistics stay.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from prunelab.masks import Mask
from prunelab.models import prunable_parameters
from prunelab.models.init import BATCH_NORMS
from prunelab.supermask.errors import SupermaskError, check_density, check_option
from prunelab.supermask.init import SCORE_INITS, WeightLaw, child_generators
from prunelab.supermask.layers import SUPERMASK_OF, SupermaskLayer, meta_conv_options
from prunelab.supermask.scope import GlobalScope
from prunelab.supermask.subnet import RANKINGS, draw_tie_break

__all__ = [
    "METHODS",
    "SCOPES",
    "MethodConventions",
    "to_supermask",
    "supermask_layers",
    "supermask_masks",
    "effective_state_dict",
    "to_dense",
]

SCOPES = ("layerwise", "global")

#: Marks a batch norm whose affine parameters the conversion removed (γ = 1, β = 0 on export).
_AFFINE_REMOVED = "_supermask_affine_removed"


@dataclass(frozen=True)
class MethodConventions:
    """What a method's reference code does that the options default to."""

    ranking: str
    score_init: str


METHODS: dict[str, MethodConventions] = {
    # hidden-networks utils/conv_type.py SubnetConv: GetSubnet on scores.abs(); kaiming_uniform_(a=√5)
    "edge-popup": MethodConventions(ranking="abs", score_init="pytorch_default"),
    # iterand models/networks/sparse_modules.py: GetSubnet on weight_score; init_mode_mask kaiming_uniform (ReLU)
    "iterand": MethodConventions(ranking="raw", score_init="kaiming_uniform"),
}


def to_supermask(
    model: nn.Module,
    density: float,
    *,
    generator: torch.Generator,
    method: str = "edge-popup",
    scope: str = "layerwise",
    ranking: str | None = None,
    weight_init: str = "signed_constant",
    score_init: str | None = None,
    scale_fan: bool | str = False,
    bias: bool = False,
    bn_affine: bool = False,
    prunable: str = "conv_linear",
    ignore: str | Iterable[str] = (),
) -> nn.Module:
    """A deep copy of ``model`` whose prunable conv and linear layers are supermask layers.

    ``density`` is the fraction of weights kept (per layer for ``scope="layerwise"``, the published
    setting; over all converted layers together for ``"global"``). ``method`` picks the reference's
    conventions for ``ranking`` and ``score_init`` when those are ``None`` (:data:`METHODS`); IteRand's
    re-randomisation itself is :func:`~prunelab.supermask.rerandomize_`, applied by the training step.
    ``weight_init`` / ``scale_fan``: the frozen weights' law (:mod:`prunelab.supermask.init`). ``bias``:
    learn the biases of converted layers that have one (from zero) instead of freezing them at zero.
    ``bn_affine``: keep batch norms' γ, β (frozen like every other non-score parameter). ``prunable`` and
    ``ignore`` are the prunable kind and exclude patterns of :func:`prunelab.models.prunable_parameters`.
    All draws come from ``generator``: weights, scores and tie-break keys each from a child stream.
    """
    check_option(method, tuple(METHODS), "supermask method")
    check_option(scope, SCOPES, "supermask scope")
    conventions = METHODS[method]
    ranking = conventions.ranking if ranking is None else ranking
    score_init = conventions.score_init if score_init is None else score_init
    check_option(ranking, RANKINGS, "ranking")
    check_option(score_init, SCORE_INITS, "score initialiser")
    density = check_density(density)
    law = WeightLaw(weight_init, scale_fan, density)
    if not isinstance(bias, bool) or not isinstance(bn_affine, bool):
        raise SupermaskError(f"bias and bn_affine must be True or False, got {bias!r} and {bn_affine!r}")
    if any(isinstance(m, SupermaskLayer) for m in model.modules()):
        raise SupermaskError("the model already has supermask layers; convert the original model instead")

    converted = copy.deepcopy(model)
    targets = _layers_to_convert(converted, prunable, ignore)
    if bias and not any(layer.bias is not None for layer in targets.values()):
        raise SupermaskError("bias=True but no converted layer has a bias to learn")

    weight_gen, score_gen, tie_gen = child_generators(generator, 3)
    ties = draw_tie_break(sum(layer.weight.numel() for layer in targets.values()), tie_gen)
    replaced: dict[int, SupermaskLayer] = {}
    start = 0
    for layer in targets.values():
        n = layer.weight.numel()
        new = SUPERMASK_OF[type(layer)]._meta_like(layer)
        new._setup(
            device=layer.weight.device,
            density=density,
            ranking=ranking,
            weight_law=law,
            score_init=score_init,
            learn_bias=bias,
            weight_generator=weight_gen,
            score_generator=score_gen,
            tie_break=ties[start : start + n],
        )
        new.train(layer.training)
        replaced[id(layer)] = new
        start += n
    converted = _replace_modules(converted, replaced)

    for module in converted.modules():
        if isinstance(module, BATCH_NORMS) and module.affine and not bn_affine:
            module.register_parameter("weight", None)
            module.register_parameter("bias", None)
            module.affine = False
            setattr(module, _AFFINE_REMOVED, True)
    layers = list(supermask_layers(converted).values())
    learned = {id(layer.scores) for layer in layers} | {id(layer.bias) for layer in layers if layer.learns_bias}
    for param in converted.parameters():
        param.requires_grad_(id(param) in learned)
    if scope == "global":
        GlobalScope(layers, density).attach(converted)
    return converted


#: What a supermask layer replaces: the plain classes of :data:`SUPERMASK_OF` are these (not subclasses of them).
_Convertible = nn.Linear | nn.modules.conv._ConvNd


def _layers_to_convert(model: nn.Module, prunable: str, ignore: str | Iterable[str]) -> dict[str, _Convertible]:
    """Module path → layer for every prunable weight, in ``named_parameters()`` order."""
    weights = prunable_parameters(model, prunable, ignore)
    if not weights:
        raise SupermaskError(f"{type(model).__name__} has no prunable {prunable} layer to convert")
    owners: Counter[int] = Counter(id(p) for m in model.modules() for p in m._parameters.values() if p is not None)
    layers: dict[str, _Convertible] = {}
    for name in weights:
        path = name.rpartition(".")[0]
        layer = model.get_submodule(path)
        if type(layer) not in SUPERMASK_OF or not isinstance(layer, _Convertible):
            raise SupermaskError(
                f"cannot convert {path or 'the model'} ({type(layer).__name__}): only plain "
                f"{', '.join(t.__name__ for t in SUPERMASK_OF)} layers are converted (a subclass may not call its own "
                f"forward, e.g. MultiheadAttention's out_proj); leave it out with ignore={name!r}"
            )
        if owners[id(layer.weight)] > 1:
            raise SupermaskError(
                f"{name} is shared with another module; a supermask copy cannot keep the tie. "
                f"Leave it out with ignore={name!r}"
            )
        layers[path] = layer
    return layers


def _replace_modules(model: nn.Module, replaced: Mapping[int, nn.Module]) -> nn.Module:
    if id(model) in replaced:
        return replaced[id(model)]
    for parent in model.modules():
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in replaced:
                setattr(parent, child_name, replaced[id(child)])
    return model


# reading a supermask network ---------------------------------------------------------------------
def supermask_layers(model: nn.Module) -> dict[str, SupermaskLayer]:
    """Module path → supermask layer, in ``named_modules()`` order."""
    return {path: m for path, m in model.named_modules() if isinstance(m, SupermaskLayer)}


def _weight_name(path: str) -> str:
    return f"{path}.weight" if path else "weight"


def _current_masks(layers: dict[str, SupermaskLayer]) -> dict[str, torch.Tensor]:
    """Every layer's keep-mask, each global scope computed once."""
    masks: dict[str, torch.Tensor] = {}
    scoped: dict[int, dict[int, torch.Tensor]] = {}
    for path, layer in layers.items():
        scope = layer._scope
        if scope is None:
            masks[path] = layer.keep_mask()
            continue
        if id(scope) not in scoped:
            scoped[id(scope)] = {id(m): mask for m, mask in zip(scope.layers, scope.compute())}
        masks[path] = scoped[id(scope)][id(layer)]
    return masks


def supermask_masks(model: nn.Module) -> Mask:
    """The subnet the current scores select, keyed by weight name (``hidden.0.weight``), on CPU."""
    layers = supermask_layers(model)
    if not layers:
        raise SupermaskError(f"{type(model).__name__} has no supermask layer (convert it with to_supermask)")
    with torch.no_grad():
        return Mask({_weight_name(path): mask.cpu() for path, mask in _current_masks(layers).items()})


def to_dense(model: nn.Module) -> nn.Module:
    """An ordinary copy of a supermask network: every supermask layer becomes its plain layer with weight
    ``w ⊙ m`` (and its bias), batch norms whose affine parameters the conversion removed get γ = 1, β = 0
    (the same function), global-scope hooks are removed, and every parameter is trainable again. Its
    ``state_dict()`` loads into the original model."""
    layers = supermask_layers(model)
    if not layers:
        raise SupermaskError(f"{type(model).__name__} has no supermask layer (convert it with to_supermask)")
    with torch.no_grad():
        masks = _current_masks(layers)
        plain: dict[int, nn.Module] = {}
        for path, layer in layers.items():
            plain[id(layer)] = _plain_layer(layer, masks[path])
        dense = copy.deepcopy(model, memo={id(layer): plain[id(layer)] for layer in layers.values()})
    GlobalScope.detach_from(dense)
    for module in dense.modules():
        if isinstance(module, BATCH_NORMS) and getattr(module, _AFFINE_REMOVED, False):
            ref = module.running_var
            device, dtype = (ref.device, ref.dtype) if ref is not None else (None, None)
            module.weight = nn.Parameter(torch.ones(module.num_features, device=device, dtype=dtype))
            module.bias = nn.Parameter(torch.zeros(module.num_features, device=device, dtype=dtype))
            module.affine = True
            delattr(module, _AFFINE_REMOVED)
    for param in dense.parameters():
        param.requires_grad_(True)
    return dense


def _plain_layer(layer: SupermaskLayer, mask: torch.Tensor) -> nn.Module:
    base = next(t for t, cls in SUPERMASK_OF.items() if isinstance(layer, cls))
    plain: nn.Module
    if isinstance(layer, nn.Linear):
        plain = nn.Linear(
            layer.in_features, layer.out_features, layer.bias is not None, device="meta", dtype=layer.weight.dtype
        )
    else:
        assert isinstance(layer, nn.modules.conv._ConvNd), "a supermask layer is a linear layer or a convolution"
        plain = base(layer.in_channels, layer.out_channels, layer.kernel_size, **meta_conv_options(layer))
    plain.to_empty(device=layer.weight.device)
    plain.get_parameter("weight").copy_(layer.weight * mask.to(device=layer.weight.device, dtype=layer.weight.dtype))
    if layer.bias is not None:
        plain.get_parameter("bias").copy_(layer.bias)
    plain.train(layer.training)
    return plain


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of :func:`to_dense`: the original model's keys, weights ``w ⊙ m``, no scores."""
    return to_dense(model).state_dict()
