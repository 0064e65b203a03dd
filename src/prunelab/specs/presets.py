"""Named experiment presets with the hyper-parameters of the papers and code they come from.

Sources (every value is listed with its source in ``docs/specs.md``): OpenLTH's ``default_hparams()``
(``models/mnist_lenet.py``, ``cifar_resnet.py``, ``cifar_vgg.py``, ``imagenet_resnet.py``) and its
data sets (``datasets/cifar10.py``: ImageNet's normalisation); Frankle & Carbin 2019, Figure 2 and
Appendix H (Conv-2/4/6); the "Missing the Mark" fork of OpenLTH, ``models/imagenet_resnet.py`` and
``datasets/tinyimagenet2.py`` (Tiny-ImageNet ResNet-18). The ``digits_*``, ``mnist10k_*`` and
``synthetic_*`` presets are prunelab's own, sized to train in seconds to minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from prunelab.specs.base import SpecError, closest
from prunelab.specs.dataset import DatasetSpec
from prunelab.specs.experiment import ExperimentSpec
from prunelab.specs.model import ModelSpec
from prunelab.specs.pruning import PruningSpec
from prunelab.specs.supermask import SupermaskSpec
from prunelab.specs.training import TrainingSpec

__all__ = ["PRESETS", "get_preset", "preset_names", "register_preset"]

PRESETS: dict[str, Callable[[], ExperimentSpec]] = {}
DESCRIPTIONS: dict[str, str] = {}


def register_preset(
    name: str, description: str
) -> Callable[[Callable[[], ExperimentSpec]], Callable[[], ExperimentSpec]]:
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


def _sgd(steps: str, milestones: tuple[str, ...], **kw: object) -> TrainingSpec:
    """OpenLTH's SGD recipe: momentum 0.9, weight decay 1e-4, lr × 0.1 at each milestone."""
    base = dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=128,
        steps=steps,
        schedule="multistep",
        milestones=milestones,
        gamma=0.1,
    )
    base.update(kw)
    return TrainingSpec(**base)  # type: ignore[arg-type]


# OpenLTH's initialisers (models/initializers.py) set only weights, so every bias keeps PyTorch's default.
_OPENLTH_BIASES = "pytorch_default"


@register_preset("mnist_lenet_300_100", "LeNet-300-100 on MNIST (OpenLTH: SGD 0.1, batch 128, 40 epochs)")
def _mnist_lenet() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="mnist", augment=False),
        model=ModelSpec(name="lenet_300_100", init="kaiming_normal", bias_init=_OPENLTH_BIASES),
        train=TrainingSpec(optimizer="sgd", lr=0.1, batch_size=128, steps="40ep", schedule="constant"),
        prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
    )


@register_preset(
    "mnist10k_lenet_300_100", "LeNet-300-100 on the real 10k MNIST split (8,000 train / 2,000 test), offline"
)
def _mnist10k_lenet() -> ExperimentSpec:
    # prunelab's own: OpenLTH's LeNet recipe on the 10k split, with the zero biases it has always had.
    return ExperimentSpec(
        dataset=DatasetSpec(name="mnist10k", augment=False),
        model=ModelSpec(name="lenet_300_100", init="kaiming_normal"),
        train=TrainingSpec(optimizer="sgd", lr=0.1, batch_size=128, steps="40ep", schedule="constant"),
        prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
    )


@register_preset("digits_lenet_300_100", "LeNet-300-100 on scikit-learn digits (8x8), zero set-up, seconds on a CPU")
def _digits_lenet() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="digits", augment=False),
        model=ModelSpec(name="lenet_300_100"),
        train=TrainingSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, steps="30ep", schedule="constant"),
        prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
    )


@register_preset(
    "digits_conv2", "Conv-2 on scikit-learn digits (1x8x8), offline; a conv net for CPU-sized pruning sweeps"
)
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


# OpenLTH's CIFAR-10 (datasets/cifar10.py): random crop with 4-pixel padding and flips, ImageNet's mean/std.
_OPENLTH_CIFAR10 = DatasetSpec(name="cifar10", normalization="imagenet")

for _depth in (20, 32, 44, 56, 110):

    def _make(depth: int = _depth) -> ExperimentSpec:
        return ExperimentSpec(
            dataset=_OPENLTH_CIFAR10,
            model=ModelSpec(name=f"cifar_resnet_{depth}", bn_init="uniform", bias_init=_OPENLTH_BIASES),
            train=_sgd("160ep", ("80ep", "120ep")),
            prune=PruningSpec(fraction=0.2),
        )

    register_preset(
        f"cifar_resnet_{_depth}", f"ResNet-{_depth} on CIFAR-10 (OpenLTH: SGD 0.1 mom 0.9, 160 ep, wd 1e-4)"
    )(_make)


