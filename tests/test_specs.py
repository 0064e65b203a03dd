import dataclasses
import math

import pytest
import yaml

from prunelab.specs import (
    DatasetSpec,
    ExperimentSpec,
    SpecError,
    TrainingSpec,
    apply_overrides,
    canonical_hash,
    from_dict,
    get_preset,
    load_spec,
    parse_override_args,
    preset_names,
    semantic_dict,
    spec_to_yaml,
)
from prunelab.specs.base import spec_field

REQUIRED_PRESETS = [
    "mnist_lenet_300_100",
    "cifar_resnet_20",
    "cifar_vgg_16",
    "cifar100_vgg_16",
    "tinyimagenet_resnet_18",
    "imagenet_resnet_50",
    "cifar_conv6",
    "digits_lenet_300_100",
    "mnist10k_lenet_300_100",
]


def test_required_presets_exist_and_build():
    names = preset_names()
    for name in REQUIRED_PRESETS:
        assert name in names
        assert isinstance(get_preset(name), ExperimentSpec)


def test_published_hyperparameters():
    r20 = get_preset("cifar_resnet_20")
    assert (r20.train.lr, r20.train.momentum, r20.train.weight_decay, r20.train.steps) == (0.1, 0.9, 1e-4, "160ep")
    assert r20.train.milestones == ("80ep", "120ep")
    r50 = get_preset("imagenet_resnet_50")
    assert (r50.train.batch_size, r50.train.lr, r50.train.warmup) == (1024, 0.4, "5ep")


# Frankle & Carbin 2019, Figure 2 and Appendix H.1/H.4: (iterations, Adam lr, conv rate per round).
FRANKLE_CARBIN = {2: ("20000it", 2e-4, 0.10), 4: ("25000it", 3e-4, 0.10), 6: ("30000it", 3e-4, 0.15)}


@pytest.mark.parametrize("n", sorted(FRANKLE_CARBIN))
def test_conv_presets_follow_frankle_and_carbin(n):
    from prunelab.masks import Mask
    from prunelab.models import build_model, prunable_from_spec
    from prunelab.pruning import prune_level

    steps, lr, conv_rate = FRANKLE_CARBIN[n]
    spec = get_preset(f"cifar_conv{n}")
    assert (spec.model.init, spec.dataset.augment) == ("xavier_normal", False)  # Gaussian Glorot, no augmentation
    assert (spec.train.optimizer, spec.train.lr, spec.train.batch_size, spec.train.steps) == ("adam", lr, 60, steps)
    assert spec.train.schedule == "constant" and spec.train.weight_decay == 0
    # One level, layer by layer: each layer removes round_half_up(rate · n) of its weights, with
    # rate = conv_rate for convolutions, 20% for the hidden fc layers and half of that for the output.
    model = build_model(dataclasses.replace(spec.model, width=0.125), input_shape=(3, 32, 32), num_classes=10, seed=0)
    weights = {name: p.detach() for name, p in prunable_from_spec(model, spec.model).items()}
    pruned = prune_level(
        weights,
        Mask.ones_like(weights),
        spec.prune.strategy,
        spec.prune.fraction,
        scope=spec.prune.scope,
        rates=spec.prune.rates,
        ignore=spec.prune.ignore,
    )
    for name, weight in weights.items():
        rate = conv_rate if name.startswith("convs.") else 0.1 if name == "fc.weight" else 0.2
        assert int(pruned[name].sum()) == weight.numel() - math.floor(rate * weight.numel() + 0.5), name
    assert len([name for name in weights if name.startswith("convs.")]) == n


