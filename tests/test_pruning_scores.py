"""Score functions of the pruning-at-initialisation strategies, checked against hand-derived values
on tiny networks, plus the contract every strategy shares (pruned → 0, nothing left modified,
seeded)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from prunelab.masks import Mask
from prunelab.pruning.base import STRATEGIES, ScoreContext, as_batch_source
from prunelab.pruning.scores import SCORE_STRATEGIES
from prunelab.pruning.scores.ntksap import ntksap_mask_gradient

CPU = torch.device("cpu")


# helpers -----------------------------------------------------------------------------------------
def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {
        (f"{n}.weight" if n else "weight"): m.weight
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }


def random_mask(params: dict[str, torch.Tensor], keep: float = 0.7, seed: int = 123) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=g) < keep for n, p in params.items()})


def make_ctx(model, mask=None, data=None, seed=0, **options) -> ScoreContext:
    """A context as the shared machinery builds it: prunable weights already multiplied by the mask."""
    params = prunable(model)
    mask = mask if mask is not None else Mask.ones_like(params)
    with torch.no_grad():
        for n, p in params.items():
            p.mul_(mask[n].to(p.dtype))
    return ScoreContext(
        model=model,
        params=params,
        mask=mask,
        device=CPU,
        generator=torch.Generator().manual_seed(seed),
        data=as_batch_source(data, CPU),
        options=options,
    )


def score(name: str, ctx: ScoreContext) -> dict[str, torch.Tensor]:
    return STRATEGIES[name].score(ctx)


def linear(n_in: int, n_out: int, weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=False, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


# registration --------------------------------------------------------------------------------------
def test_registered_strategies_and_flags():
    expected = {  # name: (prune_highest, needs_data, default_iterations)
        "snip": (False, True, 1),
        "iterative_snip": (False, True, 100),
        "grasp": (True, True, 1),
        "grasp_abs": (False, True, 1),
        "synflow": (False, False, 100),
        "ntksap": (False, False, 20),
    }
    assert set(SCORE_STRATEGIES) == set(expected)
    for name, (highest, data, iters) in expected.items():
        s = STRATEGIES[name]
        assert (s.prune_highest, s.needs_data, s.default_iterations) == (highest, data, iters), name
        assert s.description


# SynFlow -------------------------------------------------------------------------------------------
def test_synflow_two_layer_linear_closed_form_and_conservation():
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(4, 3, generator=g), torch.randn(2, 4, generator=g)
    model = nn.Sequential(linear(3, 4, w1), linear(4, 2, w2))
    mask = random_mask(prunable(model), keep=0.6)
    ctx = make_ctx(model, mask, input_shape=(3,), precision="float64")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = score("synflow", ctx)

    # R = 1ᵀ|W2||W1|1; ∂R/∂|W1|_ij = (1ᵀ|W2|)_i, ∂R/∂|W2|_ki = (|W1|1)_i.
    a1 = (w1 * mask["0.weight"]).abs().double()
    a2 = (w2 * mask["1.weight"]).abs().double()
    r = (a2 @ a1 @ torch.ones(3, dtype=torch.float64)).sum()
    s1 = a1 * a2.sum(0)[:, None]
    s2 = a2 * a1.sum(1)[None, :]
    assert s["0.weight"].dtype == torch.float64 and s["1.weight"].dtype == torch.float64
    torch.testing.assert_close(s["0.weight"], s1, rtol=1e-12, atol=0)
    torch.testing.assert_close(s["1.weight"], s2, rtol=1e-12, atol=0)
    # conservation: every layer's scores sum to R
    torch.testing.assert_close(s["0.weight"].sum(), r, rtol=1e-12, atol=0)
    torch.testing.assert_close(s["1.weight"].sum(), r, rtol=1e-12, atol=0)
    # weights (with their signs) and dtype restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == torch.float32
    assert (model[0].weight < 0).any()
    # the default precision computes this well-scaled net in float32: the same values to float32 rounding
    auto = score("synflow", make_ctx(model, mask, input_shape=(3,)))
    for k, want in (("0.weight", s1), ("1.weight", s2)):
        assert auto[k].dtype == torch.float32
        torch.testing.assert_close(auto[k].double(), want, rtol=1e-6, atol=0)
        torch.testing.assert_close(auto[k].double().sum(), r, rtol=1e-6, atol=0)


def test_synflow_float64_avoids_underflow_on_deep_net():
    depth, width = 40, 4
    layers = [linear(width, width, torch.full((width, width), 1e-2)) for _ in range(depth)]
    model = nn.Sequential(*layers)
    x = torch.ones(1, width)
    with torch.no_grad():
        assert float(model(x).sum()) == 0.0  # float32: (4·1e-2)^40 ≈ 1e-56 underflows
    s = score("synflow", make_ctx(model, input_shape=(width,)))
    w = float(torch.tensor(1e-2))  # the float32 weight, exactly, in float64
    expected = width * (width * w) ** depth  # R: every layer's scores sum to R (conservation)
    for t in s.values():
        assert t.dtype == torch.float64 and bool((t > 0).all())
        assert math.isclose(float(t.sum()), expected, rel_tol=1e-9)


def test_synflow_input_shape_from_data_or_clear_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(5, 3, 2, 2), torch.randint(0, 3, (5,))
    from_data = score("synflow", make_ctx(model, data=(x, y)))
    from_option = score("synflow", make_ctx(model, input_shape=(3, 2, 2)))
    for k in from_data:
        assert torch.equal(from_data[k], from_option[k])
    with pytest.raises(ValueError, match="input_shape"):
        score("synflow", make_ctx(model))


def test_synflow_abs_buffers_option_on_a_negative_running_mean():
    """1 → BN(running mean −1, var 1) → 1, weights 1, eval mode, input 1, σ = sqrt(1 + 1e-5).
    Synaptic-Flow (|·| of the whole state): R = w₂ (w₁ − |−1|)/σ → scores (1/σ, 0). The fork (|·| of
    the parameters only): R = w₂ (w₁ + 1)/σ → scores (1/σ, 2/σ)."""
    model = nn.Sequential(linear(1, 1, torch.ones(1, 1)), nn.BatchNorm1d(1), linear(1, 1, torch.ones(1, 1))).eval()
    with torch.no_grad():
        model[1].running_mean.fill_(-1.0)
    sigma = math.sqrt(1 + 1e-5)
    state = score("synflow", make_ctx(model, input_shape=(1,), precision="float64"))
    params = score("synflow", make_ctx(model, input_shape=(1,), abs_buffers=False, precision="float64"))
    assert float(state["0.weight"]) == pytest.approx(1 / sigma, rel=1e-12) and float(state["2.weight"]) == 0.0
    assert float(params["0.weight"]) == pytest.approx(1 / sigma, rel=1e-12)
    assert float(params["2.weight"]) == pytest.approx(2 / sigma, rel=1e-12)
    # precision auto: R = 0 (the state variant) is not representable evidence, so float64 is used;
    # the parameter variant is well scaled and stays in float32
    auto_state = score("synflow", make_ctx(model, input_shape=(1,)))
    auto_params = score("synflow", make_ctx(model, input_shape=(1,), abs_buffers=False))
    assert all(torch.equal(auto_state[k], state[k]) for k in state)
    assert auto_params["2.weight"].dtype == torch.float32
    assert float(auto_params["2.weight"]) == pytest.approx(2 / sigma, rel=1e-6)
    assert float(model[1].running_mean) == -1.0  # the user's model is untouched
    with pytest.raises(ValueError, match="abs_buffers"):
        score("synflow", make_ctx(model, input_shape=(1,), abs_buffers="no"))
    with pytest.raises(ValueError, match="precision"):
        score("synflow", make_ctx(model, input_shape=(1,), precision="float16"))


def _synflow_float64_fresh_copy(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """SynFlow as computed before precision="auto": a float64 deep copy per iteration, |·| of every
    parameter and buffer, eval mode, scores |θ ⊙ ∂R/∂θ| at an all-ones example."""
    import copy

    net = copy.deepcopy(ctx.model).double().eval()
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.is_floating_point():
                t.abs_()
    own = dict(net.named_parameters())
    by_id = {id(p): n for n, p in ctx.model.named_parameters()}
    targets = [own[by_id[id(p)]] for p in ctx.params.values()]
    out = net(torch.ones((1, *ctx.options["input_shape"]), dtype=torch.float64)).sum()
    grads = torch.autograd.grad(out, targets)
    return {k: (g * t.detach()).abs() * ctx.mask[k] for k, t, g in zip(ctx.params, targets, grads)}


def _synflow_masks_agree(model: nn.Module, density: float, iterations: int) -> None:
    from prunelab.pruning import prune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer collapse
        auto = prune(model, "synflow", density, iterations=iterations, input_shape=(3, 32, 32))
        before = prune(model, _synflow_float64_fresh_copy, density, iterations=iterations, input_shape=(3, 32, 32))
        float64 = prune(model, "synflow", density, iterations=iterations, input_shape=(3, 32, 32), precision="float64")
    assert auto == before and float64 == before


def test_synflow_float32_gives_the_float64_masks_on_a_conv_bn_net():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    _synflow_masks_agree(model, 0.05, 20)


@pytest.mark.slow
def test_synflow_float32_gives_the_float64_masks_on_resnet20_at_10_percent():
    from prunelab.models import build_model
    from prunelab.specs import ModelSpec

    model = build_model(ModelSpec(name="cifar_resnet_20"), input_shape=(3, 32, 32), num_classes=10, seed=0)
    _synflow_masks_agree(model, 0.1, 100)


def test_synflow_keeps_float32_when_a_unit_is_cut_off():
    """Pruning every weight out of hidden unit 0 leaves the weights into it alive with gradient
    exactly 0 (a cut path, not an underflow): float32 is kept and they score 0."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(linear(3, 4, torch.randn(4, 3, generator=g)), linear(4, 2, torch.randn(2, 4, generator=g)))
    mask = Mask.ones_like(prunable(model))
    mask = Mask(
        {
            "0.weight": mask["0.weight"],
            "1.weight": torch.ones(2, 4, dtype=torch.bool).index_fill_(1, torch.tensor([0]), False),
        }
    )
    s = score("synflow", make_ctx(model, mask, input_shape=(3,)))
    assert s["0.weight"].dtype == torch.float32
    assert bool((s["0.weight"][0] == 0).all()) and bool((s["0.weight"][1:] > 0).all())


