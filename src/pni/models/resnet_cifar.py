"""CIFAR ResNets of He et al. 2016 (ResNet-20/32/44/56, option-A shortcuts) as used in
the PNI paper (Tables 1-3), with a width multiplier scaling the 16/32/64 channels."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .normalize import Normalize


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad_front = extra // 2
        self.pad_back = extra - extra // 2

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; where the shape changes, the shortcut is option A
    (``"zero-pad"``: subsample and zero-pad the channels, the CIFAR ResNets) or option B
    (``"projection"``: a 1x1 conv + BN, ResNet-18)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "zero-pad") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = (ZeroPadShortcut(in_planes, planes, stride) if shortcut == "zero-pad" else
                             nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes)))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: conv0, three stages of n blocks, global pool, fc."""

    def __init__(self, depth: int, num_classes: int = 10, width: float = 1.0,
                 in_channels: int = 3, normalize: Normalize | None = None) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        planes = [max(1, int(round(c * width))) for c in (16, 32, 64)]
        self.input_shape = (in_channels, 32, 32)
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.conv0 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(planes[0])
        in_planes = planes[0]
        stages = []
        for index, width_planes in enumerate(planes):
            stride = 1 if index == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(in_planes, width_planes, stride if b == 0 else 1))
                in_planes = width_planes
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = nn.Linear(planes[2], num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def conv_bn_pairs(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """Each convolution with the BatchNorm applied directly to its output."""
        pairs = [(self.conv0, self.bn0)]
        for stage in (self.stage1, self.stage2, self.stage3):
            for block in stage:
                pairs += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        return pairs

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.conv0(self.normalize(x))))
        x = self.stage3(self.stage2(self.stage1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
