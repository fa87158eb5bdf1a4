"""Building blocks: the activation and normalisation registries, Maxout, conv -> norm -> act.

Activations and normalisations are looked up by name in ``ACTIVATIONS`` and ``NORMS``
(timm's create_act / create_norm style). These tables are the one place a name lives:
``ninsweep.config`` validates ``model.activation`` / ``model.norm`` against them and the
analysis takes its report labels ("ReLU", "+BN") from them. Adding an activation is one
table entry here, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import nn

if TYPE_CHECKING:  # config imports this module lazily to validate names: no cycle at import
    from .config import ModelConfig


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


@dataclass(frozen=True)
class ActivationSpec:
    """How to build an activation from the model settings, and how wide its input must be."""

    label: str  # how reports name it: "ReLU", "LeakyReLU"
    make: Callable[["ModelConfig"], nn.Module]
    # Channels the preceding conv must produce per output channel (Maxout's k, else 1).
    pieces: Callable[["ModelConfig"], int] = lambda cfg: 1
    # The ModelConfig fields this activation reads (its parameters, usable as grid keys).
    options: tuple[str, ...] = ()


ACTIVATIONS: dict[str, ActivationSpec] = {
    "relu": ActivationSpec("ReLU", lambda cfg: nn.ReLU(inplace=True)),
    "leaky_relu": ActivationSpec("LeakyReLU",
                                 lambda cfg: nn.LeakyReLU(cfg.leaky_relu_slope, inplace=True),
                                 options=("leaky_relu_slope",)),
    "elu": ActivationSpec("ELU", lambda cfg: nn.ELU(cfg.elu_alpha, inplace=True),
                          options=("elu_alpha",)),
    "maxout": ActivationSpec("Maxout", lambda cfg: Maxout(cfg.maxout_pieces),
                             pieces=lambda cfg: cfg.maxout_pieces, options=("maxout_pieces",)),
    "gelu": ActivationSpec("GELU", lambda cfg: nn.GELU()),
    "silu": ActivationSpec("SiLU", lambda cfg: nn.SiLU(inplace=True)),
    "mish": ActivationSpec("Mish", lambda cfg: nn.Mish(inplace=True)),
    "selu": ActivationSpec("SELU", lambda cfg: nn.SELU(inplace=True)),
    "tanh": ActivationSpec("Tanh", lambda cfg: nn.Tanh()),
    # One learned slope per layer (PyTorch's default), starting at prelu_init.
    "prelu": ActivationSpec("PReLU", lambda cfg: nn.PReLU(init=cfg.prelu_init),
                            options=("prelu_init",)),
    "hardswish": ActivationSpec("Hardswish", lambda cfg: nn.Hardswish(inplace=True)),
}


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


@dataclass(frozen=True)
class NormSpec:
    """How to build a normalisation layer for ``channels`` channels from the model settings."""

    label: str  # appended to a report label: "+BN"; "" for none
    make: Optional[Callable[[int, "ModelConfig"], nn.Module]]  # None: no layer
    options: tuple[str, ...] = field(default=())


NORMS: dict[str, NormSpec] = {
    "none": NormSpec("", None),
    # Keras BatchNormalization defaults (bn_momentum, bn_eps): the reference's BN.
    "batch": NormSpec("+BN", lambda c, cfg: nn.BatchNorm2d(c, eps=cfg.bn_eps,
                                                           momentum=cfg.bn_momentum),
                      options=("bn_momentum", "bn_eps")),
    "group": NormSpec("+GN", lambda c, cfg: nn.GroupNorm(group_count(c, cfg.norm_groups), c,
                                                         eps=cfg.bn_eps),
                      options=("norm_groups", "bn_eps")),
    # Layer norm of a conv net: one group over (C, H, W) per image, as ConvNeXt-style
    # GroupNorm(1, C) does; a per-channel affine like BN's.
    "layer": NormSpec("+LN", lambda c, cfg: nn.GroupNorm(1, c, eps=cfg.bn_eps),
                      options=("bn_eps",)),
}


class ConvNormAct(nn.Sequential):
    """conv -> [norm] -> activation: z = f(N(Wx + b)), the reference's every layer.

    The conv keeps its bias even with a norm, as Keras did (the parameter count of the
    reference includes it); the norm then makes it redundant but harmless.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, cfg: "ModelConfig"):
        activation = ACTIVATIONS[cfg.activation]
        conv_channels = out_channels * activation.pieces(cfg)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, conv_channels, kernel_size, padding=kernel_size // 2, bias=True)
        ]
        norm = NORMS[cfg.norm]
        if norm.make is not None:
            layers.append(norm.make(conv_channels, cfg))
        layers.append(activation.make(cfg))
        super().__init__(*layers)
        self.out_channels = out_channels

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]
