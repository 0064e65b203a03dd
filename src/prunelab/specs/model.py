"""Which architecture, its width, how it is initialised and which weights may be pruned."""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.specs.base import SpecError, check_choice, spec_field

INITIALISERS = (
    "kaiming_normal",
    "kaiming_uniform",
    "standard_normal",
    "signed_constant",
    "scaled_signed_constant",
    "pytorch_default",
    "xavier_normal",
    "xavier_uniform",
)
BN_INITIALISERS = ("ones", "uniform", "zero_residual")
BIAS_INITIALISERS = ("zeros", "pytorch_default")
PRUNABLE_KINDS = ("conv_linear", "conv", "linear")


@dataclass(frozen=True)
class ModelSpec:
    name: str = spec_field("lenet_300_100", help="registered architecture, e.g. lenet_300_100, cifar_resnet_20, vgg_16")
    width: float = spec_field(1.0, help="width multiplier applied to every hidden layer")
    init: str = spec_field("kaiming_normal", help=f"weight initialiser: {', '.join(INITIALISERS)}")
    bn_init: str = spec_field("ones", help=f"batch-norm initialiser: {', '.join(BN_INITIALISERS)}")
    prunable: str = spec_field("conv_linear", help=f"which layers' weights are prunable: {', '.join(PRUNABLE_KINDS)}")
    prunable_exclude: tuple[str, ...] = spec_field((), help="glob patterns of parameter names never pruned")
    bias_init: str | None = spec_field(
        None,
        help="bias initialiser: zeros, or pytorch_default (U(±1/sqrt(fan_in)), what OpenLTH leaves); "
        "None: zeros, except that init=pytorch_default keeps PyTorch's own biases",
    )
    conv_bias: bool | None = spec_field(
        None, help="vgg_*: give every convolution a bias, as OpenLTH's cifar_vgg does (None: the architecture's own)"
    )

    def __post_init__(self) -> None:
        check_choice(self.init, INITIALISERS, "model.init")
        check_choice(self.bn_init, BN_INITIALISERS, "model.bn_init")
        check_choice(self.prunable, PRUNABLE_KINDS, "model.prunable")
        if self.bias_init is not None:
            check_choice(self.bias_init, BIAS_INITIALISERS, "model.bias_init")
        if self.width <= 0:
            raise SpecError(f"model.width must be positive, got {self.width}")
