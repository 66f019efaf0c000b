"""ResNet-18 for 32x32 images (CIFAR variant: 3x3 stem, no max-pool, 1x1 projection
shortcuts), the "redundant network" of the PNI paper (Tables 4-5, Fig. 3)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .normalize import Normalize
from .resnet_cifar import BasicBlock


class ResNet18(nn.Module):
    """ResNet-18, stages of 2 blocks at 64/128/256/512 channels (times ``width``)."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 normalize: Normalize | None = None) -> None:
        super().__init__()
        planes = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.input_shape = (in_channels, 32, 32)
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.conv0 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(planes[0])
        in_planes = planes[0]
        stages = []
        for index, stage_planes in enumerate(planes):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_planes, stage_planes, stride, shortcut="projection"),
                                        BasicBlock(stage_planes, stage_planes, 1, shortcut="projection")))
            in_planes = stage_planes
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.fc = nn.Linear(planes[3], num_classes)

    def conv_bn_pairs(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """Each convolution with the BatchNorm applied directly to its output."""
        pairs = [(self.conv0, self.bn0)]
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            for block in stage:
                pairs += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
                if isinstance(block.shortcut, nn.Sequential):
                    pairs.append((block.shortcut[0], block.shortcut[1]))
        return pairs

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.conv0(self.normalize(x))))
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