for _dataset, _prefix in (("cifar10", "cifar"), ("cifar100", "cifar100")):
    for _depth in (11, 13, 16, 19):

        def _make_vgg(depth: int = _depth, dataset: str = _dataset) -> ExperimentSpec:
            return ExperimentSpec(
                dataset=DatasetSpec(name=dataset, normalization="imagenet"),
                model=ModelSpec(name=f"vgg_{depth}", bn_init="uniform", bias_init=_OPENLTH_BIASES, conv_bias=True),
                train=_sgd("160ep", ("80ep", "120ep")),
                prune=PruningSpec(fraction=0.2, ignore=("fc.weight",)),
            )

        _origin = "OpenLTH" if _dataset == "cifar10" else "OpenLTH's CIFAR-10 recipe"
        register_preset(
            f"{_prefix}_vgg_{_depth}", f"VGG-{_depth} with BN on {_dataset.upper()} ({_origin}: SGD 0.1, 160 ep)"
        )(_make_vgg)


# Frankle & Carbin 2019, Figure 2 and Appendix H: (iterations, Adam lr, conv pruning rate) per network.
_CONV_RECIPES = {
    2: ("20000it", 2e-4, 0.1),
    4: ("25000it", 3e-4, 0.1),
    6: ("30000it", 3e-4, 0.15),
    8: ("35000it", 3e-4, 0.15),
}  # Conv-8 is not in the paper: prunelab extends the Conv-6 row

for _n in (2, 4, 6, 8):

    def _make_conv(n: int = _n) -> ExperimentSpec:
        steps, lr, conv_rate = _CONV_RECIPES[n]
        return ExperimentSpec(
            dataset=DatasetSpec(name="cifar10", augment=False),
            model=ModelSpec(name=f"conv{n}", init="xavier_normal"),
            train=TrainingSpec(optimizer="adam", lr=lr, batch_size=60, steps=steps, schedule="constant"),
            # per layer: convolutions 10% (Conv-2/4) or 15% (Conv-6), fc 20%, the output layer half of fc
            prune=PruningSpec(fraction=0.2, scope="layerwise", rates={"convs.*": conv_rate, "fc.weight": 0.1}),
        )

    _paper = "Frankle & Carbin 2019" if _n < 8 else "Frankle & Carbin 2019's Conv-6 recipe"
    register_preset(f"cifar_conv{_n}", f"Conv-{_n} on CIFAR-10 ({_paper}: Adam, batch 60, Glorot normal)")(_make_conv)


@register_preset(
    "tinyimagenet_resnet_18",
    "ResNet-18 (3x3 stem, no max-pool) on Tiny-ImageNet (Missing the Mark fork's Modified ResNet-18: SGD 0.2, 200 ep)",
)
def _tiny_resnet18() -> ExperimentSpec:
    # The fork's tinyimagenet_modifiedresnet_18 on its tinyimagenet2 data set (crop with 4-pixel
    # padding, flips) with the normalisation constants of its datasets/tinyimagenet.py.
    return ExperimentSpec(
        dataset=DatasetSpec(
            name="tinyimagenet",
            crop_padding=4,
            normalization="custom",
            mean=(-0.021, -0.0354, -0.0376),
            std=(1.21, 1.20, 1.25),
        ),
        model=ModelSpec(name="tinyimagenet_resnet_18", bn_init="uniform", bias_init=_OPENLTH_BIASES),
        train=_sgd("200ep", ("100ep", "150ep"), lr=0.2, batch_size=256, warmup="5ep"),
        prune=PruningSpec(fraction=0.2),
    )


for _depth in (18, 34, 50, 101, 152, 200):

    def _make_imagenet(depth: int = _depth) -> ExperimentSpec:
        return ExperimentSpec(
            dataset=DatasetSpec(name="imagenet", image_size=224),
            model=ModelSpec(name=f"resnet_{depth}", bn_init="uniform", bias_init=_OPENLTH_BIASES),
            train=_sgd("90ep", ("30ep", "60ep", "80ep"), lr=0.4, batch_size=1024, warmup="5ep"),
            prune=PruningSpec(fraction=0.2),
        )

    register_preset(
        f"imagenet_resnet_{_depth}", f"ResNet-{_depth} on ImageNet (OpenLTH: SGD 0.4, batch 1024, 90 ep, 5 ep warm-up)"
    )(_make_imagenet)


