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

How it is computed, three ways that give the same kernel (``method``):

* ``"jacobian"`` — *Jacobian contraction* (Novak et al., "Fast Finite Width Neural Tangent Kernel",
  ICML 2022): per-example Jacobians of a block of examples, ``vmap(jacrev(f))`` in :mod:`torch.func`
  (one batched backward pass per output), then one matrix product per parameter tensor. Costs
  ``N·C`` backward passes to build, ``N1·N2·C·P`` (trace) to contract, ``N·C·P`` numbers of memory.
* ``"auto"`` (default) — the same, except that every ``nn.Linear`` layer is taken in factored form
  (:class:`_Layer`): its Jacobian is the outer product ``δ hᵀ`` of the gradient at its output and its
  input, so its kernel needs only ``δ`` and ``h`` per example — no ``C·out·in`` Jacobian is built, and
  an unmasked layer costs ``N1·N2·C·(out + in)`` instead of ``N1·N2·C·out·in``. Convolutions,
  normalisation and other tensors are contracted as above.
* ``"ntk_vps"`` — *NTK-vector products*: column ``(j, d)`` of the kernel is ``J(x1) (J(x2_j)ᵀ e_d)``,
  one single-example ``vjp`` then one ``jvp`` of the whole ``x1`` batch. No Jacobian in memory, but
  ``N2·C`` batched forward-mode passes.

``benchmarks/bench_ntk.py`` measures them against a naive per-example ``autograd.grad`` loop:
``"auto"`` is the fastest on every shape measured there (by far on fully connected networks, whose
Jacobian is mostly linear-layer outer products); vector products lose by a wide margin on
convolutional networks, whose forward pass costs many times their parameter count.

Memory: the Jacobians of a block of ``k`` examples hold ``k · C · P`` numbers (``P`` counting only
materialised tensors). ``chunk_size`` (examples per block) defaults to all examples when every
Jacobian fits :data:`DEFAULT_MEMORY_BYTES`, else to what keeps two blocks within it; blocks of
``x2`` are then recomputed for each block of ``x1`` (time traded for memory).

The model runs in eval mode (batch norm uses its running statistics, dropout is off), one example at
a time under ``vmap``, so the kernel does not depend on how the examples are batched; the caller's
model is left as it was (modes, ``requires_grad``, weights, buffers).
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
METHODS = ("auto", "jacobian", "ntk_vps")
DEFAULT_MEMORY_BYTES = 4 * 2**30
"""Budget for the Jacobians (or vector-product tangents) held at once when ``chunk_size`` is not
given (4 GiB: a 256-example, 10-output Jacobian of CIFAR ResNet-20 is 2.8 GB)."""
_EVALUATION_BYTES = 32 * 2**20  # temporaries of one vmap call; small blocks are reused by the allocator


