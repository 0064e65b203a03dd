"""The public pruning API: score, prune, prune_level, the baselines and custom score functions."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from prunelab.pruning import (
    LayerCollapseWarning,
    MaskSelectionError,
    ScoreContext,
    Strategy,
    default_prunable_parameters,
    get_strategy,
    prune,
    prune_fraction,
    prune_level,
    score,
    strategy_names,
)
from prunelab.pruning.selection import target_count

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pruning.md"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.hidden = nn.Linear(4 * 4 * 4, 16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.fc(torch.relu(self.hidden(x)))


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    return Net()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


NAMES = ["conv.weight", "hidden.weight", "fc.weight"]
TOTAL = 36 + 1024 + 48


def test_default_prunable_parameters_are_conv_and_linear_weights(net):
    assert list(default_prunable_parameters(net)) == NAMES


def test_baselines_registered():
    assert {"magnitude", "random", "random_global"} <= set(strategy_names())
    assert "random_layerwise" not in strategy_names()


def test_prune_all_runs_every_registered_strategy_but_the_scope_variants(monkeypatch):
    from prunelab.pruning import base
    from prunelab.pruning.api import at_init_strategies

    published = {"random", "magnitude", "snip", "grasp", "grasp_abs", "synflow", "iterative_snip", "ntksap"}
    names = at_init_strategies()
    assert published <= set(names) and "random_global" not in names  # random at global scope
    assert set(names) == set(base.STRATEGIES) - {"random_global"}  # other tests' custom ones included
    monkeypatch.setitem(base.STRATEGIES, "mine", base.Strategy("mine", lambda ctx: {}))
    assert at_init_strategies()[-1] == "mine"  # a registered custom strategy joins 'all'


def test_magnitude_prune_matches_abs_weights(net):
    mask = prune(net, "magnitude", 0.2)
    assert mask.num_kept == target_count(0.2, TOTAL)
    weights = torch.cat([net.get_parameter(n).detach().abs().flatten() for n in NAMES])
    kept = torch.cat([mask[n].flatten() for n in NAMES])
    assert weights[kept].min() >= weights[~kept].max()


@pytest.mark.parametrize("strategy", ["random", "random_global"])
def test_random_strategies_exact_and_seeded(net, strategy):
    a = prune(net, strategy, 0.1, seed=1)
    assert a.num_kept == target_count(0.1, TOTAL)
    assert a == prune(net, strategy, 0.1, seed=1)
    assert a != prune(net, strategy, 0.1, seed=2)
    if strategy == "random":
        lw = prune(net, strategy, 0.1, scope="layerwise", seed=1)
        assert [r["kept"] for r in lw.layer_report()] == [4, 102, 5]


def test_random_global_requires_global_scope_and_random_layerwise_is_not_a_score(net):
    with pytest.raises(MaskSelectionError, match="scope='global'"):
        prune(net, "random_global", 0.5, scope="layerwise")
    with pytest.raises(MaskSelectionError, match="randomize_layerwise"):
        prune(net, "random_layerwise", 0.5)


def test_prune_and_score_leave_the_model_unchanged(net):
    net.train()
    before = snapshot(net)

    def vandal(ctx: ScoreContext) -> dict[str, torch.Tensor]:
        ctx.model.eval()
        out = ctx.model(torch.randn(2, 1, 6, 6, generator=ctx.generator).to(ctx.device))
        out.sum().backward()
        with torch.no_grad():
            for p in ctx.model.parameters():
                p.fill_(7.0)
        return {n: torch.rand(p.shape, generator=ctx.generator) for n, p in ctx.params.items()}

    prune(net, vandal, 0.3, iterations=2)
    score(net, vandal)
    prune(net, "magnitude", 0.3, iterations=3)
    assert_unchanged(net, before)
    assert net.training and all(p.grad is None for p in net.parameters())


def test_score_sees_masked_weights_and_returns_detached_scores(net):
    mask = prune(net, "magnitude", 0.5)
    seen = {}

    def probe(ctx):
        seen.update({n: p.detach().clone() for n, p in ctx.params.items()})
        assert ctx.mask == mask and ctx.iteration == 0 and ctx.iterations == 1
        assert ctx.option("alpha", 0) == 3
        return {n: p * 2 for n, p in ctx.params.items()}

    scores = score(net, probe, mask=mask, alpha=3)
    for n in NAMES:
        assert torch.equal(seen[n], net.get_parameter(n).detach() * mask[n])
        assert not scores[n].requires_grad and torch.equal(scores[n], 2 * seen[n])


def test_custom_score_function_in_a_few_lines(net):
    def smallest(ctx):  # keep the smallest |w| instead of the largest
        return {n: -p.detach().abs() for n, p in ctx.params.items()}

    a = prune(net, smallest, 0.3)
    b = prune(net, "magnitude", 0.3, prune_highest=True)
    assert a == b and a.num_kept == target_count(0.3, TOTAL)


def test_prune_highest_defaults_to_the_strategy_and_can_be_overridden(net):
    mag = get_strategy("magnitude")
    inverted = Strategy("inverted_magnitude", mag.score, prune_highest=True)
    low = prune(net, inverted, 0.3)
    assert low == prune(net, "magnitude", 0.3, prune_highest=True)
    assert prune(net, inverted, 0.3, prune_highest=False) == prune(net, "magnitude", 0.3)


@pytest.mark.filterwarnings("ignore::prunelab.pruning.selection.LayerCollapseWarning")
def test_iterations_follow_the_schedule_and_never_revive(net):
    seen = []

    def record(ctx):
        seen.append((ctx.iteration, ctx.iterations, ctx.mask.density))
        for n, p in ctx.params.items():  # weights arrive masked
            assert not bool(p.detach()[~ctx.mask[n]].any())
        return {n: torch.rand(p.shape, generator=ctx.generator) for n, p in ctx.params.items()}

    mask = prune(net, record, 0.01, iterations=3)
    assert [s[:2] for s in seen] == [(0, 3), (1, 3), (2, 3)]
    assert [round(s[2], 2) for s in seen] == [1.0, 0.22, 0.05]  # 0.01^(k/3)
    assert mask.num_kept == target_count(0.01, TOTAL)
    lin = []
    prune(
        net,
        lambda ctx: lin.append(ctx.mask.num_kept) or {n: p.abs() for n, p in ctx.params.items()},
        0.4,
        iterations=3,
        schedule="linear",
    )
    assert lin == [TOTAL, target_count(0.8, TOTAL), target_count(0.6, TOTAL)]


def test_starting_mask_ignore_and_nesting(net):
    start = prune(net, "random", 0.5, seed=3)
    mask = prune(net, "magnitude", 0.2, mask=start, ignore=["fc.*"])
    assert mask.is_subset_of(start)
    assert torch.equal(mask["fc.weight"], start["fc.weight"])
    considered = 36 + 1024
    assert int(mask["conv.weight"].sum() + mask["hidden.weight"].sum()) == target_count(0.2, considered)


@pytest.mark.parametrize("iterations", [1, 3])
def test_ignore_may_be_a_one_shot_iterable(net, iterations):
    # prune() reads ignore in its own check and again in every selection: a generator used to be empty
    # by the time selection saw it, which then pruned the layer the caller had excluded
    listed = prune(net, "magnitude", 0.2, iterations=iterations, ignore=["fc.*"])
    once = prune(net, "magnitude", 0.2, iterations=iterations, ignore=(p for p in ["fc.*"]))
    assert bool(once["fc.weight"].all()) and once == listed


def test_layer_collapse_warns(net):
    with pytest.warns(LayerCollapseWarning, match="conv.weight"):
        mask = prune(net, "magnitude", 0.001, scope="layerwise")
    assert mask.collapsed_layers() == ["conv.weight", "fc.weight"]  # hidden: 0.001 · 1024 → 1 kept
    assert int(mask["hidden.weight"].sum()) == 1


def test_data_strategy_without_data_errors(net):
    needs = Strategy("needs_data", get_strategy("magnitude").score, needs_data=True)
    with pytest.raises(ValueError, match="needs data"):
        prune(net, needs, 0.5)


def test_data_reaches_the_score_function(net):
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])

    def grad_times_weight(ctx):
        ctx.model.zero_grad()
        for xb, yb in ctx.batches():
            nn.functional.cross_entropy(ctx.model(xb), yb).backward()
        return {n: (p.grad * p).detach().abs() for n, p in ctx.params.items()}

    a = prune(net, grad_times_weight, 0.3, data=(x, y), device="cpu")
    assert a.num_kept == target_count(0.3, TOTAL) and a == prune(net, grad_times_weight, 0.3, data=[(x, y)])


def test_bad_scores_from_a_strategy(net):
    with pytest.raises(MaskSelectionError, match="wrong tensors"):
        prune(net, lambda ctx: {"conv.weight": torch.ones(4, 1, 3, 3)}, 0.5)
    with pytest.raises(MaskSelectionError, match="shape"):
        prune(net, lambda ctx: {n: torch.ones(3) for n in ctx.params}, 0.5)
    with pytest.raises(MaskSelectionError, match="'fc.weight'.*NaN"):
        prune(net, lambda ctx: {n: p * (float("nan") if n == "fc.weight" else 1) for n, p in ctx.params.items()}, 0.5)


def test_explicit_params(net):
    params = {"only_fc": net.fc.weight}
    mask = prune(net, "magnitude", 0.5, params=params)
    assert list(mask) == ["only_fc"] and mask.num_kept == 24


# prune_level ------------------------------------------------------------------------------------
def level_inputs(net):
    weights = {n: net.get_parameter(n).detach() for n in NAMES}
    current = prune(net, "random", 0.8, seed=5)
    return weights, current


def test_prune_level_magnitude_matches_prune_fraction(net):
    weights, current = level_inputs(net)
    m = prune_level(weights, current, "magnitude", 0.2, rates={"fc.*": 0.1}, generator=torch.Generator().manual_seed(0))
    ref = prune_fraction({n: w.abs() for n, w in weights.items()}, current, 0.2, rates={"fc.*": 0.1})
    assert m == ref and m.is_subset_of(current)
    assert int(m["fc.weight"].sum()) == int(current["fc.weight"].sum()) - target_count(
        0.1, int(current["fc.weight"].sum())
    )


@pytest.mark.parametrize("strategy", ["random", "random_global"])
def test_prune_level_random(net, strategy):
    weights, current = level_inputs(net)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    m = prune_level(weights, current, strategy, 0.2, generator=g(1))
    assert m.is_subset_of(current) and m.num_kept == current.num_kept - target_count(0.2, current.num_kept)
    assert m == prune_level(weights, current, strategy, 0.2, generator=g(1))
    assert m != prune_level(weights, current, strategy, 0.2, generator=g(2))


def test_prune_level_random_layerwise_uses_magnitude_counts(net):
    weights, current = level_inputs(net)
    g = torch.Generator().manual_seed(4)
    m = prune_level(weights, current, "random_layerwise", 0.3, generator=g)
    mag = prune_level(weights, current, "magnitude", 0.3)
    assert [r["kept"] for r in m.layer_report()] == [r["kept"] for r in mag.layer_report()]
    assert m.is_subset_of(current) and m != mag


def test_prune_level_errors(net):
    weights, current = level_inputs(net)
    with pytest.raises(MaskSelectionError, match="scope='global'"):
        prune_level(weights, current, "random_global", 0.2, scope="layerwise")
    with pytest.raises(MaskSelectionError, match="supports strategies"):
        prune_level(weights, current, "snip", 0.2)


# docs -------------------------------------------------------------------------------------------
def test_docs_api_example_runs():
    blocks = re.findall(r"```python\n(# example: api\n.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks, "docs/pruning.md lost its runnable API example"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(blocks[0], str(DOCS), "exec"), {"__name__": "docs_example"})


# the working copy: one per call, refreshed every iteration ------------------------------------------
def _count_deepcopies(monkeypatch) -> list[int]:
    import prunelab.pruning.api as api

    calls = [0]
    original = api.copy.deepcopy

    def counting(obj, *args, **kwargs):
        if isinstance(obj, nn.Module):
            calls[0] += 1
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(api.copy, "deepcopy", counting)
    return calls


def test_one_working_copy_per_call_restored_before_every_iteration(net, monkeypatch):
    copies = _count_deepcopies(monkeypatch)
    net.train()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
    frozen = net.hidden.bias.requires_grad_(False)
    caller = snapshot(net)
    seen = []

    def vandal(ctx):
        model = ctx.model
        seen.append(
            (
                all(torch.equal(ctx.params[n].detach(), caller[n] * ctx.mask[n]) for n in NAMES),
                all(torch.equal(v, caller[k]) for k, v in model.state_dict().items() if k not in NAMES),
                model.training and model.bn.training,
                model.hidden.bias.requires_grad,
                model.conv.weight.requires_grad,
                all(p.grad is None for p in model.parameters()),
                ctx.scratch.setdefault("calls", 0),
                len(ctx.scratch),
            )
        )
        ctx.scratch["calls"] += 1
        model(torch.randn(2, 1, 6, 6, generator=ctx.generator)).sum().backward()  # BN statistics and grads
        model.eval()
        model.hidden.bias.requires_grad_(True)
        model.conv.weight.requires_grad_(False)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(7.0)
        return {n: torch.rand(p.shape, generator=ctx.generator) for n, p in ctx.params.items()}

    prune(net, vandal, 0.3, iterations=3)
    assert copies[0] == 1
    assert seen == [(True, True, True, False, True, True, k, 1) for k in range(3)]  # scratch lives for the call
    assert_unchanged(net, caller) and not frozen.requires_grad
    prune(net, vandal, 0.3, iterations=1)
    assert seen[-1][-2:] == (0, 1) and copies[0] == 2  # a new call: a new copy and an empty scratch


def test_a_structural_change_gets_a_fresh_copy(net, monkeypatch):
    copies = _count_deepcopies(monkeypatch)
    seen = []

    def rebuilder(ctx):
        seen.append((ctx.model.conv.weight.dtype, len(ctx.model.fc._forward_hooks), type(ctx.model.fc).__name__))
        if ctx.iteration == 0:
            ctx.model.double()
        elif ctx.iteration == 1:
            ctx.model.fc.register_forward_hook(lambda *args: None)
        else:
            ctx.model.fc = nn.Identity()
        return {n: p.detach().abs().float() for n, p in ctx.params.items()}

    mask = prune(net, rebuilder, 0.3, iterations=4)
    assert seen == [(torch.float32, 0, "Linear")] * 4 and copies[0] == 4
    assert mask.num_kept == target_count(0.3, TOTAL)


def test_strategies_that_only_read_weights_get_no_model_copy(net, monkeypatch):
    copies = _count_deepcopies(monkeypatch)
    seen = []

    def reader(ctx):
        seen.append(ctx.model)
        return {n: w.abs() for n, w in ctx.params.items()}

    start = prune(net, "random", 0.5, seed=2)
    light = prune(net, Strategy("reader", reader, uses_model=False), 0.2, mask=start)
    assert seen == [None] and copies[0] == 0
    assert light == prune(net, "magnitude", 0.2, mask=start)  # masked weights, as with a copy
    assert light == prune(net, Strategy("copied", reader), 0.2, mask=start) and copies[0] == 1


def test_a_model_reading_strategy_registered_without_the_model_says_so(net):
    snip_without_model = Strategy("snip_light", get_strategy("snip").score, needs_data=True, uses_model=False)
    data = (torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="reads ctx.model but the context has none.*uses_model=True"):
        prune(net, snip_without_model, 0.5, data=data)
