"""Typed, frozen settings for one training run: model, data and training recipe.

Every default here is the reference recipe of ``docs/lab4-reference.md`` (the Keras lab
report), so ``TrialConfig()`` *is* the lab's "None (ReLU)" cell. Values are validated once,
at the edge (``from_dict``), and then trusted everywhere else: no ``cfg.get(key, default)``
scattered through the code.

The settings are pydantic models (``Schema``): types, ranges and unknown keys are checked
by the schema, and ``schema_error`` turns pydantic's report into the one line a user reads
(``lab4.yaml: model.activation: unknown value 'relu6' (choose from ...)``). The space file
and the experiment manifest (``ninsweep.space``) are models of the same kind.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Callable, ClassVar, NoReturn, Optional, Sequence

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ninsweep.errors import ConfigError
from ninsweep.registry import ACTIVATIONS, INITS, NORMS, SOURCES
from ninsweep.user_code import import_path_problem

POOLS = ("max", "avg")
POOL_PADDINGS = ("same", "symmetric")
DECAY_SCOPES = ("spatial", "conv", "all")
DEVICES = ("auto", "cpu", "cuda")


# --------------------------------------------------------------------------------------
# The schema's rules and its one-line errors


class SchemaError(ConfigError):
    """A ``ConfigError`` that keeps where it happened: ``path`` (``model.activation``,
    ``grid[0]``...) and ``problem``, for callers that name the place in their own terms."""

    def __init__(self, path: str, problem: str, where: str = ""):
        self.path, self.problem = path, problem
        text = f"{path}: {problem}" if path else problem
        super().__init__(" ".join((f"{where}: {text}" if where else text).split()))


def fail(problem: str, key: str | int | tuple = ()) -> NoReturn:
    """Inside a validator: reject the value with ``problem``, at the validated field or
    below it at ``key`` (a field of a model validator, ``"lr_milestones"``; an index, 1)."""
    raise PydanticCustomError("ninsweep", "{problem}", {"problem": problem, "key": key})


def describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def schema_error(err: ValidationError, model: type, where: str = "") -> SchemaError:
    """pydantic's report of validating ``model`` -> one ``SchemaError`` (its first error).

    A section validated alone names its keys as in a whole config (``model.activation``).
    """
    first = err.errors(include_url=False)[0]
    loc = (*model.section, *first["loc"])
    kind, value, ctx = first["type"], first.get("input"), first.get("ctx") or {}
    if kind == "ninsweep":
        key = ctx["key"]
        loc += tuple(key) if isinstance(key, (tuple, list)) else (key,) if key != () else ()
        problem = ctx["problem"]
    elif "[key]" in loc:  # a mapping's key: loc is (..., field, key, "[key]")
        loc = loc[:loc.index("[key]") - 1]
        problem = f"keys must be strings, got {describe(value)}"
    elif kind == "extra_forbidden":
        known = _fields_at(model, loc[len(model.section):-1])
        problem = f"unknown key (known: {', '.join(known)})"
    elif kind in _LIMITS:
        sign, limit = _LIMITS[kind][0], ctx[_LIMITS[kind][1]]
        problem = f"must be {sign} {limit:g}, got {value!r}"
    elif kind == "finite_number":
        problem = f"must be a finite number, got {value!r}"
    elif kind == "missing":
        problem = "missing"
    elif kind in _EXPECTED:
        problem = f"expected {_EXPECTED[kind]}, got {describe(value)}"
    else:  # a rule without a sentence of ours: pydantic's own
        problem = first["msg"]
    return SchemaError(_path(loc), problem, where)


_LIMITS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
           "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
_EXPECTED = {"bool_type": "true or false", "int_type": "an integer",
             "int_from_float": "an integer", "float_type": "a number", "string_type": "a string",
             "model_type": "a mapping",
             "dict_type": "a mapping", "model_attributes_type": "a mapping",
             "tuple_type": "a list", "list_type": "a list"}


def _path(loc: Sequence[Any]) -> str:
    """("grid", 0, "activation") -> "grid[0].activation"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _fields_at(model: type, loc: Sequence[Any]) -> list[str]:
    """The field names of the model found at ``loc`` under ``model``."""
    for part in loc:
        if isinstance(part, str) and part in model.model_fields:
            model = _model_in(model.model_fields[part].annotation) or model
    return list(model.model_fields)


