"""NTK-SAP: neural tangent kernel spectrum-aware pruning (Wang, Li & Sun, ICLR 2023).

NTK-SAP keeps the connections that matter most for the trace of the network's NTK, estimated with a
finite difference that needs neither the trained weights nor the data:

    P(m) = Σ_{x in batch} ‖ f(x; θ ⊙ m) − f(x; (θ + Δθ) ⊙ m) ‖²,   Δθ ~ N(0, ε² I),

which to first order equals ``ε² · tr Θ(x; θ ⊙ m)`` (``E‖J Δθ‖² = ε² tr(J Jᵀ)``). The score is the
sensitivity of the proxy to each mask entry,

    score = | Σ_rounds Σ_batches ∂P/∂m | ⊙ m,

the signed gradients being summed over all samples before the absolute value is taken, as the
reference code accumulates ``mask.grad``. ``∂P/∂m`` is taken through the mask as a multiplier of
the weights of *both* networks: ``∂P/∂m = ∂P/∂W₁ ⊙ θ + ∂P/∂W₂ ⊙ (θ + Δθ)`` with ``W₁ = θ ⊙ m`` and
``W₂ = (θ + Δθ) ⊙ m`` the two effective weights.

Sampling (per round r = 1..R, option ``rounds``, and per noise batch):

* θ: a fresh initialisation of a *copy* of the network (weight-agnostic: the current values of the
  user's weights are never used, only the mask): every Conv/Linear weight and every other prunable
  weight with ≥ 2 dimensions ~ Kaiming normal N(0, 2/fan_in); BatchNorm, GroupNorm and LayerNorm
  affine parameters (1, 0) — the reference models' ``_initialize_weights``. Conv/Linear biases
  (option ``biases``): ``"zero"`` (default) sets them to 0; ``"keep"`` leaves the scored network's
  own biases, as the reference's CIFAR ResNet/VGG and Tiny-ImageNet/ImageNet ResNet models do (the
  bias line of their ``_initialize_weights`` is commented out; its Tiny-ImageNet/ImageNet VGGs zero
  them). The two agree when the biases are 0 and wherever a bias cannot change the proxy: the
  output layer's bias cancels in the difference of the two networks, and a bias followed by
  BatchNorm is removed by the shared mean. They differ for non-zero hidden biases without BatchNorm
  (LeNets with PyTorch's biases, the reference's VGGs without BatchNorm, any trained network's).
* x ~ N(0, I) (data-agnostic: pruning data, if given, only supplies the batch shapes).
* Δθ ~ N(0, ε² I) on the prunable weights (ε is a **standard deviation**, see below).

Noise batches, per round: with pruning data, one batch per pruning batch with that batch's shape, as
the reference draws ``randn_like`` of each batch of its prune loader (``--prune-dataset-ratio 10``
examples per class in batches of ``--prune-batch-size 256``: one batch of 100 on CIFAR-10, 1,000
examples in four batches on CIFAR-100); ``input_shape``, if also given, must match the data. An
explicit ``batch_size`` instead draws one batch of that many examples (shape from ``input_shape`` or
the data). Without data: one batch of ``batch_size`` (default 100, the reference's size on
CIFAR-10) examples of ``input_shape``.

BatchNorm, as the reference code: the running statistics of the fresh copy are reset and set, with
momentum 1, to the statistics of the current noise batch in one no-grad train-mode pass of the
unperturbed network; both forward passes that are differentiated then run in eval mode with those
statistics (so the statistics are constants of the proxy, shared by both networks). A BatchNorm
layer built with ``track_running_stats=False`` has no running statistics and normalises each of
the two passes with its own batch statistics.

ε convention: the reference code perturbs with ``θ + ε · randn`` (ε is the standard deviation;
its default ``--ntksap_epsilon`` is 0.01) whereas the paper writes the perturbation distribution
as N(0, εI), which reads as ε being the variance. prunelab follows the code: ``epsilon`` is the
standard deviation, default 0.01, so results are comparable with the released implementation (a
paper-convention variance v corresponds to ``epsilon = sqrt(v)``). To first order the proxy is
ε² times the NTK trace, so ε only rescales the scores; it changes the ranking only through the
higher-order (non-linear) terms of the finite difference.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import (
    input_shape_option,
    kaiming_normal_,
    mask_scores,
    model_names,
    seeded_global_rng,
)

__all__ = ["ntksap", "ntksap_mask_gradient", "reinitialise"]

DEFAULT_EPSILON = 0.01
DEFAULT_ROUNDS = 5  # the released CIFAR-10 script's --ntksap_R 5; R=1 starves late layers (docs/strategies.md)
DEFAULT_BATCH_SIZE = 100


BIASES = ("zero", "keep")


def reinitialise(net: nn.Module, prunable: set[str], generator: torch.Generator, *, biases: str = "zero") -> None:
    """Fresh weights for ``net`` in place, drawn from ``generator`` in ``named_modules`` order:
    Conv/Linear weights Kaiming normal (fan-in, ReLU gain) and biases 0 (``biases="keep"``: left
    as they are); BatchNorm/GroupNorm/LayerNorm affine weights 1 and biases 0; any other parameter
    named in ``prunable`` with at least two dimensions Kaiming normal. Everything else keeps its value."""
    done: set[int] = set()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (_ConvNd, nn.Linear)):
                kaiming_normal_(module.weight, generator)
                done.add(id(module.weight))
                if module.bias is not None and biases == "zero":
                    module.bias.zero_()
            elif isinstance(module, (_BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                if getattr(module, "weight", None) is not None:
                    module.weight.fill_(1.0)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
        for name, p in net.named_parameters():
            if name in prunable and id(p) not in done and p.dim() >= 2:
                kaiming_normal_(p, generator)


def ntksap_mask_gradient(
    net: nn.Module,
    names: Mapping[str, str],
    mask: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    perturbation: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Signed ``∂P/∂m`` of the NTK-SAP proxy for one weight sample and one input batch.

    ``P = Σ_batch ‖f(inputs; θ ⊙ m) − f(inputs; (θ + Δθ) ⊙ m)‖²`` with ``θ`` the current values of
    ``net``'s prunable parameters, ``m = mask`` (as floats) and ``Δθ = perturbation``, both keyed by
    prunable key; ``names`` maps each key to the parameter's name in ``net.named_parameters()``.

    ``net`` is used as given (no re-initialisation) but its BatchNorm running statistics, momentum
    and train/eval mode are overwritten (see the module docstring): pass a throwaway copy.
    """
    own = dict(net.named_parameters())
    keys = list(names)
    theta = {k: own[names[k]].detach() for k in keys}
    m = {k: mask[k].to(device=theta[k].device, dtype=theta[k].dtype).requires_grad_(True) for k in keys}
    dtheta = {k: perturbation[k].to(device=theta[k].device, dtype=theta[k].dtype) for k in keys}

    norms = [mod for mod in net.modules() if isinstance(mod, _BatchNorm) and mod.track_running_stats]
    if norms:
        for mod in norms:
            mod.reset_running_stats()
            mod.momentum = 1.0
        net.train()
        with torch.no_grad():
            functional_call(net, {names[k]: theta[k] * m[k].detach() for k in keys}, (inputs,))
    net.eval()
    clean = functional_call(net, {names[k]: theta[k] * m[k] for k in keys}, (inputs,))
    noisy = functional_call(net, {names[k]: (theta[k] + dtheta[k]) * m[k] for k in keys}, (inputs,))
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"ntksap needs a model that returns a tensor, got {type(clean).__name__}")
    proxy = (clean - noisy).pow(2).sum()
    grads = torch.autograd.grad(proxy, [m[k] for k in keys], allow_unused=True)
    return {k: (torch.zeros_like(theta[k]) if g is None else g) for k, g in zip(keys, grads)}


