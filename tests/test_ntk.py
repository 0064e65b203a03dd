"""The empirical NTK: against an explicit per-example Jacobian, its invariances, masks, the linear
model's closed form, the model left untouched, spectra and kernel distances."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from prunelab.analysis.ntk import (
    compare_kernels,
    condition_number,
    empirical_ntk,
    kernel_distance,
    kernel_stats,
    ntk_eigenvalues,
    ntk_trace,
    optimal_scale,
    relative_frobenius_difference,
)


def small_convnet() -> nn.Module:
    """Conv → batch norm (with non-trivial running statistics) → ReLU → linear, in float64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    model = model.double()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.normal_()
    return model


def explicit_jacobian(model: nn.Module, x: torch.Tensor, keep: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``(N, C, P)``: one autograd.grad per example and output, in eval mode, over the trainable
    parameters; with ``keep``, the pruned network (weights ⊙ keep) and only its kept entries."""
    model = copy.deepcopy(model).eval()
    keep = keep or {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in keep:
                p.mul_(keep[name].to(p.dtype))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    rows = []
    for i in range(len(x)):
        out = model(x[i : i + 1]).reshape(-1)
        per_output = []
        for c in range(out.numel()):
            grads = torch.autograd.grad(out[c], [p for _, p in named], retain_graph=True, allow_unused=True)
            cols = []
            for (name, p), g in zip(named, grads):
                g = torch.zeros_like(p) if g is None else g
                cols.append(g.flatten()[keep[name].flatten()] if name in keep else g.flatten())
            per_output.append(torch.cat(cols))
        rows.append(torch.stack(per_output))
    return torch.stack(rows)


def inputs(n: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_full_and_trace_kernels_equal_the_explicit_jacobian_product():
    model, x = small_convnet(), inputs()
    jac = explicit_jacobian(model, x)
    full = torch.einsum("icp,jdp->ijcd", jac, jac)
    assert empirical_ntk(model, x, kind="full").shape == (7, 7, 4, 4)
    torch.testing.assert_close(empirical_ntk(model, x, kind="full"), full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(empirical_ntk(model, x), full.diagonal(dim1=2, dim2=3).sum(-1), rtol=1e-10, atol=1e-10)


def test_two_batches_and_both_methods_agree_with_the_explicit_product():
    model, x, y = small_convnet(), inputs(5, 1), inputs(3, 2)
    full = torch.einsum("icp,jdp->ijcd", explicit_jacobian(model, x), explicit_jacobian(model, y))
    for method in ("jacobian", "ntk_vps"):
        got = empirical_ntk(model, x, y, kind="full", method=method, chunk_size=2)
        assert got.shape == (5, 3, 4, 4)
        torch.testing.assert_close(got, full, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(
            empirical_ntk(model, x, y, method=method), full.diagonal(dim1=2, dim2=3).sum(-1), rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 100])
def test_invariant_to_chunk_size(chunk_size):
    model, x = small_convnet(), inputs()
    reference = empirical_ntk(model, x, kind="full")
    torch.testing.assert_close(
        empirical_ntk(model, x, kind="full", chunk_size=chunk_size), reference, rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        empirical_ntk(model, x, x[:4], chunk_size=chunk_size),
        reference[:, :4].diagonal(dim1=2, dim2=3).sum(-1),
        rtol=1e-12,
        atol=1e-12,
    )


def test_invariant_to_batch_order_and_batch_composition():
    model, x = small_convnet(), inputs()
    order = torch.tensor([4, 0, 6, 2, 1, 5, 3])
    reference = empirical_ntk(model, x)
    torch.testing.assert_close(empirical_ntk(model, x[order]), reference[order][:, order], rtol=1e-12, atol=1e-12)
    # an example's kernel values do not depend on which other examples share its batch (eval-mode BN)
    torch.testing.assert_close(empirical_ntk(model, x[2:5]), reference[2:5, 2:5], rtol=1e-12, atol=1e-12)


def test_linear_model_trace_kernel_is_outputs_times_gram_matrix():
    torch.manual_seed(3)
    model = nn.Linear(5, 3, bias=False).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    gram = x @ x.T
    torch.testing.assert_close(empirical_ntk(model, x), 3 * gram, rtol=1e-12, atol=1e-12)
    full = empirical_ntk(model, x, kind="full")  # ∂f_a/∂W_bj = δ_ab x_j, so Θ = XXᵀ ⊗ I_C
    torch.testing.assert_close(full, gram[:, :, None, None] * torch.eye(3, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_masked_linear_model_has_the_kernel_of_its_kept_connections():
    torch.manual_seed(4)
    model = nn.Linear(5, 3, bias=False).double()
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    keep = torch.rand(3, 5) < 0.5
    keep[0] = False  # output 0 has no connection left
    m = keep.double()
    # ∂f_a/∂W_aj = x_j for kept (a, j) only: Θ_ab(x, y) = δ_ab Σ_j m_aj x_j y_j
    expected = torch.einsum("aj,nj,kj->nka", m, x, y)
    full = empirical_ntk(model, x, y, mask={"weight": keep}, kind="full")
    torch.testing.assert_close(full.diagonal(dim1=2, dim2=3), expected, rtol=1e-12, atol=1e-12)
    off_diagonal = full * (1 - torch.eye(3, dtype=torch.float64))
    assert bool((off_diagonal == 0).all())
    torch.testing.assert_close(
        empirical_ntk(model, x, y, mask={"weight": keep}), expected.sum(-1), rtol=1e-12, atol=1e-12
    )


def test_pruned_weights_contribute_nothing():
    model, x = small_convnet(), inputs()
    gen = torch.Generator().manual_seed(5)
    keep = {"0.weight": torch.rand(3, 2, 3, 3, generator=gen) < 0.5, "4.weight": torch.rand(4, 48, generator=gen) < 0.3}
    jac = explicit_jacobian(model, x, keep)  # kept columns only, network with pruned weights at zero
    expected = torch.einsum("icp,jdp->ijcd", jac, jac)
    got = empirical_ntk(model, x, mask=keep, kind="full")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # the values the model holds at pruned positions are irrelevant: the mask defines the network
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for name, k in keep.items():
            dict(noisy.named_parameters())[name][~k] = 123.0
    torch.testing.assert_close(empirical_ntk(noisy, x, mask=keep, kind="full"), got, rtol=1e-12, atol=1e-12)
    # a column is dropped, not a zero weight differentiated: zeroing the weights alone changes the kernel
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for name, k in keep.items():
            dict(zeroed.named_parameters())[name].mul_(k)
    assert not torch.allclose(empirical_ntk(zeroed, x), got.diagonal(dim1=2, dim2=3).sum(-1))


def test_fully_masked_tensor_equals_a_frozen_zero_tensor():
    model, x = small_convnet(), inputs(4)
    frozen = copy.deepcopy(model)
    with torch.no_grad():
        frozen[0].weight.zero_()
    frozen[0].weight.requires_grad_(False)
    masked = empirical_ntk(model, x, mask={"0.weight": torch.zeros(3, 2, 3, 3, dtype=torch.bool)})
    torch.testing.assert_close(masked, empirical_ntk(frozen, x), rtol=1e-12, atol=1e-12)


def test_frozen_parameters_have_no_column():
    model, x = small_convnet(), inputs(4)
    model[4].bias.requires_grad_(False)
    jac = explicit_jacobian(model, x)
    torch.testing.assert_close(empirical_ntk(model, x), torch.einsum("icp,jcp->ij", jac, jac), rtol=1e-10, atol=1e-10)


def test_model_is_left_unchanged():
    model, x = small_convnet(), inputs(4)
    model.train()
    model[1].eval()  # a mixed-mode model must come back mixed
    model[0].bias.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    empirical_ntk(model, x, mask={"4.weight": torch.rand(4, 48) < 0.5}, kind="full")
    empirical_ntk(model, x, method="ntk_vps")
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True]
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN statistics included
    assert all(p.grad is None for p in model.parameters())


def test_batch_norm_runs_in_eval_mode():
    model, x = small_convnet(), inputs(5)
    evaluated = copy.deepcopy(model).eval()
    torch.testing.assert_close(empirical_ntk(model.train(), x), empirical_ntk(evaluated, x), rtol=0, atol=0)
    jac = explicit_jacobian(model, x)  # explicit_jacobian evaluates in eval mode
    torch.testing.assert_close(empirical_ntk(model, x), torch.einsum("icp,jcp->ij", jac, jac), rtol=1e-10, atol=1e-10)


def test_bad_arguments_fail_clearly():
    model, x = small_convnet(), inputs(3)
    with pytest.raises(ValueError, match="kind"):
        empirical_ntk(model, x, kind="diag")
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(model, x, method="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        empirical_ntk(model, x, chunk_size=0)
    with pytest.raises(ValueError, match="not parameters"):
        empirical_ntk(model, x, mask={"fc.weight": torch.ones(4, 48, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        empirical_ntk(model, x, mask={"4.weight": torch.ones(48, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="differ in shape"):
        empirical_ntk(model, x, torch.randn(2, 2, 5, 5, dtype=torch.float64))


# --- spectra and distances -------------------------------------------------------------------------


def test_eigenvalues_trace_and_condition_number():
    kernel = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    assert ntk_eigenvalues(kernel).tolist() == pytest.approx([3.0, 1.0])
    assert ntk_trace(kernel) == 4.0
    assert condition_number(kernel) == pytest.approx(3.0)
    assert condition_number(torch.tensor([[1.0, 1.0], [1.0, 1.0]])) == math.inf  # singular
    stats = kernel_stats(kernel)
    assert stats == pytest.approx({"trace": 4.0, "lambda_max": 3.0, "lambda_min": 1.0, "condition": 3.0})


def test_full_kernel_spectrum_is_the_nc_by_nc_matrix():
    torch.manual_seed(6)
    model = nn.Linear(4, 3, bias=False).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    full = empirical_ntk(model, x, kind="full")  # XXᵀ ⊗ I_3: each Gram eigenvalue three times
    gram_eig = torch.linalg.eigvalsh(x @ x.T).flip(0)
    torch.testing.assert_close(ntk_eigenvalues(full), gram_eig.repeat_interleave(3), rtol=1e-10, atol=1e-10)
    assert ntk_trace(full) == pytest.approx(3 * float(torch.trace(x @ x.T)))
    with pytest.raises(ValueError, match="itself"):
        ntk_eigenvalues(torch.ones(2, 3))


def test_kernel_distance_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # ⟨A, B⟩ = 2, ‖A‖ = √2, ‖B‖ = 2 → 1 − 2/(2√2)
    assert kernel_distance(a, b) == pytest.approx(1 - 1 / math.sqrt(2))
    assert kernel_distance(a, 5 * a) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(a, a) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="shape"):
        kernel_distance(a, torch.ones(3, 3))
    with pytest.raises(ValueError, match="zero"):
        kernel_distance(a, torch.zeros(2, 2))


def test_relative_frobenius_difference_and_its_optimal_scaling():
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(6, 6, dtype=torch.float64, generator=gen)
    b = 0.3 * a + 0.1 * torch.randn(6, 6, dtype=torch.float64, generator=gen)
    assert relative_frobenius_difference(a, b) == pytest.approx(float((a - b).norm() / a.norm()))
    # the closed form against a brute-force minimisation over the scale
    brute = min(float((a - c * b).norm()) for c in torch.linspace(0, 6, 601, dtype=torch.float64)) / float(a.norm())
    fine_c = optimal_scale(a, b)
    assert float((a - fine_c * b).norm() / a.norm()) <= brute + 1e-12
    assert relative_frobenius_difference(a, b, scaled=True) == pytest.approx(float((a - fine_c * b).norm() / a.norm()))
    assert fine_c == pytest.approx(float((a * b).sum() / (b * b).sum()))
    rho = 1 - kernel_distance(a, b)
    assert relative_frobenius_difference(a, b, scaled=True) == pytest.approx(math.sqrt(1 - rho**2))
    assert relative_frobenius_difference(a, 2 * a, scaled=True) == pytest.approx(0.0, abs=1e-15)
    assert relative_frobenius_difference(a, 2 * a) == pytest.approx(1.0)
    summary = compare_kernels(a, 2 * a)
    assert summary["scale"] == pytest.approx(0.5) and summary["kernel_distance"] == pytest.approx(0.0, abs=1e-15)


class _Reuse(nn.Module):
    """A linear layer applied twice, one applied to a sequence, a frozen bias: the shapes the
    factored form of linear layers must recognise and leave to the Jacobian."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 6)
        self.twice = nn.Linear(6, 6)
        self.sequence = nn.Linear(3, 2)
        self.fc = nn.Linear(6, 3)
        self.fc.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.twice(torch.tanh(self.twice(torch.tanh(self.first(x))))))
        seq = self.sequence(h.view(-1, 2, 3)).flatten(1)  # (N, 2 positions, 3) → (N, 4)
        return self.fc(h) + seq[:, :3]


