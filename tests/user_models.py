"""Models defined outside pni, as a researcher would bring them: ``pni eval --model
user_models:FACTORY`` (the tests folder is on the import path under pytest)."""
from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A small MNIST classifier, not built by pni; ``noise`` > 0 adds Gaussian noise to its
    hidden activations at every pass (a randomized defense of the user's own)."""

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=2)
        self.fc = nn.Linear(4 * 12 * 12, 10)
        self.noise = noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        if self.noise:
            h = h + self.noise * torch.randn_like(h)
        return self.fc(h.flatten(1))


def deterministic() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def randomized() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(noise=0.5)


def not_a_model() -> object:
    return "a string"


def broken() -> nn.Module:
    raise ValueError("this factory needs a GPU")
