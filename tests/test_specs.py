import dataclasses

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
    "mnist_lenet_300_100", "cifar_resnet_20", "cifar_vgg_16", "cifar100_vgg_16", "tinyimagenet_resnet_18",
    "imagenet_resnet_50", "cifar_conv6", "digits_lenet_300_100", "mnist10k_lenet_300_100",
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
    spec = load_spec("cifar_resnet_20", overrides={
        "train.lr": "0.05", "model.width": "2", "train.milestones": "10ep,20ep", "train.nesterov": "true",
        "seed": "3", "train.data_order_seed": "none", "train.betas": "[0.8, 0.99]",
    })
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