@pytest.mark.parametrize("method", ["auto", "jacobian", "ntk_vps"])
@pytest.mark.parametrize("kind", ["trace", "full"])
def test_every_method_gives_the_explicit_kernel_of_a_masked_mlp(method, kind):
    torch.manual_seed(8)
    model = _Reuse().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(9)
    keep = {
        "first.weight": torch.rand(6, 4, generator=gen) < 0.5,
        "first.bias": torch.rand(6, generator=gen) < 0.5,
        "fc.weight": torch.rand(3, 6, generator=gen) < 0.5,
        "twice.weight": torch.rand(6, 6, generator=gen) < 0.5,
    }
    jac = explicit_jacobian(model, x, keep)
    full = torch.einsum("icp,jdp->ijcd", jac, jac)
    expected = full if kind == "full" else full.diagonal(dim1=2, dim2=3).sum(-1)
    torch.testing.assert_close(
        empirical_ntk(model, x, mask=keep, kind=kind, method=method, chunk_size=2), expected, rtol=1e-10, atol=1e-10
    )
    dense = explicit_jacobian(model, x)
    full = torch.einsum("icp,jdp->ijcd", dense, dense)
    expected = full if kind == "full" else full.diagonal(dim1=2, dim2=3).sum(-1)
    torch.testing.assert_close(empirical_ntk(model, x, kind=kind, method=method), expected, rtol=1e-10, atol=1e-10)


