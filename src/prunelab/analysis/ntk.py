"""The empirical neural tangent kernel of a (pruned) network, its spectrum, and distances between kernels.

For a network ``f(x; θ) ∈ R^C`` with trainable parameters ``θ ∈ R^P`` and Jacobian ``J(x) = ∂f(x)/∂θ``
(``C × P``), the empirical NTK of two inputs is the ``C × C`` matrix

    Θ(x, x') = J(x) J(x')ᵀ,        Θ_tr(x, x') = Σ_c Θ(x, x')_cc = Σ_c ⟨∂f_c(x)/∂θ, ∂f_c(x')/∂θ⟩.

:func:`empirical_ntk` returns ``Θ`` for all pairs of two batches (``kind="full"``, shape
``(N1, N2, C, C)``) or ``Θ_tr`` (``kind="trace"``, shape ``(N1, N2)``).

A pruned network's parameters are its *kept* weights: with a mask ``m`` the network computes
``f(x; θ ⊙ m)`` and the sum over ``P`` runs over the kept entries only (the Jacobian columns of pruned
weights are dropped, not merely evaluated at a zero weight). Parameters the mask does not name
(biases, batch-norm affine parameters, unpruned layers) are all kept; parameters with
``requires_grad=False`` are constants of the network and have no column.

How it is computed (Novak et al., "Fast Finite Width Neural Tangent Kernel", ICML 2022, call this
*Jacobian contraction*): per-example Jacobians of a chunk of examples, ``vmap(jacrev(f))`` in
:mod:`torch.func` (one batched backward pass per output), then one matrix product per parameter
tensor. The alternative, *NTK-vector products* (``vjp`` of one example's output then a ``jvp``
of the whole batch, per output column), needs no Jacobian in memory but costs ``N2·C`` batched
forward-mode passes; ``benchmarks/bench_ntk.py`` measures both (``method="ntk_vps"``), and the
contraction is the faster on every shape measured there, by far on convolutional networks (whose
forward pass costs many times their parameter count) — so it is the default.

Memory: the Jacobian chunk of ``k`` examples holds ``k · C · P`` numbers. ``chunk_size`` (examples)
defaults to what keeps two chunks within :data:`DEFAULT_MEMORY_BYTES`; when the Jacobians of all of
``x2`` fit that budget they are computed once and kept, otherwise they are recomputed per chunk of
``x1``. The model runs in eval mode (batch norm uses its running statistics, dropout is off), one
example at a time under ``vmap``, so the kernel does not depend on how the examples are batched; the
caller's model is left as it was (modes, ``requires_grad``, weights, buffers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "KINDS",
    "METHODS",
    "empirical_ntk",
    "ntk_eigenvalues",
    "ntk_trace",
    "condition_number",
    "kernel_distance",
    "optimal_scale",
    "relative_frobenius_difference",
    "kernel_stats",
    "compare_kernels",
]

KINDS = ("trace", "full")
METHODS = ("jacobian", "ntk_vps")
DEFAULT_MEMORY_BYTES = 2 * 2**30
"""Budget for the Jacobians held at once when ``chunk_size`` is not given (2 GiB)."""
_EVALUATION_BYTES = 32 * 2**20  # temporaries of one vmap call; small blocks are reused by the allocator


class _Network:
    """``model`` as a pure function of its trainable parameters, with the mask folded in."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor] | None) -> None:
        named = dict(model.named_parameters())
        mask = dict(mask or {})
        unknown = [name for name in mask if name not in named]
        if unknown:
            raise ValueError(f"the mask names tensors that are not parameters of the model: {unknown[:3]}; "
                             f"parameters include {', '.join(list(named)[:6])}")
        for name, keep in mask.items():
            if tuple(keep.shape) != tuple(named[name].shape):
                raise ValueError(f"mask {name!r} has shape {tuple(keep.shape)}, the parameter has {tuple(named[name].shape)}")
        self.model = model
        masked = {n: p.detach() * torch.as_tensor(mask[n]).to(p.device, p.dtype) if n in mask else p.detach()
                  for n, p in named.items()}
        self.params = {n: masked[n] for n, p in named.items() if p.requires_grad}
        self.constants: dict[str, torch.Tensor] = {n: masked[n] for n, p in named.items() if not p.requires_grad}
        self.constants.update({n: b.detach() for n, b in model.named_buffers()})
        # Flat indices of the kept entries of each masked trainable tensor (None: every entry is kept).
        self.kept: dict[str, torch.Tensor | None] = {}
        for name, p in self.params.items():
            keep = mask.get(name)
            if keep is None or bool(torch.as_tensor(keep).all()):
                self.kept[name] = None
            else:
                self.kept[name] = torch.as_tensor(keep).to(p.device).flatten().nonzero().squeeze(1)
        first = next(iter(named.values()), None)
        self.dtype = first.dtype if first is not None else torch.get_default_dtype()
        self.device = first.device if first is not None else torch.device("cpu")

    def width(self, name: str) -> int:
        """Kept entries of trainable tensor ``name``: its number of Jacobian columns."""
        kept = self.kept[name]
        return self.params[name].numel() if kept is None else int(kept.numel())

    @property
    def num_parameters(self) -> int:
        """``P``: the number of trainable entries that are parameters of the pruned network."""
        return sum(self.width(n) for n in self.params)

    @property
    def dense_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def batch(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``f`` on a batch, outputs flattened to ``(N, C)``."""
        out = functional_call(self.model, {**params, **self.constants}, (x,))
        return out.reshape(out.shape[0], -1)

    def single(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``f`` on one example (no batch dimension), outputs ``(C,)``."""
        return self.batch(params, x.unsqueeze(0)).squeeze(0)

    def columns(self, name: str, block: torch.Tensor) -> torch.Tensor:
        """``block`` (``(..., *shape)`` of tensor ``name``) flattened to its kept columns ``(..., P_t)``."""
        shape = self.params[name].shape
        flat = block.reshape(*block.shape[: block.dim() - len(shape)], -1)
        kept = self.kept[name]
        return flat if kept is None else flat.index_select(-1, kept)


def _restore_modes(model: nn.Module) -> Callable[[], None]:
    modes = [(module, module.training) for module in model.modules()]

    def restore() -> None:
        for module, training in modes:
            module.training = training

    return restore


def _as_batch(x: torch.Tensor, net: _Network, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError(f"{name} must be a tensor of examples with a leading batch dimension")
    return x.to(device=net.device, dtype=net.dtype if x.is_floating_point() else x.dtype)


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of examples, got {chunk_size!r}")
    return chunk_size


def empirical_ntk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    mask: Mapping[str, torch.Tensor] | None = None,
    kind: str = "trace",
    chunk_size: int | None = None,
    method: str = "jacobian",
) -> torch.Tensor:
    """The empirical NTK ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` over the trainable parameters of ``model``.

    ``x1`` is ``(N1, ...)``, ``x2`` (default: ``x1``) ``(N2, ...)``. ``kind="full"`` returns
    ``(N1, N2, C, C)`` with ``[i, j, a, b] = ⟨∂f_a(x1_i)/∂θ, ∂f_b(x2_j)/∂θ⟩``; ``kind="trace"``
    returns ``(N1, N2)``, the sum over ``a = b``. ``C`` is the number of outputs per example (the
    model's output flattened after the batch dimension).

    ``mask`` (parameter name → bool tensor, e.g. a :class:`prunelab.masks.Mask`): the kernel of the
    pruned network ``f(x; θ ⊙ m)`` over its kept weights only — the model's pruned weights need not
    already be zero. ``chunk_size``: examples per Jacobian chunk (default: from a memory budget,
    see :data:`DEFAULT_MEMORY_BYTES`). ``method``: ``"jacobian"`` (contraction, the default) or
    ``"ntk_vps"`` (vector products, for comparison). The result has the parameters' dtype and
    device; run the model in float64 (``model.double()``) for reference-grade values.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    restore = _restore_modes(model)
    model.eval()
    try:
        net = _Network(model, mask)
        if not net.params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters, so its NTK is empty")
        a = _as_batch(x1, net, "x1")
        b = a if x2 is None else _as_batch(x2, net, "x2")
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"x1 and x2 examples differ in shape: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
        with torch.no_grad():
            outputs = net.batch(net.params, a[:1]).shape[1] if len(a) else net.batch(net.params, b[:1]).shape[1]
        if method == "ntk_vps":
            return _ntk_vps(net, a, b, kind, chunk_size, outputs)
        return _contraction(net, a, b, kind, chunk_size, outputs, symmetric=x2 is None)
    finally:
        restore()


# --- Jacobian contraction -----------------------------------------------------------------------

def _jacobian_block(net: _Network, x: torch.Tensor, outputs: int, sub: int) -> dict[str, torch.Tensor]:
    """Per-example Jacobians of a block of examples over the kept columns: name → ``(n, C, P_t)``,
    evaluated ``sub`` examples at a time (small temporaries) into one buffer per tensor."""
    n = len(x)
    out = {name: torch.empty(n, outputs, net.width(name), dtype=net.dtype, device=net.device) for name in net.params}
    per_example = vmap(jacrev(net.single), in_dims=(None, 0))
    for rows in _chunks(n, sub):
        for name, block in per_example(net.params, x[rows]).items():
            out[name][rows] = net.columns(name, block)
    return out


def _contract(ja: dict[str, torch.Tensor], jb: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """``Σ_t J_t(a) J_t(b)ᵀ`` as one matrix product per tensor: ``(n_a, n_b)`` summed over outputs for
    the trace, else ``(n_a, n_b, C, C)``."""
    out = None
    for name, block_a in ja.items():
        block_b = jb[name]
        (na, c, _), nb = block_a.shape, block_b.shape[0]
        if kind == "trace":
            term = block_a.reshape(na, -1) @ block_b.reshape(nb, -1).T
        else:
            term = (block_a.reshape(na * c, -1) @ block_b.reshape(nb * c, -1).T).view(na, c, nb, c).permute(0, 2, 1, 3)
        out = term if out is None else out.add_(term)
    assert out is not None
    return out


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _contraction(net: _Network, a: torch.Tensor, b: torch.Tensor, kind: str, chunk_size: int | None,
                 outputs: int, *, symmetric: bool) -> torch.Tensor:
    itemsize = torch.empty((), dtype=net.dtype).element_size()
    per_example = outputs * net.num_parameters * itemsize
    everything = (len(a) if symmetric else len(a) + len(b)) * per_example
    if chunk_size is not None:
        block = _check_chunk_size(chunk_size)
    elif everything <= DEFAULT_MEMORY_BYTES:
        block = max(len(a), len(b), 1)
    else:
        block = max(1, DEFAULT_MEMORY_BYTES // (2 * per_example))
    sub = max(1, min(block, _EVALUATION_BYTES // max(1, outputs * net.dense_parameters * itemsize)))
    shape = (len(a), len(b)) if kind == "trace" else (len(a), len(b), outputs, outputs)
    result = torch.zeros(shape, dtype=net.dtype, device=net.device)
    blocks_b = list(_chunks(len(b), block))
    cached: dict[str, torch.Tensor] | None = None
    for i, rows in enumerate(_chunks(len(a), block)):
        ja = _jacobian_block(net, a[rows], outputs, sub)
        for j, cols in enumerate(blocks_b):
            if symmetric and j < i:
                continue  # the mirror image of a block already computed
            if symmetric and j == i:
                jb = ja
            elif len(blocks_b) == 1:
                cached = cached if cached is not None else _jacobian_block(net, b[cols], outputs, sub)
                jb = cached
            else:
                jb = _jacobian_block(net, b[cols], outputs, sub)
            values = _contract(ja, jb, kind)
            result[rows, cols] = values
            if symmetric and j > i:
                result[cols, rows] = values.transpose(0, 1) if kind == "trace" else values.permute(1, 0, 3, 2)
            del jb
    return result


# --- NTK-vector products ------------------------------------------------------------------------

def _ntk_vps(net: _Network, a: torch.Tensor, b: torch.Tensor, kind: str, chunk_size: int | None,
             outputs: int) -> torch.Tensor:
    """Column ``(j, d)`` of the kernel is ``J(x1) · (J(x2_j)ᵀ e_d)``: one single-example ``vjp``,
    then one ``jvp`` of the whole ``x1`` batch; the vjp's pruned entries are zeroed so that the
    tangent moves kept weights only."""
    zero_masks = {n: torch.zeros(p.numel(), dtype=p.dtype, device=p.device).index_fill_(0, k, 1).view_as(p)
                  for n, p in net.params.items() if (k := net.kept[n]) is not None}

    def column(x: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
        _, pullback = vjp(lambda p: net.single(p, x), net.params)
        (tangent,) = pullback(cotangent)
        tangent = {n: t * zero_masks[n] if n in zero_masks else t for n, t in tangent.items()}
        return jvp(lambda p: net.batch(p, a), (net.params,), (tangent,))[1]  # (N1, C)

    eye = torch.eye(outputs, dtype=net.dtype, device=net.device)
    size = _check_chunk_size(chunk_size) if chunk_size is not None else max(1, min(len(b), 64 // max(1, outputs)))
    full = torch.zeros(len(a), len(b), outputs, outputs, dtype=net.dtype, device=net.device)
    for cols in _chunks(len(b), size):
        xs = b[cols].repeat_interleave(outputs, dim=0)
        cotangents = eye.repeat(cols.stop - cols.start, 1)
        values = vmap(column)(xs, cotangents)  # (k·C, N1, C): [j·C + d, i, c] = Θ[i, j, c, d]
        full[:, cols] = values.view(cols.stop - cols.start, outputs, len(a), outputs).permute(2, 0, 3, 1)
    return full.diagonal(dim1=2, dim2=3).sum(-1) if kind == "trace" else full


# --- spectra and distances ----------------------------------------------------------------------

def _square(kernel: torch.Tensor) -> torch.Tensor:
    """A kernel of one batch against itself as a square matrix (``(N·C, N·C)`` for a full kernel)."""
    if kernel.dim() == 2 and kernel.shape[0] == kernel.shape[1]:
        return kernel
    if kernel.dim() == 4 and kernel.shape[0] == kernel.shape[1] and kernel.shape[2] == kernel.shape[3]:
        n, _, c, _ = kernel.shape
        return kernel.permute(0, 2, 1, 3).reshape(n * c, n * c)
    raise ValueError(f"need the kernel of one batch against itself, (N, N) or (N, N, C, C); got {tuple(kernel.shape)}")


def ntk_eigenvalues(kernel: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of ``Θ(x, x)``, largest first, in float64 (the kernel is symmetrised first,
    ``(K + Kᵀ)/2``, to remove round-off asymmetry). A full kernel is the ``(N·C, N·C)`` matrix."""
    square = _square(kernel).to(torch.float64)
    return torch.linalg.eigvalsh((square + square.T) / 2).flip(0)


def ntk_trace(kernel: torch.Tensor) -> float:
    """``tr Θ(x, x) = Σ_i Σ_c ‖∂f_c(x_i)/∂θ‖²``, the sum of the eigenvalues."""
    return float(_square(kernel).to(torch.float64).diagonal().sum())


def condition_number(kernel_or_eigenvalues: torch.Tensor) -> float:
    """``λ_max / λ_min`` of ``Θ(x, x)`` (or of given eigenvalues); ``inf`` when ``λ_min ≤ 0``, i.e.
    the kernel is singular to working precision (more examples × outputs than kept parameters, or a
    disconnected network)."""
    eig = kernel_or_eigenvalues if kernel_or_eigenvalues.dim() == 1 else ntk_eigenvalues(kernel_or_eigenvalues)
    largest, smallest = float(eig.max()), float(eig.min())
    return largest / smallest if smallest > 0 else math.inf


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"kernels differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a.to(torch.float64).flatten(), b.to(torch.float64).flatten().to(a.device)


def _norms(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    a, b = _pair(a, b)
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        raise ValueError("a kernel is identically zero (no parameter reaches the output), so its distance is undefined")
    return float(a @ b), na, nb


def kernel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``1 − ⟨A, B⟩_F / (‖A‖_F ‖B‖_F)``: 0 when the kernels are proportional with a positive factor,
    blind to scale (Fort et al. 2020's kernel distance). In ``[0, 2]``; ≤ 1 for two kernels with
    non-negative inner product, as NTKs of the same inputs have."""
    inner, na, nb = _norms(a, b)
    return 1.0 - inner / (na * nb)


def optimal_scale(a: torch.Tensor, b: torch.Tensor) -> float:
    """``c* = argmin_c ‖A − cB‖_F = ⟨A, B⟩_F / ‖B‖_F²``."""
    inner, _, nb = _norms(a, b)
    return inner / nb**2


def relative_frobenius_difference(a: torch.Tensor, b: torch.Tensor, *, scaled: bool = False) -> float:
    """``‖A − B‖_F / ‖A‖_F``, or with ``scaled=True`` the difference after the best scaling of ``B``:

        min_c ‖A − cB‖_F / ‖A‖_F = sqrt(1 − ρ²),    ρ = ⟨A, B⟩_F / (‖A‖_F ‖B‖_F),

    since ``‖A − c*B‖² = ‖A‖² − ⟨A, B⟩²/‖B‖²`` at ``c* =`` :func:`optimal_scale`. ``A`` is the
    reference (e.g. the dense kernel). With ``δ =`` :func:`kernel_distance`, ``ρ = 1 − δ``."""
    inner, na, nb = _norms(a, b)
    x, y = _pair(a, b)
    # The residual itself, not sqrt(1 − ρ²), which loses half the digits when ρ is close to 1.
    scale = inner / nb**2 if scaled else 1.0
    return float((x - scale * y).norm()) / na


def kernel_stats(kernel: torch.Tensor) -> dict[str, Any]:
    """Trace, largest and smallest eigenvalue and condition number of ``Θ(x, x)``."""
    eig = ntk_eigenvalues(kernel)
    return {"trace": float(eig.sum()), "lambda_max": float(eig[0]), "lambda_min": float(eig[-1]),
            "condition": condition_number(eig)}


def compare_kernels(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Every distance of ``other`` from ``reference``: kernel distance, relative Frobenius difference
    unscaled and after optimal scaling, and the optimal scale ``c*`` (``reference ≈ c*·other``)."""
    return {
        "kernel_distance": kernel_distance(reference, other),
        "rel_frobenius": relative_frobenius_difference(reference, other),
        "rel_frobenius_scaled": relative_frobenius_difference(reference, other, scaled=True),
        "scale": optimal_scale(reference, other),
    }