@pytest.mark.parametrize(
    "name,options",
    [("synflow", {"input_shape": (3, 8, 8)}), ("ntksap", {"input_shape": (3, 8, 8), "batch_size": 4, "rounds": 2})],
)
def test_per_call_scratch_gives_the_masks_of_fresh_copies(name, options):
    """SynFlow and NTK-SAP keep their working network in ctx.scratch across the iterations of a call;
    building it afresh every iteration (the scratch cleared) gives exactly the same mask."""
    from prunelab.pruning import Strategy, prune

    model, _, _ = tiny_setup(train=False)
    model.conv1.weight.requires_grad_(True)
    strategy = STRATEGIES[name]

    def fresh(ctx):
        ctx.scratch.clear()
        return strategy.score(ctx)

    kept = prune(model, name, 0.2, iterations=4, seed=5, **options)
    rebuilt = prune(model, Strategy(name + "_fresh", fresh, options=None), 0.2, iterations=4, seed=5, **options)
    assert kept == rebuilt


# SNIP ----------------------------------------------------------------------------------------------
def test_snip_single_softmax_layer_closed_form():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 5, generator=g, dtype=torch.float64)
    model = linear(5, 3, w)
    batches = [
        (torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)),
        (torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)),
    ]
    mask = Mask({"weight": torch.rand(3, 5, generator=g) < 0.7})
    params = {"weight": model.weight}
    with torch.no_grad():
        model.weight.mul_(mask["weight"].double())
    ctx = ScoreContext(model, params, mask, CPU, torch.Generator().manual_seed(0), as_batch_source(batches, CPU))
    s = STRATEGIES["snip"].score(ctx)

    wm = w * mask["weight"]
    grad = torch.zeros_like(w)
    for x, y in batches:  # mean cross-entropy per batch, summed over batches
        p = torch.softmax(x @ wm.T, dim=1)
        grad += (p - F.one_hot(y, 3).double()).T @ x / x.shape[0]
    torch.testing.assert_close(s["weight"], (grad * wm).abs(), rtol=1e-10, atol=1e-14)
    assert bool((s["weight"][~mask["weight"]] == 0).all())
    # iterative SNIP scores a round exactly like SNIP
    torch.testing.assert_close(STRATEGIES["iterative_snip"].score(ctx)["weight"], s["weight"], rtol=0, atol=0)