def _noise_batch_shapes(ctx: ScoreContext) -> list[tuple[int, ...]]:
    """One shape per noise batch (see the module docstring): the pruning batches' shapes; or one
    ``(batch_size, *example)`` batch when ``batch_size`` is given or there is no data."""
    shape = input_shape_option(ctx)
    explicit = ctx.option("batch_size", None)
    batch_size = DEFAULT_BATCH_SIZE if explicit is None else int(explicit)
    if batch_size < 1:
        raise ValueError(f"ntksap batch_size must be >= 1, got {batch_size}")
    if ctx.data is None:
        if shape is None:
            raise ValueError(
                "ntksap is data-free but needs the model's input shape: pass input_shape=(C, H, W) "
                "(one example, without the batch dimension; batch_size sets the noise batch, default "
                f"{DEFAULT_BATCH_SIZE}) or pruning data, whose batch shapes are then used"
            )
        return [(batch_size, *shape)]
    shapes = [tuple(int(s) for s in x.shape) for x, _ in ctx.batches()]
    if not shapes:
        raise ValueError("ntksap: the pruning data has no batches to take the input shape from")
    if shape is not None and any(s[1:] != shape for s in shapes):
        raise ValueError(
            f"ntksap input_shape={shape} differs from the pruning data's examples, {shapes[0][1:]}; "
            "drop input_shape (the data's shape is used)"
        )
    if explicit is not None:
        return [(batch_size, *shapes[0][1:])]
    return shapes