def _model_in(hint: Any) -> Optional[type]:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    for arg in getattr(hint, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


class Schema(BaseModel):
    """A frozen settings model: unknown keys are errors and values are not coerced across
    types (YAML's ``yes`` is not true, ``"10"`` is not 10), except an integer where a number
    is wanted. ``from_dict`` is the edge for user input: its errors are one-line
    ``SchemaError``s (the constructor, for code, raises pydantic's ``ValidationError``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
    _hash: Optional[int] = PrivateAttr(None)
    section: ClassVar[tuple[str, ...]] = ()  # where this model sits in a TrialConfig

    @classmethod
    def from_dict(cls, raw: Any, where: str = "") -> Any:
        """Build and validate from a mapping; errors are prefixed with ``where`` (a file)."""
        if isinstance(raw, cls):
            return raw
        try:
            return cls.model_validate({} if raw is None else raw)
        except ValidationError as err:
            raise schema_error(err, cls, where) from None

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and YAML-friendly dict (tuples become lists)."""
        return self.model_dump(mode="json")

    def validate(self) -> None:
        """Check again (a model is checked when built; kept for callers that say so)."""
        type(self).from_dict(self.to_dict())

    def __hash__(self) -> int:
        # A config holding a mapping (factory_kwargs) stays hashable: equal configs, equal
        # hashes (space expansion finds duplicate trials through a set of configs). Computed
        # once: a frozen model never changes.
        private = self.__pydantic_private__  # not self._hash: pydantic's __getattr__ is slow
        if private["_hash"] is None:
            private["_hash"] = hash(tuple(
                (json.dumps(v, sort_keys=True, default=str) if v else "")
                if type(v) is dict else v for v in self.__dict__.values()))
        return private["_hash"]

    def model_copy(self, *, update: Optional[dict[str, Any]] = None, deep: bool = False) -> Any:
        copy = super().model_copy(update=update, deep=deep)
        copy.__pydantic_private__["_hash"] = None  # another value: hash it again
        return copy

    def __eq__(self, other: Any) -> bool:
        # The fields alone (pydantic's own compares the cached hash too).
        return type(self) is type(other) and self.__dict__ == other.__dict__


def _one_of(choices: Sequence[str] | str) -> Any:
    """A str that must be one of ``choices``, or of the registry of that name
    (``_registry_names()``: activation, init, norm, source), read when first checked."""

    def check(value: str) -> str:
        allowed = _registry_names()[choices] if isinstance(choices, str) else choices
        if value not in allowed:
            fail(f"unknown value {value!r} (choose from {', '.join(allowed)})")
        return value

    return Annotated[str, AfterValidator(check)]


def _checked(rule: Callable[[Any], Optional[str]], base: Any = str) -> Any:
    """A ``base`` value that ``rule`` (value -> problem or None) accepts."""

    def check(value: Any) -> Any:
        problem = rule(value)
        if problem is not None:
            fail(problem)
        return value

    return Annotated[base, AfterValidator(check)]


def _device_problem(value: str) -> Optional[str]:
    kind, colon, index = value.partition(":")
    if kind in DEVICES and (not colon or (kind == "cuda" and index.isdigit())):
        return None
    return f"must be one of {', '.join(DEVICES)} (cuda may name an index, cuda:1)"


ImportPath = _checked(import_path_problem)
Positive = Annotated[StrictInt, Field(gt=0)]


# --------------------------------------------------------------------------------------
# The settings


class ModelConfig(Schema):
    """The NIN of the reference. ``init`` defaults to the lab's "without WI" scheme."""

    activation: _one_of("activation") = "relu"
    batchnorm: bool = False
    init: _one_of("init") = "keras"
    leaky_relu_slope: float = Field(0.01, ge=0)
    elu_alpha: float = Field(1.0, gt=0)
    maxout_pieces: int = Field(2, ge=2)
    # PReLU's learned slope starts here (PyTorch's default).
    prelu_init: float = 0.25
    # The normalisation after every conv: none, batch, group, layer (ninsweep.registry.NORMS).
    # ``batchnorm: true`` is the lab4 spelling of ``norm: batch``; the two are kept in step
    # (_one_spelling), and batchnorm: true with norm group/layer is a contradiction.
    norm: _one_of("norm") = "none"
    # Groups of norm: group, per layer the largest divisor of its width up to this count.
    norm_groups: int = Field(8, ge=1)
    pool2: _one_of(POOLS) = "max"
    # "same" = TensorFlow/Keras "same" pooling (pad 0 before, 1 after, padded cells never
    # win a max and are excluded from an average); "symmetric" = PyTorch padding=1.
    pool_padding: _one_of(POOL_PADDINGS) = "same"
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    # Keras BatchNormalization defaults: momentum 0.99 (PyTorch's 0.01), eps 1e-3.
    bn_momentum: float = Field(0.01, gt=0.0, le=1.0)
    bn_eps: float = Field(1e-3, gt=0)
    num_classes: int = Field(10, ge=2)
    # Your own model instead of the NIN: "module:function" returning an nn.Module
    # (ninsweep.factory). With a factory, every model key other than factory and num_classes
    # is one of its keyword arguments (factory_kwargs); the NIN's fields are unused.
    factory: Optional[ImportPath] = None
    factory_kwargs: dict[str, Any] = {}

    section: ClassVar[tuple[str, ...]] = ("model",)
    # The model keys that stay ModelConfig fields when a factory is named.
    FACTORY_FIELDS: ClassVar[tuple[str, ...]] = ("factory", "factory_kwargs", "num_classes")

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

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = cls.route_raw(raw)
        # One spelling per model: norm "batch" <=> batchnorm true, so `batchnorm: true` and
        # `norm: batch` give the same config (a grid holding both is a duplicate).
        if raw.get("norm") == "batch" and raw.get("batchnorm") is not True:
            raw = {**raw, "batchnorm": True}
        elif raw.get("batchnorm") is True and raw.get("norm", "none") == "none":
            raw = {**raw, "norm": "batch"}
        return raw

    @model_validator(mode="after")
    def _rules(self) -> "ModelConfig":
        if self.factory is None and self.factory_kwargs:
            fail("needs model.factory", "factory_kwargs")
        if self.batchnorm and self.norm != "batch":
            fail(f"{self.norm!r} contradicts batchnorm: true (batchnorm: true means norm: batch;"
                 " set one of them)", "norm")
        return self


class DataConfig(Schema):
    """Where the images come from and how they are augmented."""

    section: ClassVar[tuple[str, ...]] = ("data",)

    source: _one_of("source") = "cifar10"
    # cifar10: the download root (shared by every process on the machine);
    # imagefolder: the folder holding train/<class>/* and test/<class>/*.
    # None means $NINSWEEP_DATA_DIR, else ~/.cache/ninsweep/data.
    root: Optional[str] = None
    # Where decoded uint8 tensors are cached. None means $NINSWEEP_CACHE_DIR, else
    # ~/.cache/ninsweep/cache (kept apart from root, which may be read-only).
    cache_dir: Optional[str] = None
    train_subset: Optional[Positive] = None
    test_subset: Optional[Positive] = None
    # Images held out of the (subset) training split as a validation set, evaluated every
    # epoch (val_loss, val_acc): the analysis picks a trial's best epoch on it, not on the
    # test set. The last N of the split, the same for every trial. 0: no validation split.
    val_size: int = Field(0, ge=0)
    synthetic_train_size: int = Field(5000, gt=0)
    synthetic_test_size: int = Field(1000, gt=0)
    synthetic_image_size: int = Field(32, ge=8)
    synthetic_seed: int = 0
    # The SD of the per-pixel Gaussian noise added to each synthetic image (pixel values
    # 0-255; a class template's own contrast is 40-90): lower is easier to learn.
    synthetic_noise: float = Field(45.0, ge=0)
    augment: bool = True
    crop_padding: int = Field(4, ge=0)
    flip_probability: float = Field(0.5, ge=0.0, le=1.0)
    # Your own data: "module:function" returning the train and test splits (ninsweep.data's
    # _load_factory), called with factory_kwargs. Naming a factory makes source "factory".
    factory: Optional[ImportPath] = None
    factory_kwargs: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _factory_source(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("factory") is not None \
                and raw.get("source", "cifar10") == "cifar10":  # the default source
            raw = {**raw, "source": "factory"}
        return raw

    @model_validator(mode="after")
    def _rules(self) -> "DataConfig":
        if self.source == "factory" and self.factory is None:
            fail("is required for source factory", "factory")
        if self.source != "factory" and self.factory is not None:
            fail(f"names a data factory but data.source is {self.source!r}", "factory")
        if self.factory is None and self.factory_kwargs:
            fail("needs data.factory", "factory_kwargs")
        if self.source == "imagefolder" and self.root is None:
            fail("is required for source imagefolder", "root")
        return self


class TrainConfig(Schema):
    """The optimisation recipe: SGD Nesterov with a step schedule, as in the report."""

    section: ClassVar[tuple[str, ...]] = ("train",)

    epochs: int = Field(164, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.1, gt=0)
    # 0-indexed epochs at which the learning rate is multiplied by lr_gamma (a YAML list).
    lr_milestones: tuple[Positive, ...] = Field((81, 122), strict=False)
    lr_gamma: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    # Keras l2(1e-4) adds 1e-4*sum(w^2) to the loss; its gradient is 2e-4*w.
    weight_decay: float = Field(2e-4, ge=0)
    # Which parameters decay: "spatial" = the 5x5/5x5/3x3 conv kernels (the reference),
    # "conv" = every conv kernel, "all" = every parameter (PyTorch's usual default).
    weight_decay_on: _one_of(DECAY_SCOPES) = "spatial"
    seed: int = 0
    device: _checked(_device_problem) = "auto"
    # bf16 autocast where the device is CUDA; ignored on CPU, where it slows NIN down.
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = Field(500, gt=0)
    # torch.compile the model (CUDA only pays off; off by default for quick start-up).
    compile: bool = False
    # cuDNN autotuning on CUDA: every step has the same shapes, so it picks the fastest
    # kernels (GPU runs are then not bit-reproducible; CPU runs are either way).
    cudnn_benchmark: bool = True
    # CPU threads for this process; None leaves PyTorch's choice.
    threads: Optional[Positive] = None

    @model_validator(mode="after")
    def _rules(self) -> "TrainConfig":
        if list(self.lr_milestones) != sorted(self.lr_milestones):
            fail("must be increasing", "lr_milestones")
        if self.nesterov and self.momentum == 0:
            fail("needs momentum > 0", "nesterov")
        return self


class TrialConfig(Schema):
    """Everything one training run needs. The unit a sweep schedules and a checkpoint stores."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def replace(self, **sections: dict[str, Any]) -> "TrialConfig":
        """A copy with some fields of some sections changed, validated again."""
        merged = self.to_dict()
        for section, values in sections.items():
            if section not in merged:
                raise ConfigError(f"unknown section {section!r}")
            merged[section].update(values)
        return TrialConfig.from_dict(merged)


@functools.lru_cache(maxsize=1)
def _registry_names() -> dict[str, tuple[str, ...]]:
    """The names of each registry (``ninsweep/registry.py``, their one list; no torch)."""
    return {"activation": tuple(ACTIVATIONS), "norm": tuple(NORMS), "init": tuple(INITS),
            "source": tuple(SOURCES)}


def to_dict(obj: Schema) -> dict[str, Any]:
    """A plain, JSON- and YAML-friendly dict (tuples become lists)."""
    return obj.to_dict()


def from_dict(cls: type, raw: Any, where: str = "") -> Any:
    """Build settings model ``cls`` from a mapping, checking keys, types and ranges."""
    return cls.from_dict(raw, where)
