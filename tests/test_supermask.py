"""Supermask layers, the subnet rule, initialisers, conversion and IteRand re-randomisation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import round_half_up
from prunelab.models import build_model, initialize, prunable_parameters
from prunelab.specs import ModelSpec, SpecError
from prunelab.supermask import (
    SupermaskConv2d,
    SupermaskError,
    SupermaskLayer,
    SupermaskLinear,
    WeightLaw,
    draw_scores,
    effective_state_dict,
    eligible_masks,
    global_subnet_masks,
    rerandomize_,
    subnet_mask,
    supermask_layers,
    supermask_masks,
    to_dense,
    to_supermask,
)
from prunelab.supermask import subnet as subnet_module
from prunelab.supermask.subnet import draw_tie_break


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lenet(seed: int = 0) -> nn.Module:
    return build_model(ModelSpec(name="lenet_300_100", width=0.25), input_shape=(1, 8, 8), num_classes=10, seed=seed)


def resnet(seed: int = 0) -> nn.Module:
    return build_model(ModelSpec(name="cifar_resnet_20", width=0.5), input_shape=(3, 8, 8), num_classes=10, seed=seed)


class UserNet(nn.Module):
    """A model prunelab has never seen: biased conv and linear layers, a batch norm, a free parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 5))
        self.temperature = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(self.conv(x)))) / self.temperature


# --- the subnet rule -------------------------------------------------------------------------------


@pytest.mark.parametrize("density", [0.0, 0.1, 0.21, 0.285, 0.5, 0.7, 0.999, 1.0])
@pytest.mark.parametrize("n", [1, 7, 10, 100, 1001])
def test_subnet_keeps_exactly_round_half_up_of_density_times_n(density: float, n: int) -> None:
    scores = torch.randn(n, generator=gen(n))
    mask = subnet_mask(scores, density)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert int(mask.sum()) == round_half_up(density, n)
    if 0 < mask.sum() < n:  # the kept are the highest-ranked
        assert scores.abs()[mask].min() > scores.abs()[~mask].max()


def test_count_differs_from_the_references_where_documented() -> None:
    scores = torch.arange(1.0, 11.0)
    # 0.21 · 10 = 2.1: prunelab keeps 2; edge-popup keeps 10 − int(0.79 · 10) = 3
    assert int(subnet_mask(scores, 0.21).sum()) == 2 and 10 - int((1 - 0.21) * 10) == 3
    # 0.45 · 10 = 4.5 keeps 5 (half up); IteRand prunes round(0.55 · 9) = 5 (banker's), keeping 5 too
    assert int(subnet_mask(scores, 0.45).sum()) == 5


def test_ranking_by_absolute_value_or_raw_score() -> None:
    scores = torch.tensor([-3.0, 1.0, 2.0])
    assert subnet_mask(scores, 1 / 3, ranking="abs").tolist() == [True, False, False]
    assert subnet_mask(scores, 1 / 3, ranking="raw").tolist() == [False, False, True]
    assert subnet_mask(scores, 2 / 3, ranking="raw").tolist() == [False, True, True]


def test_ties_are_broken_by_the_larger_tie_key_never_by_memory_order() -> None:
    n = 1000
    scores = torch.full((n,), 0.25)
    tie = draw_tie_break(n, gen(3))
    mask = subnet_mask(scores, 0.5, tie_break=tie)
    assert int(mask.sum()) == 500
    assert torch.equal(mask, tie >= 500)  # exactly the 500 largest keys
    assert 200 < int(mask[:500].sum()) < 300  # not the first half in memory
    assert torch.equal(subnet_mask(scores, 0.5, generator=gen(3)), mask)  # the same key drawn from the same seed
    assert not torch.equal(subnet_mask(scores, 0.5, generator=gen(4)), mask)


