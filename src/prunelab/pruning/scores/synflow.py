"""SynFlow: iterative synaptic flow pruning (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020).

Data-free. Every parameter (and every floating-point buffer, e.g. BatchNorm running statistics) is
replaced by its absolute value, an all-ones input ``1`` of one example's shape is fed through the
network, and with ``R = 1ᵀ f(1; |θ|)`` (the sum of the outputs)

    score = |θ ⊙ ∂R/∂θ| ⊙ m.

For a network with positive homogeneous layers the scores of each layer sum to ``R`` (the
conservation law behind the method), which is also what makes the scores of deep networks tiny.

Precision (option ``precision``). ``"auto"`` (default) computes in float32 (the reference code's
precision) and repeats the iteration in float64 when float32 does not suffice: ``R`` is not a
normal finite float32 number, a score is not finite, or at an alive weight (θ ≠ 0) a non-zero
gradient ``∂R/∂θ`` or its score is below 2^-100 — the signs that the products along the network's
paths approached the end of float32's range (see :func:`_float32_suffices` for why an exact 0 is a
cut path, not an underflow). ``"float64"`` computes every iteration in float64. Both give the same masks
wherever float32's rounding (a relative 6e-8 per operation, on sums of non-negative terms) does not
reorder two scores at the cut-off: on CIFAR ResNet-20 pruned to 10% in 100 iterations the masks
are identical (a test checks it); a 40-layer net whose ``R`` is 1e-56 is scored in float64.
Scores come back in the dtype they were computed in.

Implementation: one :func:`copy.deepcopy` of the model per call (kept in ``ctx.scratch`` across
the iterations of one :func:`~prunelab.pruning.api.prune` call; only its prunable weights change
between iterations, to ``|θ ⊙ m|``), converted to the working dtype, put in eval mode and made
non-negative; the user's model is never modified (the reference code takes ``abs_()`` in place and
multiplies the signs back afterwards — working on a copy gives the same scores with nothing to
restore).

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
from torch import nn

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import infer_input_shape, mask_scores, model_names

__all__ = ["synflow", "PRECISIONS"]

#: ``auto``: float32, an iteration repeated in float64 when float32 under- or overflows; ``float64``: always float64.
PRECISIONS = ("auto", "float64")


class _Flow:
    """A non-negative, eval-mode copy of the scored network in one dtype (built once per call)."""

    def __init__(self, model: nn.Module, names: dict[str, str], dtype: torch.dtype, abs_buffers: bool) -> None:
        self.net = copy.deepcopy(model).to(dtype).eval()
        with torch.no_grad():
            for t in itertools.chain(self.net.parameters(), self.net.buffers() if abs_buffers else ()):
                if t.is_floating_point():
                    t.abs_()
        for p in self.net.parameters():
            p.requires_grad_(False)
        own = dict(self.net.named_parameters())
        self.targets = [own[q].requires_grad_(True) for q in names.values()]

    def load(self, weights: list[torch.Tensor]) -> None:
        """Set the prunable weights to ``|weights|`` (the current masked weights)."""
        with torch.no_grad():
            for t, w in zip(self.targets, weights):
                t.copy_(w.detach().abs())

    def scores(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``(R, ∂R/∂θ, |θ ⊙ ∂R/∂θ|)`` for an all-ones example."""
        dtype = self.targets[0].dtype
        ones = torch.ones((1, *shape), dtype=dtype, device=self.targets[0].device)
        out = self.net(ones)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"synflow needs a model that returns a tensor, got {type(out).__name__}")
        r = out.sum()
        unused_as_none = torch.autograd.grad(r, self.targets, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(self.targets, unused_as_none)]
        return r.detach(), grads, [(g * t.detach()).abs() for t, g in zip(self.targets, grads)]


#: The smallest non-zero gradient or score float32 results are trusted with (see :func:`_float32_suffices`).
MARGIN = 2.0**-100


