"""Conv-2/4/6/8 (Frankle & Carbin 2019; Conv-8 from Ramanujan et al. 2020): scaled-down VGGs.

Each stage is two 3×3 convolutions (padding 1, ReLU) and a 2×2 max-pool, with 64, 128, 256 and 512
channels for stages 1–4; then fully connected layers 256 → 256 → ``fc``. The first fully connected
layer's input size follows from the input shape (each stage halves height and width).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.models.registry import image_shape, register_model, scaled

__all__ = ["ConvNet"]

_STAGE_CHANNELS = (64, 128, 256, 512)
_HIDDEN = (256, 256)


class ConvNet(nn.Module):
    """``convs`` (two per stage, a max-pool after each pair), ``hidden`` linear layers, ``fc``."""

    def __init__(
        self, input_shape: tuple[int, int, int], stages: Sequence[int], hidden: Sequence[int], num_classes: int
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        convs = []
        for out_channels in stages:
            convs.append(nn.Conv2d(channels, out_channels, 3, padding=1))
            convs.append(nn.Conv2d(out_channels, out_channels, 3, padding=1))
            channels = out_channels
        self.convs = nn.ModuleList(convs)
        sizes = [channels * (height >> len(stages)) * (width >> len(stages)), *hidden]
        self.hidden = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if index % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = x.flatten(1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.fc(x)


@register_model("conv2", "conv4", "conv6", "conv8")
def conv_n(name: str, *, input_shape: tuple[int, ...], num_classes: int, width: float) -> ConvNet:
    num_stages = int(name.removeprefix("conv")) // 2
    shape = image_shape(input_shape, name, halvings=num_stages)
    stages = [scaled(c, width) for c in _STAGE_CHANNELS[:num_stages]]
    return ConvNet(shape, stages, [scaled(n, width) for n in _HIDDEN], num_classes)
