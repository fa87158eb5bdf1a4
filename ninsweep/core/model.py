"""The Network-in-Network of the reference, built from a list of layer specs.

The architecture is data (``NIN_LAYERS``, report Table 1) turned into modules by one
function, and ``initialize`` applies a weight-init scheme to every conv in one loop
(torchvision's vgg.py style).

Init schemes (``ModelConfig.init``):
- ``keras`` (default; the lab's "without WI"): spatial convs normal(0, 0.01 / 0.05 / 0.05),
  1x1 convs glorot_uniform, zero biases. This is what produced the report's non-WI rows.
- ``he`` (the report's WI): spatial convs normal(0, sqrt(2 / (k^2 * C_out))), He fan_out,
  1x1 convs as in keras. C_out is the conv's real output width, so a conv feeding Maxout
  (k * C channels) gets the std of its k * C outputs. No extra gain for ELU or Maxout: the
  report applied the same WI to every activation and we reproduce it.
- ``torch``: PyTorch's own defaults (kaiming_uniform with a=sqrt(5)); matches neither.
- ``orthogonal``, ``xavier_uniform`` / ``xavier_normal`` (Glorot), ``kaiming_fan_in`` /
  ``kaiming_fan_out`` (He normal with ReLU's gain, fan over C_in or C_out times k^2): the
  named PyTorch initialiser on *every* conv, 1x1 ones included, zero biases.

The scheme names, like the activation and norm names, live in ``ninsweep/registry.py``
(``INITS``): config validates against it, the analysis takes each report suffix ("+WI")
from it, and ``initialize`` applies the named initialiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ninsweep.config import ModelConfig, from_dict
from ninsweep.core.layers import ConvNormAct
from ninsweep.errors import ConfigError
from ninsweep.fmt import first_line
from ninsweep.registry import ACTIVATIONS, INITS, NORMS
from ninsweep.user_code import accepts_keyword, keyword_problem, load_callable


@dataclass(frozen=True)
class Conv:
    channels: int  # 0 means "the number of classes"
    kernel: int
    keras_std: Optional[float] = None  # the lab's explicit normal init for spatial convs


@dataclass(frozen=True)
class Pool:
    kind: str  # "max", or "pool2" for the configurable second pool


@dataclass(frozen=True)
class Dropout:
    pass


@dataclass(frozen=True)
class GlobalAvgPool:
    pass


NUM_CLASSES = 0
NIN_LAYERS = (
    Conv(192, 5, keras_std=0.01), Conv(160, 1), Conv(96, 1), Pool("max"), Dropout(),
    Conv(192, 5, keras_std=0.05), Conv(192, 1), Conv(192, 1), Pool("pool2"), Dropout(),
    Conv(192, 3, keras_std=0.05), Conv(192, 1), Conv(NUM_CLASSES, 1), GlobalAvgPool(),
)


class SamePool2d(nn.Module):
    """3x3 stride-2 pooling with TensorFlow's "same" padding.

    TF pads 32 -> 16 with 0 cells before and 1 after. ``ceil_mode=True`` without padding
    gives exactly that: the last window is clipped at the border, so padded cells never win
    a max and are excluded from an average (Keras's behaviour).
    """

    def __init__(self, kind: str, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kind, self.kernel_size, self.stride = kind, kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel_size, self.stride, ceil_mode=True)
        return F.avg_pool2d(x, self.kernel_size, self.stride, ceil_mode=True,
                            count_include_pad=False)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, kernel_size={self.kernel_size}, stride={self.stride}, padding=same"


def _pool(kind: str, padding: str) -> nn.Module:
    if padding == "same":
        return SamePool2d(kind)
    if kind == "max":
        return nn.MaxPool2d(3, stride=2, padding=1)
    return nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


class NIN(nn.Module):
    """Network in Network (Lin et al. 2013) as the lab report builds it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        # The config's names as layer types, resolved once for every block.
        activation = ACTIVATIONS[cfg.activation]
        block_types = dict(act_layer=activation.build(cfg), norm_layer=NORMS[cfg.norm].build(cfg),
                           pieces=getattr(cfg, activation.pieces) if activation.pieces else 1)
        layers: list[nn.Module] = []
        convs: list[tuple[nn.Conv2d, Conv]] = []  # each conv with its spec, for the init
        in_channels = 3
        for spec in NIN_LAYERS:
            if isinstance(spec, Conv):
                out_channels = spec.channels or cfg.num_classes
                block = ConvNormAct(in_channels, out_channels, spec.kernel, **block_types)
                convs.append((block.conv, spec))
                layers.append(block)
                in_channels = out_channels
            elif isinstance(spec, Pool):
                layers.append(_pool(cfg.pool2 if spec.kind == "pool2" else spec.kind,
                                    cfg.pool_padding))
            elif isinstance(spec, Dropout):
                layers.append(nn.Dropout(cfg.dropout))
            elif isinstance(spec, GlobalAvgPool):
                layers.append(nn.AdaptiveAvgPool2d(1))
                layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        # Only once every module exists: building a conv draws from the RNG, so initialising
        # in between would change every seeded model.
        initialize(convs, cfg.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def conv_blocks(self) -> Iterator[ConvNormAct]:
        return (m for m in self.layers if isinstance(m, ConvNormAct))


def keras_init_(weight: torch.Tensor, std: Optional[float]) -> None:
    """The lab's "without WI": normal(0, std) on a spatial conv (``std``: its layer spec's
    ``keras_std``), glorot_uniform on a 1x1 conv (Keras's fans = channels)."""
    if weight.shape[2] == 1:
        nn.init.xavier_uniform_(weight)
    else:
        nn.init.normal_(weight, 0.0, std)


def he_init_(weight: torch.Tensor) -> None:
    """The report's WI: the keras scheme with std sqrt(2 / (k^2 * C_out)) on a spatial conv."""
    kernel = weight.shape[2]
    keras_init_(weight, math.sqrt(2.0 / (kernel * kernel * weight.shape[0])))


def initialize(convs: Iterable[tuple[nn.Conv2d, Conv]], scheme: str) -> None:
    """Apply init ``scheme`` (``INITS``) to each conv, given with its layer spec; zero biases."""
    entry = INITS[scheme]
    if entry.builder is None:
        return
    for conv, spec in convs:
        entry.build(spec)(conv.weight)
        nn.init.zeros_(conv.bias)


def build_factory_model(config: ModelConfig, search_dirs: tuple = ()) -> nn.Module:
    """Call ``config.factory`` with its keyword arguments; it must return an ``nn.Module``.

    ``num_classes`` is passed too when the factory takes it and the space did not set it
    as a keyword. Every failure is a one-line ``ConfigError`` naming ``model.factory``.
    """
    function = load_callable("model.factory", config.factory, search_dirs)
    kwargs = dict(config.factory_kwargs)
    if "num_classes" not in kwargs and accepts_keyword(function, "num_classes"):
        kwargs["num_classes"] = config.num_classes
    problem = keyword_problem(function, config.factory, kwargs)
    if problem is not None:
        raise ConfigError(f"model.{problem[0]}: {problem[1]}")
    try:
        model = function(**kwargs)
    except Exception as err:  # the user's code: say what it raised, in one line
        raise ConfigError(f"model.factory: {config.factory}({_call_text(kwargs)}) raised "
                          f"{type(err).__name__}: {first_line(str(err), 300)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory: {config.factory}({_call_text(kwargs)}) returned "
                          f"{type(model).__name__}, not a torch.nn.Module")
    return model


def check_factory_output(net: nn.Module, config: ModelConfig, size: Optional[int]) -> None:
    """One forward pass of two blank images of ``size`` through a factory's model: it must
    give ``config.num_classes`` scores per image (the loss indexes them by label), or the
    sweep would fail in every trial. A one-line ``ConfigError``; no check for size None."""
    if size is None:
        return
    call = f"{config.factory}({_call_text(config.factory_kwargs)})"
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, 3, size, size))
    except Exception as err:  # the user's code: what it raised, in one line
        raise ConfigError(f"model.factory: {call} raised {type(err).__name__} on 2 images of "
                          f"3x{size}x{size}: {first_line(str(err), 300)}") from None
    finally:
        net.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (2, config.num_classes):
        got = "x".join(map(str, shape)) if shape is not None else type(out).__name__
        raise ConfigError(f"model.factory: {call} returns {got} for 2 images, not "
                          f"2x{config.num_classes} (model.num_classes {config.num_classes}: "
                          "one score per class)")