# several batches: Synaptic-Flow's "total" vs the Missing-the-Mark fork's "per_batch" ---------------
def _two_batch_problem():
    """z = w x with w = (1, 1)ᵀ (a 1 → 2 linear layer), so p = (½, ½) for every x. Batch 1: two copies
    of (x = 1, y = 0), mean gradient g₁ = (p − e₀) x = (−½, ½), Hessian H₁ = A x² = A with
    A = diag p − p pᵀ = ¼ [[1, −1], [−1, 1]]. Batch 2: one (x = 2, y = 1): g₂ = (1, −1), H₂ = 4A."""
    model = linear(1, 2, torch.ones(2, 1, dtype=torch.float64))
    batches = [
        (torch.ones(2, 1, dtype=torch.float64), torch.tensor([0, 0])),
        (torch.full((1, 1), 2.0, dtype=torch.float64), torch.tensor([1])),
    ]
    return model, batches


def _two_batch_ctx(model, batches, **options):
    return ScoreContext(
        model,
        {"weight": model.weight},
        Mask.ones_like({"weight": model.weight}),
        CPU,
        torch.Generator().manual_seed(0),
        as_batch_source(batches, CPU),
        options,
    )


def test_snip_aggregate_over_two_batches_hand_derived():
    model, batches = _two_batch_problem()
    # total (Synaptic-Flow): |w ⊙ (g₁ + g₂)| = |(½, −½)|; per batch (the fork): Σ_b (B_b/N)|w ⊙ g_b|
    # = ⅔ (½, ½) + ⅓ (1, 1) = (⅔, ⅔)
    total = STRATEGIES["snip"].score(_two_batch_ctx(model, batches))["weight"]
    per_batch = STRATEGIES["snip"].score(_two_batch_ctx(model, batches, aggregate="per_batch"))["weight"]
    torch.testing.assert_close(total, torch.tensor([[0.5], [0.5]], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(per_batch, torch.full((2, 1), 2 / 3, dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.equal(
        STRATEGIES["iterative_snip"].score(_two_batch_ctx(model, batches, aggregate="per_batch"))["weight"], per_batch
    )
    # one batch: the conventions agree
    one = [(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))]
    a = STRATEGIES["snip"].score(_two_batch_ctx(model, one))["weight"]
    b = STRATEGIES["snip"].score(_two_batch_ctx(model, one, aggregate="per_batch"))["weight"]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="aggregate"):
        STRATEGIES["snip"].score(_two_batch_ctx(model, batches, aggregate="mean"))


def test_grasp_aggregate_over_two_batches_hand_derived():
    model, batches = _two_batch_problem()
    # total: Hg = (H₁ + H₂)(g₁ + g₂) = 5A (½, −½) = (5/4, −5/4), score −w ⊙ Hg = (−5/4, 5/4)
    # per batch: ⅔ H₁g₁ + ⅓ H₂g₂ = ⅔ (−¼, ¼) + ⅓ (2, −2) = (½, −½), score (−½, ½)
    expected = {"total": [-1.25, 1.25], "per_batch": [-0.5, 0.5]}
    for aggregate, values in expected.items():
        ctx = _two_batch_ctx(model, batches, aggregate=aggregate, temperature=1.0)
        want = torch.tensor(values, dtype=torch.float64).reshape(2, 1)
        torch.testing.assert_close(STRATEGIES["grasp"].score(ctx)["weight"], want, rtol=1e-12, atol=0)
        ctx = _two_batch_ctx(model, batches, aggregate=aggregate, temperature=1.0)
        torch.testing.assert_close(STRATEGIES["grasp_abs"].score(ctx)["weight"], want.abs(), rtol=1e-12, atol=0)
    one = [(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))]
    a = STRATEGIES["grasp"].score(_two_batch_ctx(model, one, temperature=1.0))["weight"]
    b = STRATEGIES["grasp"].score(_two_batch_ctx(model, one, temperature=1.0, aggregate="per_batch"))["weight"]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


# GraSP ---------------------------------------------------------------------------------------------
def _softmax_layer_problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64) * 2
    batches = [
        (torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (7,), generator=g)),
        (torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (5,), generator=g)),
    ]
    mask = Mask({"weight": torch.rand(3, 4, generator=g) < 0.75})
    return w, batches, mask