# --- prunelab ntk on stored runs --------------------------------------------------------------------

TINY = {"model.name": "lenet_32_16", "train.steps": "1ep", "train.eval_every": "none", "train.progress": "false"}
PNG = b"\x89PNG\r\n\x1a\n"


def _cli(capsys, *argv):
    from prunelab.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _first_test_examples(spec, n):
    from prunelab.experiments.workbench import Workbench

    bench = Workbench.from_spec(spec)
    x = torch.cat([batch for batch, _ in bench.test_loader()])[:n]
    return bench, x


def test_ntk_command_on_a_pruned_run(capsys, home):
    import json

    from prunelab.experiments.prune_init import run_prune
    from prunelab.masks import Mask
    from prunelab.specs import load_spec
    from prunelab.store import RunStore, load_tensors

    store = RunStore(home)
    spec = load_spec("digits_lenet_300_100", overrides={**TINY, "prune.strategy": "magnitude"})
    summary = run_prune(spec, 0.2, store=store)
    run = store.run(summary["run_id"])
    code, out, err = _cli(capsys, "ntk", summary["run_id"], "--batch", "12", "--json")
    assert code == 0, err
    study = json.loads(out)["studies"][0]
    rows = {(r["method"], r["step"]): r for r in study["rows"]}
    assert set(rows) == {("magnitude", "init"), ("random", "init"), ("random+rescale", "init"), ("magnitude", "final")}

    # the numbers are those of the stored network on the first 12 test examples
    bench, x = _first_test_examples(spec, 12)
    mask = Mask.load(run.path / "mask.safetensors")
    model = bench.new_model()
    dense = empirical_ntk(model, x)  # the seeded initialisation the prune run started from
    model.load_state_dict(load_tensors(run.weights_path(0)))
    at_init = empirical_ntk(model, x, mask=mask)
    final = run.saved_steps()[-1]
    model.load_state_dict(load_tensors(run.weights_path(final)))
    trained = empirical_ntk(model, x, mask=mask)
    init_row, final_row = rows[("magnitude", "init")], rows[("magnitude", "final")]
    assert init_row["density"] == mask.density and init_row["iteration"] == 0 and final_row["iteration"] == final
    assert init_row["trace"] == pytest.approx(float(at_init.trace()), rel=1e-5)
    assert init_row["kernel_distance_dense"] == pytest.approx(kernel_distance(dense, at_init), rel=1e-4, abs=1e-7)
    assert init_row["rel_frobenius_dense"] == pytest.approx(relative_frobenius_difference(dense, at_init), rel=1e-4)
    assert final_row["moved"] == pytest.approx(kernel_distance(at_init, trained), rel=1e-3, abs=1e-7)
    assert final_row["kernel_distance_dense"] is None  # no dense network is trained beside a prune run
    assert len(init_row["eigenvalues"]) == 12 and init_row["eigenvalues"] == sorted(
        init_row["eigenvalues"], reverse=True
    )
    # random masks keep as many weights as the run's mask; rescaling changes the kernel, not the mask
    for method in ("random", "random+rescale"):
        assert rows[(method, "init")]["density"] == pytest.approx(mask.density)
    assert rows[("random", "init")]["trace"] < rows[("random+rescale", "init")]["trace"]

    directory = run.path / "ntk" / study["directory"].rsplit("/", 1)[-1]
    for name in ("spectra.png", "distance_vs_density.png"):
        assert (directory / name).read_bytes()[:8] == PNG
    stamp = (directory / "ntk.json").stat().st_mtime_ns
    code, out, _ = _cli(capsys, "ntk", summary["run_id"][:12], "--batch", "12")
    assert code == 0 and "random+rescale" in out and "dist_dense" in out.splitlines()[1]
    assert (directory / "ntk.json").stat().st_mtime_ns == stamp  # reused, not recomputed

    code, _, err = _cli(capsys, "ntk", summary["run_id"], "--batch", "12", "--steps", "5it")
    assert code == 2 and "no weights saved at step 5" in err and "0it" in err