# Supermasks ------------------------------------------------------------------------------------------
# The scores' optimiser is SGD with momentum 0.9 and a cosine schedule in both papers; `model.init` is
# the law of the frozen weights. Sources per value in docs/specs.md ("Supermask presets").
def _cosine(steps: str, lr: float, weight_decay: float, batch_size: int = 128) -> TrainingSpec:
    return TrainingSpec(
        optimizer="sgd",
        lr=lr,
        momentum=0.9,
        weight_decay=weight_decay,
        batch_size=batch_size,
        steps=steps,
        schedule="cosine",
    )


for _n in (2, 4, 6, 8):

    def _make_edgepopup(n: int = _n) -> ExperimentSpec:
        # hidden-networks configs/smallscale/conv{n}/conv{n}_usc_unsigned.yml, --prune-rate 0.5 (kept)
        return ExperimentSpec(
            dataset=DatasetSpec(name="cifar10"),
            model=ModelSpec(name=f"conv{n}", init="signed_constant"),
            train=_cosine("100ep", lr=0.1, weight_decay=1e-4),
            supermask=SupermaskSpec(method="edge-popup", density=0.5),
        )

    register_preset(
        f"cifar_conv{_n}_edgepopup",
        f"edge-popup supermask of Conv-{_n} on CIFAR-10 "
        "(hidden-networks: signed constant, 50%, SGD 0.1 cosine, 100 ep)",
    )(_make_edgepopup)


@register_preset(
    "cifar_conv6_iterand", "IteRand supermask of Conv-6 on CIFAR-10 (iterand Figure 1: 50%, K=300, lambda 0.1)"
)
def _cifar_conv6_iterand() -> ExperimentSpec:
    # iterand config.yaml figure1_conv6_ku_iterand (cifar10_sgd base); ImageNet statistics as its transforms
    return ExperimentSpec(
        dataset=DatasetSpec(name="cifar10", normalization="imagenet"),
        model=ModelSpec(name="conv6", init="kaiming_uniform"),
        train=_cosine("100ep", lr=0.3, weight_decay=1e-4),
        supermask=SupermaskSpec(method="iterand", density=0.5, rerand_freq="300it", rerand_lambda=0.1),
    )


@register_preset(
    "cifar_resnet18_iterand",
    "IteRand supermask of ResNet-18 on CIFAR-10 (iterand cifar10_resnet18_sc_iterand: 40%, K=300, lambda 0.1)",
)
def _cifar_resnet18_iterand() -> ExperimentSpec:
    # iterand's CIFAR ResNet-18 has a 3x3 stem and no max-pool: prunelab's tinyimagenet_resnet_18 architecture
    return ExperimentSpec(
        dataset=DatasetSpec(name="cifar10", normalization="imagenet"),
        model=ModelSpec(name="tinyimagenet_resnet_18", init="signed_constant"),
        train=_cosine("100ep", lr=0.1, weight_decay=5e-4),
        supermask=SupermaskSpec(method="iterand", density=0.4, rerand_freq="300it", rerand_lambda=0.1),
    )


@register_preset(
    "mnist10k_lenet_300_100_supermask",
    "edge-popup/IteRand supermask of LeNet-300-100 on the real 10k MNIST split, offline (minutes on a CPU)",
)
def _mnist10k_lenet_supermask() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="mnist10k", augment=False),
        model=ModelSpec(name="lenet_300_100", init="signed_constant"),
        train=_cosine("20ep", lr=0.1, weight_decay=5e-4),
        # --method iterand re-draws every epoch (the paper's K = 300 iterations is 0.85 of a CIFAR-10 epoch)
        supermask=SupermaskSpec(method="edge-popup", density=0.5, rerand_freq="1ep"),
    )


@register_preset(
    "digits_lenet_300_100_supermask",
    "edge-popup/IteRand supermask of LeNet-300-100 on scikit-learn digits, zero set-up, seconds on a CPU",
)
def _digits_lenet_supermask() -> ExperimentSpec:
    return ExperimentSpec(
        dataset=DatasetSpec(name="digits", augment=False),
        model=ModelSpec(name="lenet_300_100", init="signed_constant"),
        train=_cosine("10ep", lr=0.1, weight_decay=5e-4, batch_size=64),
        supermask=SupermaskSpec(method="edge-popup", density=0.5, rerand_freq="1ep"),
    )
