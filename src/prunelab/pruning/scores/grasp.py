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

Several batches (option ``aggregate``; the two agree on one batch): ``"total"`` (default) is the above,
``Hg = Σ_b H_b g`` with the *total* gradient ``g = Σ_b g_b`` (Synaptic-Flow's ``Pruners/pruners.py`` and
the GraSP authors' code); ``"per_batch"`` is ``Hg = Σ_b (B_b / N) H_b g_b`` with each batch's own
gradient ``g_b``, ``B_b`` examples of ``N`` (the "Missing the Mark" fork's
``oneshot_experiments_helpers/grasp.py``, which scores each batch and sums the signed scores; its
``graspabs`` takes the absolute value of that sum).
"""

from __future__ import annotations

import torch

from prunelab.pruning.base import ScoreContext, register_strategy
from prunelab.pruning.scores._common import aggregate_option, loss_on_batch, mask_scores, preserved_state, prunable_list
from prunelab.pruning.scores.snip import summed_loss_gradients

__all__ = ["grasp", "hessian_gradient_product"]

DEFAULT_TEMPERATURE = 200.0


def hessian_gradient_product(
    ctx: ScoreContext, strategy: str = "grasp"
) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
    """``(names, θ, Hg)`` for the prunable weights at the current mask; see the module docstring.

    The pruning batches are read once and kept for the second pass, so both passes see the same
    examples even if the data source reshuffles. BatchNorm runs in train mode unless the option
    ``train_mode`` is False; buffers, modes and the global RNG are restored."""
    names, params = prunable_list(ctx)
    temperature = float(ctx.option("temperature", DEFAULT_TEMPERATURE))
    if not temperature > 0:
        raise ValueError(f"{strategy} temperature must be positive, got {temperature}")
    train_mode = bool(ctx.option("train_mode", True))
    aggregate = aggregate_option(ctx, strategy)
    batches = list(ctx.batches())
    model = ctx.require_model()
    with preserved_state(model, params, generator=ctx.generator, device=ctx.device):
        model.train(train_mode)
        for p in params:
            p.requires_grad_(True)
        if aggregate == "per_batch":
            return names, [p.detach() for p in params], _per_batch_hg(ctx, model, names, params, batches, temperature)
        # The seeded global RNG is re-seeded for the second pass so train-mode dropout draws the
        # same masks in both passes (g and ∇L_b must be gradients of the same function).
        cuda = ctx.device.type == "cuda"
        state = torch.random.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(ctx.device) if cuda else None
        g = summed_loss_gradients(model, params, batches, temperature=temperature)
        # Only alive weights are parameters of the pruned network: its gradient is m ⊙ ∇L, so
        # Hg = H (m ⊙ g). (With a partial mask the raw gradient is non-zero at pruned positions.)
        g = [gi * ctx.mask[n].to(device=gi.device, dtype=gi.dtype) for n, gi in zip(names, g)]
        torch.random.set_rng_state(state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, ctx.device)
        hg = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            loss = loss_on_batch(model, x, y, temperature)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            z = sum((gi.detach() * gr).sum() for gi, gr in zip(g, grads) if gr is not None)
            if not isinstance(z, torch.Tensor) or not z.requires_grad:
                continue  # the loss is linear in every prunable weight on this batch: Hg = 0
            for acc, h in zip(hg, torch.autograd.grad(z, params, allow_unused=True)):
                if h is not None:
                    acc.add_(h)
    return names, [p.detach() for p in params], hg


def _per_batch_hg(
    ctx: ScoreContext,
    model: torch.nn.Module,
    names: list[str],
    params: list[torch.Tensor],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    temperature: float,
) -> list[torch.Tensor]:
    """``Σ_b (B_b / N) H_b (m ⊙ g_b)``: one forward pass per batch gives both ``g_b`` and the graph
    it is differentiated through, so dropout draws agree within a batch."""
    hg = [torch.zeros_like(p) for p in params]
    examples = 0
    for x, y in batches:
        loss = loss_on_batch(model, x, y, temperature)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        z: torch.Tensor | None = None  # g_b · (m ⊙ g_b), None while no prunable weight has a gradient
        for n, gr in zip(names, grads):
            if gr is not None:
                alive = ctx.mask[n].to(device=gr.device, dtype=gr.dtype)
                term = ((gr.detach() * alive) * gr).sum()
                z = term if z is None else z + term
        examples += len(y)
        if z is None or not z.requires_grad:
            continue  # linear in every prunable weight on this batch: H_b g_b = 0
        for acc, h in zip(hg, torch.autograd.grad(z, params, allow_unused=True)):
            if h is not None:
                acc.add_(h, alpha=len(y))
    if examples == 0:
        raise ValueError("the pruning data yielded no batches")
    return [h / examples for h in hg]


@register_strategy(
    "grasp",
    prune_highest=True,
    needs_data=True,
    default_iterations=1,
    options=("temperature", "train_mode", "aggregate"),
)
def grasp(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """GraSP score −θ ⊙ Hg with logits / T, T=200 (Wang et al. 2020); the highest are pruned.

    Options: ``temperature`` (200), ``train_mode`` (True: BatchNorm uses batch statistics, as the
    GraSP reference code, which prunes a deep copy of the freshly built network in train mode;
    False: running statistics), ``aggregate`` (``"total"``: Hg with the total gradient, as
    Synaptic-Flow and the GraSP code; ``"per_batch"``: Σ_b (B_b/N) H_b g_b, as the "Missing the
    Mark" fork). Running statistics, modes and the global RNG are restored.
    """
    names, theta, hg = hessian_gradient_product(ctx, "grasp")
    return mask_scores({n: -(t * h) for n, t, h in zip(names, theta, hg)}, ctx.mask)