class _Network:
    """``model`` as a pure function of its trainable parameters, with the mask folded in."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor] | None) -> None:
        named = dict(model.named_parameters())
        mask = dict(mask or {})
        unknown = [name for name in mask if name not in named]
        if unknown:
            raise ValueError(
                f"the mask names tensors that are not parameters of the model: {unknown[:3]}; "
                f"parameters include {', '.join(list(named)[:6])}"
            )
        for name, keep in mask.items():
            if tuple(keep.shape) != tuple(named[name].shape):
                raise ValueError(
                    f"mask {name!r} has shape {tuple(keep.shape)}, the parameter has {tuple(named[name].shape)}"
                )
        self.model = model
        masked = {
            n: p.detach() * torch.as_tensor(mask[n]).to(p.device, p.dtype) if n in mask else p.detach()
            for n, p in named.items()
        }
        self.params = {n: masked[n] for n, p in named.items() if p.requires_grad}
        self.constants: dict[str, torch.Tensor] = {n: masked[n] for n, p in named.items() if not p.requires_grad}
        self.constants.update({n: b.detach() for n, b in model.named_buffers()})
        # Which entries of each trainable tensor are parameters of the pruned network (None: all of them).
        self.keep: dict[str, torch.Tensor | None] = {}
        self.kept: dict[str, torch.Tensor | None] = {}
        for name, p in self.params.items():
            given = mask.get(name)
            if given is None or bool(torch.as_tensor(given).all()):
                self.keep[name] = self.kept[name] = None
            else:
                keep = torch.as_tensor(given).to(p.device)
                self.keep[name] = keep.to(p.dtype)
                self.kept[name] = keep.flatten().nonzero().squeeze(1)
        first = next(iter(named.values()), None)
        self.dtype = first.dtype if first is not None else torch.get_default_dtype()
        self.device = first.device if first is not None else torch.device("cpu")
        self.layers: dict[str, _Layer] = {}  # the linear layers whose kernel is taken in factored form

    def width(self, name: str) -> int:
        """Kept entries of trainable tensor ``name``: its number of Jacobian columns."""
        kept = self.kept[name]
        return self.params[name].numel() if kept is None else int(kept.numel())

    @property
    def num_parameters(self) -> int:
        """``P``: the number of trainable entries that are parameters of the pruned network."""
        return sum(self.width(n) for n in self.params)

    @property
    def jacobian_names(self) -> list[str]:
        """The trainable tensors whose per-example Jacobians are materialised."""
        factored = {n for layer in self.layers.values() for n in (layer.weight, layer.bias) if n}
        return [n for n in self.params if n not in factored]

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

    # linear layers in factored form ---------------------------------------------------------------
    def factor_linear_layers(self, x: torch.Tensor, kind: str) -> None:
        """Take the kernel of every ``nn.Linear`` that sees one input vector per example, is called
        once per forward pass and owns its trainable weight in factored form (see :class:`_Layer`).
        A masked weight of a full kernel would need ``N1·N2·C²·out`` numbers, so it is not factored."""
        owners: dict[int, int] = {}
        for module in self.model.modules():
            for p in module.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        names = {id(p): n for n, p in self.model.named_parameters()}
        candidates = {}
        for module_name, module in self.model.named_modules():
            if not isinstance(module, nn.Linear) or not module.weight.requires_grad or owners[id(module.weight)] != 1:
                continue
            weight = names[id(module.weight)]
            if kind == "full" and self.keep[weight] is not None:
                continue
            bias = names[id(module.bias)] if module.bias is not None and module.bias.requires_grad else None
            if bias is not None and owners[id(module.bias)] != 1:
                bias = None
            candidates[module_name] = _Layer(module, weight, bias)
        if not candidates:
            return
        calls: dict[str, list[int]] = {name: [] for name in candidates}

        def count(name: str) -> Callable[..., None]:
            return lambda _module, args, _out: calls[name].append(args[0].dim())

        handles = [layer.module.register_forward_hook(count(name)) for name, layer in candidates.items()]
        try:
            with torch.no_grad():
                self.batch(self.params, x[:1])
        finally:
            for handle in handles:
                handle.remove()
        self.layers = {name: layer for name, layer in candidates.items() if calls[name] == [2]}

    def per_example(
        self, x: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """For a block of examples: Jacobians of the materialised tensors (name → ``(n, C, P_t)``)
        and, per factored layer, ``(δ, h)``: ``δ = ∂f/∂z`` ``(n, C, out)`` at the layer's output
        ``z = Wh + b`` and its input ``h`` ``(n, in)``."""
        jac_names = self.jacobian_names
        differentiated = {n: self.params[n] for n in jac_names}
        fixed = {n: p for n, p in self.params.items() if n not in differentiated}
        probes = {
            name: torch.zeros(layer.module.out_features, dtype=self.dtype, device=self.device)
            for name, layer in self.layers.items()
        }

        def forward(params: dict[str, torch.Tensor], zero: dict[str, torch.Tensor], example: torch.Tensor):
            inputs: dict[str, torch.Tensor] = {}

            def probe(name: str) -> Callable[..., torch.Tensor]:
                def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
                    inputs[name] = args[0].squeeze(0)
                    return out + zero[name]  # ∂f/∂zero is δ at the layer's output

                return hook

            handles = [layer.module.register_forward_hook(probe(name)) for name, layer in self.layers.items()]
            try:
                return self.single({**params, **fixed}, example), inputs
            finally:
                for handle in handles:
                    handle.remove()

        (jac, deltas), inputs = vmap(jacrev(forward, argnums=(0, 1), has_aux=True), in_dims=(None, None, 0))(
            differentiated, probes, x
        )
        factors = {name: (deltas[name], inputs[name]) for name in self.layers}
        return {n: self.columns(n, jac[n]) for n in jac_names}, factors


class _Layer:
    """A linear layer ``z = Wh + b`` in factored form: ``∂f_c/∂W_ij = δ_ci h_j`` and ``∂f_c/∂b_i = δ_ci``,
    so its kernel is (sums over kept ``(i, j)`` only, ``M`` the weight's keep-mask)

        Θ_W(x, y)_ab = Σ_ij M_ij δ_ai(x) δ_bi(y) h_j(x) h_j(y)  =  (δ_a(x)·δ_b(y)) (h(x)·h(y))  unmasked,
        Θ_b(x, y)_ab = Σ_i m_i δ_ai(x) δ_bi(y),

    which costs ``N1·N2·out·in`` (masked trace) or ``N1·N2·C²·(out + in)`` (unmasked) and no Jacobian."""

    def __init__(self, module: nn.Linear, weight: str, bias: str | None) -> None:
        self.module, self.weight, self.bias = module, weight, bias

    def kernel(
        self, net: _Network, a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor], kind: str
    ) -> torch.Tensor:
        (da, ha), (db, hb) = a, b
        keep_w = net.keep[self.weight]
        keep_b = net.keep[self.bias] if self.bias else None
        na, c, out = da.shape
        nb = db.shape[0]
        if kind == "full":

            def delta_products(scale: torch.Tensor | None) -> torch.Tensor:
                left = da if scale is None else da * scale
                return (left.reshape(na * c, out) @ db.reshape(nb * c, out).T).view(na, c, nb, c).permute(0, 2, 1, 3)

            dense = delta_products(None)
            result = dense * (ha @ hb.T)[:, :, None, None]
            if self.bias:
                result = result + (dense if keep_b is None else delta_products(keep_b))
            return result
        if keep_w is None:
            gram = da.reshape(na, -1) @ db.reshape(nb, -1).T  # Σ_c δ_c(x)·δ_c(y)
            result = gram * (ha @ hb.T)
            if self.bias:
                result = result + (gram if keep_b is None else (da * keep_b).reshape(na, -1) @ db.reshape(nb, -1).T)
            return result
        result = torch.empty(na, nb, dtype=da.dtype, device=da.device)
        db_t, hb_t = db.permute(2, 1, 0), hb.T  # (out, C, nb), (in, nb)
        rows = max(1, _EVALUATION_BYTES // max(1, nb * max(out, ha.shape[1]) * da.element_size()))
        for chunk in _chunks(na, rows):
            r = chunk.stop - chunk.start
            paired = torch.bmm(da[chunk].permute(2, 0, 1), db_t)  # (out, r, nb): Σ_c δ_ci(x) δ_ci(y)
            through = (keep_w.T @ paired.reshape(out, -1)).view(-1, r, nb)  # (in, r, nb): Σ_i M_ij ·
            result[chunk] = through.mul_(ha[chunk].T[:, :, None]).mul_(hb_t[:, None, :]).sum(0)
            if self.bias:
                bias_keep = torch.ones(out, dtype=da.dtype, device=da.device) if keep_b is None else keep_b
                result[chunk] += (bias_keep @ paired.reshape(out, -1)).view(r, nb)
        return result


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
    method: str = "auto",
) -> torch.Tensor:
    """The empirical NTK ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` over the trainable parameters of ``model``.

    ``x1`` is ``(N1, ...)``, ``x2`` (default: ``x1``) ``(N2, ...)``. ``kind="full"`` returns
    ``(N1, N2, C, C)`` with ``[i, j, a, b] = ⟨∂f_a(x1_i)/∂θ, ∂f_b(x2_j)/∂θ⟩``; ``kind="trace"``
    returns ``(N1, N2)``, the sum over ``a = b``. ``C`` is the number of outputs per example (the
    model's output flattened after the batch dimension).

    ``mask`` (parameter name → bool tensor, e.g. a :class:`prunelab.masks.Mask`): the kernel of the
    pruned network ``f(x; θ ⊙ m)`` over its kept weights only — the model's pruned weights need not
    already be zero. ``chunk_size``: examples whose Jacobians are held at once (default: from
    :data:`DEFAULT_MEMORY_BYTES`). ``method``: ``"auto"`` (linear layers in factored form, the
    other tensors by Jacobian contraction), ``"jacobian"`` (contraction for every tensor) or
    ``"ntk_vps"`` (NTK-vector products); all three give the same kernel, at different costs
    (module docstring). The result has the parameters' dtype and device; run the model in float64
    (``model.double()``) for reference-grade values.
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
        probe = a[:1] if len(a) else b[:1]
        if len(probe) == 0:
            raise ValueError("x1 and x2 hold no examples")
        with torch.no_grad():
            outputs = net.batch(net.params, probe).shape[1]
        if method == "ntk_vps":
            return _ntk_vps(net, a, b, kind, chunk_size, outputs)
        if method == "auto":
            net.factor_linear_layers(probe, kind)
        return _contraction(net, a, b, kind, chunk_size, outputs, symmetric=x2 is None)
    finally:
        restore()


# --- Jacobian contraction -----------------------------------------------------------------------

Block = tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]


def _block(net: _Network, x: torch.Tensor, outputs: int, sub: int) -> Block:
    """:meth:`_Network.per_example` for a block of examples, evaluated ``sub`` examples at a time
    (small temporaries) into one buffer per tensor."""
    n = len(x)
    jac = {
        name: torch.empty(n, outputs, net.width(name), dtype=net.dtype, device=net.device)
        for name in net.jacobian_names
    }
    factors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in net.layers}
    for rows in _chunks(n, sub):
        part, part_factors = net.per_example(x[rows])
        for name, block in part.items():
            jac[name][rows] = block
        for name, pair in part_factors.items():
            factors[name].append(pair)
    joined = {
        name: (torch.cat([d for d, _ in pairs]), torch.cat([h for _, h in pairs])) for name, pairs in factors.items()
    }
    return jac, joined


def _contract(net: _Network, a: Block, b: Block, kind: str) -> torch.Tensor:
    """``Σ_t J_t(a) J_t(b)ᵀ``: one matrix product per materialised tensor (``(n_a, n_b)`` summed over
    outputs for the trace, else ``(n_a, n_b, C, C)``) plus the factored layers' kernels."""
    out = None
    for name, block_a in a[0].items():
        block_b = b[0][name]
        (na, c, _), nb = block_a.shape, block_b.shape[0]
        if kind == "trace":
            term = block_a.reshape(na, -1) @ block_b.reshape(nb, -1).T
        else:
            term = (block_a.reshape(na * c, -1) @ block_b.reshape(nb * c, -1).T).view(na, c, nb, c).permute(0, 2, 1, 3)
        out = term if out is None else out.add_(term)
    for name, layer in net.layers.items():
        term = layer.kernel(net, a[1][name], b[1][name], kind)
        out = term if out is None else out.add_(term)
    assert out is not None
    return out


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _contraction(
    net: _Network, a: torch.Tensor, b: torch.Tensor, kind: str, chunk_size: int | None, outputs: int, *, symmetric: bool
) -> torch.Tensor:
    itemsize = torch.empty((), dtype=net.dtype).element_size()
    materialised = sum(net.width(n) for n in net.jacobian_names)
    factored = sum(layer.module.out_features * outputs + layer.module.in_features for layer in net.layers.values())
    per_example = (outputs * materialised + factored) * itemsize
    everything = (len(a) if symmetric else len(a) + len(b)) * per_example
    if chunk_size is not None:
        block = _check_chunk_size(chunk_size)
    elif everything <= DEFAULT_MEMORY_BYTES:
        block = max(len(a), len(b), 1)
    else:
        block = max(1, DEFAULT_MEMORY_BYTES // (2 * per_example))
    dense = outputs * sum(net.params[n].numel() for n in net.jacobian_names) + factored
    sub = max(1, min(block, _EVALUATION_BYTES // max(1, dense * itemsize)))
    shape = (len(a), len(b)) if kind == "trace" else (len(a), len(b), outputs, outputs)
    result = torch.zeros(shape, dtype=net.dtype, device=net.device)
    blocks_b = list(_chunks(len(b), block))
    cached: Block | None = None
    for i, rows in enumerate(_chunks(len(a), block)):
        ja = _block(net, a[rows], outputs, sub)
        for j, cols in enumerate(blocks_b):
            if symmetric and j < i:
                continue  # the mirror image of a block already computed
            if symmetric and j == i:
                jb = ja
            elif len(blocks_b) == 1:
                cached = cached if cached is not None else _block(net, b[cols], outputs, sub)
                jb = cached
            else:
                jb = _block(net, b[cols], outputs, sub)
            values = _contract(net, ja, jb, kind)
            result[rows, cols] = values
            if symmetric and j > i:
                result[cols, rows] = values.transpose(0, 1) if kind == "trace" else values.permute(1, 0, 3, 2)
            del jb
    return result


# --- NTK-vector products ------------------------------------------------------------------------


def _ntk_vps(
    net: _Network, a: torch.Tensor, b: torch.Tensor, kind: str, chunk_size: int | None, outputs: int
) -> torch.Tensor:
    """Column ``(j, d)`` of the kernel is ``J(x1) · (J(x2_j)ᵀ e_d)``: one single-example ``vjp``,
    then one ``jvp`` of the whole ``x1`` batch; the vjp's pruned entries are zeroed so that the
    tangent moves kept weights only."""
    keep = {n: k for n, k in net.keep.items() if k is not None}

    def column(x: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
        pullback = vjp(lambda p: net.single(p, x), net.params)[1]  # (output, pullback) without has_aux
        (tangent,) = pullback(cotangent)
        tangent = {n: t * keep[n] if n in keep else t for n, t in tangent.items()}
        return jvp(lambda p: net.batch(p, a), (net.params,), (tangent,))[1]  # (N1, C)

    eye = torch.eye(outputs, dtype=net.dtype, device=net.device)
    itemsize = torch.empty((), dtype=net.dtype).element_size()
    fit = DEFAULT_MEMORY_BYTES // max(1, 2 * outputs * sum(p.numel() for p in net.params.values()) * itemsize)
    size = _check_chunk_size(chunk_size) if chunk_size is not None else max(1, min(len(b), 64 // max(1, outputs), fit))
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
    return {
        "trace": float(eig.sum()),
        "lambda_max": float(eig[0]),
        "lambda_min": float(eig[-1]),
        "condition": condition_number(eig),
    }


def compare_kernels(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Every distance of ``other`` from ``reference``: kernel distance, relative Frobenius difference
    unscaled and after optimal scaling, and the optimal scale ``c*`` (``reference ≈ c*·other``)."""
    return {
        "kernel_distance": kernel_distance(reference, other),
        "rel_frobenius": relative_frobenius_difference(reference, other),
        "rel_frobenius_scaled": relative_frobenius_difference(reference, other, scaled=True),
        "scale": optimal_scale(reference, other),
    }
