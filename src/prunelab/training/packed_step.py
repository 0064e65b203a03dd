"""The update of K models of one architecture in lock-step: stacked weights, one vectorised program.

:class:`PackedStep` takes K models, each bound to its own :class:`~prunelab.training.masked_step.MaskedStep`
(its mask and its optimiser), and stacks their parameters, buffers and optimiser state along a new
leading dimension (``torch.func.stack_module_state``'s layout: ``[K, ...]`` per tensor). One
iteration is:

* forward of the K models on their K batches at once — ``vmap`` of ``functional_call`` over the
  stacked state (linear layers become ``bmm``, convolutions grouped convolutions, batch norm keeps
  per-model running statistics, updated in place);
* the per-model losses (a ``[K]`` tensor) summed and back-propagated with ordinary autograd: the
  models are independent, so each one's gradient is exactly its own loss's gradient;
* the masked step's maths on the stacked tensors: gradients masked, the optimiser update, weights
  masked. SGD (momentum, Nesterov, L2 decay), Adam and AdamW follow ``torch.optim``'s multi-tensor
  implementations operation for operation, with a per-model learning rate (a ``[K, 1, ...]`` tensor
  when the rates differ, the scalar path of ``torch.optim`` when they are equal).

Results equal training each model alone within float reassociation (batched kernels add in another
order). :meth:`export` writes model ``k``'s state back into its own module and its own optimiser, in
exactly the form ``torch.optim`` keeps it, so the ordinary training loop can evaluate, save and
checkpoint it — a packed model's checkpoint is an ordinary checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from prunelab.specs.training import TrainingSpec
from prunelab.training.evaluate import Evaluation, iterate_batches
from prunelab.training.masked_step import MaskedStep

__all__ = ["PackedStep"]

#: what torch's ``_foreach`` ops take and return (a list in, a tuple out)
_Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]


def _optimizer(step: MaskedStep) -> torch.optim.Optimizer:
    """``step``'s optimiser, which :meth:`MaskedStep.bind` built."""
    if step.optimizer is None:
        raise ValueError("a packed step needs bound masked steps (bind each to its model first)")
    return step.optimizer