@pytest.mark.parametrize("temperature", [None, 3.0])
def test_grasp_single_softmax_layer_closed_form(temperature):
    """z = W x / T, L_b = mean CE: ∇L_b = (1/(T·B)) Σ (p − y) xᵀ and
    H_b[G] = (1/(T²·B)) Σ (diag p − p pᵀ) G x xᵀ; score = −θ ⊙ Σ_b H_b[g] with g = m ⊙ Σ_b ∇L_b
    (the gradient of the pruned network: pruned weights are not parameters)."""
    w, batches, mask = _softmax_layer_problem(2)
    t = 200.0 if temperature is None else temperature
    options = {} if temperature is None else {"temperature": temperature}
    model = linear(4, 3, w)
    with torch.no_grad():
        model.weight.mul_(mask["weight"].double())
    wm = w * mask["weight"]
    ctx = ScoreContext(
        model,
        {"weight": model.weight},
        mask,
        CPU,
        torch.Generator().manual_seed(0),
        as_batch_source(batches, CPU),
        options,
    )
    grad = torch.zeros_like(w)
    for x, y in batches:
        p = torch.softmax(x @ wm.T / t, dim=1)
        grad += (p - F.one_hot(y, 3).double()).T @ x / (t * x.shape[0])
    grad = grad * mask["weight"]
    hg = torch.zeros_like(w)
    for x, _y in batches:
        p = torch.softmax(x @ wm.T / t, dim=1)
        for i in range(x.shape[0]):
            cov = torch.diag(p[i]) - torch.outer(p[i], p[i])
            hg += torch.outer(cov @ grad @ x[i], x[i]) / (t * t * x.shape[0])
    s = STRATEGIES["grasp"].score(ctx)["weight"]
    torch.testing.assert_close(s, -(wm * hg), rtol=1e-8, atol=1e-300)
    assert bool((s != 0).any())
    s_abs = STRATEGIES["grasp_abs"].score(ctx)["weight"]
    torch.testing.assert_close(s_abs, (wm * hg).abs(), rtol=1e-8, atol=1e-300)
    assert bool((s[~mask["weight"]] == 0).all()) and bool((s_abs[~mask["weight"]] == 0).all())


