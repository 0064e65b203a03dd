"""SNIP: connection sensitivity (Lee, Ajanthan & Torr, ICLR 2019).

The mask ``m`` multiplies the weights, ``w_eff = w ⊙ m``. The sensitivity of the loss to connection
``j`` is ``∂L/∂m_j = (∂L/∂w_eff)_j · w_j``; at the current mask (where the model's prunable weights
already equal ``w ⊙ m``) this is ``g ⊙ w`` with ``g`` the ordinary weight gradient, and

    score = |g ⊙ w| ⊙ m.

The scores are not normalised by their sum (the paper's normalisation divides every score by the
same positive number, which changes no ranking).

Several pruning batches ``b`` (``B_b`` examples each, ``N`` in all, ``g_b`` the gradient of batch
``b``'s mean loss) are combined as the option ``aggregate`` says; the two agree on one batch:

* ``"total"`` (default): ``|w ⊙ Σ_b g_b|`` — the gradients are accumulated over the batches and the
  absolute value is taken once (Synaptic-Flow's ``Pruners/pruners.py``, whose SNIP accumulates the
  mask gradient over the prune loader).
* ``"per_batch"``: ``Σ_b (B_b / N) · |w ⊙ g_b|`` — one score per batch, weighted by its examples,
  summed (the "Missing the Mark" fork's ``oneshot_experiments_helpers/snip.py``).
"""

from __future__ import annotations

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import aggregate_option, loss_on_batch, mask_scores, preserved_state, prunable_list

__all__ = ["snip", "summed_loss_gradients", "connection_sensitivity"]


def summed_loss_gradients(
    model: torch.nn.Module, params: list[torch.Tensor], batches, *, temperature: float = 1.0
) -> list[torch.Tensor]:
    """``Σ_batches ∇_θ mean-CE(model(x) / temperature, y)`` for ``params`` (no graph kept).

    Each batch contributes the gradient of its *mean* cross-entropy, summed over batches — the
    reference implementations call ``loss(model(x), y).backward()`` once per batch. With one batch
    of ``B`` examples this is the gradient of the batch-mean loss."""
    total = [torch.zeros_like(p) for p in params]
    count = 0
    for x, y in batches:
        loss = loss_on_batch(model, x, y, temperature)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc.add_(g)
        count += 1
    if count == 0:
        raise ValueError("the pruning data yielded no batches")
    return total


def connection_sensitivity(ctx: ScoreContext, strategy: str = "snip") -> dict[str, torch.Tensor]:
    """``|g ⊙ w| ⊙ m`` on the current (masked) weights, batches combined by ``aggregate``; see the
    module docstring."""
    names, params = prunable_list(ctx)
    train_mode = bool(ctx.option("train_mode", True))
    aggregate = aggregate_option(ctx, strategy)
    model = ctx.require_model()
    with preserved_state(model, params, generator=ctx.generator, device=ctx.device):
        model.train(train_mode)
        for p in params:
            p.requires_grad_(True)
        if aggregate == "total":
            grads = summed_loss_gradients(model, params, ctx.batches())
            scores = {n: (g * p.detach()).abs() for n, g, p in zip(names, grads, params)}
        else:
            scores = _per_batch_sensitivity(model, names, params, ctx.batches())
    return mask_scores(scores, ctx.mask)


def _per_batch_sensitivity(
    model: torch.nn.Module, names: list[str], params: list[torch.Tensor], batches
) -> dict[str, torch.Tensor]:
    """``Σ_b (B_b / N) |w ⊙ g_b|``."""
    total = [torch.zeros_like(p) for p in params]
    examples = 0
    for x, y in batches:
        grads = torch.autograd.grad(loss_on_batch(model, x, y), params, allow_unused=True)
        for acc, g, p in zip(total, grads, params):
            if g is not None:
                acc.add_((g * p.detach()).abs().mul_(len(y)))
        examples += len(y)
    if examples == 0:
        raise ValueError("the pruning data yielded no batches")
    return {n: t / examples for n, t in zip(names, total)}


@register_strategy("snip", needs_data=True, default_iterations=1, options=("train_mode", "aggregate"))
def snip(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity |∂L/∂m| = |g ⊙ w| (Lee et al. 2019); prune lowest.

    Option ``aggregate``: ``"total"`` (default, Synaptic-Flow: |w ⊙ Σ_b g_b|) or ``"per_batch"``
    (the "Missing the Mark" fork: Σ_b (B_b/N) |w ⊙ g_b|); they differ only with several batches.

    Cross-entropy on the pruning batches (mean per batch, summed over batches); the caller chooses
    the examples (e.g. ``examples_per_class`` class-balanced examples). BatchNorm: the model runs in
    train mode (batch statistics, as a freshly built network in the SNIP/GraSP reference codes and
    the ``--prune-train-mode`` setting of the SynFlow/NTK-SAP codes); option ``train_mode=False``
    scores in eval mode (running statistics) instead. Running statistics, modes and the global RNG
    are restored afterwards; dropout in train mode is seeded from ``ctx.generator``.
    """
    return connection_sensitivity(ctx, "snip")
