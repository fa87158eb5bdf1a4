"""Search spaces: a YAML file -> a typed, validated ``SweepSpec`` -> the list of trials.

A space is a union of grid blocks (each block the product of its value lists), repeated
once per seed, on top of shared model / data / train overrides, plus the resources each
trial takes, checkpoint settings and failure retries. ``docs/search-spaces.md`` is the
format reference.

The file's keys are a schema (``SpaceFile``: pydantic models, with the defaults), and so is
the experiment manifest it becomes (``Manifest``: written by ``to_manifest`` and read back by
``from_manifest`` through the same models). The rules for model / data / train values live in
``ninsweep.config`` alone: each expanded trial is checked by ``TrialConfig.from_dict``.

Everything here runs before Ray starts (``ninsweep run --dry-run``, validation, resume):
no module-level Ray import. Every user mistake raises ``ConfigError`` with one line,
``<file>: <key path>: <problem>``.
"""

from __future__ import annotations

import itertools
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, NoReturn, Optional, Union

import yaml
from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from . import metrics as M
from .config import (DataConfig, ModelConfig, Schema, SchemaError, TrainConfig, TrialConfig,
                     describe, fail)
from .errors import ConfigError
from .fmt import one_line as _one_line, table

MANIFEST_FORMAT = 1
SPACE_SUFFIXES = (".yaml", ".yml")
# The one key of Tune's param space, so of Ray's params.json: {"trial": {name, params, config}}.
TRIAL_KEY = "trial"

# The sections a space may override, and the settings model behind each.
SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
# Params every trial of the NIN carries, whether or not the grid varies them (the contract
# with analysis: DEVELOPERS.md, "Trial params"): its three model axes, then the seed. A
# model factory's trials carry only the seed. Other grid keys follow by their dotted name.
MODEL_AXES = ("activation", "batchnorm", "init")
SEED = "seed"
BASE_PARAMS = (*MODEL_AXES, SEED)
_BASE_KEYS = {f"model.{name}": name for name in MODEL_AXES}