def test_grasp_matches_autograd_hvp_on_tiny_mlp():
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    for p in model.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    batches = [
        (torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)) for _ in range(2)
    ]
    mask = random_mask(prunable(model), keep=0.7, seed=4)
    ctx = make_ctx(model, mask, data=batches, temperature=5.0)
    s = score("grasp", ctx)

    # independent computation: total loss as a function of the prunable weights with the mask as a
    # multiplier (the reference codes' masked layers, W = m ⊙ w), so gradient and Hessian are those
    # of the pruned network; hvp by autograd. At alive weights m ⊙ H(m ⊙ g) = H(m ⊙ g).
    b1, b2 = model[0].bias.detach(), model[2].bias.detach()
    m1, m2 = mask["0.weight"].double(), mask["2.weight"].double()

    def total_loss(w1, w2):
        w1, w2 = w1 * m1, w2 * m2
        return sum(F.cross_entropy((torch.tanh(x @ w1.T + b1) @ w2.T + b2) / 5.0, y) for x, y in batches)

    theta = (model[0].weight.detach().clone(), model[2].weight.detach().clone())
    grad = torch.autograd.grad(total_loss(*[t.requires_grad_(True) for t in theta]), theta)
    _, hvp = torch.autograd.functional.hvp(total_loss, tuple(t.detach() for t in theta), grad)
    torch.testing.assert_close(s["0.weight"], -(theta[0].detach() * hvp[0]), rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(s["2.weight"], -(theta[1].detach() * hvp[1]), rtol=1e-9, atol=1e-15)


# NTK-SAP -------------------------------------------------------------------------------------------
def test_ntksap_mask_gradient_linear_closed_form():
    """f(x) = (W ⊙ m) x: P = Σ_b ‖(ΔW ⊙ m) x_b‖², so ∂P/∂m = 2 ΔW ⊙ ((ΔW ⊙ m) Xᵀ X)."""
    g = torch.Generator().manual_seed(5)
    w, dw = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    m = torch.rand(3, 4, generator=g) < 0.6
    net = linear(4, 3, w)
    grads = ntksap_mask_gradient(net, {"k": "weight"}, {"k": m}, x, {"k": dw})
    expected = 2 * dw * ((dw * m.double()) @ x.T @ x)
    torch.testing.assert_close(grads["k"], expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(net.weight.detach(), w)  # used as given, not modified


def test_ntksap_epsilon_is_a_standard_deviation():
    """For one linear layer P = Σ‖(ΔW ⊙ m) x‖² is exactly quadratic in Δθ: with the same draws,
    doubling ε (a standard deviation) multiplies every score by 4 — by 2 if ε were a variance."""
    model = nn.Linear(4, 5, bias=False, dtype=torch.float64)
    mask = random_mask(prunable(model), keep=0.6)
    s1 = score("ntksap", make_ctx(model, mask, input_shape=(4,), batch_size=8, rounds=2, seed=9))
    s2 = score("ntksap", make_ctx(model, mask, input_shape=(4,), batch_size=8, rounds=2, seed=9, epsilon=0.02))
    torch.testing.assert_close(s2["weight"], 4 * s1["weight"], rtol=1e-12, atol=0)
    assert bool((s1["weight"][mask["weight"]] > 0).all())


def test_ntksap_is_weight_agnostic():
    """NTK-SAP scores a freshly initialised copy: the values of the user's weights do not matter,
    only the mask."""
    g = torch.Generator().manual_seed(6)
    make = lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))  # noqa: E731
    a, b = make(), make()
    for p in b.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * 10)
    mask = random_mask(prunable(a), keep=0.6)
    s1 = score("ntksap", make_ctx(a, mask, input_shape=(4,), batch_size=8, rounds=2, seed=9))
    s2 = score("ntksap", make_ctx(b, mask, input_shape=(4,), batch_size=8, rounds=2, seed=9))
    for k in s1:
        assert torch.equal(s1[k], s2[k])