def test_only_equal_scores_are_ties() -> None:
    # the tie key decides only between equal scores: −0.0 == +0.0, and s, −s under |s|
    for tie in ([1, 0], [0, 1]):
        keys = torch.tensor(tie, dtype=torch.int32)
        assert subnet_mask(torch.tensor([-0.0, 0.0]), 0.5, ranking="raw", tie_break=keys).tolist() == [
            t == 1 for t in tie
        ]
        assert subnet_mask(torch.tensor([-0.5, 0.5]), 0.5, ranking="abs", tie_break=keys).tolist() == [
            t == 1 for t in tie
        ]
    keys = torch.tensor([1, 0], dtype=torch.int32)
    assert subnet_mask(torch.tensor([-0.5, 0.5]), 0.5, ranking="raw", tie_break=keys).tolist() == [False, True]
    assert subnet_mask(torch.tensor([1e-30, 2e-30]), 0.5, ranking="raw", tie_break=keys).tolist() == [False, True]
    assert subnet_mask(torch.tensor([-2e-30, -1e-30]), 0.5, ranking="raw", tie_break=keys).tolist() == [False, True]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_give_the_float32_mask(dtype: torch.dtype) -> None:
    scores = torch.randn(50, 20, generator=gen(1)).to(dtype)
    scores[0, :10] = 0.5  # ties, which the key breaks the same way on every path
    tie = draw_tie_break(scores.numel(), gen(2))
    for ranking in ("abs", "raw"):
        expected = subnet_mask(scores.float(), 0.3, ranking=ranking, tie_break=tie)
        assert torch.equal(subnet_mask(scores, 0.3, ranking=ranking, tie_break=tie), expected)


def test_subnet_mask_rejects_bad_arguments() -> None:
    scores = torch.randn(10)
    with pytest.raises(SupermaskError, match=r"density must be in \[0, 1\]"):
        subnet_mask(scores, 1.5)
    with pytest.raises(SupermaskError, match="Did you mean 'abs'"):
        subnet_mask(scores, 0.5, ranking="absolute")
    with pytest.raises(SupermaskError, match="not both"):
        subnet_mask(scores, 0.5, tie_break=torch.arange(10), generator=gen())
    with pytest.raises(SupermaskError, match="9 keys for 10 scores"):
        subnet_mask(scores, 0.5, tie_break=torch.arange(9))
    with pytest.raises(SupermaskError, match="floating point"):
        subnet_mask(torch.arange(10), 0.5)


def test_global_ranking_keeps_an_exact_total_over_all_tensors() -> None:
    scores = [torch.randn(30, generator=gen(1)) * 10, torch.randn(70, generator=gen(2)), torch.zeros(5)]
    ties = list(draw_tie_break(105, gen(3)).split([30, 70, 5]))
    masks = global_subnet_masks(scores, 0.333, ranking="abs", tie_breaks=ties)
    assert [m.shape for m in masks] == [s.shape for s in scores]
    assert sum(int(m.sum()) for m in masks) == round_half_up(0.333, 105) == 35
    everything = torch.cat(scores).abs()
    kept = torch.cat(masks)
    assert everything[kept].min() > everything[~kept].max()
    assert int(masks[0].sum()) > int(masks[1].sum())  # the large-scale tensor wins the global ranking


# --- the layers and the straight-through gradient --------------------------------------------------


def hand_layer(ranking: str) -> SupermaskLinear:
    layer = SupermaskLinear(2, 1, density=0.5, ranking=ranking, generator=gen())
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0]]))
        layer.scores.copy_(torch.tensor([[0.3, -0.9]]))
    return layer


def test_straight_through_gradient_on_the_hand_computed_case() -> None:
    # x = [1, 2], w = [0.5, −1], s = [0.3, −0.9], keep 50% by |s|: m = [0, 1], out = −2, ∂out/∂s = [0.5, 2.0]
    layer = hand_layer("abs")
    out = layer(torch.tensor([[1.0, 2.0]]))
    assert layer.keep_mask().tolist() == [[False, True]]
    assert out.item() == -2.0
    out.sum().backward()
    assert layer.scores.grad.tolist() == [[0.5, 2.0]]
    assert layer.weight.grad is None and not layer.weight.requires_grad