def test_ntk_command_on_a_lottery_compares_levels_with_the_trained_dense_level(capsys, home, tmp_path):
    import json

    from prunelab.experiments.lottery import run_lottery
    from prunelab.specs import load_spec
    from prunelab.store import RunStore

    store = RunStore(home)
    spec = load_spec("digits_lenet_300_100", overrides={**TINY, "prune.fraction": 0.5})
    summary = run_lottery(spec, 1, store=store)
    code, out, err = _cli(
        capsys,
        "ntk",
        summary["run_id"],
        "--batch",
        "10",
        "--steps",
        "init,final",
        "--json",
        "--out",
        str(tmp_path / "plots"),
    )
    assert code == 0, err
    result = json.loads(out)
    rows = {(r["method"], r["step"]): r for r in result["studies"][0]["rows"]}
    assert set(rows) == {
        ("dense", "init"),
        ("dense", "final"),
        ("IMP", "init"),
        ("IMP", "final"),
        ("random", "init"),
        ("random+rescale", "init"),
    }
    assert rows[("IMP", "final")]["kernel_distance_dense"] is not None  # level 0 is trained too
    assert rows[("dense", "final")]["moved"] > 0 and rows[("dense", "init")]["kernel_distance_dense"] is None
    assert rows[("IMP", "init")]["density"] == summary["levels"][1]["density"]
    assert sorted(p.rsplit("/", 1)[-1] for p in result["plots"]) == ["distance_vs_density.png", "spectra.png"]