def test_ntksap_mask_gradient_conserved_per_layer():
    """On a bias-free ReLU net P(m) is homogeneous of degree 2 in each layer's mask (both forward
    passes use the masked weights), so Euler's theorem gives Σ_j m_j ∂P/∂m_j = 2P for every layer.
    A gradient through the clean network's weights only, or w.r.t. the weights, breaks this."""
    g = torch.Generator().manual_seed(11)
    net = nn.Sequential(
        nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 7, bias=False), nn.ReLU(), nn.Linear(7, 3, bias=False)
    ).double()
    for p in net.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    params = prunable(net)
    mask = random_mask(params, keep=0.7, seed=12)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    delta = {k: 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in params.items()}
    grads = ntksap_mask_gradient(net, {k: k for k in params}, mask, x, delta)
    with torch.no_grad():
        w = {k: p * mask[k] for k, p in params.items()}
        wd = {k: (p + delta[k]) * mask[k] for k, p in params.items()}
        proxy = (functional_call(net, w, (x,)) - functional_call(net, wd, (x,))).pow(2).sum()
    assert proxy > 0
    for k in params:
        torch.testing.assert_close((grads[k] * mask[k]).sum(), 2 * proxy, rtol=1e-10, atol=0)


def test_ntksap_biases_keep_or_zero():
    from prunelab.pruning.scores.ntksap import reinitialise

    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].bias.fill_(-100.0)  # every hidden unit dead unless the bias is re-drawn as 0
        net[2].bias.fill_(5.0)
    kept = net[0].bias.clone()
    reinitialise(net, {"0.weight", "2.weight"}, torch.Generator().manual_seed(0), biases="keep")
    assert torch.equal(net[0].bias, kept) and bool((net[2].bias == 5.0).all())
    reinitialise(net, {"0.weight", "2.weight"}, torch.Generator().manual_seed(0))
    assert bool((net[0].bias == 0).all()) and bool((net[2].bias == 0).all())
    with torch.no_grad():
        net[0].bias.fill_(-100.0)
    keep = score("ntksap", make_ctx(net, input_shape=(3,), batch_size=8, rounds=2, biases="keep"))
    zero = score("ntksap", make_ctx(net, input_shape=(3,), batch_size=8, rounds=2))
    assert all(bool((t == 0).all()) for t in keep.values())  # the reference keeps the dead biases: P = 0
    assert all(bool((t > 0).any()) for t in zero.values())
    with pytest.raises(ValueError, match="biases"):
        score("ntksap", make_ctx(net, input_shape=(3,), biases="random"))