def test_straight_through_gradient_ranking_raw_scores() -> None:
    # by raw s the larger score is 0.3: m = [1, 0], out = 0.5, ∂out/∂s = x ⊙ w = [0.5, −2] (no sign flip)
    layer = hand_layer("raw")
    out = layer(torch.tensor([[1.0, 2.0]]))
    assert layer.keep_mask().tolist() == [[True, False]] and out.item() == 0.5
    out.sum().backward()
    assert layer.scores.grad.tolist() == [[0.5, -2.0]]


def test_conv_layer_forward_is_the_masked_convolution_and_stable() -> None:
    layer = SupermaskConv2d(4, 6, 3, padding=1, bias=True, density=0.3, generator=gen(1))
    x = torch.randn(2, 4, 5, 5, generator=gen(2))
    mask = layer.keep_mask()
    assert int(mask.sum()) == round_half_up(0.3, 6 * 4 * 9)
    expected = F.conv2d(x, layer.weight * mask, layer.bias, padding=1)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.keep_mask(), mask)  # the same scores always give the same mask
    assert layer.bias.requires_grad and torch.all(layer.bias == 0)  # bias=True: learned, from zero
    assert {n for n, p in layer.named_parameters() if p.requires_grad} == {"scores", "bias"}
    assert "tie_break" in layer.state_dict()


def test_layers_draw_from_their_generator_only() -> None:
    state = torch.get_rng_state()
    first = SupermaskLinear(20, 10, density=0.5, generator=gen(7))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never touched
    second = SupermaskLinear(20, 10, density=0.5, generator=gen(7))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    with pytest.raises(SupermaskError, match="rerandomize_"):
        first.reset_parameters()


class _HostReadError(RuntimeError):
    pass


def test_forward_and_backward_never_read_values_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    nets = [
        to_supermask(resnet(), 0.4, generator=gen()),
        to_supermask(lenet(), 0.4, generator=gen(), scope="global", method="iterand"),
    ]
    x = {id(nets[0]): torch.randn(2, 3, 8, 8), id(nets[1]): torch.randn(2, 1, 8, 8)}

    def refuse(*args, **kwargs):
        raise _HostReadError("a device value was read on the host")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for net in nets:
        F.cross_entropy(net(x[id(net)]), torch.tensor([1, 2])).backward()
    monkeypatch.undo()
    assert all(layer.scores.grad is not None for net in nets for layer in supermask_layers(net).values())


# --- initialisers ----------------------------------------------------------------------------------


def conv_576() -> torch.Tensor:
    return torch.empty(128, 64, 3, 3)  # fan-in 64 · 3 · 3 = 576


