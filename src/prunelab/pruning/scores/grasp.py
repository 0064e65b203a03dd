"""GraSP: gradient signal preservation (Wang, Zhang & Grosse, ICLR 2020).

GraSP removes the weights whose removal least reduces — or most increases — the gradient norm after
pruning. With ``H`` the Hessian and ``g`` the gradient of the loss over the pruning data, the score
of removing weight ``q`` is

    S(−θ)_q = −θ_q · (H g)_q,

and the *highest* scores are removed (registered ``prune_highest=True``, so callers need no flag).

Computation (as in the paper and its reference code): the logits are divided by a temperature
``T`` (option ``temperature``, default 200); a first pass computes ``g = Σ_b ∇_θ L_b`` over the
pruning batches without a graph (``g`` is then a constant); a second pass computes
``Hg = Σ_b ∇_θ (g · ∇_θ L_b)`` by double back-propagation. ``θ`` and ``g`` cover the prunable
weights only (biases and BatchNorm parameters are not in the product) and ``g`` is restricted to
the *alive* weights, ``g ← m ⊙ g``, since pruned weights are not parameters of the pruned network
(as the mask-multiplied layers of the SynFlow / NTK-SAP reference code give); this matters only
with a partial mask (iterative or multishot GraSP). ``L_b`` is the batch-mean cross-entropy.
Scores are not normalised (normalising by ``|Σ S|`` changes no ranking).
"""

from __future__ import annotations

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import loss_on_batch, mask_scores, preserved_state, prunable_list
from prunelab.pruning.scores.snip import summed_loss_gradients

__all__ = ["grasp", "hessian_gradient_product"]

DEFAULT_TEMPERATURE = 200.0


def hessian_gradient_product(ctx: ScoreContext) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
    """``(names, θ, Hg)`` for the prunable weights at the current mask; see the module docstring.

    The pruning batches are read once and kept for the second pass, so both passes see the same
    examples even if the data source reshuffles. BatchNorm runs in train mode unless the option
    ``train_mode`` is False; buffers, modes and the global RNG are restored."""
    names, params = prunable_list(ctx)
    temperature = float(ctx.option("temperature", DEFAULT_TEMPERATURE))
    if not temperature > 0:
        raise ValueError(f"grasp temperature must be positive, got {temperature}")
    train_mode = bool(ctx.option("train_mode", True))
    batches = list(ctx.batches())
    with preserved_state(ctx.model, params, generator=ctx.generator, device=ctx.device):
        ctx.model.train(train_mode)
        for p in params:
            p.requires_grad_(True)
        # The seeded global RNG is re-seeded for the second pass so train-mode dropout draws the
        # same masks in both passes (g and ∇L_b must be gradients of the same function).
        cuda = ctx.device.type == "cuda"
        state = torch.random.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(ctx.device) if cuda else None
        g = summed_loss_gradients(ctx.model, params, batches, temperature=temperature)
        # Only alive weights are parameters of the pruned network: its gradient is m ⊙ ∇L, so
        # Hg = H (m ⊙ g). (With a partial mask the raw gradient is non-zero at pruned positions.)
        g = [gi * ctx.mask[n].to(device=gi.device, dtype=gi.dtype) for n, gi in zip(names, g)]
        torch.random.set_rng_state(state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, ctx.device)
        hg = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            loss = loss_on_batch(ctx.model, x, y, temperature)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            z = sum((gi.detach() * gr).sum() for gi, gr in zip(g, grads) if gr is not None)
            if not isinstance(z, torch.Tensor) or not z.requires_grad:
                continue  # the loss is linear in every prunable weight on this batch: Hg = 0
            for acc, h in zip(hg, torch.autograd.grad(z, params, allow_unused=True)):
                if h is not None:
                    acc.add_(h)
    return names, [p.detach() for p in params], hg


@register_strategy("grasp", prune_highest=True, needs_data=True, default_iterations=1, options=("temperature", "train_mode"))
def grasp(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """GraSP score −θ ⊙ Hg with logits / T, T=200 (Wang et al. 2020); the highest are pruned.

    Options: ``temperature`` (200), ``train_mode`` (True: BatchNorm uses batch statistics, as the
    GraSP reference code, which prunes a deep copy of the freshly built network in train mode;
    False: running statistics). Running statistics, modes and the global RNG are restored.
    """
    names, theta, hg = hessian_gradient_product(ctx)
    return mask_scores({n: -(t * h) for n, t, h in zip(names, theta, hg)}, ctx.mask)
