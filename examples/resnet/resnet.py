"""A CIFAR ResNet (He et al. 2016, section 4.2) as a ninsweep model factory.

``resnet(width=16, depth=20, norm="batch")`` is ResNet-20: three stages of (depth - 2) / 6
basic blocks at widths w, 2w, 4w, a global average pool and one linear layer. Every keyword
is a grid axis of ``resnet-cifar10.yaml``; ``num_classes`` comes from ``model.num_classes``.
"""

import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be batch, group or none, not {kind!r}")


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.norm1 = _norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:  # option B: a 1x1 projection
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          _norm(norm, channels))

    def forward(self, x):
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, width: int, depth: int, norm: str, num_classes: int):
        super().__init__()
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), _norm(norm, width),
                                  nn.ReLU(inplace=True))
        layers, channels = [], width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(channels, stage_width, stride, norm))
                channels = stage_width
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet(width: int = 16, depth: int = 20, norm: str = "batch", num_classes: int = 10) -> nn.Module:
    """ResNet-<depth> of base width ``width``; depth is 6n + 2 (8, 14, 20, 32, 44, 56, 110)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, ...), not {depth}")
    return ResNet(width, depth, norm, num_classes)