@register_strategy(
    "ntksap",
    needs_data=False,
    default_iterations=20,
    options=("rounds", "epsilon", "input_shape", "batch_size", "biases"),
)
def ntksap(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """NTK-SAP |∂/∂m Σ‖f(x;θ⊙m) − f(x;(θ+Δθ)⊙m)‖²| over fresh θ and noise x (Wang et al. 2023).

    Options: ``rounds`` R (5, the reference's released CIFAR-10 script ``--ntksap_R 5``; its
    command-line default is 1), ``epsilon`` — the *standard deviation* of Δθ (0.01, the reference
    code's default), ``input_shape`` (one example's shape; needed without data), ``batch_size``
    (noise examples per round: without data 100, the reference's 10 examples per class on
    CIFAR-10; with data, when given, one batch of that size instead of the data's batches),
    ``biases`` (``"zero"``: re-initialised to 0; ``"keep"``: the network's own, as the reference's
    CIFAR models). With pruning data the noise batches take the pruning batches' shapes, as the
    reference draws ``randn_like`` of each batch. Prune lowest. 20 iterations by default
    (``--prune-epochs 20`` in the reference run script). Works on a copy (one per ``prune()`` call,
    kept in ``ctx.scratch``: the prunable weights, Conv/Linear biases under ``biases="zero"``,
    normalisation affine parameters and BatchNorm statistics are all re-drawn or reset every round,
    and nothing else of the copy changes); all randomness from ``ctx.generator``.
    """
    epsilon = float(ctx.option("epsilon", DEFAULT_EPSILON))
    rounds = int(ctx.option("rounds", DEFAULT_ROUNDS))
    biases = ctx.option("biases", "zero")
    if biases not in BIASES:
        raise ValueError(f"ntksap biases must be one of {', '.join(map(repr, BIASES))}, got {biases!r}")
    if not epsilon > 0:
        raise ValueError(f"ntksap epsilon (a standard deviation) must be positive, got {epsilon}")
    if rounds < 1:
        raise ValueError(f"ntksap rounds must be >= 1, got {rounds}")
    shapes = _noise_batch_shapes(ctx)
    model = ctx.require_model()
    names = model_names(model, ctx.params)
    net: nn.Module | None = ctx.scratch.get("ntksap")
    if net is None:  # one copy per call: every round re-draws what the proxy reads and resets the statistics
        net = ctx.scratch["ntksap"] = copy.deepcopy(model)
        for p in net.parameters():
            p.requires_grad_(False)
    own = dict(net.named_parameters())
    prunable = set(names.values())
    gen = ctx.generator
    total = {k: torch.zeros_like(own[names[k]]) for k in names}
    first = own[names[next(iter(names))]] if names else None
    dtype = first.dtype if first is not None else torch.float32
    device = first.device if first is not None else ctx.device
    with seeded_global_rng(gen, ctx.device):  # train-mode statistics pass: dropout seeded
        for _ in range(rounds):
            for shape in shapes:
                reinitialise(net, prunable, gen, biases=biases)
                x = torch.randn(shape, generator=gen, device=gen.device, dtype=dtype).to(device)
                delta = {
                    k: torch.randn(tuple(own[names[k]].shape), generator=gen, device=gen.device, dtype=dtype)
                    .mul_(epsilon)
                    .to(device)
                    for k in names
                }
                grads = ntksap_mask_gradient(net, names, ctx.mask, x, delta)
                for k, g in grads.items():
                    total[k].add_(g)
    return mask_scores({k: t.abs() for k, t in total.items()}, ctx.mask)