def test_signed_constant_magnitude_for_fan_in_576() -> None:
    weight = conv_576()
    assert WeightLaw("signed_constant").std(weight) == pytest.approx(0.058926, abs=5e-7)  # √2 / √576
    values = WeightLaw("signed_constant").draw(weight, gen())
    assert sorted(torch.unique(values).tolist()) == pytest.approx([-0.058926, 0.058926], abs=5e-7)
    assert (values > 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    for density in (0.1, 0.3, 0.5):
        scaled = WeightLaw("signed_constant", scale_fan=True, density=density)
        assert torch.unique(scaled.draw(weight, gen()).abs()).item() == pytest.approx(
            0.058926 / math.sqrt(density), rel=1e-5
        )
        reference = WeightLaw("signed_constant", scale_fan="pruned_fraction", density=density)
        assert reference.std(weight) == pytest.approx(0.058926 / math.sqrt(1 - density), rel=1e-5)
    assert WeightLaw("signed_constant", True, 0.5).std(weight) == WeightLaw(
        "signed_constant", "pruned_fraction", 0.5
    ).std(weight)


@pytest.mark.parametrize("init", ["kaiming_normal", "kaiming_uniform", "signed_constant"])
def test_unscaled_laws_equal_the_model_initialisers(init: str) -> None:
    layer = nn.Conv2d(16, 32, 3)
    initialize(layer, init, "ones", generator=gen(5))
    assert torch.equal(WeightLaw(init).draw(layer.weight, gen(5)), layer.weight)
    if init == "signed_constant":  # fan × density is the models' scaled_signed_constant
        initialize(layer, "scaled_signed_constant", "ones", generator=gen(5), density=0.3)
        assert torch.equal(WeightLaw(init, True, 0.3).draw(layer.weight, gen(5)), layer.weight)


@pytest.mark.parametrize("scale_fan, factor", [(False, 1.0), (True, 0.2), ("pruned_fraction", 0.8)])
def test_kaiming_laws_scale_the_fan(scale_fan: bool | str, factor: float) -> None:
    weight = torch.empty(400, 250)
    sigma = math.sqrt(2 / (250 * factor))
    normal = WeightLaw("kaiming_normal", scale_fan, 0.2).draw(weight, gen(1))
    assert normal.std().item() == pytest.approx(sigma, rel=0.02)
    uniform = WeightLaw("kaiming_uniform", scale_fan, 0.2).draw(weight, gen(1))
    assert uniform.abs().max().item() <= math.sqrt(3) * sigma
    assert uniform.abs().max().item() > 0.999 * math.sqrt(3) * sigma


@pytest.mark.parametrize(
    "init, bound", [("pytorch_default", 1 / math.sqrt(250)), ("kaiming_uniform", math.sqrt(6 / 250))]
)
def test_score_initialisers_are_uniform_with_the_references_bounds(init: str, bound: float) -> None:
    scores = draw_scores(init, torch.empty(400, 250), gen(2))
    assert scores.abs().max().item() <= bound
    assert scores.abs().max().item() > 0.999 * bound
    assert scores.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_weight_law_rejects_bad_options() -> None:
    with pytest.raises(SupermaskError, match="0 at density 1"):
        WeightLaw("signed_constant", "pruned_fraction", 1.0)
    with pytest.raises(SupermaskError, match="unknown scale_fan 1"):
        WeightLaw("signed_constant", 1, 0.5)
    with pytest.raises(SupermaskError, match="Did you mean 'kaiming_normal'"):
        WeightLaw("kaiming_norml")
    with pytest.raises(SupermaskError, match=r"density must be in \(0, 1\]"):
        WeightLaw("signed_constant", True, 0.0)


def test_weights_do_not_depend_on_how_scores_are_drawn_or_ranked() -> None:
    edge = to_supermask(lenet(), 0.5, generator=gen(9), method="edge-popup")
    iterand = to_supermask(lenet(), 0.5, generator=gen(9), method="iterand")
    for (name, a), b in zip(supermask_layers(edge).items(), supermask_layers(iterand).values()):
        assert torch.equal(a.weight, b.weight), name
        assert (a.ranking, b.ranking) == ("abs", "raw") and (a.score_init, b.score_init) == (
            "pytorch_default",
            "kaiming_uniform",
        )
        fan_in = a.weight[0].numel()
        assert a.scores.abs().max() <= 1 / math.sqrt(fan_in) and b.scores.abs().max() <= math.sqrt(6 / fan_in)


# --- conversion ------------------------------------------------------------------------------------


def test_conversion_keeps_names_and_trains_only_the_scores() -> None:
    model = resnet()
    before = copy.deepcopy(model.state_dict())
    net = to_supermask(model, 0.3, generator=gen())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    layers = supermask_layers(net)
    weights = [f"{path}.weight" for path in layers]
    assert weights == list(prunable_parameters(model))
    assert list(prunable_parameters(net)) == weights
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {f"{path}.scores" for path in layers}
    bn_affine = {k for k in before if ("bn" in k or "shortcut.1" in k) and k.endswith(("weight", "bias"))}
    assert set(net.state_dict()) == (set(before) - bn_affine) | {
        f"{p}.{b}" for p in layers for b in ("scores", "tie_break")
    }
    assert all(not m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    masks = supermask_masks(net)
    assert list(masks) == weights
    assert all(
        int(masks[f"{p}.weight"].sum()) == round_half_up(0.3, layer.weight.numel()) for p, layer in layers.items()
    )


def test_conversion_follows_the_prunable_rule_and_its_patterns() -> None:
    net = to_supermask(lenet(), 0.5, generator=gen(), ignore=("fc.weight",))
    assert list(supermask_layers(net)) == ["hidden.0", "hidden.1"]
    assert type(net.fc) is nn.Linear and not net.fc.weight.requires_grad  # left ordinary, and frozen
    assert list(supermask_layers(to_supermask(UserNet(), 0.5, generator=gen(), prunable="conv"))) == ["conv"]
    with pytest.raises(SpecError, match="matches no parameter"):
        to_supermask(lenet(), 0.5, generator=gen(), ignore=("classifier.weight",))
    with pytest.raises(SpecError, match="unknown prunable kind"):
        to_supermask(lenet(), 0.5, generator=gen(), prunable="dense")


def test_user_model_biases_are_frozen_zeros_or_learned() -> None:
    model = UserNet()
    frozen = to_supermask(model, 0.5, generator=gen())
    assert isinstance(frozen.conv, SupermaskConv2d) and isinstance(frozen.head[1], SupermaskLinear)
    assert set(frozen.state_dict()) >= {"conv.bias", "head.1.bias", "head.3.bias"}
    assert all(
        torch.all(layer.bias == 0) and not layer.bias.requires_grad for layer in supermask_layers(frozen).values()
    )
    assert not frozen.temperature.requires_grad and not frozen.bn.affine
    learned = to_supermask(model, 0.5, generator=gen(), bias=True, bn_affine=True)
    assert {n for n, p in learned.named_parameters() if p.requires_grad} == {
        f"{p}.{leaf}" for p in ("conv", "head.1", "head.3") for leaf in ("scores", "bias")
    }
    assert learned.bn.affine and not learned.bn.weight.requires_grad
    with pytest.raises(SupermaskError, match="no converted layer has a bias"):
        to_supermask(nn.Sequential(nn.Linear(4, 4, bias=False)), 0.5, generator=gen(), bias=True)


def test_effective_state_dict_loads_into_the_original_model() -> None:
    model = UserNet()
    net = to_supermask(model, 0.4, generator=gen(1), bias=True)
    with torch.no_grad():
        for layer in supermask_layers(net).values():
            layer.bias.normal_(generator=gen(2))
    x = torch.randn(3, 3, 4, 4, generator=gen(3))
    net(x)  # one training-mode forward moves the running statistics
    state = effective_state_dict(net)
    assert list(state) == list(model.state_dict())
    model.load_state_dict(state)
    model.eval(), net.eval()
    assert torch.allclose(model(x), net(x), atol=1e-6)
    masks = supermask_masks(net)
    for name, mask in masks.items():
        assert torch.equal(state[name] != 0, mask)  # pruned weights are exactly zero
    assert torch.all(state["bn.weight"] == 1) and torch.all(state["bn.bias"] == 0)
    dense = to_dense(net)
    assert not any(isinstance(m, SupermaskLayer) for m in dense.modules())
    assert all(p.requires_grad for p in dense.parameters())


def test_conversion_refuses_what_it_cannot_convert() -> None:
    attention = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2))
    with pytest.raises(SupermaskError, match=r"1\.out_proj .*ignore='1\.out_proj\.weight'"):
        to_supermask(attention, 0.5, generator=gen())
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    with pytest.raises(SupermaskError, match="shared"):
        to_supermask(nn.Sequential(tied, nn.Linear(4, 2)), 0.5, generator=gen(), ignore=())
    net = to_supermask(lenet(), 0.5, generator=gen())
    with pytest.raises(SupermaskError, match="already has supermask layers"):
        to_supermask(net, 0.5, generator=gen())
    with pytest.raises(SupermaskError, match="Did you mean 'iterand'"):
        to_supermask(lenet(), 0.5, generator=gen(), method="iterrand")
    with pytest.raises(SupermaskError, match="bias and bn_affine must be True or False"):
        to_supermask(lenet(), 0.5, generator=gen(), bias="yes")


