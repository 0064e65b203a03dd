"""prunelab.models: registry, architectures (shapes and pinned weight counts), initialisers and the
prunable-parameter convention."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunelab.models import (
    build_model,
    initialize,
    model_names,
    output_layer_name,
    prunable_from_spec,
    prunable_parameters,
    register_model,
    registry,
)
from prunelab.models.registry import scaled
from prunelab.specs.base import SpecError
from prunelab.specs.model import INITIALISERS, PRUNABLE_KINDS, ModelSpec

CIFAR = (3, 32, 32)
TINY = (3, 64, 64)
MNIST = (1, 28, 28)


def build(name: str, input_shape=CIFAR, num_classes: int = 10, seed: int = 0, **spec) -> nn.Module:
    return build_model(ModelSpec(name=name, **spec), input_shape=input_shape, num_classes=num_classes, seed=seed)


def count(params: dict[str, nn.Parameter]) -> int:
    return sum(p.numel() for p in params.values())


# --- architectures -------------------------------------------------------------------------------

# (name, input shape, classes, prunable weights, prunable tensors, all parameters) at width 1.
# Every number was checked by hand from the layer sizes (k×k×in×out per convolution, in×out per
# linear layer, 2 per batch-norm channel, one bias per output unit where layers have biases):
#   LeNet-300-100: 784·300 + 300·100 + 100·10 = 266,200.
#   Conv-2: 3·64·9 + 64·64·9 + (16·16·64)·256 + 256·256 + 256·10 = 4,300,992; Conv-4/6/8 alike. The
#     paper's table says 4.3M / 2.4M / 1.7M for Conv-2/4/6; its 1.7M for Conv-6 does not follow from the
#     architecture it describes (2.26M, as Ramanujan et al. 2020 report with 5.3M for Conv-8).
#   CIFAR ResNet-20: stem 432 + stage 1 6·2,304 + stage 2 (4,608 + 9,216 + 512 + 4·9,216)
#     + stage 3 (18,432 + 36,864 + 2,048 + 4·36,864) + fc 640 = 270,896 in 22 tensors; each extra
#     block per stage (depth + 6) adds 96,768 weights and 6 tensors.
#   VGG-16: 14,710,464 conv + 5,120 fc = 14,715,584.
#   ResNet-18/34/50/101/152: the totals are the published ones (11,689,512 / 21,797,672 / 25,557,032 /
#     44,549,160 / 60,192,808); prunable = total − 2·(batch-norm channels) − 1,000 fc biases.
#   ResNet-200 (OpenLTH's 3, 24, 36, 3 blocks): ResNet-152 + 16 stage-2 bottlenecks of 280,064
#     parameters each (512·128 + 9·128² + 128·512 weights, 2·768 batch-norm) = 64,673,832, of them
#     16 · 278,528 more prunable weights.
#   Tiny-ImageNet stems: 3×3 instead of 7×7 stem (−7,680) and 200 classes (−409,600 fc weights
#     with basic blocks, −1,638,400 with bottlenecks).
ARCHITECTURES = [
    ("lenet_300_100", MNIST, 10, 266_200, 3, 266_610),
    ("lenet_500_300_100", MNIST, 10, 573_000, 4, 573_910),
    ("conv2", CIFAR, 10, 4_300_992, 5, 4_301_642),
    ("conv4", CIFAR, 10, 2_425_024, 7, 2_425_930),
    ("conv6", CIFAR, 10, 2_261_184, 9, 2_262_602),
    ("conv8", CIFAR, 10, 5_275_840, 11, 5_278_282),
    ("cifar_resnet_20", CIFAR, 10, 270_896, 22, 272_474),
    ("cifar_resnet_32", CIFAR, 10, 464_432, 34, 466_906),
    ("cifar_resnet_44", CIFAR, 10, 657_968, 46, 661_338),
    ("cifar_resnet_56", CIFAR, 10, 851_504, 58, 855_770),
    ("cifar_resnet_110", CIFAR, 10, 1_722_416, 112, 1_730_714),
    ("vgg_11", CIFAR, 10, 9_222_848, 9, 9_228_362),
    ("vgg_13", CIFAR, 10, 9_407_168, 11, 9_413_066),
    ("vgg_16", CIFAR, 10, 14_715_584, 14, 14_724_042),
    ("vgg_19", CIFAR, 10, 20_024_000, 17, 20_035_018),
    ("resnet_18", CIFAR, 1000, 11_678_912, 21, 11_689_512),
    ("resnet_34", CIFAR, 1000, 21_779_648, 37, 21_797_672),
    ("resnet_50", CIFAR, 1000, 25_502_912, 54, 25_557_032),
    ("resnet_101", CIFAR, 1000, 44_442_816, 105, 44_549_160),
    ("resnet_152", CIFAR, 1000, 60_040_384, 156, 60_192_808),
    ("resnet_200", CIFAR, 1000, 64_496_832, 204, 64_673_832),
    ("tinyimagenet_resnet_18", TINY, 200, 11_261_632, 21, 11_271_432),
    ("tinyimagenet_resnet_34", TINY, 200, 21_362_368, 37, 21_379_592),
    ("tinyimagenet_resnet_50", TINY, 200, 23_856_832, 54, 23_910_152),
    ("tinyimagenet_resnet_101", TINY, 200, 42_796_736, 105, 42_902_280),
    ("tinyimagenet_resnet_152", TINY, 200, 58_394_304, 156, 58_545_928),
    ("tinyimagenet_resnet_200", TINY, 200, 62_850_752, 204, 63_026_952),
]


def test_every_registered_model_has_pinned_counts() -> None:
    assert set(model_names()) == {name for name, *_ in ARCHITECTURES} - {"lenet_500_300_100"}


@pytest.mark.parametrize(
    "name, input_shape, classes, prunable, tensors, total", ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES]
)
def test_weight_counts_at_width_one(name, input_shape, classes, prunable, tensors, total) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build(name, input_shape, classes)
    params = prunable_parameters(model)
    assert (count(params), len(params)) == (prunable, tensors)
    assert sum(p.numel() for p in model.parameters()) == total
    assert output_layer_name(model) == "fc.weight" and "fc.weight" in params


FORWARD_CASES = [
    ("lenet_300_100", MNIST, 1.0),
    ("lenet_500_300_100", (3, 8, 8), 0.5),
    ("conv2", CIFAR, 0.25),
    ("conv4", CIFAR, 0.25),
    ("conv6", CIFAR, 0.25),
    ("conv8", CIFAR, 0.25),
    ("conv8", TINY, 0.125),
    ("cifar_resnet_8", CIFAR, 0.5),
    ("cifar_resnet_20", CIFAR, 0.5),
    ("cifar_resnet_32", CIFAR, 0.25),
    ("cifar_resnet_44", CIFAR, 0.25),
    ("cifar_resnet_56", CIFAR, 0.25),
    ("cifar_resnet_110", CIFAR, 0.25),
    ("vgg_11", CIFAR, 0.125),
    ("vgg_13", CIFAR, 0.125),
    ("vgg_16", CIFAR, 0.125),
    ("vgg_19", CIFAR, 0.125),
    ("vgg_16", TINY, 0.125),
    ("resnet_18", CIFAR, 0.125),
    ("resnet_34", CIFAR, 0.125),
    ("resnet_50", CIFAR, 0.125),
    ("resnet_101", CIFAR, 0.0625),
    ("resnet_152", CIFAR, 0.0625),
    ("resnet_200", CIFAR, 0.0625),
    ("tinyimagenet_resnet_18", TINY, 0.125),
    ("tinyimagenet_resnet_34", (3, 16, 16), 0.125),
    ("tinyimagenet_resnet_50", (3, 16, 16), 0.125),
    ("tinyimagenet_resnet_101", (3, 16, 16), 0.0625),
    ("tinyimagenet_resnet_152", (3, 16, 16), 0.0625),
    ("tinyimagenet_resnet_200", (3, 16, 16), 0.0625),
]


@pytest.mark.parametrize("name, input_shape, width", FORWARD_CASES, ids=[f"{n}-{s[-1]}" for n, s, _ in FORWARD_CASES])
def test_forward_output_shape(name, input_shape, width) -> None:
    model = build(name, input_shape, num_classes=7, width=width)
    out = model(torch.randn(2, *input_shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_forward_names_cover_every_registered_model() -> None:
    assert set(model_names()) <= {name for name, _, _ in FORWARD_CASES}


def test_width_multiplier_scales_hidden_layers_only() -> None:
    assert [layer.out_features for layer in build("lenet_300_100", MNIST, width=0.5).hidden] == [150, 50]
    assert [layer.out_features for layer in build("lenet_300_100", MNIST, width=2).hidden] == [600, 200]
    assert [layer.out_features for layer in build("lenet_300_100", MNIST, width=1e-3).hidden] == [1, 1]
    narrow = build("cifar_resnet_20", width=0.5)
    assert narrow.conv.in_channels == 3 and narrow.conv.out_channels == 8 and narrow.fc.out_features == 10
    # stem 216 + stage 1 6·576 + stage 2 12,800 + stage 3 51,200 + fc 320
    assert count(prunable_parameters(narrow)) == 67_992
    assert build("vgg_16", width=0.5).fc.in_features == 256
    assert build("conv4", width=0.5).hidden[0].in_features == 64 * 8 * 8
    with torch.device("meta"):
        assert build("resnet_50", width=0.5, num_classes=1000).fc.in_features == 1024


def test_width_rounds_half_up_and_never_below_one() -> None:
    assert scaled(100, 0.125) == 13  # 12.5
    assert scaled(100, 0.124) == 12
    assert scaled(16, 0.01) == 1
    assert scaled(64, 1.0) == 64


def test_conv_fc_input_follows_input_shape() -> None:
    assert build("conv2", TINY, width=0.25).hidden[0].in_features == 16 * 32 * 32
    assert build("conv6", (3, 36, 28), width=0.25).hidden[0].in_features == 64 * 4 * 3


# --- registry --------------------------------------------------------------------------------------


def test_unknown_model_names_the_closest_valid_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown model 'vgg16'\. Did you mean 'vgg_16'") as error:
        build("vgg16")
    assert "cifar_resnet_<6n+2>" in str(error.value) and "lenet_<N1>_<N2>" in str(error.value)
    with pytest.raises(SpecError, match="Did you mean 'lenet_300_100'"):
        build("lenet_300_10O", MNIST)


def test_parameterised_families_validate_their_parameters() -> None:
    with pytest.raises(SpecError, match="6n\\+2"):
        build("cifar_resnet_21")
    with pytest.raises(SpecError, match="at least 16x16, got 8x8"):
        build("vgg_16", (3, 8, 8))
    with pytest.raises(SpecError, match="channels, height, width"):
        build("cifar_resnet_20", (784,))


def test_register_a_custom_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_NAMED", dict(registry._NAMED))

    @register_model("tiny_mlp")
    def tiny_mlp(name, *, input_shape, num_classes, width):
        return nn.Sequential()  # no `fc`: rejected below

    @register_model("tiny_linear")
    def tiny_linear(name, *, input_shape, num_classes, width):
        model = nn.Module()
        model.fc = nn.Linear(math.prod(input_shape), num_classes)
        return model

    assert "tiny_linear" in model_names()
    assert build("tiny_linear", (5,), num_classes=3).fc.weight.shape == (3, 5)
    with pytest.raises(TypeError, match="output layer `fc`"):
        build("tiny_mlp", (5,))
    with pytest.raises(ValueError, match="registered twice"):
        register_model("tiny_linear")(tiny_linear)


# --- seeding ---------------------------------------------------------------------------------------


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("init", INITIALISERS)
def test_seed_determines_weights_and_global_rng_is_untouched(init: str) -> None:
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = build("cifar_resnet_8", seed=3, init=init, bn_init="uniform", width=0.5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)  # a different global stream must not matter
    again = build("cifar_resnet_8", seed=3, init=init, bn_init="uniform", width=0.5)
    other = build("cifar_resnet_8", seed=4, init=init, bn_init="uniform", width=0.5)
    assert _same_weights(first, again)
    assert not torch.equal(first.conv.weight, other.conv.weight)
    assert not torch.equal(first.bn.weight, other.bn.weight)


# --- initialisers ----------------------------------------------------------------------------------


def _init_layer(layer: nn.Module, init: str, seed: int = 0, density: float = 1.0) -> nn.Module:
    return initialize(layer, init, "ones", generator=torch.Generator().manual_seed(seed), density=density)


@pytest.mark.parametrize("layer", [nn.Linear(1000, 800), nn.Conv2d(64, 400, 3)], ids=["linear", "conv"])
def test_kaiming_laws_have_relu_gain_over_fan_in(layer: nn.Module) -> None:
    std = math.sqrt(2 / layer.weight[0].numel())
    normal = _init_layer(layer, "kaiming_normal").weight
    assert normal.std().item() == pytest.approx(std, rel=0.02)
    assert abs(normal.mean().item()) < 0.01 * std
    assert torch.all(layer.bias == 0)
    uniform = _init_layer(layer, "kaiming_uniform").weight
    assert uniform.std().item() == pytest.approx(std, rel=0.02)
    assert uniform.abs().max().item() <= math.sqrt(3) * std
    assert uniform.abs().max().item() > 0.99 * math.sqrt(3) * std


def test_standard_normal_is_unscaled() -> None:
    weight = _init_layer(nn.Linear(1000, 500), "standard_normal").weight
    assert weight.std().item() == pytest.approx(1.0, rel=0.02)


def test_signed_constants_have_exactly_two_values() -> None:
    layer = nn.Linear(500, 400)
    std = math.sqrt(2 / 500)
    weight = _init_layer(layer, "signed_constant").weight
    values = torch.unique(weight)
    assert values.tolist() == pytest.approx([-std, std])
    assert (weight > 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    scaled_weight = _init_layer(layer, "scaled_signed_constant", density=0.25).weight
    assert torch.unique(scaled_weight.abs()).tolist() == pytest.approx([2 * std])
    assert torch.unique(_init_layer(layer, "scaled_signed_constant").weight.abs()).tolist() == pytest.approx([std])


def test_pytorch_default_is_reset_parameters_seeded() -> None:
    layer = _init_layer(nn.Linear(400, 300), "pytorch_default", seed=5)
    bound = 1 / math.sqrt(400)  # PyTorch's kaiming_uniform(a=√5) and bias law both give U(±1/√fan_in)
    assert layer.weight.abs().max().item() <= bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert layer.bias.abs().max().item() <= bound and layer.bias.abs().sum() > 0
    assert torch.equal(_init_layer(nn.Linear(400, 300), "pytorch_default", seed=5).weight, layer.weight)
    assert not torch.equal(_init_layer(nn.Linear(400, 300), "pytorch_default", seed=6).weight, layer.weight)


# Glorot & Bengio 2010: σ = sqrt(2 / (fan_in + fan_out)), bound = √3·σ = sqrt(6 / (fan_in + fan_out)).
# Linear(300, 100): fan_in 300, fan_out 100. Conv2d(16, 32, 3): fan_in 16·9 = 144, fan_out 32·9 = 288.
XAVIER_CASES = [
    (lambda: nn.Linear(300, 100), math.sqrt(2 / 400), math.sqrt(6 / 400)),
    (lambda: nn.Conv2d(16, 32, 3), math.sqrt(2 / 432), math.sqrt(6 / 432)),
]


@pytest.mark.parametrize("make, std, bound", XAVIER_CASES, ids=["linear", "conv"])
def test_xavier_laws_draw_exactly_the_glorot_values(make, std, bound) -> None:
    layer = _init_layer(make(), "xavier_normal", seed=7)
    expected = torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(7)) * std
    assert torch.equal(layer.weight, expected)
    assert torch.all(layer.bias == 0)
    reference = torch.empty(layer.weight.shape)
    nn.init.xavier_normal_(reference, generator=torch.Generator().manual_seed(7))  # PyTorch's own formula
    torch.testing.assert_close(layer.weight, reference, rtol=1e-6, atol=1e-7)

    layer = _init_layer(make(), "xavier_uniform", seed=7)
    expected = torch.empty(layer.weight.shape).uniform_(-bound, bound, generator=torch.Generator().manual_seed(7))
    assert torch.equal(layer.weight, expected)
    nn.init.xavier_uniform_(reference, generator=torch.Generator().manual_seed(7))
    assert torch.equal(layer.weight, reference)
    assert layer.weight.abs().max().item() <= bound and torch.all(layer.bias == 0)


def test_xavier_statistics_on_a_large_layer() -> None:
    layer = nn.Conv2d(64, 128, 3)  # fan_in 576, fan_out 1,152: σ = sqrt(2 / 1,728) = 0.034021
    std = math.sqrt(2 / 1728)
    assert _init_layer(layer, "xavier_normal").weight.std().item() == pytest.approx(std, rel=0.01)
    uniform = _init_layer(layer, "xavier_uniform").weight
    assert uniform.std().item() == pytest.approx(std, rel=0.01)
    assert 0.999 * math.sqrt(3) * std < uniform.abs().max().item() <= math.sqrt(3) * std


def _layers_for_golden_draws() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(6, 5))


# Each initialiser as a formula over one generator's stream, layer after layer in modules() order:
# adding initialisers and bias options must leave every existing one drawing exactly these values.
GOLDEN_LAWS = {
    "kaiming_normal": lambda w, g: torch.randn(w.shape, generator=g) * math.sqrt(2 / w[0].numel()),
    "kaiming_uniform": lambda w, g: torch.empty(w.shape).uniform_(
        -math.sqrt(6 / w[0].numel()), math.sqrt(6 / w[0].numel()), generator=g
    ),
    "standard_normal": lambda w, g: torch.randn(w.shape, generator=g),
    "signed_constant": lambda w, g: (torch.randint(0, 2, w.shape, generator=g) * 2 - 1) * math.sqrt(2 / w[0].numel()),
    "scaled_signed_constant": lambda w, g: (
        (torch.randint(0, 2, w.shape, generator=g) * 2 - 1) * math.sqrt(2 / w[0].numel()) / math.sqrt(0.25)
    ),
}


@pytest.mark.parametrize("init", sorted(GOLDEN_LAWS))
def test_existing_initialisers_draw_what_they_always_drew(init: str) -> None:
    model = initialize(
        _layers_for_golden_draws(), init, "uniform", generator=torch.Generator().manual_seed(11), density=0.25
    )
    stream = torch.Generator().manual_seed(11)
    conv_weight = GOLDEN_LAWS[init](model[0].weight, stream)
    gamma = torch.rand(4, generator=stream)
    linear_weight = GOLDEN_LAWS[init](model[3].weight, stream)
    assert torch.equal(model[0].weight, conv_weight.float()) and torch.equal(model[3].weight, linear_weight.float())
    assert torch.equal(model[1].weight, gamma)
    assert torch.all(model[0].bias == 0) and torch.all(model[3].bias == 0) and torch.all(model[1].bias == 0)


def test_bias_init_pytorch_default_draws_after_each_weight() -> None:
    model = initialize(
        _layers_for_golden_draws(),
        "kaiming_normal",
        "ones",
        generator=torch.Generator().manual_seed(3),
        bias_init="pytorch_default",
    )
    stream = torch.Generator().manual_seed(3)
    for layer, fan_in in ((model[0], 27), (model[3], 6)):  # 3·3·3 and 6 inputs per output unit
        weight = torch.randn(layer.weight.shape, generator=stream) * math.sqrt(2 / fan_in)
        bound = 1 / math.sqrt(fan_in)  # PyTorch's bias law in Linear/Conv reset_parameters
        bias = torch.empty(layer.bias.shape).uniform_(-bound, bound, generator=stream)
        assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)
        assert 0 < layer.bias.abs().max().item() <= bound


def test_bias_init_none_and_zeros() -> None:
    zeros = initialize(
        _layers_for_golden_draws(),
        "xavier_uniform",
        "ones",
        generator=torch.Generator().manual_seed(3),
        bias_init="zeros",
    )
    default = initialize(
        _layers_for_golden_draws(), "xavier_uniform", "ones", generator=torch.Generator().manual_seed(3)
    )
    assert _same_weights(zeros, default) and torch.all(zeros[3].bias == 0)
    # pytorch_default keeps PyTorch's biases unless told otherwise; "zeros" leaves its weights alone.
    kept = _init_layer(nn.Linear(40, 30), "pytorch_default", seed=5)
    zeroed = initialize(
        nn.Linear(40, 30), "pytorch_default", "ones", generator=torch.Generator().manual_seed(5), bias_init="zeros"
    )
    assert kept.bias.abs().sum() > 0 and torch.all(zeroed.bias == 0) and torch.equal(kept.weight, zeroed.weight)
    same = initialize(
        nn.Linear(40, 30),
        "pytorch_default",
        "ones",
        generator=torch.Generator().manual_seed(5),
        bias_init="pytorch_default",
    )
    assert _same_weights(same, kept)


def test_model_spec_bias_init_reaches_build_model() -> None:
    plain = build("lenet_300_100", MNIST, seed=2)
    openlth = build("lenet_300_100", MNIST, seed=2, bias_init="pytorch_default")
    assert all(torch.all(layer.bias == 0) for layer in (*plain.hidden, plain.fc))
    layers = (*openlth.hidden, openlth.fc)
    assert all(0 < layer.bias.abs().max() <= 1 / math.sqrt(layer.in_features) for layer in layers)
    assert torch.equal(plain.hidden[0].weight, openlth.hidden[0].weight)  # the first draw precedes any bias
    with pytest.raises(SpecError, match="unknown model.bias_init 'pytorch'. Did you mean 'pytorch_default'"):
        ModelSpec(bias_init="pytorch")


def test_vgg_conv_bias_is_openlths_layout() -> None:
    # OpenLTH's cifar_vgg_16: 14,710,464 conv weights + 4,224 conv biases + 2·4,224 batch-norm
    # + 5,120 fc weights + 10 fc biases = 14,728,266; the prunable weights are unchanged.
    with torch.device("meta"):
        model = build("vgg_16", conv_bias=True)
    assert sum(p.numel() for p in model.parameters()) == 14_728_266
    assert count(prunable_parameters(model)) == 14_715_584
    model = build("vgg_11", width=0.125, conv_bias=True, bias_init="pytorch_default")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None and 0 < c.bias.abs().max() <= 1 / math.sqrt(c.weight[0].numel()) for c in convs)
    assert all(
        torch.all(c.bias == 0)
        for c in build("vgg_11", width=0.125, conv_bias=True).modules()
        if isinstance(c, nn.Conv2d)
    )
    assert _same_weights(build("vgg_11", width=0.125, conv_bias=False), build("vgg_11", width=0.125))


def test_architecture_options_fail_clearly_where_they_do_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError, match=r"model.conv_bias does not apply to 'cifar_resnet_20'; it applies to .*vgg_16"):
        build("cifar_resnet_20", conv_bias=True)
    with pytest.raises(SpecError, match="does not apply to 'lenet_300_100'"):
        build("lenet_300_100", MNIST, conv_bias=False)
    with pytest.raises(ValueError, match="unknown architecture option 'bias'"):
        register_model("x", options=("bias",))
    monkeypatch.setattr(registry, "_NAMED", dict(registry._NAMED))

    @register_model("biased_probe", options=("conv_bias",))
    def probe(name, *, input_shape, num_classes, width, conv_bias=False):
        model = nn.Module()
        model.conv = nn.Conv2d(input_shape[0], 2, 1, bias=conv_bias)
        model.fc = nn.Linear(2, num_classes)
        return model

    assert build("biased_probe", conv_bias=True).conv.bias is not None
    assert build("biased_probe").conv.bias is None  # unset: the factory's own default


def test_initialize_rejects_bad_arguments() -> None:
    layer = nn.Linear(3, 2)
    with pytest.raises(SpecError, match="Did you mean 'kaiming_normal'"):
        _init_layer(layer, "kaiming_norml")
    with pytest.raises(SpecError, match="batch-norm initialiser 'zero'"):
        initialize(layer, "kaiming_normal", "zero", generator=torch.Generator())
    with pytest.raises(ValueError, match="density"):
        _init_layer(layer, "scaled_signed_constant", density=0.0)
    with pytest.raises(SpecError, match="bias initialiser 'zero'. Did you mean 'zeros'"):
        initialize(layer, "kaiming_normal", "ones", generator=torch.Generator(), bias_init="zero")


def test_batch_norm_initialisers() -> None:
    model = build("resnet_18", width=0.125, bn_init="uniform")
    gammas = torch.cat([m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert 0 <= gammas.min() and gammas.max() < 1 and gammas.std() > 0.2
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    model = build("resnet_18", width=0.125, bn_init="zero_residual")
    bn_gammas = {name: m.weight for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    zeroed = {f"{name}.weight" for name, gamma in bn_gammas.items() if torch.all(gamma == 0)}
    assert zeroed == {f"layer{s}.{b}.bn2.weight" for s in range(1, 5) for b in range(2)}
    assert torch.all(model.layer2[0].shortcut[1].weight == 1) and torch.all(model.bn1.weight == 1)
    bottleneck = build("resnet_50", width=0.0625, bn_init="zero_residual")
    assert torch.all(bottleneck.layer1[0].bn3.weight == 0) and torch.all(bottleneck.layer1[0].bn2.weight == 1)

    plain = build("vgg_11", width=0.125, bn_init="zero_residual")
    assert _same_weights(plain, build("vgg_11", width=0.125, bn_init="ones"))


def test_reinitialising_resets_running_statistics() -> None:
    model = build("cifar_resnet_8", width=0.5)
    model(torch.randn(4, *CIFAR))
    assert model.bn.num_batches_tracked.item() == 1
    initialize(model, "kaiming_normal", "ones", generator=torch.Generator().manual_seed(0))
    assert model.bn.num_batches_tracked.item() == 0 and torch.all(model.bn.running_var == 1)
    assert _same_weights(model, build("cifar_resnet_8", width=0.5))


# --- prunable convention ---------------------------------------------------------------------------


def test_kinds_match_the_spec() -> None:
    for kind in PRUNABLE_KINDS:
        prunable_parameters(nn.Linear(2, 2), kind)
    with pytest.raises(SpecError, match="unknown prunable kind 'convs'. Did you mean 'conv'"):
        prunable_parameters(nn.Linear(2, 2), "convs")


def test_resnet_prunables_include_shortcuts_and_classifier_only_weights() -> None:
    model = build("cifar_resnet_20", width=0.25)
    names = list(prunable_parameters(model))
    assert names[0] == "conv.weight" and names[-1] == "fc.weight"
    assert "blocks.3.shortcut.0.weight" in names and "blocks.6.shortcut.0.weight" in names
    assert not any("bn" in n or n.endswith("bias") or "shortcut.1" in n for n in names)
    order = [n for n, _ in model.named_parameters()]
    assert names == [n for n in order if n in names]
    assert list(prunable_parameters(model, "linear")) == ["fc.weight"]
    assert len(prunable_parameters(model, "conv")) == 21


def test_exclude_patterns() -> None:
    model = build("cifar_resnet_20", width=0.25)
    assert "fc.weight" not in prunable_parameters(model, exclude="fc.weight")
    kept = prunable_parameters(model, exclude=("*shortcut*", "conv.*"))
    assert len(kept) == 22 - 3
    with pytest.raises(SpecError, match="'fc.weigth' matches no parameter.*Did you mean 'fc.weight'"):
        prunable_parameters(model, exclude=("fc.weigth",))
    # a pattern naming a real but non-prunable parameter is not an error
    assert len(prunable_parameters(model, exclude=("fc.bias",))) == 22


def test_prunable_from_spec() -> None:
    spec = ModelSpec(name="lenet_300_100", prunable="linear", prunable_exclude=("fc.*",))
    model = build_model(spec, input_shape=MNIST, num_classes=10, seed=0)
    assert list(prunable_from_spec(model, spec)) == ["hidden.0.weight", "hidden.1.weight"]


class _UserModel(nn.Module):
    """A model from outside the registry: 1-d convolutions, norms, embeddings, a tied head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.conv = nn.Conv1d(8, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.bn = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 20, bias=False)
        self.decoder = nn.Linear(8, 20)
        self.decoder.weight = self.head.weight


def test_convention_works_on_any_module() -> None:
    model = _UserModel()
    assert list(prunable_parameters(model)) == ["conv.weight", "head.weight"]
    assert list(prunable_parameters(model, "conv")) == ["conv.weight"]
    assert output_layer_name(model) == "head.weight"
    initialize(model, "signed_constant", "uniform", generator=torch.Generator().manual_seed(0))
    assert torch.unique(model.conv.weight.abs()).numel() == 1
    assert torch.all(model.norm.weight == 1)  # not a batch norm: untouched
    with pytest.raises(ValueError, match="no nn.Linear"):
        output_layer_name(nn.Sequential(nn.Conv2d(1, 1, 1)))
