"""VGG with batch norm for small images (Simonyan & Zisserman 2015, CIFAR form as in OpenLTH).

Configurations A/B/D/E give ``vgg_11``/``vgg_13``/``vgg_16``/``vgg_19``. Each convolution is 3×3
(padding 1, no bias — the batch norm's shift makes one redundant) → BN → ReLU. Of the five
max-pools only the first four are kept: adaptive average pooling to 1×1 replaces the last, so
32×32 and 64×64 inputs (anything from 16×16) end in the same 512-wide ``fc``.

``conv_bias=True`` gives every convolution a bias, as OpenLTH's ``models/cifar_vgg.py`` does
(``ConvModule`` keeps ``nn.Conv2d``'s default ``bias=True``). Before a batch norm such a bias
changes no output (the normalisation subtracts it again, so its gradient is zero up to rounding and
weight decay alone moves it); it adds one parameter per channel and enters whatever is computed over
all parameters (parameter counts, scores taken over all state).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.models.registry import image_shape, register_model, scaled

__all__ = ["VGG", "ConvBN"]

_POOL = "M"
_PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg_11": (64, _POOL, 128, _POOL, 256, 256, _POOL, 512, 512, _POOL, 512, 512),
    "vgg_13": (64, 64, _POOL, 128, 128, _POOL, 256, 256, _POOL, 512, 512, _POOL, 512, 512),
    "vgg_16": (64, 64, _POOL, 128, 128, _POOL, 256, 256, 256, _POOL, 512, 512, 512, _POOL, 512, 512, 512),
    "vgg_19": (
        64,
        64,
        _POOL,
        128,
        128,
        _POOL,
        256,
        256,
        256,
        256,
        _POOL,
        512,
        512,
        512,
        512,
        _POOL,
        512,
        512,
        512,
        512,
    ),
}


class ConvBN(nn.Module):
    """3×3 convolution → batch norm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class VGG(nn.Module):
    """``features`` (ConvBN blocks and max-pools, following ``plan``), global average pool, ``fc``."""

    def __init__(
        self, in_channels: int, plan: Sequence[int | str], num_classes: int, *, conv_bias: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for step in plan:
            if step == _POOL:
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBN(channels, int(step), bias=conv_bias))
                channels = int(step)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@register_model(*_PLANS, options=("conv_bias",))
def vgg(name: str, *, input_shape: tuple[int, ...], num_classes: int, width: float, conv_bias: bool = False) -> VGG:
    plan = [step if step == _POOL else scaled(int(step), width) for step in _PLANS[name]]
    channels, _, _ = image_shape(input_shape, name, halvings=plan.count(_POOL))
    return VGG(channels, plan, num_classes, conv_bias=conv_bias)