def test_a_bare_layer_converts_to_a_supermask_layer() -> None:
    layer = to_supermask(nn.Linear(10, 3), 0.5, generator=gen())
    assert isinstance(layer, SupermaskLinear) and list(supermask_masks(layer)) == ["weight"]


def test_global_scope_ranks_all_layers_once_per_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    net = to_supermask(lenet(), 0.3, generator=gen(), scope="global")
    layers = supermask_layers(net)
    total = sum(layer.weight.numel() for layer in layers.values())
    masks = supermask_masks(net)
    assert masks.num_kept == round_half_up(0.3, total)
    assert len({round(d, 6) for d in masks.layer_densities().values()}) > 1  # layers differ under one threshold
    calls = []
    original = subnet_module.masks_keeping
    monkeypatch.setattr("prunelab.supermask.scope.masks_keeping", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(4, 1, 8, 8)
    net(x)
    assert len(calls) == 1  # one ranking for the three layers
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for layer in supermask_layers(twin).values():
            layer.scores.copy_(torch.randn(layer.scores.shape, generator=gen(1)))
    assert supermask_masks(net) == masks  # the copy ranks its own layers
    assert supermask_masks(twin) != masks


# --- IteRand re-randomisation ----------------------------------------------------------------------


def iterand_net(density: float = 0.4, **options) -> nn.Module:
    options = {"method": "iterand", "weight_init": "kaiming_normal", **options}
    return to_supermask(lenet(), density, generator=gen(11), **options)


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_rerandomize_changes_only_eligible_weights_at_rate_lambda(fraction: float) -> None:
    net = iterand_net()
    before = snapshot(net)
    eligible = eligible_masks(net)
    rerandomize_(net, fraction, generator=gen(5))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith(".weight"))  # scores, ties, ...
    changed = eligible_total = 0
    for path, mask in eligible.items():
        diff = before[f"{path}.weight"] != after[f"{path}.weight"]
        assert not diff[~mask].any()  # kept weights untouched
        assert torch.equal(mask, ~supermask_masks(net)[f"{path}.weight"])  # eligible = every pruned weight
        changed += int(diff.sum())
        eligible_total += int(mask.sum())
    # each eligible weight is re-drawn with probability λ (a continuous law: a re-draw always changes it)
    sigma = math.sqrt(eligible_total * fraction * (1 - fraction))
    assert abs(changed - fraction * eligible_total) <= 5 * sigma


