"""CIFAR ResNets (He et al. 2016, section 4.2), laid out as in OpenLTH.

``cifar_resnet_<depth>`` for any depth 6n+2 (20, 32, 44, 56, 110 are listed): a 3×3 stem
convolution with 16 channels, three stages of n basic blocks with 16, 32 and 64 channels (stages 2
and 3 start with stride 2), global average pooling and ``fc``. Where a block changes shape the
shortcut is a 1×1 convolution + batch norm, as in OpenLTH (not the paper's zero-padding option A),
so ResNet-20 has 270,896 prunable weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.models.registry import image_shape, register_model, scaled
from prunelab.models.resnet import BasicBlock
from prunelab.specs.base import SpecError

__all__ = ["CifarResNet"]

_STAGE_CHANNELS = (16, 32, 64)


class CifarResNet(nn.Module):
    """Stem (``conv``, ``bn``), ``blocks`` (all stages in one sequence), global average pool, ``fc``."""

    def __init__(
        self, in_channels: int, blocks_per_stage: int, stage_channels: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        channels = stage_channels[0]
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        blocks = []
        for index, stage_width in enumerate(stage_channels):
            for position in range(blocks_per_stage):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride))
                channels = stage_width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(self.pool(x).flatten(1))


@register_model(
    *(f"cifar_resnet_{depth}" for depth in (20, 32, 44, 56, 110)),
    pattern=r"cifar_resnet_[0-9]+",
    form="cifar_resnet_<6n+2>",
)
def cifar_resnet(name: str, *, input_shape: tuple[int, ...], num_classes: int, width: float) -> CifarResNet:
    depth = int(name.rsplit("_", 1)[1])
    if depth < 8 or (depth - 2) % 6:
        raise SpecError(f"{name}: a CIFAR ResNet's depth is 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
    channels, _, _ = image_shape(input_shape, name)
    stage_channels = tuple(scaled(c, width) for c in _STAGE_CHANNELS)
    return CifarResNet(channels, (depth - 2) // 6, stage_channels, num_classes)