def test_ntksap_biases_cancel_before_batchnorm_and_at_the_output():
    """A bias followed by BatchNorm is removed by the (shared) batch mean and the output bias cancels in
    f(θ) − f(θ + Δθ): keeping or zeroing such biases gives the same scores."""
    g = torch.Generator().manual_seed(4)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        net[0].bias.copy_(torch.randn(6, generator=g, dtype=torch.float64) * 3)
        net[3].bias.copy_(torch.randn(3, generator=g, dtype=torch.float64) * 3)
    keep = score("ntksap", make_ctx(net, input_shape=(4,), batch_size=16, rounds=2, biases="keep", seed=3))
    zero = score("ntksap", make_ctx(net, input_shape=(4,), batch_size=16, rounds=2, seed=3))
    for k in keep:
        torch.testing.assert_close(keep[k], zero[k], rtol=1e-9, atol=1e-12)


def test_ntksap_noise_batches_follow_the_data(monkeypatch):
    import prunelab.pruning.scores.ntksap as ntksap_module

    seen: list[tuple[int, ...]] = []
    original = ntksap_module.ntksap_mask_gradient

    def recording(net, names, mask, inputs, perturbation):
        seen.append(tuple(inputs.shape))
        return original(net, names, mask, inputs, perturbation)

    monkeypatch.setattr(ntksap_module, "ntksap_mask_gradient", recording)
    model = nn.Sequential(nn.Linear(4, 3))
    data = [(torch.randn(6, 4), torch.randint(0, 3, (6,))), (torch.randn(3, 4), torch.randint(0, 3, (3,)))]

    def shapes(**options):
        seen.clear()
        score("ntksap", make_ctx(model, rounds=2, **options))
        return list(seen)

    assert shapes(data=data) == [(6, 4), (3, 4)] * 2  # one noise batch per pruning batch, per round
    assert shapes(data=data, input_shape=(4,)) == [(6, 4), (3, 4)] * 2  # the data wins over the fixed 100
    assert shapes(data=data, batch_size=7) == [(7, 4)] * 2  # an explicit batch size: one batch per round
    assert shapes(input_shape=(4,)) == [(100, 4)] * 2  # no data: the default 100
    with pytest.raises(ValueError, match="differs from the pruning data"):
        shapes(data=data, input_shape=(5,))