def test_rerandomize_at_lambda_zero_and_one() -> None:
    net = iterand_net()
    before = snapshot(net)
    generator = gen(5)
    rerandomize_(net, 0.0, generator=generator)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    state = generator.get_state()
    rerandomize_(net, 1.0, generator=generator)
    replay = torch.Generator()
    replay.set_state(state)
    eligible = eligible_masks(net)
    for path, layer in supermask_layers(net).items():
        fresh = layer.weight_law.draw(layer.weight, replay)
        torch.rand(layer.weight.shape, generator=replay)
        mask = eligible[path]
        assert torch.equal(layer.weight[mask], fresh[mask])  # every eligible weight is the law's new draw
        assert torch.equal(layer.weight[~mask], before[f"{path}.weight"][~mask])


def test_rerandomize_is_reproducible_and_consumes_the_same_draws_for_any_lambda() -> None:
    first, second = iterand_net(), iterand_net()
    g1, g2 = gen(8), gen(8)
    rerandomize_(first, 0.3, generator=g1)
    rerandomize_(second, 0.3, generator=g2)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    g3 = gen(8)
    rerandomize_(iterand_net(), 0.9, generator=g3)
    assert torch.equal(g1.get_state(), g3.get_state())


def test_rerandomize_leaves_the_optimiser_state_alone() -> None:
    net = iterand_net()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    F.cross_entropy(net(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    rerandomize_(net, 0.5, generator=gen())
    after = opt.state_dict()
    assert all(
        torch.equal(state["state"][i]["momentum_buffer"], after["state"][i]["momentum_buffer"]) for i in state["state"]
    )


def test_manual_mode_mixes_old_and_new_weights() -> None:
    net = iterand_net()
    before = snapshot(net)
    generator = gen(4)
    state = generator.get_state()
    rerandomize_(net, 0.75, generator=generator, mode="manual", mu=0.5)
    replay = torch.Generator()
    replay.set_state(state)
    for path, layer in supermask_layers(net).items():
        fresh = layer.weight_law.draw(layer.weight, replay)
        old = before[f"{path}.weight"]
        pruned = ~layer.keep_mask()
        assert torch.equal(layer.weight[pruned], (0.75 * old + 0.5 * fresh)[pruned])
        assert torch.equal(layer.weight[~pruned], old[~pruned])
    with pytest.raises(SupermaskError, match="needs mu"):
        rerandomize_(net, 0.5, generator=gen(), mode="manual")
    with pytest.raises(SupermaskError, match="mode='manual' only"):
        rerandomize_(net, 0.5, generator=gen(), mu=0.1)
    with pytest.raises(SupermaskError, match=r"must be in \[0, 1\]"):
        rerandomize_(net, 1.5, generator=gen())
    with pytest.raises(SupermaskError, match="Did you mean 'bernoulli'"):
        rerandomize_(net, 0.5, generator=gen(), mode="bernouli")


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_rerand_rate_makes_only_the_lowest_ranked_pruned_weights_eligible(scope: str) -> None:
    net = iterand_net(0.4, scope=scope)
    layers = supermask_layers(net)
    keeps = supermask_masks(net)
    eligible = eligible_masks(net, rerand_rate=0.25)
    groups = [list(layers)] if scope == "global" else [[p] for p in layers]
    for paths in groups:
        pruned = torch.cat([~keeps[f"{p}.weight"].reshape(-1) for p in paths])
        chosen = torch.cat([eligible[p].reshape(-1) for p in paths])
        scores = torch.cat([layers[p].scores.detach().reshape(-1) for p in paths])
        assert not (chosen & ~pruned).any()
        assert int(chosen.sum()) == round_half_up(0.25, int(pruned.sum()))
        assert scores[chosen].max() < scores[pruned & ~chosen].min()  # raw ranking: the lowest scores


def test_global_rerandomize_uses_the_global_subnet() -> None:
    net = iterand_net(0.3, scope="global")
    keeps = supermask_masks(net)
    assert all(torch.equal(mask, ~keeps[f"{p}.weight"]) for p, mask in eligible_masks(net).items())
    with pytest.raises(SupermaskError, match="part of a global ranking"):
        eligible_masks(net.hidden, rerand_rate=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_seed_gives_the_same_weights_on_cpu_and_cuda() -> None:
    cpu = iterand_net()
    cuda = to_supermask(lenet().cuda(), 0.4, generator=gen(11), method="iterand", weight_init="kaiming_normal")
    rerandomize_(cpu, 0.5, generator=gen(2))
    rerandomize_(cuda, 0.5, generator=gen(2))
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu.state_dict().values(), cuda.state_dict().values()))
