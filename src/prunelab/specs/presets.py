"""Named experiment presets with the hyper-parameters of the papers they come from.

Sources: OpenLTH's defaults (LeNet, ResNet-20, VGG-16, ResNet-50), Frankle & Carbin 2019 (Conv-2/4/6),
Frankle et al. 2021 "Missing the Mark" (Tiny-ImageNet ResNet-18). The small offline presets are
sized to train in seconds to minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from prunelab.specs.base import SpecError, closest
from prunelab.specs.dataset import DatasetSpec
from prunelab.specs.experiment import ExperimentSpec
from prunelab.specs.model import ModelSpec
from prunelab.specs.pruning import PruningSpec
from prunelab.specs.training import TrainingSpec

__all__ = ["PRESETS", "get_preset", "preset_names", "register_preset"]

PRESETS: dict[str, Callable[[], ExperimentSpec]] = {}
DESCRIPTIONS: dict[str, str] = {}


def register_preset(name: str, description: str) -> Callable[[Callable[[], ExperimentSpec]], Callable[[], ExperimentSpec]]:
    def wrap(factory: Callable[[], ExperimentSpec]) -> Callable[[], ExperimentSpec]:
        if name in PRESETS:
            raise ValueError(f"preset {name!r} is registered twice")
        PRESETS[name] = factory
        DESCRIPTIONS[name] = description
        return factory

    return wrap


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> ExperimentSpec:
    if name not in PRESETS:
        near = closest(name, PRESETS)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise SpecError(f"unknown preset {name!r}.{hint} Run `prunelab presets` to list all.")
    return PRESETS[name]()


def _cifar_sgd(steps: str = "160ep", milestones: tuple[str, ...] = ("80ep", "120ep"), **kw: object) -> TrainingSpec:
    base = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, steps=steps,
                schedule="multistep", milestones=milestones, gamma=0.1)
    base.update(kw)
    return TrainingSpec(**base)  # type: ignore[arg-type]


@register_preset("mnist_lenet_300_100", "LeNet-300-100 on MNIST (OpenLTH: SGD 0.1, batch 128, 40 epochs)")
def _mnist_lenet() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="mnist", augment=False),
        model=ModelSpec(name="lenet_300_100", init="kaiming_normal"),
        train=TrainingSpec(optimizer="sgd", lr=0.1, batch_size=128, steps="40ep", schedule="constant"),
        prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
    )


@register_preset("mnist10k_lenet_300_100", "LeNet-300-100 on the real 10k MNIST split (8,000 train / 2,000 test), offline")
def _mnist10k_lenet() -> ExperimentSpec:
    spec = _mnist_lenet()
    return spec.updated(dataset=DatasetSpec(name="mnist10k", augment=False))


@register_preset("digits_lenet_300_100", "LeNet-300-100 on scikit-learn digits (8x8), zero set-up, seconds on a CPU")
def _digits_lenet() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="digits", augment=False),
        model=ModelSpec(name="lenet_300_100"),
        train=TrainingSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, steps="30ep", schedule="constant"),
        prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
    )


@register_preset("digits_conv2", "Conv-2 on scikit-learn digits (1x8x8), offline; a conv net for CPU-sized pruning sweeps")
def _digits_conv2() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="digits", augment=False),
        model=ModelSpec(name="conv2"),
        train=TrainingSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, steps="20ep", schedule="constant"),
        prune=PruningSpec(fraction=0.2),
    )


@register_preset("synthetic_lenet_300_100", "LeNet-300-100 on seeded random tensors, for smoke tests")
def _synthetic_lenet() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="synthetic", augment=False),
        model=ModelSpec(name="lenet_300_100"),
        train=TrainingSpec(optimizer="sgd", lr=0.05, batch_size=64, steps="2ep", schedule="constant"),
    )


for _depth in (20, 32, 44, 56, 110):
    def _make(depth: int = _depth) -> ExperimentSpec:
        return ExperimentSpec(
            dataset=DatasetSpec(name="cifar10"),
            model=ModelSpec(name=f"cifar_resnet_{depth}", bn_init="uniform"),
            train=_cifar_sgd(),
            prune=PruningSpec(fraction=0.2),
        )

    register_preset(f"cifar_resnet_{_depth}", f"ResNet-{_depth} on CIFAR-10 (OpenLTH: SGD 0.1 mom 0.9, 160 ep, wd 1e-4)")(_make)


for _dataset, _prefix in (("cifar10", "cifar"), ("cifar100", "cifar100")):
    for _depth in (11, 13, 16, 19):
        def _make_vgg(depth: int = _depth, dataset: str = _dataset) -> ExperimentSpec:
            return ExperimentSpec(
                dataset=DatasetSpec(name=dataset),
                model=ModelSpec(name=f"vgg_{depth}", bn_init="uniform"),
                train=_cifar_sgd(),
                prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
            )

        register_preset(
            f"{_prefix}_vgg_{_depth}", f"VGG-{_depth} with BN on {_dataset.upper()} (OpenLTH: SGD 0.1, 160 ep)"
        )(_make_vgg)


for _n in (2, 4, 6, 8):
    _steps = {2: "20000it", 4: "25000it", 6: "30000it", 8: "35000it"}[_n]

    def _make_conv(n: int = _n, steps: str = _steps) -> ExperimentSpec:
        return ExperimentSpec(
            dataset=DatasetSpec(name="cifar10", augment=False),
            model=ModelSpec(name=f"conv{n}", init="kaiming_normal"),
            train=TrainingSpec(optimizer="adam", lr=2e-4 if n == 2 else 3e-4, batch_size=60, steps=steps,
                               schedule="constant"),
            # Frankle & Carbin: conv layers 15%, fc 20%, output 10% per round
            prune=PruningSpec(fraction=0.2, scope="layerwise", rates={"conv*": 0.15, "fc.weight": 0.1}),
        )

    register_preset(f"cifar_conv{_n}", f"Conv-{_n} on CIFAR-10 (Frankle & Carbin 2019: Adam, batch 60)")(_make_conv)


@register_preset("tinyimagenet_resnet_18", "ResNet-18 (3x3 stem, no max-pool) on Tiny-ImageNet (Missing the Mark: SGD 0.2, 200 ep)")
def _tiny_resnet18() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="tinyimagenet"),
        model=ModelSpec(name="tinyimagenet_resnet_18"),
        train=_cifar_sgd(steps="200ep", milestones=("100ep", "150ep"), lr=0.2, batch_size=256),
        prune=PruningSpec(fraction=0.2),
    )


@register_preset("imagenet_resnet_50", "ResNet-50 on ImageNet (OpenLTH: SGD 0.4, batch 1024, 90 ep, 5 ep warm-up)")
def _imagenet_resnet50() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="imagenet", image_size=224),
        model=ModelSpec(name="resnet_50"),
        train=_cifar_sgd(steps="90ep", milestones=("30ep", "60ep", "80ep"), lr=0.4, batch_size=1024, warmup="5ep"),
        prune=PruningSpec(fraction=0.2),
    )