def test_experiments_give_ntksap_examples_per_class_times_classes_noise(monkeypatch):
    """The experiment path passes the class-balanced pruning data, in batches of 256 (the reference's
    --prune-batch-size), so the noise per round is examples_per_class × classes (CIFAR-100: 1,000)."""
    import prunelab.pruning.scores.ntksap as ntksap_module
    from prunelab.data import ImageDataset
    from prunelab.experiments.scoring import prune_to_density
    from prunelab.specs import PruningSpec

    seen: list[tuple[int, ...]] = []
    original = ntksap_module.ntksap_mask_gradient
    monkeypatch.setattr(
        ntksap_module,
        "ntksap_mask_gradient",
        lambda net, names, mask, x, d: seen.append(tuple(x.shape)) or original(net, names, mask, x, d),
    )
    labels = torch.arange(1500) % 100  # a CIFAR-100-like label set: 100 classes, 15 examples each
    train_set = ImageDataset(torch.zeros(1500, 1, 2, 2, dtype=torch.uint8), labels, 100, (0.5,), (0.25,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 100))
    spec = PruningSpec(strategy="ntksap", iterations=1, options={"rounds": 1})  # 10 examples per class
    mask = prune_to_density(model, prunable(model), spec, 0.5, train_set=train_set, device=CPU, seed=0)
    assert seen == [(256, 1, 2, 2)] * 3 + [(232, 1, 2, 2)] and mask.num_kept == 200


def test_ntksap_needs_shape_or_data():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="input_shape"):
        score("ntksap", make_ctx(model))
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert score("ntksap", make_ctx(model, data=(x, y)))["0.weight"].shape == (3, 4)


# the shared contract, on a tiny conv net with BatchNorm and dropout -------------------------------------
class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(self.drop(x.mean((2, 3))))


def tiny_setup(train: bool):
    torch.manual_seed(0)
    model = TinyConvNet()
    with torch.no_grad():  # non-trivial running statistics, so a reset or an update would show
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(7)
    model.train(train)
    model.bn2.bias.requires_grad_(False)  # frozen parameters (one of them prunable) must stay frozen
    model.conv1.weight.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]
    mask = random_mask(prunable(model), keep=0.6)
    return model, data, mask


OPTION_VARIANTS = (
    [(name, {}) for name in SCORE_STRATEGIES]
    + [(name, {"aggregate": "per_batch"}) for name in ("snip", "iterative_snip", "grasp", "grasp_abs")]
    + [("synflow", {"abs_buffers": False}), ("ntksap", {"biases": "keep"})]
)


@pytest.mark.parametrize("train", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize(
    "name,options",
    OPTION_VARIANTS,
    ids=[name + "".join(f"-{k}={v}" for k, v in o.items()) for name, o in OPTION_VARIANTS],
)
def test_contract_on_conv_bn_net(name, options, train):
    model, data, mask = tiny_setup(train)
    ctx = make_ctx(model, mask, data=data, seed=11, **options)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()

    s = score(name, ctx)

    assert list(s) == list(ctx.params)
    for k, t in s.items():
        assert t.shape == ctx.params[k].shape and bool(torch.isfinite(t).all())
        assert bool((t[~mask[k]] == 0).all()), f"{name}: pruned weights of {k} must score 0"
        assert bool((t[mask[k]] != 0).any())
    after = model.state_dict()
    for k, v in state.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), f"{name} changed {k}"
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng), f"{name} consumed the global RNG"

    again = score(name, make_ctx(model, mask, data=data, seed=11, **options))
    for k in s:
        assert torch.equal(s[k], again[k]), f"{name} is not deterministic for a given generator seed"
    if name == "ntksap":  # random by construction: another seed, other scores
        other = score(name, make_ctx(model, mask, data=data, seed=12, **options))
        assert any(not torch.equal(s[k], other[k]) for k in s)


def test_snip_train_mode_option_switches_batchnorm_statistics():
    model, data, mask = tiny_setup(train=False)
    model.drop.p = 0.0
    train = score("snip", make_ctx(model, mask, data=data))
    evals = score("snip", make_ctx(model, mask, data=data, train_mode=False))
    assert any(not torch.allclose(train[k], evals[k]) for k in train)


# docs ----------------------------------------------------------------------------------------------
def test_strategies_doc_example_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "strategies.md").read_text()
    blocks = re.findall(r"```python\n(# example: strategies\n.*?)```", text, flags=re.S)
    assert blocks, "docs/strategies.md lost its example"
    for block in blocks:
        exec(compile(block, "docs/strategies.md", "exec"), {"__name__": "docs_example"})