def _float32_suffices(
    r: torch.Tensor, weights: list[torch.Tensor], grads: list[torch.Tensor], scores: list[torch.Tensor]
) -> bool:
    """Whether a float32 iteration stayed inside float32's range: ``R`` normal and finite, every score
    finite, and at every alive weight (θ ≠ 0) a gradient that is either exactly 0 or, like its score,
    at least :data:`MARGIN` (2^-100, 2^26 above the smallest normal float32).

    An exact 0 is a cut path — the weight's unit no longer reaches the output once the weights after
    it are pruned (on ResNet-20 at 10% from about the 36th of 100 iterations) — not an underflow:
    SynFlow's gradients are sums of non-negative path products (|θ| ≥ 0, input 1), so a gradient
    underflows to 0 only if every product through the weight falls below 2^-149 while every other
    gradient and score in the network is at least 2^-100."""
    if not (bool(torch.isfinite(r)) and abs(float(r)) >= torch.finfo(torch.float32).tiny):
        return False
    w = torch.cat([t.reshape(-1) for t in weights])
    g = torch.cat([t.reshape(-1) for t in grads]).abs_()
    s = torch.cat([t.reshape(-1) for t in scores])
    if not bool(torch.isfinite(s).all()):
        return False
    low = torch.minimum(g, s) < MARGIN
    return not bool(low.logical_and_(g != 0).logical_and_(w != 0).any())


def _flow(ctx: ScoreContext, names: dict[str, str], dtype: torch.dtype, abs_buffers: bool) -> _Flow:
    """The call's network in ``dtype``, its prunable weights set to the current ``|θ ⊙ m|``."""
    flows = ctx.scratch.setdefault("synflow", {})
    key = (dtype, abs_buffers)
    if key not in flows:  # the first iteration in this dtype: ctx.model already holds θ ⊙ m
        flows[key] = _Flow(ctx.require_model(), names, dtype, abs_buffers)
    else:
        flows[key].load(list(ctx.params.values()))
    return flows[key]


@register_strategy(
    "synflow", needs_data=False, default_iterations=100, options=("input_shape", "abs_buffers", "precision")
)
def synflow(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """SynFlow |θ ⊙ ∂R/∂θ|, R = 1ᵀ f(1; |θ|) (Tanaka et al. 2020); prune lowest.

    Option ``input_shape`` — the shape of one input example without the batch dimension, e.g.
    ``(3, 32, 32)``; when absent it is read from the first pruning batch, and with neither a
    ``ValueError`` says so. The input is one all-ones example (batch of 1), as in the reference code.
    BatchNorm: eval mode, using the model's current running statistics (made non-negative like
    every other floating-point state entry, as the reference code's ``abs_()`` over the whole
    ``state_dict``); nothing is reset or updated. Option ``abs_buffers=False`` leaves the buffers'
    signs (the "Missing the Mark" fork). Option ``precision``: ``"auto"`` (float32, an iteration
    redone in float64 when float32 under- or overflows; a float64 model is scored in float64) or
    ``"float64"``. 100 iterations by default (the paper's setting). Scores are returned in the
    dtype they were computed in.
    """
    shape = infer_input_shape(ctx, "synflow")
    abs_buffers = ctx.option("abs_buffers", True)
    if not isinstance(abs_buffers, bool):
        raise ValueError(f"synflow abs_buffers must be true or false, got {abs_buffers!r}")
    precision = ctx.option("precision", "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"synflow precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    names = model_names(ctx.require_model(), ctx.params)
    if not names:
        return {}
    weights = [p.detach() for p in ctx.params.values()]
    if precision == "auto" and weights[0].dtype != torch.float64:
        r, grads, scores = _flow(ctx, names, torch.float32, abs_buffers).scores(shape)
        if _float32_suffices(r, weights, grads, scores):
            return mask_scores(dict(zip(ctx.params, scores)), ctx.mask)
    _, _, scores = _flow(ctx, names, torch.float64, abs_buffers).scores(shape)
    return mask_scores(dict(zip(ctx.params, scores)), ctx.mask)
