"""LeNet-5 for 28x28 gray images (MNIST, Fashion-MNIST), with ReLU and max-pooling."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .normalize import Normalize


class LeNet5(nn.Module):
    """conv0 (6, 5x5, pad 2) - pool - conv1 (16, 5x5) - pool - fc0 120 - fc1 84 - fc2."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 1,
                 normalize: Normalize | None = None) -> None:
        super().__init__()
        c1, c2 = max(1, int(round(6 * width))), max(1, int(round(16 * width)))
        h1, h2 = max(1, int(round(120 * width))), max(1, int(round(84 * width)))
        self.input_shape = (in_channels, 28, 28)
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.conv0 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.conv1 = nn.Conv2d(c1, c2, 5)
        self.fc0 = nn.Linear(c2 * 5 * 5, h1)
        self.fc1 = nn.Linear(h1, h2)
        self.fc2 = nn.Linear(h2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv0(self.normalize(x))), 2)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.fc0(x.flatten(1)))
        x = F.relu(self.fc1(x))
        return self.fc2(x)
