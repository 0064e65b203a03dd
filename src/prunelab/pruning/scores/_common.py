"""Helpers shared by the score functions: state preservation, seeded global RNG, masking, shapes.

Every score function must leave the user's model exactly as it found it (weights, buffers, dtype,
train/eval flags, ``requires_grad`` flags) and may draw randomness only from ``ctx.generator``.
Strategies that only *read* the weights (SNIP, GraSP) run on the user's model inside
:func:`preserved_state`; strategies that change weights (SynFlow's absolute values, NTK-SAP's fresh
initialisations) work on a :func:`copy.deepcopy` and never touch the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.pruning.base import ScoreContext

__all__ = [
    "seed_from",
    "seeded_global_rng",
    "preserved_state",
    "mask_scores",
    "model_names",
    "input_shape_option",
    "infer_input_shape",
    "loss_on_batch",
    "prunable_list",
    "kaiming_normal_",
    "AGGREGATES",
    "aggregate_option",
]

#: How SNIP/GraSP combine several pruning batches: ``total`` — the score of the gradients summed over
#: the batches (Synaptic-Flow, the GraSP authors' code); ``per_batch`` — per-batch scores weighted by
#: the batch's share of the examples and summed (the "Missing the Mark" OpenLTH fork).
AGGREGATES = ("total", "per_batch")


def seed_from(generator: torch.Generator) -> int:
    """A 63-bit seed drawn from ``generator`` (advances it deterministically)."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item())


@contextmanager
def seeded_global_rng(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG (CPU and, on CUDA, ``device``) forked and seeded from
    ``generator``: train-mode dropout inside the block is reproducible, and the caller's global RNG
    state is exactly as before afterwards."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    seed = seed_from(generator)
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


@contextmanager
def preserved_state(
    model: nn.Module, params: Sequence[torch.Tensor], *, generator: torch.Generator, device: torch.device
) -> Iterator[None]:
    """Let a block switch modes, update buffers (BN running statistics and counters) and enable
    gradients on ``params``; restore all of it on exit, even after an exception. The global RNG is
    forked and seeded from ``generator`` (see :func:`seeded_global_rng`). Parameter *values* are not
    snapshotted: blocks run here must only read them (``torch.autograd.grad`` never writes
    ``.grad``)."""
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buf, buf.detach().clone()) for buf in model.buffers()]
    flags = [(p, p.requires_grad) for p in params]
    try:
        with seeded_global_rng(generator, device):
            yield
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
        for module, training in modes:
            module.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def mask_scores(scores: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Multiply each score by its (bool) mask, so pruned weights score exactly 0; detach."""
    out = {}
    for name, score in scores.items():
        out[name] = (score * mask[name].to(score.device)).detach()
    return out


def prunable_list(ctx: ScoreContext) -> tuple[list[str], list[torch.Tensor]]:
    """The prunable names (in ``ctx.params`` order) and their parameters."""
    names = list(ctx.params)
    return names, [ctx.params[n] for n in names]


def model_names(model: nn.Module, params: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Map each prunable key to the parameter's name in ``model.named_parameters()``, matched by
    identity, so the same parameter can be found again in a deep copy of the model."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for key, p in params.items():
        if id(p) not in by_id:
            raise ValueError(f"prunable parameter {key!r} is not a parameter of the model being scored")
        out[key] = by_id[id(p)]
    return out


def input_shape_option(ctx: ScoreContext) -> tuple[int, ...] | None:
    """The ``input_shape`` option as a tuple of ints (one example, no batch dimension), or None."""
    shape = ctx.option("input_shape", None)
    if shape is None:
        return None
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"input_shape must be a sequence of ints such as (3, 32, 32), got {shape!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be non-empty with positive sizes, got {shape!r}")
    return shape


def infer_input_shape(ctx: ScoreContext, strategy: str) -> tuple[int, ...]:
    """The ``input_shape`` option, else the shape of one example of the first pruning batch.

    Raises a ``ValueError`` naming both ways out when neither is available."""
    shape = input_shape_option(ctx)
    if shape is not None:
        return shape
    if ctx.data is None:
        raise ValueError(
            f"{strategy} is data-free but needs the model's input shape: pass input_shape=(C, H, W) "
            f"(one example, without the batch dimension) or pruning data to infer it from"
        )
    for x, _ in ctx.batches():
        return tuple(int(s) for s in x.shape[1:])
    raise ValueError(f"{strategy}: the pruning data has no batches to infer the input shape from")


def loss_on_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy of ``model(x) / temperature`` against integer labels ``y``."""
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a tensor of logits, got {type(out).__name__}")
    if temperature != 1.0:
        out = out / temperature
    return F.cross_entropy(out, y)


def kaiming_normal_(tensor: torch.Tensor, generator: torch.Generator) -> None:
    """In-place N(0, 2 / fan_in) draw from ``generator`` (He et al. 2015, fan-in mode, ReLU gain),
    ``fan_in = shape[1] · prod(shape[2:])``. Draws on the generator's device, then copies."""
    if tensor.dim() < 2:
        raise ValueError("kaiming initialisation needs a tensor with at least 2 dimensions")
    fan_in = tensor.shape[1] * math.prod(tensor.shape[2:])
    std = math.sqrt(2.0 / fan_in)
    draw = torch.randn(tuple(tensor.shape), generator=generator, device=generator.device, dtype=tensor.dtype)
    with torch.no_grad():
        tensor.copy_(draw.mul_(std))


def aggregate_option(ctx: ScoreContext, strategy: str, default: str = "total") -> str:
    """The ``aggregate`` option, checked against :data:`AGGREGATES`."""
    value = ctx.option("aggregate", default)
    if value not in AGGREGATES:
        raise ValueError(f"{strategy} aggregate must be one of {', '.join(map(repr, AGGREGATES))}, got {value!r}")
    return value
