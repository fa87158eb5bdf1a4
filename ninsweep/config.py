"""Typed, frozen settings for one training run: model, data and training recipe.

Every default here is the reference recipe of ``docs/lab4-reference.md`` (the Keras lab
report), so ``TrialConfig()`` *is* the lab's "None (ReLU)" cell. Values are validated once,
at the edge (``from_dict``), and then trusted everywhere else: no ``cfg.get(key, default)``
scattered through the code.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError

POOLS = ("max", "avg")
POOL_PADDINGS = ("same", "symmetric")
DECAY_SCOPES = ("spatial", "conv", "all")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelConfig:
    """The NIN of the reference. ``init`` defaults to the lab's "without WI" scheme."""

    activation: str = "relu"
    batchnorm: bool = False
    init: str = "keras"
    leaky_relu_slope: float = 0.01
    elu_alpha: float = 1.0
    maxout_pieces: int = 2
    # PReLU's learned slope starts here (PyTorch's default).
    prelu_init: float = 0.25
    # The normalisation after every conv: none, batch, group, layer (ninsweep.layers.NORMS).
    # ``batchnorm: true`` is the lab4 spelling of ``norm: batch``; the two are kept in step
    # (__post_init__), and batchnorm: true with norm group/layer is a contradiction.
    norm: str = "none"
    # Groups of norm: group, per layer the largest divisor of its width up to this count.
    norm_groups: int = 8
    pool2: str = "max"
    # "same" = TensorFlow/Keras "same" pooling (pad 0 before, 1 after, padded cells never
    # win a max and are excluded from an average); "symmetric" = PyTorch padding=1.
    pool_padding: str = "same"
    dropout: float = 0.5
    # Keras BatchNormalization defaults: momentum 0.99 (PyTorch's 0.01), eps 1e-3.
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    num_classes: int = 10
    # Your own model instead of the NIN: "module:function" returning an nn.Module
    # (ninsweep.factory). With a factory, every model key other than factory and num_classes
    # is one of its keyword arguments (factory_kwargs); the NIN's fields are unused.
    factory: Optional[str] = None
    factory_kwargs: dict[str, Any] = field(default_factory=dict)

    # The model keys that stay ModelConfig fields when a factory is named.
    FACTORY_FIELDS = ("factory", "factory_kwargs", "num_classes")

    @classmethod
    def route_raw(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """With a factory, flat keys (``width: 16``) are its keyword arguments.

        A mapping that already holds ``factory_kwargs`` is the canonical form (``to_dict``'s,
        in manifests and checkpoints) and is taken as it is.
        """
        if raw.get("factory") is None or "factory_kwargs" in raw:
            return raw
        routed = {k: v for k, v in raw.items() if k in cls.FACTORY_FIELDS}
        kwargs = dict(routed.get("factory_kwargs") or {})
        kwargs.update({k: v for k, v in raw.items() if k not in cls.FACTORY_FIELDS})
        routed["factory_kwargs"] = kwargs
        return routed

    def __post_init__(self) -> None:
        # One spelling per model: norm "batch" <=> batchnorm true, so `batchnorm: true` and
        # `norm: batch` give the same config (a grid holding both is a duplicate).
        if self.norm == "batch" and not self.batchnorm:
            object.__setattr__(self, "batchnorm", True)
        elif self.batchnorm and self.norm == "none":
            object.__setattr__(self, "norm", "batch")

    def __hash__(self) -> int:
        return _hash_fields(self)

    def validate(self) -> None:
        if self.factory is not None:
            from .factory import check_import_path

            check_import_path("model.factory", self.factory)
            _check("model.num_classes", self.num_classes >= 2, "must be >= 2")
            return
        _check("model.factory_kwargs", not self.factory_kwargs, "needs model.factory")
        names = _registry_names()
        _one_of("model.activation", self.activation, names["activation"])
        _one_of("model.init", self.init, names["init"])
        _one_of("model.norm", self.norm, names["norm"])
        _check("model.norm", not (self.batchnorm and self.norm != "batch"),
               f"{self.norm!r} contradicts batchnorm: true (batchnorm: true means norm: batch;"
               " set one of them)")
        _check("model.norm_groups", self.norm_groups >= 1, "must be >= 1")
        _one_of("model.pool2", self.pool2, POOLS)
        _one_of("model.pool_padding", self.pool_padding, POOL_PADDINGS)
        _check("model.maxout_pieces", self.maxout_pieces >= 2, "must be >= 2")
        _check("model.dropout", 0.0 <= self.dropout < 1.0, "must be in [0, 1)")
        _check("model.leaky_relu_slope", self.leaky_relu_slope >= 0, "must be >= 0")
        _check("model.elu_alpha", self.elu_alpha > 0, "must be > 0")
        _check("model.bn_momentum", 0.0 < self.bn_momentum <= 1.0, "must be in (0, 1]")
        _check("model.bn_eps", self.bn_eps > 0, "must be > 0")
        _check("model.num_classes", self.num_classes >= 2, "must be >= 2")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are augmented."""

    source: str = "cifar10"
    # cifar10: the download root (shared by every process on the machine);
    # imagefolder: the folder holding train/<class>/* and test/<class>/*.
    # None means $NINSWEEP_DATA_DIR, else ~/.cache/ninsweep/data.
    root: Optional[str] = None
    # Where decoded uint8 tensors are cached. None means $NINSWEEP_CACHE_DIR, else
    # ~/.cache/ninsweep/cache (kept apart from root, which may be read-only).
    cache_dir: Optional[str] = None
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    # Images held out of the (subset) training split as a validation set, evaluated every
    # epoch (val_loss, val_acc): the analysis picks a trial's best epoch on it, not on the
    # test set. The last N of the split, the same for every trial. 0: no validation split.
    val_size: int = 0
    synthetic_train_size: int = 5000
    synthetic_test_size: int = 1000
    synthetic_image_size: int = 32
    synthetic_seed: int = 0
    augment: bool = True
    crop_padding: int = 4
    flip_probability: float = 0.5
    # Your own data: "module:function" returning the train and test splits (ninsweep.data's
    # _load_factory), called with factory_kwargs. Naming a factory makes source "factory".
    factory: Optional[str] = None
    factory_kwargs: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return _hash_fields(self)

    def __post_init__(self) -> None:
        if self.factory is not None and self.source == "cifar10":  # the default source
            object.__setattr__(self, "source", "factory")

    def validate(self) -> None:
        _one_of("data.source", self.source, _registry_names()["source"])
        if self.source == "factory":
            from .factory import check_import_path

            _check("data.factory", self.factory is not None, "is required for source factory")
            check_import_path("data.factory", self.factory)
        else:
            _check("data.factory", self.factory is None,
                   f"names a data factory but data.source is {self.source!r}")
            _check("data.factory_kwargs", not self.factory_kwargs, "needs data.factory")
        if self.source == "imagefolder":
            _check("data.root", self.root is not None, "is required for source imagefolder")
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            _check(f"data.{key}", value is None or value > 0, "must be > 0")
        _check("data.val_size", self.val_size >= 0, "must be >= 0")
        _check("data.synthetic_train_size", self.synthetic_train_size > 0, "must be > 0")
        _check("data.synthetic_test_size", self.synthetic_test_size > 0, "must be > 0")
        _check("data.synthetic_image_size", self.synthetic_image_size >= 8, "must be >= 8")
        _check("data.crop_padding", self.crop_padding >= 0, "must be >= 0")
        _check("data.flip_probability", 0.0 <= self.flip_probability <= 1.0, "must be in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe: SGD Nesterov with a step schedule, as in the report."""

    epochs: int = 164
    batch_size: int = 128
    lr: float = 0.1
    # 0-indexed epochs at which the learning rate is multiplied by lr_gamma.
    lr_milestones: tuple[int, ...] = (81, 122)
    lr_gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    # Keras l2(1e-4) adds 1e-4*sum(w^2) to the loss; its gradient is 2e-4*w.
    weight_decay: float = 2e-4
    # Which parameters decay: "spatial" = the 5x5/5x5/3x3 conv kernels (the reference),
    # "conv" = every conv kernel, "all" = every parameter (PyTorch's usual default).
    weight_decay_on: str = "spatial"
    seed: int = 0
    device: str = "auto"
    # bf16 autocast where the device is CUDA; ignored on CPU, where it slows NIN down.
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 500
    # torch.compile the model (CUDA only pays off; off by default for quick start-up).
    compile: bool = False
    # cuDNN autotuning on CUDA: every step has the same shapes, so it picks the fastest
    # kernels (GPU runs are then not bit-reproducible; CPU runs are either way).
    cudnn_benchmark: bool = True
    # CPU threads for this process; None leaves PyTorch's choice.
    threads: Optional[int] = None

    def validate(self) -> None:
        _check("train.epochs", self.epochs > 0, "must be > 0")
        _check("train.batch_size", self.batch_size > 0, "must be > 0")
        _check("train.eval_batch_size", self.eval_batch_size > 0, "must be > 0")
        _check("train.lr", self.lr > 0, "must be > 0")
        _check("train.lr_gamma", self.lr_gamma > 0, "must be > 0")
        _check("train.momentum", 0.0 <= self.momentum < 1.0, "must be in [0, 1)")
        _check("train.weight_decay", self.weight_decay >= 0, "must be >= 0")
        _check("train.lr_milestones", all(m > 0 for m in self.lr_milestones), "must be > 0")
        _check("train.lr_milestones", list(self.lr_milestones) == sorted(self.lr_milestones),
               "must be increasing")
        _check("train.nesterov", not self.nesterov or self.momentum > 0,
               "needs momentum > 0")
        _one_of("train.weight_decay_on", self.weight_decay_on, DECAY_SCOPES)
        kind, colon, index = self.device.partition(":")
        _check("train.device", kind in DEVICES and (
            not colon or (kind == "cuda" and index.isdigit())),
               f"must be one of {', '.join(DEVICES)} (cuda may name an index, cuda:1)")
        _check("train.threads", self.threads is None or self.threads > 0, "must be > 0")


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training run needs. The unit a sweep schedules and a checkpoint stores."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "") -> "TrialConfig":
        """Build and validate from ``{"model": {...}, "data": {...}, "train": {...}}``.

        Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the
        key (prefixed with ``where``, e.g. a file name).
        """
        return from_dict(cls, raw, where)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.train.validate()

    def replace(self, **sections: dict[str, Any]) -> "TrialConfig":
        """A copy with some fields of some sections changed, validated again."""
        merged = self.to_dict()
        for section, values in sections.items():
            if section not in merged:
                raise ConfigError(f"unknown section {section!r}")
            merged[section].update(values)
        return TrialConfig.from_dict(merged)


def _hash_fields(obj: Any) -> int:
    """A frozen config holding a mapping (factory_kwargs) stays hashable: equal configs,
    equal hashes (space expansion finds duplicate trials through a set of configs)."""
    cached = obj.__dict__.get("_hash")
    if cached is None:  # computed once: a frozen config never changes
        values = [getattr(obj, name) for name in _field_names(type(obj))]
        cached = hash(tuple((json.dumps(value, sort_keys=True, default=str) if value else "")
                            if isinstance(value, dict) else value for value in values))
        object.__setattr__(obj, "_hash", cached)
    return cached


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.lru_cache(maxsize=1)
def _registry_names() -> dict[str, tuple[str, ...]]:
    """The names of each registry (``ninsweep/registry.py``, their one list; no torch)."""
    from .registry import ACTIVATIONS, INITS, NORMS, SOURCES

    return {"activation": tuple(ACTIVATIONS), "norm": tuple(NORMS), "init": tuple(INITS),
            "source": tuple(SOURCES)}


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain, JSON- and YAML-friendly dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(obj)


def from_dict(cls: type, raw: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types, then validate."""
    obj = _build(cls, raw, where.rstrip(".") + ":" if where else "")
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}" if where else str(err)) from None
    return obj


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip(':.') or cls.__name__}: expected a mapping, "
                          f"got {type(raw).__name__}")
    if hasattr(cls, "route_raw"):
        raw = cls.route_raw(raw)
    hints, known = _schema(cls)
    for key in raw:
        if key not in known:
            raise ConfigError(f"{_key(prefix, key)}: unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in raw.items():
        values[key] = _coerce(hints[key], value, _key(prefix, key))
    return cls(**values)


@functools.lru_cache(maxsize=None)
def _schema(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """(type hints, field names) of a config dataclass, computed once per class.

    ``typing.get_type_hints`` evaluates every annotation string each time it is called: once
    per trial it was most of the time a 10,000-trial grid took to expand.
    """
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))


def _key(prefix: str, key: str) -> str:
    # A prefix is empty, a file name ("lab4.yaml:") or a section path ending in "."
    # ("model."): join without doubling the dot.
    return f"{prefix}{key}" if not prefix or prefix.endswith((":", ".")) else f"{prefix}.{key}"


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if hint is dict or origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping with string keys, got {_describe(value)}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):  # --lr inf, .nan in YAML: would train NaN to the end
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug, not user input


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r} (choose from {', '.join(allowed)})")


def _check(key: str, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {problem}")
