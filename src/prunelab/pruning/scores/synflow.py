"""SynFlow: iterative synaptic flow pruning (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020).

Data-free. Every parameter (and every floating-point buffer, e.g. BatchNorm running statistics) is
replaced by its absolute value, an all-ones input ``1`` of one example's shape is fed through the
network, and with ``R = 1ᵀ f(1; |θ|)`` (the sum of the outputs)

    score = |θ ⊙ ∂R/∂θ| ⊙ m.

For a network with positive homogeneous layers the scores of each layer sum to ``R`` (the
conservation law behind the method), which is also what makes the scores of deep networks tiny;
the whole computation is therefore done in float64.

Implementation: a :func:`copy.deepcopy` of the model is converted to float64, put in eval mode and
made non-negative; the user's model is never modified (the reference code takes ``abs_()`` in
place and multiplies the signs back afterwards — working on a copy gives the same scores with
nothing to restore).

Option ``abs_buffers`` (default True): the floating-point buffers are made non-negative too, as
Synaptic-Flow's ``Pruners/pruners.py`` does by taking ``abs_()`` over the whole ``state_dict``;
``False`` makes only the parameters non-negative, as the "Missing the Mark" fork's
``oneshot_experiments_helpers/synflow.py`` (``named_parameters``). The two agree at initialisation
(running means 0, variances 1) and differ once BatchNorm running means are negative, i.e. when
pruning a trained network.
"""

from __future__ import annotations

import copy
import itertools

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import infer_input_shape, mask_scores, model_names

__all__ = ["synflow"]


@register_strategy("synflow", needs_data=False, default_iterations=100, options=("input_shape", "abs_buffers"))
def synflow(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """SynFlow |θ ⊙ ∂R/∂θ|, R = 1ᵀ f(1; |θ|), in float64 (Tanaka et al. 2020); prune lowest.

    Option ``input_shape`` — the shape of one input example without the batch dimension, e.g.
    ``(3, 32, 32)``; when absent it is read from the first pruning batch, and with neither a
    ``ValueError`` says so. The input is one all-ones example (batch of 1), as in the reference code.
    BatchNorm: eval mode, using the model's current running statistics (made non-negative like
    every other floating-point state entry, as the reference code's ``abs_()`` over the whole
    ``state_dict``); nothing is reset or updated. Option ``abs_buffers=False`` leaves the buffers'
    signs (the "Missing the Mark" fork). 100 iterations by default (the paper's setting).
    Scores are returned in float64.
    """
    shape = infer_input_shape(ctx, "synflow")
    abs_buffers = ctx.option("abs_buffers", True)
    if not isinstance(abs_buffers, bool):
        raise ValueError(f"synflow abs_buffers must be true or false, got {abs_buffers!r}")
    names = model_names(ctx.model, ctx.params)
    net = copy.deepcopy(ctx.model).to(torch.float64).eval()
    with torch.no_grad():
        for t in itertools.chain(net.parameters(), net.buffers() if abs_buffers else ()):
            if t.is_floating_point():
                t.abs_()
    own = dict(net.named_parameters())
    for p in net.parameters():
        p.requires_grad_(False)
    targets = [own[names[key]] for key in ctx.params]
    for t in targets:
        t.requires_grad_(True)
    device = targets[0].device if targets else ctx.device
    ones = torch.ones((1, *shape), dtype=torch.float64, device=device)
    out = net(ones)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"synflow needs a model that returns a tensor, got {type(out).__name__}")
    grads = torch.autograd.grad(out.sum(), targets, allow_unused=True)
    scores = {}
    for key, t, g in zip(ctx.params, targets, grads):
        scores[key] = torch.zeros_like(t) if g is None else (g * t.detach()).abs()
    return mask_scores(scores, ctx.mask)