def _gradients(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients backward gave ``params``: every trainable parameter is in every model's loss."""
    grads = [p.grad for p in params]
    if any(g is None for g in grads):
        raise ValueError("a packed step needs every trainable parameter to take part in the loss (one had no gradient)")
    return [g for g in grads if g is not None]


class PackedStep:
    """K bound masked steps (``steps[k]`` bound to ``models[k]``) as one stacked update; see the module
    docstring. ``step(x, y)`` takes ``[K, B, ...]`` inputs and ``[K, B]`` labels and returns the K
    losses (a detached ``[K]`` tensor, not read on the host)."""

    def __init__(
        self, models: Sequence[nn.Module], steps: Sequence[MaskedStep], spec: TrainingSpec, device: torch.device
    ) -> None:
        if spec.bf16:
            raise ValueError("a packed step trains in float32 (train.bf16 trains each model alone)")
        if len(models) != len(steps) or not models:
            raise ValueError("a packed step needs one bound masked step per model")
        self.models, self.steps = list(models), list(steps)
        self.lanes = len(self.models)
        self.spec = spec
        first = self.models[0]
        named = [dict(m.named_parameters()) for m in self.models]
        self.trainable = [n for n, p in named[0].items() if p.requires_grad]
        self.frozen_names = [n for n, p in named[0].items() if not p.requires_grad]
        self.buffer_names = [n for n, _ in first.named_buffers()]
        with torch.no_grad():
            self.params = {n: torch.stack([own[n].detach() for own in named]).requires_grad_() for n in self.trainable}
            self.frozen = {n: torch.stack([own[n].detach() for own in named]) for n in self.frozen_names}
            buffers = [dict(m.named_buffers()) for m in self.models]
            self.buffers = {n: torch.stack([own[n] for own in buffers]) for n in self.buffer_names}
        self._masks(named)
        self._optimizer_state()
        self._base = copy.deepcopy(first).to("meta")  # the architecture only: every tensor comes from the stacks
        base = self._base

        def forward(params: dict, frozen: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (params, frozen, buffers), (x,))

        self._forward = vmap(forward, in_dims=(0, 0, 0, 0), randomness="error")
        self._shared_forward = vmap(forward, in_dims=(0, 0, 0, None), randomness="error")  # one batch for all
        self._smoothing = spec.label_smoothing
        self._param_list = [self.params[n] for n in self.trainable]
        self.lr = torch.zeros(self.lanes, device=device)
        self._lr_views = [self.lr.view(self.lanes, *[1] * (p.dim() - 1)) for p in self._param_list]
        self._same_lr: float | None = None

    # construction ---------------------------------------------------------------------------------
    def _masks(self, named: list[dict[str, nn.Parameter]]) -> None:
        """The stacked 0/1 masks of every parameter that some model masks (ones for the others)."""
        per_lane: list[dict[str, torch.Tensor]] = []
        for own, step in zip(named, self.steps):
            masks: dict[str, torch.Tensor] = {}
            if step.masked is not None:
                names = {id(p): n for n, p in own.items()}
                for param, keep in zip(step.masked.params, step.masked.masks):
                    masks[names[id(param)]] = keep
            per_lane.append(masks)
        masked = [n for n in self.trainable if any(n in m for m in per_lane)]
        self.masked_names = masked
        self.masks = [
            torch.stack([m[n] if n in m else torch.ones_like(self.params[n][0]) for m in per_lane]) for n in masked
        ]
        self._masked_params = [self.params[n] for n in masked]
        self._masked_positions = [self.trainable.index(n) for n in masked]  # in the trainable parameters' order

    def _groups(self) -> list[dict]:
        groups = []
        for step in self.steps:
            param_groups = _optimizer(step).param_groups
            if len(param_groups) != 1:
                raise ValueError("a packed step needs optimisers with one parameter group")
            groups.append(param_groups[0])
        return groups

    def _optimizer_state(self) -> None:
        """Stack the optimisers' state (empty before the first update: ``torch.optim``'s lazy init)."""
        group = self._groups()[0]
        self.kind = type(_optimizer(self.steps[0])).__name__
        if self.kind not in ("SGD", "Adam", "AdamW"):
            raise ValueError(f"a packed step supports SGD, Adam and AdamW, not {self.kind}")
        for flag in ("maximize", "amsgrad", "capturable", "differentiable", "fused"):
            if group.get(flag):
                raise ValueError(f"a packed step does not support {self.kind}({flag}=True)")
        self.hyper = {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
        for step, other in zip(self.steps[1:], self._groups()[1:]):
            same = type(_optimizer(step)) is type(_optimizer(self.steps[0]))
            if not same or {k: v for k, v in other.items() if k in self.hyper} != self.hyper:
                raise ValueError("packed models must share the optimiser and its settings (all but the learning rate)")
        names = [self._optimizer_names(step) for step in self.steps]
        optimizers = [_optimizer(step) for step in self.steps]
        per_lane = [[opt.state.get(p, {}) for p in opt.param_groups[0]["params"]] for opt in optimizers]
        keys = {tuple(sorted(state)) for lane in per_lane for state in lane}
        if len(keys) > 1:
            raise ValueError("packed models must be at the same point of training (their optimiser states differ)")
        lanes: dict[str, dict[str, list[torch.Tensor]]] = {}  # parameter → state key → each lane's tensor
        self.adam_step = 0.0
        for lane_names, lane in zip(names, per_lane):
            for name, state in zip(lane_names, lane):
                for key, value in state.items():
                    if key == "step":
                        self.adam_step = float(value)
                    elif value is not None:
                        lanes.setdefault(name, {}).setdefault(key, []).append(value)
        self.state: dict[str, dict[str, torch.Tensor]] = {
            n: {k: torch.stack(v) for k, v in s.items()} for n, s in lanes.items()
        }

    def _optimizer_names(self, step: MaskedStep) -> list[str]:
        model = self.models[self.steps.index(step)]
        names = {id(p): n for n, p in model.named_parameters()}
        ordered = [names[id(p)] for p in _optimizer(step).param_groups[0]["params"]]
        if sorted(ordered) != sorted(self.trainable):
            raise ValueError("a packed step needs optimisers over every trainable parameter")
        return ordered

    # training -------------------------------------------------------------------------------------
    def set_lr(self, rates: Sequence[float]) -> None:
        """Model ``k`` uses learning rate ``rates[k]`` from the next update on."""
        rates = [float(r) for r in rates]
        self._same_lr = rates[0] if all(r == rates[0] for r in rates) else None
        self.lr.copy_(torch.tensor(rates, dtype=self.lr.dtype))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = self._param_list
        for p in params:
            p.grad = None
        logits = self._forward(self.params, self.frozen, self.buffers, x)  # [K, B, classes]
        lanes, batch = y.shape
        # each model's mean cross-entropy (classification_loss), the K models' in one call
        losses = (
            F.cross_entropy(
                logits.reshape(lanes * batch, -1), y.reshape(-1), reduction="none", label_smoothing=self._smoothing
            )
            .view(lanes, batch)
            .mean(1)
        )
        losses.sum().backward()
        grads = _gradients(params)
        with torch.no_grad():
            if self.masks:
                torch._foreach_mul_([grads[i] for i in self._masked_positions], self.masks)
            if self.kind == "SGD":
                self._sgd(params, grads)
            else:
                self._adam(params, grads)
            if self.masks:
                torch._foreach_mul_(self._masked_params, self.masks)
        return losses.detach()

    def _apply_lr(self, params: list[torch.Tensor], updates: _Tensors) -> None:
        """``params -= lr · updates``, per model."""
        if self._same_lr is not None:
            torch._foreach_add_(params, updates, alpha=-self._same_lr)
        else:
            torch._foreach_sub_(params, torch._foreach_mul(updates, self._lr_views))

    def _sgd(self, params: list[torch.Tensor], grads: _Tensors) -> None:
        h = self.hyper
        momentum, dampening, decay = h["momentum"], h["dampening"], h["weight_decay"]
        if decay != 0:
            grads = torch._foreach_add(grads, params, alpha=decay)
        if momentum != 0:
            names = self.trainable
            if all("momentum_buffer" in self.state.get(n, {}) for n in names):
                bufs = [self.state[n]["momentum_buffer"] for n in names]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - dampening)
            else:  # the first update: the buffers start as the gradients
                bufs = [g.detach().clone() for g in grads]
                for n, buf in zip(names, bufs):
                    self.state.setdefault(n, {})["momentum_buffer"] = buf
            if h["nesterov"]:
                torch._foreach_add_(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        self._apply_lr(params, grads)

    def _adam(self, params: list[torch.Tensor], grads: _Tensors) -> None:
        h = self.hyper
        beta1, beta2 = h["betas"]
        decay, eps = h["weight_decay"], h["eps"]
        names = self.trainable
        if not all("exp_avg" in self.state.get(n, {}) for n in names):
            for n, p in zip(names, params):
                self.state[n] = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            self.adam_step = 0.0
        self.adam_step += 1.0
        if decay != 0:
            if self.kind == "AdamW" or h.get("decoupled_weight_decay"):
                if self._same_lr is not None:
                    torch._foreach_mul_(params, 1 - self._same_lr * decay)
                else:
                    torch._foreach_mul_(params, [1 - view * decay for view in self._lr_views])
            else:
                grads = torch._foreach_add(grads, params, alpha=decay)
        exp_avgs = [self.state[n]["exp_avg"] for n in names]
        exp_avg_sqs = [self.state[n]["exp_avg_sq"] for n in names]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        bias_correction1 = 1 - beta1**self.adam_step
        bias_correction2_sqrt = (1 - beta2**self.adam_step) ** 0.5
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, eps)
        if self._same_lr is not None:
            torch._foreach_addcdiv_(params, exp_avgs, denominators, -(self._same_lr / bias_correction1))
        else:
            steps = torch._foreach_div(exp_avgs, denominators)
            torch._foreach_sub_(params, torch._foreach_mul(steps, [v / bias_correction1 for v in self._lr_views]))

    # evaluation ---------------------------------------------------------------------------------------
    def evaluate(self, loader: Any, *, batch_size: int | None = None) -> list[Evaluation]:
        """Every model's accuracy and mean cross-entropy over ``loader`` (one pass over its batches, the K
        models vmapped over each), in eval mode without gradients — what :func:`evaluate` gives each."""
        device = self.lr.device
        lanes = self.lanes
        correct = torch.zeros(lanes, dtype=torch.int64, device=device)
        loss_sum = torch.zeros(lanes, dtype=torch.float64, device=device)
        examples = 0
        self._base.eval()
        try:
            with torch.no_grad():
                for x, y in iterate_batches(loader):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    for xb, yb in zip(x.split(batch_size), y.split(batch_size)) if batch_size else ((x, y),):
                        logits = self._shared_forward(self.params, self.frozen, self.buffers, xb).float()
                        rows = yb.shape[0]
                        losses = F.cross_entropy(logits.reshape(lanes * rows, -1), yb.repeat(lanes), reduction="none")
                        loss_sum += losses.view(lanes, rows).sum(1).double()
                        correct += (logits.argmax(dim=2) == yb).sum(1)
                        examples += rows
        finally:
            self._base.train()
        if examples == 0:
            raise ValueError("evaluation data is empty")
        return [
            Evaluation(accuracy=int(c) / examples, loss=float(s) / examples, examples=examples)
            for c, s in zip(correct.tolist(), loss_sum.tolist())
        ]

    # moving state back into the models ----------------------------------------------------------------
    def export(self, lane: int) -> None:
        """Write model ``lane``'s weights, buffers and optimiser state into its module and its
        optimiser, as ``torch.optim`` would hold them after the same updates."""
        model, step = self.models[lane], self.steps[lane]
        with torch.no_grad():
            own = dict(model.named_parameters())
            for n in self.trainable:
                own[n].copy_(self.params[n][lane])
            for n in self.frozen_names:
                own[n].copy_(self.frozen[n][lane])
            buffers = dict(model.named_buffers())
            for n in self.buffer_names:
                buffers[n].copy_(self.buffers[n][lane])
        optimizer = _optimizer(step)
        names = {id(p): n for n, p in own.items()}
        for param in optimizer.param_groups[0]["params"]:
            stacked = self.state.get(names[id(param)], {})
            if not stacked:
                continue
            state = {key: value[lane].clone() for key, value in stacked.items()}
            if self.kind != "SGD":
                state = {"step": torch.tensor(self.adam_step, dtype=torch.float32), **state}
            optimizer.state[param] = state