# Experiment trackers a space may name (``trackers: [mlflow]``): name -> (the Python module
# it needs, the ninsweep extra that installs it). ninsweep.tracking maps each to Ray Tune's
# logger callback.
TRACKERS = {
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
# More trials than this is a typo or a runaway grid, not a study: at a CIFAR-10 epoch of
# minutes per trial it would outlast any cluster. Refused before expanding (a 10^6 grid
# would otherwise take minutes and gigabytes to list).
MAX_TRIALS = 100_000
# The most values a YAML file may expand to through aliases (*anchor): a "billion laughs"
# file is a few lines that expand to 10^9 values.
MAX_YAML_NODES = 1_000_000
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# --------------------------------------------------------------------------------------
# The schema of a space file and of a manifest


def _name_problem(value: Any) -> Optional[str]:
    if isinstance(value, str) and _NAME_RE.fullmatch(value):
        return None
    return (f"{value!r} is not a usable experiment name (letters, digits, '.', '_', '-'; "
            "starting with a letter or digit)")


def _experiment_name(value: Any) -> str:
    problem = _name_problem(value)
    if problem is not None:
        fail(problem)
    return value


def _gpu_count(value: float) -> float:
    if value > 1 and not value.is_integer():
        fail(f"{value!r} GPUs: use a fraction up to 1 (0.25 shares a GPU four ways) or a "
             "whole number of GPUs")
    return value


def _kept_checkpoints(value: int) -> int:
    if value < 2:  # the newest checkpoint may be the one being written when a node dies
        fail(f"must be >= 2 (the newest may be incomplete when a trial dies while writing it), "
             f"got {value!r}")
    return value


def _seed_list(value: Any) -> tuple[int, ...]:
    """``seeds: 3`` (a count: 0, 1, 2) or ``seeds: [0, 1, 2]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            fail(f"a count of seeds must be >= 1, got {value}")
        return tuple(range(value))
    if not isinstance(value, (list, tuple)):
        fail(f"expected a list of seeds or a count, got {describe(value)}")
    if not value:
        fail("empty list (give at least one seed, e.g. seeds: [0])")
    for i, seed in enumerate(value):
        if isinstance(seed, bool) or not isinstance(seed, int):
            fail(f"expected an integer, got {describe(seed)}", i)
        if seed < 0:
            fail(f"must be >= 0, got {seed}", i)
        if seed in value[:i]:
            fail(f"duplicate seed {seed}", i)
    return tuple(value)


def _tracker(value: str) -> str:
    if value not in TRACKERS:
        fail(f"unknown tracker {value!r} (known: {', '.join(TRACKERS)})")
    return value


ExperimentName = Annotated[Any, AfterValidator(_experiment_name)]
Seeds = Annotated[Any, AfterValidator(_seed_list)]
Trackers = Annotated[tuple[Annotated[str, AfterValidator(_tracker)], ...],
                     Field(strict=False), AfterValidator(lambda names: tuple(dict.fromkeys(names)))]


class Resources(Schema):
    """What one trial asks Ray for. ``gpus`` is a fraction in [0, 1] or a whole number."""

    cpus: float = Field(1.0, gt=0)
    gpus: Annotated[float, Field(ge=0), AfterValidator(_gpu_count)] = 0.0

    def to_ray(self) -> dict[str, float]:
        """The mapping ``tune.with_resources(trainable, ...)`` takes."""
        return {"cpu": self.cpus, "gpu": self.gpus}


class Checkpoint(Schema):
    every: int = Field(1, ge=1)  # epochs between checkpoints
    keep: Annotated[int, AfterValidator(_kept_checkpoints)] = 2  # latest kept per trial


class Failure(Schema):
    max_retries: int = Field(3, ge=0)  # restarts of a failed trial (from its checkpoint)


class Objective(Schema):
    """What the analysis ranks configurations by; mode defaults to max for an accuracy,
    min for a loss."""

    metric: str = M.DEFAULT_OBJECTIVE["metric"]
    mode: str = M.DEFAULT_OBJECTIVE["mode"]

    @model_validator(mode="before")
    @classmethod
    def _mode_of_metric(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("mode") is None and isinstance(raw.get("metric"), str):
            raw = {**raw, "mode": "max" if M.is_accuracy(raw["metric"]) else "min"}
        return raw

    @model_validator(mode="after")
    def _known(self) -> "Objective":
        if self.metric not in M.OBJECTIVE_METRICS:
            fail(f"unknown metric {self.metric!r} (choose from "
                 f"{', '.join(M.OBJECTIVE_METRICS)})", "metric")
        if self.mode not in M.OBJECTIVE_MODES:
            fail(f"unknown mode {self.mode!r} (max: higher is better, min: lower)", "mode")
        return self

    def __eq__(self, other: Any) -> bool:
        # The analysis holds an objective as the plain {metric, mode}: the same objective.
        return self.to_dict() == other if isinstance(other, dict) else super().__eq__(other)

    __hash__ = Schema.__hash__


class SpaceKeys(Schema):
    """The top-level keys a space file, its ``SweepSpec`` and its manifest share: declared
    once here, read from the YAML by ``SpaceFile``, carried by ``SweepSpec`` and written to
    ``ninsweep.json`` as they are (a manifest older than a key reads its default)."""

    name: Optional[ExperimentName] = None  # default: the file's stem
    description: str = ""
    seeds: Seeds = (0,)
    resources: Resources = Resources()
    checkpoint: Checkpoint = Checkpoint()
    failure: Failure = Failure()
    objective: Objective = Objective()  # absent in manifests older than objectives
    trackers: Trackers = ()  # names from TRACKERS


class SpaceFile(SpaceKeys):
    """The top-level keys of a space file (``docs/search-spaces.md``). The grid and the
    model / data / train overrides are checked as the trials they expand to."""

    grid: Any = None
    model: dict[str, Any] = {}
    data: dict[str, Any] = {}
    train: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, raw: Any) -> Any:
        # `train:` with nothing under it (YAML null) means no overrides, not an error.
        if isinstance(raw, dict):
            raw = {k: v for k, v in raw.items()
                   if v is not None or k in ("name", "seeds", "grid")}
        return raw

    @field_validator("train")
    @classmethod
    def _no_seed(cls, train: dict[str, Any]) -> dict[str, Any]:
        if "seed" in train:
            fail("set seeds with the top-level seeds list (seeds: [0, 1, 2])", "seed")
        return train


TOP_LEVEL_KEYS = tuple(SpaceFile.model_fields)


class TrialSpec(Schema):
    """One point of the space: a unique, readable name, its params and its full config;
    ``to_dict()`` is what the manifest's ``trials`` and Ray's params.json hold."""

    name: str  # also the Ray trial directory name, e.g. "elu-bn-he-s0"
    params: dict[str, Any]  # activation, batchnorm, init, seed, other grid keys (dotted)
    config: TrialConfig

    @field_validator("name")
    @classmethod
    def _usable(cls, name: str) -> str:
        if not _NAME_RE.fullmatch(name):
            fail(f"not a valid trial name: {name!r}")
        return name

    @field_validator("config", mode="wrap")
    @classmethod
    def _config(cls, raw: Any, handler: Any) -> TrialConfig:
        # Named as a config file of its own: "trials[2].config: model.activation: ...".
        try:
            return TrialConfig.from_dict(raw)
        except SchemaError as err:
            fail(str(err))


# --------------------------------------------------------------------------------------
# The typed result


class SweepSpec(SpaceKeys):
    """A validated search space, expanded into its trials. Its JSON form (``to_manifest``,
    by the aliases) is the manifest; ``Manifest`` reads one back."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    name: ExperimentName = Field(alias="space_name")  # default experiment name
    # The space file as the user named it ("" when built in code).
    source: str = Field("", alias="space_file")
    raw: dict[str, Any] = Field({}, alias="space")  # the YAML mapping as loaded
    trials: tuple[TrialSpec, ...] = Field(strict=False)
    # Command-line overrides applied after loading (with_overrides), for the manifest.
    overrides: dict[str, Any] = {}
    # User modules (files or package dirs) a model factory comes from, which Ray workers
    # and submitted jobs must be given (ninsweep.factory.code_path).
    code: tuple[str, ...] = Field((), strict=False)

    @property
    def trial_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.trials)

    @property
    def trial_epochs(self) -> int:
        """Epochs summed over all trials: the size of the whole sweep."""
        return sum(t.config.train.epochs for t in self.trials)

    def trial(self, name: str) -> TrialSpec:
        for t in self.trials:
            if t.name == name:
                return t
        raise KeyError(name)

    def with_overrides(self, max_epochs: Optional[int] = None, data_dir: Optional[str] = None,
                       gpus_per_trial: Optional[float] = None,
                       cpus_per_trial: Optional[float] = None,
                       settings: Optional[dict[str, Any]] = None) -> "SweepSpec":
        """A copy with the command line's overrides applied and validated again.

        ``max_epochs`` caps every trial's ``train.epochs`` (LR milestones past the cap are
        kept: they are simply never reached); ``data_dir`` sets ``data.root``;
        ``gpus_per_trial`` / ``cpus_per_trial`` replace the per-trial resources. Trial names
        and params stay those of the space: they name the grid point, not the run length.
        ``settings`` (``run --set``) maps ``SECTION.KEY`` to a value for every trial; a grid
        parameter is refused (it names the trials: change the grid instead).
        """
        applied = dict(self.overrides)
        trials = self.trials
        for key, value in (settings or {}).items():
            section, _, name = key.partition(".")
            if key in _BASE_KEYS or key == "train.seed" or any(key in t.params for t in trials):
                raise ConfigError(f"--set {key}: a grid parameter of {self.name} (it names the "
                                  "trials); change the space's grid or seeds instead")
            if section not in SECTIONS:
                raise ConfigError(f"--set {key}: unknown section {section!r} "
                                  f"({', '.join(SECTIONS)})")
            trials = tuple(_replace_config(t, where=f"--set {key}", **{section: {name: value}})
                           for t in trials)
            applied.setdefault("set", {})[key] = value
        if max_epochs is not None:
            if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
                raise ConfigError(f"--max-epochs: must be >= 1, got {max_epochs!r}")
            trials = tuple(
                _replace_config(t, train={"epochs": min(t.config.train.epochs, max_epochs)},
                                where="--max-epochs")
                for t in trials)
            applied["max_epochs"] = max_epochs
        if data_dir is not None:
            data_dir = str(data_dir)
            if not data_dir:
                raise ConfigError("--data-dir: must not be empty")
            trials = tuple(_replace_config(t, data={"root": data_dir}, where="--data-dir")
                           for t in trials)
            applied["data_dir"] = data_dir
        resources = self.resources
        for flag, key, value in (("--cpus-per-trial", "cpus", cpus_per_trial),
                                 ("--gpus-per-trial", "gpus", gpus_per_trial)):
            if value is not None:
                try:
                    resources = Resources.from_dict({**resources.to_dict(), key: value})
                except SchemaError as err:
                    raise ConfigError(f"{flag}: {err.problem}") from None
                applied[f"{key}_per_trial"] = getattr(resources, key)
        if gpus_per_trial is not None:
            check_trial_devices(trials, resources.gpus, "--gpus-per-trial")
        return self.model_copy(update={"trials": trials, "resources": resources,
                                       "overrides": applied})

    def to_param_space(self) -> dict[str, Any]:
        """``Tuner(param_space=...)``: one grid point per trial, in order.

        Each trial's Ray config is ``{TRIAL_KEY: {"name", "params", "config"}}`` (so Ray's
        params.json holds exactly that); name the trial directory after
        ``config[TRIAL_KEY]["name"]``.
        """
        from ray import tune  # lazily: importing Ray is slow and not needed to validate

        return {TRIAL_KEY: tune.grid_search([t.to_dict() for t in self.trials])}

    def to_manifest(self) -> dict[str, Any]:
        """The JSON-serialisable record of the sweep (``Manifest``), read back by
        ``from_manifest``. The caller (sweep) adds ``created`` and ``experiment_name``."""
        return {"format": MANIFEST_FORMAT, **self.model_dump(mode="json")}

    @classmethod
    def from_manifest(cls, manifest: Any, where: str = "ninsweep.json") -> "SweepSpec":
        """Rebuild a ``SweepSpec`` from ``to_manifest()``'s dict (e.g. read from disk).

        ``where`` names the file in error messages.
        """
        if not isinstance(manifest, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
        read = Manifest.from_dict(manifest, where)
        return cls.model_construct(**{key: getattr(read, key) for key in cls.model_fields})


class Manifest(SweepSpec):
    """``ninsweep.json``: everything needed to run or resume the same trials, so a resume
    never rereads a YAML file that may have changed: a ``SweepSpec`` plus what the sweep
    that writes it adds. Keys a later writer adds are ignored."""

    model_config = ConfigDict(extra="ignore")

    format: int
    created: Optional[str] = None
    experiment_name: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _readable(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("format") != MANIFEST_FORMAT:
            fail(f"unsupported manifest format {raw.get('format')!r} "
                 f"(this ninsweep reads format {MANIFEST_FORMAT})", "format")
        if isinstance(raw, dict) and raw.get("description") is None:
            raw = {**raw, "description": ""}  # written as null by older versions
        return raw

    @model_validator(mode="after")
    def _distinct(self) -> "Manifest":
        if not self.trials:
            fail("has no trials (expected a non-empty list)", "trials")
        seen: set[str] = set()
        for i, trial in enumerate(self.trials):
            if trial.name in seen:
                fail(f"duplicate trial name {trial.name!r}", ("trials", i, "name"))
            seen.add(trial.name)
        return self


# --------------------------------------------------------------------------------------
# Finding and loading a space


def package_spaces_dir() -> Path:
    """The spaces shipped with ninsweep (the repository's ``search_spaces/``)."""
    return Path(__file__).resolve().parents[1] / "search_spaces"


def available_spaces(dirs: Optional[Iterable[Path]] = None) -> list[str]:
    """Names of the spaces in ``./search_spaces`` and the shipped ones, sorted."""
    if dirs is None:
        dirs = (Path.cwd() / "search_spaces", package_spaces_dir())
    names = set()
    for d in dirs:
        if d.is_dir():
            names.update(p.stem for p in d.iterdir()
                         if p.suffix in SPACE_SUFFIXES and p.is_file())
    return sorted(names)


def resolve_space_path(name_or_path: Union[str, Path]) -> Path:
    """A space file from a path or a space name (``lab4``).

    In order: an existing file; ``search_spaces/<name>.yaml`` under the working directory;
    the same under the repository ninsweep was loaded from. The first that exists wins.
    """
    given = str(name_or_path)
    path = Path(given).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{given}: is a directory, not a search space file")
    # A bare name (no directory part): look in the space directories.
    if given and path.name == given:
        stem = path.stem if path.suffix in SPACE_SUFFIXES else path.name
        for d in (Path("search_spaces"), package_spaces_dir()):
            for suffix in SPACE_SUFFIXES:
                candidate = d / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    available = available_spaces()
    listing = ", ".join(available) if available else "none found"
    raise ConfigError(f"{given}: no such search space file or name (available: {listing})")


def load_space(path: Union[str, Path]) -> SweepSpec:
    """Read, validate and expand a space file. Errors name ``str(path)`` as given."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a search space file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read: {_one_line(str(err))}") from None
    return parse_space(text, where)


def parse_space(text: str, where: str = "<space>") -> SweepSpec:
    """``load_space`` for YAML text already in memory; ``where`` names it in errors."""
    try:
        raw = _parse_yaml(text, where)
        return build_space(raw, where)
    except RecursionError:  # PyYAML and the checks recurse once per level of nesting
        raise ConfigError(f"{where}: nested too deeply to be a search space") from None


def build_space(raw: Any, where: str = "<space>") -> SweepSpec:
    """Validate and expand a space given as a mapping (the YAML as loaded)."""
    if raw is None:
        _refuse(where, "", "the file is empty (expected a mapping with at least a grid)")
    if not isinstance(raw, dict):
        _refuse(where, "", f"expected a mapping at the top level, got {_yaml_type(raw)}")
    _check_json_plain(where, raw, "")
    top = SpaceFile.from_dict(raw, where)
    name = top.name
    if name is None:  # the file's stem, by the rule of the name key
        name = Path(where).stem if where and not where.startswith("<") else "space"
        if _name_problem(name) is not None:
            _refuse(where, "name", _name_problem(name))
    base = {section: dict(getattr(top, section)) for section in SECTIONS}
    blocks = _parse_grid(where, top.grid, base, _names_factory(raw, base))
    _check_size(where, blocks, top.seeds)
    trials = _expand(where, blocks, base, top.seeds)
    check_trial_devices(trials, top.resources.gpus, "train.device", where)
    code = _check_factories(where, blocks, trials)
    metric = top.objective.metric
    if metric in M.VAL_METRICS and any(t.config.data.val_size == 0 for t in trials):
        _refuse(where, "objective.metric",
                f"{metric} needs a validation split (data.val_size > 0 in every trial)")
    carried = {key: getattr(top, key) for key in SpaceKeys.model_fields}
    return SweepSpec.model_construct(**{**carried, "name": name,
                                        "description": top.description.strip()},
                                     source=where, raw=raw, trials=tuple(trials), code=code)


def _names_factory(raw: dict[str, Any], base: dict[str, dict]) -> bool:
    """Whether the space names a model factory (in the model section or as a grid key)."""
    if base["model"].get("factory") is not None:
        return True
    grid = raw.get("grid")
    blocks = [grid] if isinstance(grid, dict) else grid if isinstance(grid, list) else []
    return any(isinstance(b, dict) and ("factory" in b or "model.factory" in b) for b in blocks)


def _space_dirs(where: str) -> list[Path]:
    """Where a space's user modules are looked for: its own directory, the working one."""
    dirs = [Path.cwd()]
    if where and not where.startswith("<"):
        dirs.insert(0, Path(where).expanduser().resolve().parent)
    return dirs


def _check_factories(where: str, blocks: list["_Block"], trials: list[TrialSpec]
                     ) -> tuple[str, ...]:
    """Import each model factory, check its keywords and build each distinct model once.

    Before Ray starts, a bad path, a keyword the function does not take (or one it needs
    and does not get) and a factory that returns no ``nn.Module`` each fail in one line
    naming the space key. Returns the user modules to ship to Ray workers.
    """
    if not any(t.config.model.factory or t.config.data.factory for t in trials):
        return ()
    from .factory import code_path, keyword_problem, load_callable
    from .model import build_factory_model

    dirs = _space_dirs(where)
    code: list[str] = []
    built: set[ModelConfig] = set()
    for trial in trials:
        data = trial.config.data
        if data.factory is not None:
            # Checked, not called: loading data may take long; the first trial calls it.
            function = load_callable(f"{where}: data.factory", data.factory, dirs)
            problem = keyword_problem(function, data.factory, data.factory_kwargs)
            if problem is not None:
                key = problem[0]
                _refuse(where, f"data.factory_kwargs.{key}" if key in data.factory_kwargs
                        else "data.factory", problem[1])
            path = code_path(data.factory, dirs)
            if path is not None and path not in code:
                code.append(path)
        model = trial.config.model
        if model.factory is None:
            continue
        function = load_callable(f"{where}: {_space_key(blocks, 'factory')}",
                                 model.factory, dirs)
        # num_classes is supplied by ninsweep when the function takes it.
        problem = keyword_problem(function, model.factory, model.factory_kwargs,
                                  supplied=("num_classes",))
        if problem is not None:
            keyword, text = problem
            _refuse(where, _space_key(blocks, keyword) if keyword in model.factory_kwargs
                    else "model.factory", text)
        if model not in built:  # each distinct model once (configs hash, kwargs included)
            built.add(model)
            try:
                build_factory_model(model, tuple(dirs))
            except ConfigError as err:
                raise ConfigError(_one_line(f"{where}: {err} (trial {trial.name})")) from None
        path = code_path(model.factory, dirs)
        if path is not None and path not in code:
            code.append(path)
    return tuple(code)


def _space_key(blocks: list["_Block"], name: str) -> str:
    """Where the space sets model key ``name``: its first grid key, else model.<name>."""
    for block in blocks:
        for key, canon in block.keys:
            if canon == f"model.{name}":
                return f"{block.path}.{key}"
    return f"model.{name}"


# --------------------------------------------------------------------------------------
# The dry-run listing


def format_dry_run(spec: SweepSpec) -> str:
    """The trials a run would start, one line each, with a header and totals."""
    n = len(spec.trials)
    epochs = sorted({t.config.train.epochs for t in spec.trials})
    epochs_text = (f"{epochs[0]} epoch{'s' if epochs[0] != 1 else ''} each" if len(epochs) == 1
                   else f"{epochs[0]}-{epochs[-1]} epochs")
    sources = sorted({t.config.data.source for t in spec.trials})
    header = (f"space {spec.name}" + (f" ({spec.source})" if spec.source else "")
              + f": {n} trial{'s' if n != 1 else ''}, {epochs_text}, data {', '.join(sources)}")
    if spec.overrides:
        header += "; overrides: " + ", ".join(f"{k}={_fmt(v)}" for k, v in spec.overrides.items())
    res = spec.resources
    res_text = f"cpus={_fmt(res.cpus)} gpus={_fmt(res.gpus)}"
    lines = [header] + table(None, [[t.name, " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items()),
                                     res_text] for t in spec.trials], indent="  ")
    lines.append(
        f"total: {n} trial{'s' if n != 1 else ''}, {spec.trial_epochs} trial-epochs; each "
        f"{res_text}; all at once cpus={_fmt(round(res.cpus * n, 6))} "
        f"gpus={_fmt(round(res.gpus * n, 6))}")
    every, retries = spec.checkpoint.every, spec.failure.max_retries
    lines.append(
        f"checkpoint every {every} epoch{'s' if every != 1 else ''}, keep {spec.checkpoint.keep}; "
        f"up to {retries} retr{'ies' if retries != 1 else 'y'} per trial")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, reads 1e-4 as a float (YAML 1.2) and keeps
    dates as strings (so the loaded mapping stays JSON-serialisable)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor": merged keys may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: SafeLoader's own error says so
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line "
                    f"{seen[key].start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_document(self, node: yaml.Node) -> Any:
        # Measured on the node graph, where an alias is one shared node: the size of the
        # data once every alias is expanded, without expanding it.
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"expands to more than {MAX_YAML_NODES:,} values through "
                "aliases (*anchor); refusing it", node.start_mark)
        return super().construct_document(node)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values in ``node`` with aliases expanded; ``sizes`` memoises shared (aliased) nodes.

    Iterative, so a deeply nested file cannot exhaust the recursion limit; counts stop at
    ``MAX_YAML_NODES + 1``. A recursive alias (inside its own anchor) is refused.
    """
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if isinstance(current, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = ([n for pair in current.value for n in pair]
                    if isinstance(current, yaml.MappingNode) else list(current.value))
        if children_done:
            visiting.discard(key)
            sizes[key] = min(1 + sum(sizes.get(id(c), 0) for c in children), MAX_YAML_NODES + 1)
        elif key in visiting:  # met again inside itself: an alias inside its own anchor
            raise yaml.constructor.ConstructorError(
                None, None, "an alias (*anchor) inside its own anchor: the value would be "
                "infinite", current.start_mark)
        elif key not in sizes:
            visiting.add(key)
            stack.append((current, True))
            stack.extend((c, False) for c in children)
    return sizes[id(node)]


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str) -> Any:
    """A ``--set`` value, read by the same YAML rules as a space file (so 1e-4 is a float)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``SECTION.KEY=VALUE`` (``--set`` of ``train`` and ``run``) -> (``SECTION.KEY``, value)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. train.lr=0.05")
    return key.strip(), parse_value(value)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = err.problem or err.context or "malformed YAML"
        if err.context and err.problem and err.context_mark is not None:
            problem = (f"{problem} ({err.context} at line {err.context_mark.line + 1})"
                       if err.context_mark is not err.problem_mark else problem)
        raise ConfigError(f"{where}: {at}: invalid YAML: {_one_line(problem)}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: invalid YAML: {_one_line(str(err))}") from None


# --------------------------------------------------------------------------------------
# Validation helpers


def _refuse(where: str, path: str, problem: str) -> NoReturn:
    """Raise ``ConfigError("<file>: <key path>: <problem>")``."""
    raise SchemaError(path, problem, where)


def _yaml_type(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    return type(value).__name__


def _check_json_plain(where: str, value: Any, path: str) -> None:
    """Only what JSON holds: the loaded mapping goes into the manifest as it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                _refuse(where, f"{path}.{key!r}" if path else repr(key),
                        f"keys must be strings, got {_yaml_type(key)}")
            _check_json_plain(where, item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_plain(where, item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        _refuse(where, path, f"{value!r} is not a usable number")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        _refuse(where, path, f"unsupported YAML value of type {type(value).__name__}")



def check_experiment_name(value: Any, where: str = "--name") -> str:
    """The rule of the YAML ``name:`` key for a name given elsewhere (``--name``): one path
    component, so the experiment stays inside ``--storage`` (no ``..``, no ``/``)."""
    problem = _name_problem(value)
    if problem is not None:
        _refuse("", where, problem)
    return value

def check_trial_devices(trials: Iterable[TrialSpec], gpus: float, path: str,
                        where: str = "") -> None:
    """Refuse a ``train.device`` no trial of this space could train on, before Ray starts.

    Ray shows a trial only the GPUs it granted, numbered from cuda:0 (a fraction counts as
    one); a trial granted none must not use CUDA, and one holding a GPU must not leave it
    idle on CPU.
    """
    visible = 0 if gpus == 0 else max(1, int(gpus))
    for trial in trials:
        device = trial.config.train.device
        kind, _, index = device.partition(":")
        if kind == "cuda" and visible == 0:
            _refuse(where, path, f"{device!r} in trial {trial.name}, but each trial asks Ray "
                    "for no GPU (resources.gpus 0); use auto or cpu, or ask for GPUs")
        if kind == "cuda" and index and int(index) >= visible:
            _refuse(where, path, f"{device!r} in trial {trial.name}, but each trial sees only the "
                    f"{visible} GPU(s) Ray grants it, as cuda:0..cuda:{visible - 1} "
                    f"(resources.gpus {gpus:g}); use auto or cuda")
        if kind == "cpu" and visible:
            _refuse(where, path, f"'cpu' in trial {trial.name}, but each trial holds {gpus:g} "
                    "GPU it would leave idle; use auto, or --gpus-per-trial 0")



# --------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class _Block:
    path: str  # "grid[0]"
    keys: tuple[tuple[str, str], ...]  # (key as written, canonical "section.field")
    values: tuple[tuple[Any, ...], ...]  # one tuple of candidates per key


def _field_hint(section: str, name: str) -> Any:
    return SECTIONS[section].model_fields[name].annotation


def _fields(section: str) -> tuple[str, ...]:
    return tuple(SECTIONS[section].model_fields)


def _canonical_key(where: str, path: str, key: Any, factory: bool = False) -> str:
    if not isinstance(key, str):
        _refuse(where, path, f"grid keys must be strings, got {_yaml_type(key)}")
    if key in ("seed", "train.seed"):
        _refuse(where, path, "set seeds with the top-level seeds list (seeds: [0, 1, 2])")
    if "." in key:
        section, _, name = key.partition(".")
        if section not in SECTIONS:
            _refuse(where, path,
                    f"not a config field (dotted keys start with {', '.join(SECTIONS)})")
        if name not in _fields(section) and not (factory and section == "model"):
            _refuse(where, path,
                    f"not a config field ({section} fields: {', '.join(_fields(section))})")
        return key
    if key in _fields("model") or factory:
        return f"model.{key}"  # with a model factory, a keyword argument of it
    for section in ("train", "data"):
        if key in _fields(section):
            _refuse(where, path,
                    f"not a model field; write {section}.{key} (bare names are model fields)")
    _refuse(where, path, f"not a config field (model fields: {', '.join(_fields('model'))}; other "
            "sections by dotted name, e.g. train.lr)")


def _parse_grid(where: str, grid: Any, base: dict[str, dict],
                factory: bool = False) -> list[_Block]:
    if grid is None:
        _refuse(where, "grid",
                "missing or empty (give a list of blocks, e.g. - activation: [relu, elu])")
    if isinstance(grid, dict):
        raw_blocks = [("grid", grid)]  # a single block may be written without the list
    elif isinstance(grid, list):
        if not grid:
            _refuse(where, "grid", "empty list of blocks")
        raw_blocks = [(f"grid[{i}]", b) for i, b in enumerate(grid)]
    else:
        _refuse(where, "grid", f"expected a list of blocks (mappings), got {_yaml_type(grid)}")

    blocks = []
    for bpath, block in raw_blocks:
        if not isinstance(block, dict):
            _refuse(where, bpath, f"expected a mapping of key: [values], got {_yaml_type(block)}")
        if not block:
            _refuse(where, bpath, "empty block (give at least one key: [values])")
        keys, values = [], []
        seen: dict[str, str] = {}
        for key, vals in block.items():
            kpath = f"{bpath}.{key}"
            canon = _canonical_key(where, kpath, key, factory)
            if canon in seen:
                _refuse(where, kpath, f"same field as {bpath}.{seen[canon]}")
            seen[canon] = key
            section, _, name = canon.partition(".")
            if name in base[section]:
                _refuse(where, kpath, f"also set in the {section} section; set it in one place "
                        f"(the grid, or {section}: {{{name}: ...}})")
            hint = _field_hint(section, name) if name in _fields(section) else Any
            is_tuple = typing.get_origin(hint) is tuple
            if isinstance(vals, list):
                if not vals:
                    _refuse(where, kpath, "empty list of values")
                if is_tuple and not any(isinstance(v, list) for v in vals):
                    vals = [vals]  # lr_milestones: [81, 122] is one value, not two
            elif isinstance(vals, dict):
                _refuse(where, kpath, "expected a list of values, got a mapping")
            else:
                vals = [vals]  # a scalar is a one-element list
            keys.append((key, canon))
            values.append(tuple(vals))
        blocks.append(_Block(bpath, tuple(keys), tuple(values)))
    return blocks


def _check_size(where: str, blocks: list[_Block], seeds: tuple[int, ...]) -> None:
    per_seed = sum(math.prod(len(values) for values in block.values) for block in blocks)
    total = per_seed * len(seeds)
    if total > MAX_TRIALS:
        _refuse(where, "grid", f"expands to {total:,} trials ({per_seed:,} per seed x {len(seeds)} "
                f"seeds); a sweep runs at most {MAX_TRIALS:,}: split it into several "
                "spaces or narrow the value lists")


def _expand(where: str, blocks: list[_Block], base: dict[str, dict],
            seeds: tuple[int, ...]) -> list[TrialSpec]:
    # Grid keys beyond the three every name has: params by dotted name, names compactly.
    extra: list[str] = []
    for block in blocks:
        for _, canon in block.keys:
            if canon not in _BASE_KEYS and canon not in extra:
                extra.append(canon)

    base_error = _validation_error(base)
    trials: list[TrialSpec] = []
    # Frozen config -> (name, block path): the config itself is the key (hashable, fields
    # already coerced), not its JSON, which cost more than building the config.
    by_config: dict[TrialConfig, tuple[str, str]] = {}
    by_name: dict[str, str] = {}  # name -> block path
    # Seed-major: every configuration once before any repeats, so a sweep cut short
    # still holds one complete replicate.
    for seed in seeds:
        for block in blocks:
            for combo in itertools.product(*block.values):
                merged = {section: dict(values) for section, values in base.items()}
                for (_, canon), value in zip(block.keys, combo):
                    section, _, name = canon.partition(".")
                    merged[section][name] = value
                merged["train"]["seed"] = seed
                try:
                    config = TrialConfig.from_dict(merged)
                except SchemaError as err:
                    _report_trial_error(where, err, block, combo, base_error)
                params = _params(config, extra)
                tname = _trial_name(params, extra, config.model.factory)
                key = config
                if key in by_config:
                    other_name, other_block = by_config[key]
                    _refuse(where, block.path, f"duplicate configuration {tname} (also produced by "
                            f"{other_block}); each trial must differ")
                if tname in by_name:
                    _refuse(where, block.path, f"trial name {tname!r} is not unique (also from "
                            f"{by_name[tname]}); make the values distinct")
                by_config[key] = (tname, block.path)
                by_name[tname] = block.path
                trials.append(TrialSpec(name=tname, params=params, config=config))
    return trials


def _validation_error(base: dict[str, dict]) -> Optional[str]:
    try:
        TrialConfig.from_dict(base)
    except ConfigError as err:
        return str(err)
    return None


def _report_trial_error(where: str, err: SchemaError, block: _Block, combo: tuple,
                        base_error: Optional[str]) -> NoReturn:
    """Name the place in the file that caused ``TrialConfig.from_dict``'s error."""
    path = err.path
    for (key, canon), value in zip(block.keys, combo):
        if path == canon or path.startswith((canon + "[", canon + ".")):
            _refuse(where, f"{block.path}.{key}{path[len(canon):]}", err.problem)
    if str(err) == base_error:
        _refuse(where, path, err.problem)  # a section override's
    # A rule across fields, broken by this combination of grid values.
    combo_text = ", ".join(f"{key}={_fmt(v)}" for (key, _), v in zip(block.keys, combo))
    _refuse(where, path, f"{err.problem} (with {block.path}: {combo_text})")


def _replace_config(trial: TrialSpec, where: str, **sections: dict[str, Any]) -> TrialSpec:
    try:
        config = trial.config.replace(**sections)
    except ConfigError as err:
        raise ConfigError(_one_line(f"{where}: {err} (trial {trial.name})")) from None
    return TrialSpec(name=trial.name, params=trial.params, config=config)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _params(config: TrialConfig, extra: list[str]) -> dict[str, Any]:
    model = config.model
    # A factory's trial has no NIN axes: its params are the seed and its grid keys.
    axes = () if model.factory is not None else MODEL_AXES
    params: dict[str, Any] = {**{axis: getattr(model, axis) for axis in axes},
                              SEED: config.train.seed}
    for canon in extra:
        section, _, name = canon.partition(".")
        if (section == "model" and model.factory is not None
                and name not in ModelConfig.FACTORY_FIELDS):
            params[canon] = _plain(model.factory_kwargs.get(name))
        elif section == "model" and name not in _fields("model"):
            params[canon] = None  # a factory keyword, in a trial without that factory
        else:
            params[canon] = _plain(getattr(getattr(config, section), name))
    return params


def _compact(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, list):
        return "_".join(_compact(v) for v in value) or "none"
    if value is None:
        return "none"
    return str(value)


def _trial_name(params: dict[str, Any], extra: list[str], factory: Optional[str] = None) -> str:
    if factory is not None:
        parts = [factory.rpartition(":")[2]]  # resnet20-width16-s0
    else:
        parts = [params["activation"], "bn" if params["batchnorm"] else "nobn", params["init"]]
    if "model.norm" in extra and factory is None:
        del parts[1]  # the norm key names it: relu-keras-norm_group, not relu-nobn-...
    for canon in extra:
        short = canon.partition(".")[2]
        value = params[canon]
        if isinstance(value, bool):
            parts.append(short if value else f"no{short}")
        elif isinstance(value, (int, float)):
            parts.append(f"{short}{_compact(value)}")
        else:
            parts.append(f"{short}_{_compact(value)}")
    parts.append(f"s{params['seed']}")
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", "-".join(str(p) for p in parts))


def _fmt(value: Any) -> str:
    """A value as a person reads it in YAML: true/false, 0.25, 2 (not 2.0), [81, 122]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _compact(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)

