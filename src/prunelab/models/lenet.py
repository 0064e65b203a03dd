"""Fully connected LeNets (LeCun et al. 1998), the MNIST networks of Frankle & Carbin 2019.

``lenet_300_100`` is the classic; any ``lenet_<N1>_<N2>...`` gives one ReLU hidden layer per
number, in order. The input is flattened, so any input shape works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.models.registry import register_model, scaled

__all__ = ["LeNet"]


class LeNet(nn.Module):
    """Flatten → (Linear → ReLU) per hidden size in ``hidden`` → ``fc``."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.fc(x)


@register_model("lenet_300_100", pattern=r"lenet(_[1-9][0-9]*)+", form="lenet_<N1>_<N2>...")
def lenet(name: str, *, input_shape: tuple[int, ...], num_classes: int, width: float) -> LeNet:
    hidden = [scaled(int(size), width) for size in name.split("_")[1:]]
    return LeNet(math.prod(input_shape), hidden, num_classes)
