"""Building blocks: Maxout, GroupNorm of any width, and one conv -> norm -> act block.

``ConvNormAct`` takes its norm and activation as types, as timm's does: ``norm_layer``
builds a norm for a given width, ``act_layer`` builds an activation. model.py turns the
names of a ``ModelConfig`` into those constructors through ``ninsweep/registry.py``, the one
table of activation and normalisation names.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


class Maxout(nn.Module):
    """Maxout over groups of ``pieces`` adjacent channels (Goodfellow et al. 2013).

    The conv feeding it produces ``pieces * C`` channels; channel ``c`` of the output is the
    max over input channels ``c*pieces .. c*pieces + pieces - 1``.
    """

    def __init__(self, pieces: int = 2):
        super().__init__()
        if pieces < 2:
            raise ValueError("Maxout needs at least 2 pieces")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        grouped = x.view(batch, channels // self.pieces, self.pieces, height, width)
        # amax keeps the memory format of the input for NCHW and channels_last alike.
        return grouped.amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def group_count(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``groups``.

    NIN's widths (192, 160, 96, and 10 for the class layer) are not all divisible by one
    group count; each layer takes the nearest count its width allows (10 channels with
    ``norm_groups: 8`` get 5 groups).
    """
    for count in range(min(groups, channels), 0, -1):
        if channels % count == 0:
            return count
    return 1


def group_norm(num_channels: int, groups: int, eps: float) -> nn.GroupNorm:
    """GroupNorm with ``group_count(num_channels, groups)`` groups (1: layer norm)."""
    return nn.GroupNorm(group_count(num_channels, groups), num_channels, eps=eps)


class ConvNormAct(nn.Sequential):
    """conv -> [norm] -> activation: z = f(N(Wx + b)), the reference's every layer.

    ``pieces`` conv channels feed each output channel (Maxout's k, else 1): the conv is
    ``pieces * out_channels`` wide. The conv keeps its bias even with a norm, as Keras did
    (the parameter count of the reference includes it); the norm then makes it redundant
    but harmless.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 act_layer: Callable[[], nn.Module] = nn.ReLU,
                 norm_layer: Optional[Callable[[int], nn.Module]] = None, pieces: int = 1):
        conv_channels = out_channels * pieces
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, conv_channels, kernel_size, padding=kernel_size // 2, bias=True)
        ]
        if norm_layer is not None:
            layers.append(norm_layer(conv_channels))
        layers.append(act_layer())
        super().__init__(*layers)
        self.out_channels = out_channels

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]
