"""Residual blocks and the ImageNet ResNets (He et al. 2016), with the Tiny-ImageNet stem.

``resnet_18``/``resnet_34`` stack basic blocks, ``resnet_50``/``resnet_101``/``resnet_152``/``resnet_200``
bottlenecks with the stride on the 3×3 convolution ("ResNet v1.5", as torchvision and OpenLTH's
``models/imagenet_resnet.py``; ResNet-200 has OpenLTH's 3, 24, 36, 3 blocks per stage). The ImageNet stem
is a 7×7 stride-2 convolution and a 3×3 stride-2 max-pool; ``tinyimagenet_resnet_*`` replace it with a
3×3 stride-1 convolution and no max-pool, which keeps enough resolution for 64×64 images. A block
whose output shape differs from its input adds a 1×1 convolution + batch norm on the shortcut.
All convolutions are bias-free (each is followed by a batch norm); with 1000 classes the totals
match the published 11,689,512 (ResNet-18), 25,557,032 (ResNet-50) and 60,192,808 (ResNet-152) parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.models.registry import image_shape, register_model, scaled

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity when shapes agree, else a strided 1×1 convolution + batch norm (He et al.'s option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class BasicBlock(nn.Module):
    """3×3 conv → BN → ReLU → 3×3 conv → BN, plus the shortcut, → ReLU. Outputs ``channels``."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _shortcut(in_channels, channels, stride)

    @property
    def residual_bn(self) -> nn.BatchNorm2d:
        """The batch norm ending the residual branch (zeroed by the ``zero_residual`` BN init)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 conv (reduce) → 3×3 conv (strided) → 1×1 conv (expand ×4), each with BN, ReLU between,
    plus the shortcut, → ReLU. Outputs ``4 × channels``."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    @property
    def residual_bn(self) -> nn.BatchNorm2d:
        """The batch norm ending the residual branch (zeroed by the ``zero_residual`` BN init)."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem (``conv1``, ``bn1``, ``maxpool``), four stages ``layer1``–``layer4`` of ``blocks_per_stage``
    blocks with ``stage_channels`` (stages 2–4 start with stride 2), global average pool, ``fc``."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        blocks_per_stage: Sequence[int],
        stage_channels: Sequence[int],
        in_channels: int,
        num_classes: int,
        *,
        imagenet_stem: bool,
    ) -> None:
        super().__init__()
        channels = stage_channels[0]
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(channels)
        stages = []
        for index, (num_blocks, stage_width) in enumerate(zip(blocks_per_stage, stage_channels)):
            blocks = []
            for position in range(num_blocks):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(channels, stage_width, stride))
                channels = stage_width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))


_DEPTHS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}
_STAGE_CHANNELS = (64, 128, 256, 512)


@register_model(*(f"{prefix}resnet_{depth}" for prefix in ("", "tinyimagenet_") for depth in _DEPTHS))
def resnet(name: str, *, input_shape: tuple[int, ...], num_classes: int, width: float) -> ResNet:
    block, blocks_per_stage = _DEPTHS[int(name.rsplit("_", 1)[1])]
    channels, _, _ = image_shape(input_shape, name)
    stage_channels = [scaled(c, width) for c in _STAGE_CHANNELS]
    imagenet_stem = not name.startswith("tinyimagenet_")
    return ResNet(block, blocks_per_stage, stage_channels, channels, num_classes, imagenet_stem=imagenet_stem)