def _call_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def build_model(activation: str = "relu", batchnorm: bool = False, init: str = "keras",
                config: Optional[ModelConfig] = None, **options: Any) -> nn.Module:
    """Build the NIN for one cell of the study.

    ``build_model("elu", batchnorm=True, init="he")``; other ``ModelConfig`` fields
    (``pool2="avg"``, ``maxout_pieces=3``, ...) as keywords, or a whole ``config``.
    Unknown names raise ``ConfigError``. A ``config`` naming a ``factory`` builds that
    model instead (``build_factory_model``).
    """
    if config is None:
        config = from_dict(ModelConfig, dict(activation=activation, batchnorm=batchnorm,
                                             init=init, **options))
    if config.factory is not None:
        return build_factory_model(config)
    return NIN(config)


def decayed_parameters(model: nn.Module, scope: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into (decayed, not decayed) for weight decay ``scope``.

    "spatial": only the kernels of the convs wider than 1x1 (NIN's 5x5/5x5/3x3: Keras l2 on
    those layers, the reference); "conv": every conv kernel; "all": every parameter. Any
    model's ``nn.Conv2d`` modules count (for the NIN: exactly its conv blocks' convs).
    """
    if scope == "all":
        return list(model.parameters()), []
    chosen = {
        id(conv.weight)
        for conv in model.modules()
        if isinstance(conv, nn.Conv2d) and (scope == "conv" or max(conv.kernel_size) > 1)
    }
    decayed = [p for p in model.parameters() if id(p) in chosen]
    others = [p for p in model.parameters() if id(p) not in chosen]
    return decayed, others


def count_parameters(model: Union[NIN, nn.Module]) -> int:
    return sum(p.numel() for p in model.parameters())