def test_ntk_command_on_a_supermask_compares_it_with_its_own_frozen_weights(capsys, home):
    import json

    from prunelab.experiments.reading import run_weights
    from prunelab.experiments.supermask import run_supermask
    from prunelab.masks import Mask
    from prunelab.specs import load_spec
    from prunelab.store import RunStore

    store = RunStore(home)
    spec = load_spec("digits_lenet_300_100_supermask", overrides={**TINY, "supermask.density": "0.3"})
    summary = run_supermask(spec, store=store)
    code, out, err = _cli(capsys, "ntk", summary["run_id"], "--batch", "10", "--json")
    assert code == 0, err
    rows = {(r["method"], r["step"]): r for r in json.loads(out)["studies"][0]["rows"]}
    assert {("edge-popup", "init"), ("edge-popup", "final"), ("random", "init")} <= set(rows)
    # the dense reference is the network the supermask is a subnetwork of: the frozen weights, all of them
    run = store.run(summary["run_id"])
    bench, x = _first_test_examples(spec, 10)
    model = bench.new_model()
    final = run.saved_steps()[-1]
    model.load_state_dict(run_weights(run, final, effective=False))
    dense = empirical_ntk(model, x)
    learned = empirical_ntk(model, x, mask=Mask.load(run.mask_path))
    assert rows[("edge-popup", "final")]["kernel_distance_dense"] == pytest.approx(
        kernel_distance(dense, learned), rel=1e-4, abs=1e-7
    )