def test_openlth_presets_use_its_initialisation_and_data():
    for name in ("cifar_resnet_20", "cifar_vgg_16", "mnist_lenet_300_100", "imagenet_resnet_50"):
        assert get_preset(name).model.bias_init == "pytorch_default"  # models/initializers.py sets weights only
    for name in ("cifar_resnet_20", "cifar_vgg_16", "cifar100_vgg_16"):
        assert get_preset(name).dataset.normalization == "imagenet"  # datasets/cifar10.py
    assert get_preset("cifar_vgg_16").model.conv_bias is True  # models/cifar_vgg.py ConvModule
    assert get_preset("mnist_lenet_300_100").dataset.normalization == "dataset"  # 0.1307 / 0.3081, as OpenLTH
    for depth in (18, 34, 50, 101, 152, 200):
        spec = get_preset(f"imagenet_resnet_{depth}")
        assert (spec.model.name, spec.model.bn_init, spec.model.init) == (
            f"resnet_{depth}",
            "uniform",
            "kaiming_normal",
        )
        assert spec.train == r50_train() and spec.prune.fraction == 0.2 and spec.prune.ignore == ()


def r50_train():
    return TrainingSpec(
        optimizer="sgd",
        lr=0.4,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=1024,
        steps="90ep",
        schedule="multistep",
        milestones=("30ep", "60ep", "80ep"),
        gamma=0.1,
        warmup="5ep",
    )


def test_tinyimagenet_preset_is_the_forks_modified_resnet_18():
    spec = get_preset("tinyimagenet_resnet_18")
    assert spec.train == TrainingSpec(
        optimizer="sgd",
        lr=0.2,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=256,
        steps="200ep",
        schedule="multistep",
        milestones=("100ep", "150ep"),
        gamma=0.1,
        warmup="5ep",
    )
    assert (spec.model.bn_init, spec.dataset.crop_padding, spec.dataset.normalization) == ("uniform", 4, "custom")
    assert (spec.dataset.mean, spec.dataset.std) == ((-0.021, -0.0354, -0.0376), (1.21, 1.20, 1.25))


# prunelab's own presets: the guides' figures and users' stores were made with these run names.
OWN_PRESET_HASHES = {
    "digits_conv2": "704d906779ec",
    "digits_lenet_300_100": "2b4498019d81",
    "mnist10k_lenet_300_100": "a11315fcfebf",
    "synthetic_lenet_300_100": "1bb34f513260",
}


def test_own_presets_keep_their_run_names():
    assert {name: get_preset(name).run_hash("train") for name in OWN_PRESET_HASHES} == OWN_PRESET_HASHES


def test_every_preset_has_its_sources_in_the_docs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "specs.md").read_text(encoding="utf-8")
    sources = text.split("### Sources of every preset value", 1)[1]
    missing = [name for name in preset_names() if f"`{name}`" not in sources]
    assert not missing, f"docs/specs.md lists no sources for {missing}"


# Golden hashes: a released default must never change, or existing run names (and users' stores)
# break. These specs are spelled out here (not taken from presets, which may be retuned).
def _golden_specs():
    from prunelab.specs import ModelSpec, PruningSpec

    return {
        "default": ExperimentSpec(),
        "resnet": ExperimentSpec(
            dataset=DatasetSpec(name="cifar10"),
            model=ModelSpec(name="cifar_resnet_20", bn_init="uniform"),
            train=TrainingSpec(lr=0.1, momentum=0.9, weight_decay=1e-4, steps="160ep", milestones=("80ep", "120ep")),
            prune=PruningSpec(fraction=0.2),
            seed=2,
        ),
    }


GOLDEN = {"default": "54b4ff6a167d", "resnet": "1979143724d6"}


def test_hash_is_stable_and_pinned():
    got = {name: spec.run_hash("train") for name, spec in _golden_specs().items()}
    assert got == GOLDEN


def test_hash_ignores_non_semantic_fields_and_depends_on_semantic_ones():
    spec = get_preset("cifar_resnet_20")
    same = apply_overrides(spec, {"train.device": "cpu", "dataset.root": "/elsewhere", "train.progress": "false"})
    assert spec.run_hash("train") == same.run_hash("train")
    assert spec.run_hash("train") != apply_overrides(spec, {"train.lr": "0.05"}).run_hash("train")
    assert spec.run_hash("train") != spec.run_hash("lottery")
    assert spec.run_hash("train") != spec.with_seed(1).run_hash("train")


def test_adding_a_field_with_a_default_keeps_run_names():
    @dataclasses.dataclass(frozen=True)
    class NewTraining(TrainingSpec):
        gradient_clip: float | None = spec_field(None, help="a field added in a later release")

    old = TrainingSpec(lr=0.3)
    new = NewTraining(lr=0.3)
    assert semantic_dict(old) == semantic_dict(new)
    assert canonical_hash(old) == canonical_hash(new)
    assert canonical_hash(NewTraining(lr=0.3, gradient_clip=1.0)) != canonical_hash(old)


def test_overrides_coerce_types():
    spec = load_spec(
        "cifar_resnet_20",
        overrides={
            "train.lr": "0.05",
            "model.width": "2",
            "train.milestones": "10ep,20ep",
            "train.nesterov": "true",
            "seed": "3",
            "train.data_order_seed": "none",
            "train.betas": "[0.8, 0.99]",
        },
    )
    assert spec.train.lr == 0.05 and spec.model.width == 2.0 and spec.train.nesterov is True
    assert spec.train.milestones == ("10ep", "20ep") and spec.seed == 3 and spec.train.betas == (0.8, 0.99)


@pytest.mark.parametrize(
    "override,message",
    [
        ({"train.lrr": "1"}, "Did you mean --train.lr\\?"),
        ({"trian.lr": "1"}, "Did you mean --train.lr"),
        ({"train.lr": "abc"}, "does not fit type float"),
        ({"model.init": "kaiming"}, "Did you mean 'kaiming_normal'"),
        ({"train.steps": "ten epochs"}, "'<N>it'"),
        ({"train": "x"}, "is a section"),
        ({"train.lr.x": "1"}, "is a value"),
        ({"dataset.name": "cifar"}, "Did you mean 'cifar10'"),
    ],
)
def test_override_errors_name_the_fix(override, message):
    with pytest.raises(SpecError, match=message):
        load_spec("cifar_resnet_20", overrides=override)


def test_unknown_preset_suggests_closest():
    with pytest.raises(SpecError, match="Did you mean 'cifar_resnet_20'"):
        get_preset("cifar_resnet20")


def test_parse_override_args_forms():
    assert parse_override_args(["--train.lr=0.05", "--model.width", "2"]) == {"train.lr": "0.05", "model.width": "2"}
    with pytest.raises(SpecError, match="no value"):
        parse_override_args(["--train.lr"])
    with pytest.raises(SpecError, match="unexpected argument"):
        parse_override_args(["train.lr=1"])


def test_yaml_round_trip_and_config_file(tmp_path):
    spec = load_spec("cifar_vgg_16", overrides={"train.lr": "0.02"})
    path = tmp_path / "spec.yaml"
    path.write_text(spec_to_yaml(spec))
    assert load_spec(config=path) == spec
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump({"preset": "cifar_resnet_20", "train": {"lr": 0.3}, "seed": 4}))
    loaded = load_spec(config=partial, overrides={"model.width": "0.5"})
    assert loaded.model.name == "cifar_resnet_20" and loaded.train.lr == 0.3 and loaded.seed == 4
    assert loaded.model.width == 0.5 and loaded.train.momentum == 0.9


def test_config_file_errors(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(config=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(config=bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"train": {"learning_rate": 0.1}}))
    with pytest.raises(SpecError, match="unknown key 'train.learning_rate'"):
        load_spec(config=unknown)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError):
        load_spec(config=evil)


def test_from_dict_validates_ranges():
    with pytest.raises(SpecError, match="subsample_fraction"):
        from_dict(DatasetSpec, {"subsample_fraction": 0})