def test_ntk_command_errors(capsys):
    code, _, err = _cli(capsys, "ntk")
    assert code == 2 and "at least one run" in err
    code, _, err = _cli(capsys, "ntk", "nosuchrun")
    assert code == 2 and "no run 'nosuchrun'" in err
    code, _, err = _cli(capsys, "ntk", "somerun", "--width-study")
    assert code == 2 and "not both" in err
    code, _, err = _cli(capsys, "ntk", "somerun", "--batch", "1")
    assert code == 2 and "--batch" in err


# --- the width study ------------------------------------------------------------------------------------


def test_limit_kernel_matches_the_reference_notebook():
    import numpy as np

    from prunelab.experiments.ntk_width import limit_ntk

    np.random.seed(1)  # the reference notebook's two inputs and its printed NTK value
    x = np.random.random(10)
    y = np.random.random(10)
    pair = torch.tensor(np.stack([x / np.linalg.norm(x), y / np.linalg.norm(y)]))
    kernel = limit_ntk(pair, 3)
    assert float(kernel[0, 1]) == pytest.approx(2.4287229440232556, rel=1e-12)
    assert kernel.diagonal().tolist() == pytest.approx([4.0, 4.0])  # each of the 4 layers adds Σ(x, x) = 1


def test_wide_dense_mlp_approaches_the_limit_kernel():
    from prunelab.experiments.ntk_width import WidthStudy, _network, limit_ntk, sphere_inputs

    x = sphere_inputs(6, 10, torch.Generator().manual_seed(0))
    limit = limit_ntk(x, 3)

    def mean_gap(width: int) -> float:
        return (
            sum(
                relative_frobenius_difference(
                    limit, empirical_ntk(_network(WidthStudy(), width, torch.Generator().manual_seed(seed)).double(), x)
                )
                for seed in (1, 2, 3)
            )
            / 3
        )

    assert mean_gap(1024) < 0.2 < 0.5 < mean_gap(16)  # 0.135 and 0.76: the fluctuation shrinks as 1/sqrt(n)


def test_rescaling_under_the_ntk_parameterisation_is_a_pure_scale():
    """The MLP is bias-free and ReLU is positively homogeneous, so multiplying layer l by c_l
    multiplies f and every ∂f/∂w by Π c_l: the rescaled kernel is (Π_l c_l²) times the plain one."""
    from prunelab.experiments.ntk_width import WidthStudy, _network, _pruned_kernel, sphere_inputs
    from prunelab.masks import Mask

    model = _network(WidthStudy(), 24, torch.Generator().manual_seed(2)).double()
    x = sphere_inputs(5, 10, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)
    mask = Mask({n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in list(model.named_parameters())[1:]})
    plain = _pruned_kernel(model, x, mask, False)
    per_layer = math.prod(1 / d for d in mask.layer_densities().values())
    torch.testing.assert_close(_pruned_kernel(model, x, mask, True, "per_layer"), per_layer * plain, rtol=1e-10, atol=0)
    pooled = (1 / mask.density) ** len(mask)  # one factor 1/sqrt(d) per pruned layer, d the pooled density
    torch.testing.assert_close(_pruned_kernel(model, x, mask, True, "global"), pooled * plain, rtol=1e-10, atol=0)
    assert model.scales == [1.0] * 4  # the model is left unscaled


def test_width_study_command_writes_its_table_and_figure(capsys, tmp_path):
    import json

    code, out, err = _cli(
        capsys,
        "ntk",
        "--width-study",
        "--widths",
        "8,32",
        "--densities",
        "0.5,0.25",
        "--replicates",
        "2",
        "--inputs",
        "4",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert (tmp_path / "ntk_width_study.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "ntk_width_study.json").read_text())["table"] == result["table"]
    table = result["table"]
    assert len(table) == 2 * (1 + 2 * 2) and {r["replicates"] for r in table} == {2}
    for width in (8, 32):
        for density in (0.5, 0.25):
            plain, rescaled = (
                next(r for r in table if r["width"] == width and r["density"] == density and r["rescale"] is s)
                for s in (False, True)
            )
            if plain["disconnected"] == 0:
                assert plain["kernel_distance"] == pytest.approx(rescaled["kernel_distance"], rel=1e-4)
    code, _, err = _cli(capsys, "ntk", "--width-study", "--densities", "1.5")
    assert code == 2 and "--densities" in err
