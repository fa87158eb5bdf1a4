"""The schema of a search space and of the experiment manifest it becomes.

A space is a union of grid blocks (each block the product of its value lists), repeated
once per seed, on top of shared model / data / train overrides, plus the resources each
trial takes, checkpoint settings and failure retries (``docs/search-spaces.md``). Its keys
are pydantic models (``SpaceFile``, with the defaults); the validated, expanded space is a
``SweepSpec``, whose JSON form is the manifest (``Manifest`` reads one back through the same
models). The rules for model / data / train values live in ``ninsweep.config`` alone: each
expanded trial is checked by ``TrialConfig.from_dict``.

Reading a file is ``space.loader``'s job, expanding the grid ``space.grid``'s. pydantic only:
no Ray, no torch. Every user mistake raises ``ConfigError`` with one line,
``<file>: <key path>: <problem>``.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Any, Iterable, NoReturn, Optional

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_serializer, model_validator

from ninsweep.config import (
    DataConfig,
    ModelConfig,
    Schema,
    SchemaError,
    TrainConfig,
    TrialConfig,
    describe,
    fail,
)
from ninsweep.errors import ConfigError
from ninsweep.experiment_dir import MANIFEST_FILE
from ninsweep.fmt import one_line
from ninsweep.metrics import (
    DEFAULT_OBJECTIVE,
    OBJECTIVE_METRICS,
    OBJECTIVE_MODES,
    VAL_METRICS,
    is_accuracy,
)
from ninsweep.space.search import Replication, Scheduler, Search, Tuning

MANIFEST_FORMAT = 1
# The one key of Tune's param space, so of Ray's params.json: {"trial": {name, params, config}}.
TRIAL_KEY = "trial"
TUNE_STAGE, FINAL_STAGE = "tune", "final"  # the two stages of a space with ``tune:``
DEFAULT_STAGE = "default"  # with tune.default: the cells' seeds at the shared default values

# The sections a space may override, and the settings model behind each.
SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
# Params every trial of the NIN carries, whether or not the grid varies them (the contract
# with analysis: DEVELOPERS.md, "Trial params"): its three model axes, then the seed. A
# model factory's trials carry only the seed. Other grid keys follow by their dotted name.
MODEL_AXES = ("activation", "batchnorm", "init")
SEED = "seed"
BASE_PARAMS = (*MODEL_AXES, SEED)
# The grid keys that name a NIN's axes (``model.activation``) -> the param they fill.
AXIS_KEYS = {f"model.{name}": name for name in MODEL_AXES}

# Experiment trackers a space may name (``trackers: [mlflow]``): name -> (the Python module
# it needs, the ninsweep extra that installs it). ninsweep.sweep.trackers maps each to Ray
# Tune's logger callback.
TRACKERS = {
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The longest experiment or trial name: each is one directory name, and file systems refuse
# a name over 255 bytes (ENAMETOOLONG); the rest is room for what is written beside it
# (a temp file's prefix, Ray's suffixes).
MAX_NAME_LENGTH = 200


# --------------------------------------------------------------------------------------
# The schema of a space file and of a manifest


def name_problem(value: Any) -> Optional[str]:
    if isinstance(value, str) and len(value) > MAX_NAME_LENGTH:
        return length_problem("experiment name", value)
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return None
    return (f"{value!r} is not a usable experiment name (letters, digits, '.', '_', '-'; "
            "starting with a letter or digit)")


def length_problem(what: str, value: str) -> Optional[str]:
    """Why ``value`` is too long to be a directory name, or None."""
    if len(value) <= MAX_NAME_LENGTH:
        return None
    return (f"{what} {value[:40]!r}... is {len(value)} characters; at most {MAX_NAME_LENGTH} "
            "(it names a directory)")


def _experiment_name(value: Any) -> str:
    problem = name_problem(value)
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

    metric: str = DEFAULT_OBJECTIVE["metric"]
    mode: str = DEFAULT_OBJECTIVE["mode"]

    @model_validator(mode="before")
    @classmethod
    def _mode_of_metric(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("mode") is None and isinstance(raw.get("metric"), str):
            raw = {**raw, "mode": "max" if is_accuracy(raw["metric"]) else "min"}
        return raw

    @model_validator(mode="after")
    def _known(self) -> "Objective":
        if self.metric not in OBJECTIVE_METRICS:
            fail(f"unknown metric {self.metric!r} (choose from "
                 f"{', '.join(OBJECTIVE_METRICS)})", "metric")
        if self.mode not in OBJECTIVE_MODES:
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
    search: Optional[Search] = None  # keys drawn from distributions (space.search)
    scheduler: Optional[Scheduler] = None  # early stopping on the validation split
    tune: Optional[Tuning] = None  # every grid cell's own values, chosen on validation
    replication: Optional[Replication] = None  # seeds added only where still undecided


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
OPTIONAL_KEYS = ("search", "scheduler", "tune", "replication")  # written to the manifest only when a space has them


class TrialSpec(Schema):
    """One point of the space: a unique, readable name, its params and its full config;
    ``to_dict()`` is what the manifest's ``trials`` and Ray's params.json hold."""

    name: str  # also the Ray trial directory name, e.g. "elu-bn-he-s0"
    params: dict[str, Any]  # activation, batchnorm, init, seed, other grid keys (dotted)
    config: TrialConfig
    # With ``tune:`` only (absent otherwise): TUNE_STAGE trials try the drawn values in
    # ``tuned`` on the validation split; FINAL_STAGE trials run the recipe at the values the
    # cell's tuning chose, which ``tuned`` holds once chosen (empty in the manifest).
    stage: Optional[str] = None
    tuned: dict[str, Any] = {}
    # Set by the sweep on a final trial (Ray's params.json): the tuning trial whose values it
    # runs, or why its cell had none to choose.
    chosen_from: Optional[str] = None
    no_choice: Optional[str] = None

    @model_serializer(mode="wrap")
    def _without_stage(self, handler: Any) -> dict[str, Any]:
        # A grid's trial (manifest, Ray's params.json) reads as it did before stages.
        data = handler(self)
        for key in ("chosen_from", "no_choice"):
            if data.get(key) is None:
                data.pop(key, None)
        if self.stage is None:
            data.pop("stage", None)
            data.pop("tuned", None)
        return data

    @field_validator("name")
    @classmethod
    def _usable(cls, name: str) -> str:
        if not NAME_RE.fullmatch(name):
            fail(f"not a valid trial name: {name!r}")
        if length_problem("trial name", name):
            fail(length_problem("trial name", name))
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
        # The command line's overrides are one change: gathered first, whatever their order,
        # then applied to each trial together and validated once (--data-dir with --set
        # data.source=imagefolder is a complete data section, in either order).
        changes: dict[str, dict[str, Any]] = {}
        flags: dict[str, str] = {}  # a changed key -> the flag that changed it
        for key, value in (settings or {}).items():
            section, _, name = key.partition(".")
            if key in AXIS_KEYS or key == "train.seed" or any(key in t.params for t in trials):
                raise ConfigError(f"--set {key}: a grid parameter of {self.name} (it names the "
                                  "trials); change the space's grid or seeds instead")
            if section not in SECTIONS:
                raise ConfigError(f"--set {key}: unknown section {section!r} "
                                  f"({', '.join(SECTIONS)})")
            changes.setdefault(section, {})[name] = value
            flags[key] = f"--set {key}"
            applied.setdefault("set", {})[key] = value
        if max_epochs is not None:
            if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
                raise ConfigError(f"--max-epochs: must be >= 1, got {max_epochs!r}")
            flags["train.epochs"] = ("--max-epochs" if "train.epochs" not in flags
                                     else "--set train.epochs")
            applied["max_epochs"] = max_epochs
        if data_dir is not None:
            data_dir = str(data_dir)
            if not data_dir:
                raise ConfigError("--data-dir: must not be empty")
            if "root" in changes.get("data", {}):
                raise ConfigError("--data-dir: and --set data.root both set data.root; "
                                  "give one of them")
            changes.setdefault("data", {})["root"] = data_dir
            flags["data.root"] = "--data-dir"
            applied["data_dir"] = data_dir
        if changes or max_epochs is not None:
            trials = tuple(_override(t, changes, max_epochs, flags) for t in trials)
        resources = self.resources
        for flag, key, value in (("--cpus-per-trial", "cpus", cpus_per_trial),
                                 ("--gpus-per-trial", "gpus", gpus_per_trial)):
            if value is not None:
                try:
                    resources = Resources.from_dict({**resources.to_dict(), key: value})
                except SchemaError as err:
                    raise ConfigError(f"{flag}: {err.problem}") from None
                applied[f"{key}_per_trial"] = getattr(resources, key)
        # The rules a space file's values meet at load, for the values given here.
        if gpus_per_trial is not None or "train.device" in (settings or {}):
            check_trial_devices(trials, resources.gpus, "--gpus-per-trial"
                                if gpus_per_trial is not None else "--set train.device")
        if "data.val_size" in (settings or {}):
            check_objective_split(trials, self.objective.metric, "", "--set data.val_size")
        return self.model_copy(update={"trials": trials, "resources": resources,
                                       "overrides": applied})

    def with_extensions(self, extensions: Iterable[dict[str, Any]], where: str = "") -> "SweepSpec":
        """This spec with the trials ``ninsweep extend`` added (each extension file's
        ``trials``, in order): the experiment as status, export and the report see it."""
        added = [TrialSpec.from_dict(raw, where) for ext in extensions for raw in ext["trials"]]
        return self.model_copy(update={"trials": (*self.trials, *added)}) if added else self

    def to_manifest(self) -> dict[str, Any]:
        """The JSON-serialisable record of the sweep (``Manifest``), read back by
        ``from_manifest``. The caller (sweep) adds ``created`` and ``experiment_name``."""
        dumped = self.model_dump(mode="json")
        for key in OPTIONAL_KEYS:  # absent unless used: a grid's manifest reads as before
            if dumped.get(key) is None:
                dumped.pop(key, None)
        return {"format": MANIFEST_FORMAT, **dumped}

    @classmethod
    def from_manifest(cls, manifest: Any, where: str = MANIFEST_FILE) -> "SweepSpec":
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




def refuse(where: str, path: str, problem: str) -> NoReturn:
    """Raise ``ConfigError("<file>: <key path>: <problem>")``."""
    raise SchemaError(path, problem, where)




def yaml_type(value: Any) -> str:
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


def tracker_names(space_trackers: Iterable[str] = (), flags: Optional[Iterable[str]] = None
                  ) -> list[str]:
    """The space's trackers and the command line's, once each, checked: unknown names and
    missing packages are one-line errors, raised before Ray starts."""
    names: list[str] = []
    for name in [*space_trackers, *(flags or ())]:
        if name not in TRACKERS:
            raise ConfigError(f"tracker {name!r}: unknown (known: {', '.join(TRACKERS)})")
        if name not in names:
            names.append(name)
    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"tracker {name}: the {module} package is not installed; "
                              f"pip install 'ninsweep[{extra}]'")
    return names


def check_experiment_name(value: Any, where: str = "--name") -> str:
    """The rule of the YAML ``name:`` key for a name given elsewhere (``--name``): one path
    component, so the experiment stays inside ``--storage`` (no ``..``, no ``/``)."""
    problem = name_problem(value)
    if problem is not None:
        refuse("", where, problem)
    return value

def check_objective_split(trials: Iterable[TrialSpec], metric: str, where: str, path: str
                          ) -> None:
    """A validation metric as the objective needs a validation split in every trial."""
    if metric in VAL_METRICS and any(t.config.data.val_size == 0 for t in trials):
        refuse(where, path, f"{metric} needs a validation split (data.val_size > 0 in every "
               "trial)")


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
            refuse(where, path, f"{device!r} in trial {trial.name}, but each trial asks Ray "
                    "for no GPU (resources.gpus 0); use auto or cpu, or ask for GPUs")
        if kind == "cuda" and index and int(index) >= visible:
            refuse(where, path, f"{device!r} in trial {trial.name}, but each trial sees only the "
                    f"{visible} GPU(s) Ray grants it, as cuda:0..cuda:{visible - 1} "
                    f"(resources.gpus {gpus:g}); use auto or cuda")
        if kind == "cpu" and visible:
            refuse(where, path, f"'cpu' in trial {trial.name}, but each trial holds {gpus:g} "
                    "GPU it would leave idle; use auto, or --gpus-per-trial 0")



def _override(trial: TrialSpec, changes: dict[str, dict[str, Any]],
              max_epochs: Optional[int], flags: dict[str, str]) -> TrialSpec:
    """``trial`` with every command-line change applied at once and validated once; an error
    names the flag that set the key it is about, else every flag given."""
    sections = {section: dict(values) for section, values in changes.items()}
    model = sections.get("model", {})
    if model.get("factory", trial.config.model.factory) is not None:
        # A factory's flat keys are its keywords, as in a space file (ModelConfig.route_raw).
        flat = {k: v for k, v in model.items() if k not in ModelConfig.FACTORY_FIELDS}
        if flat:
            kept = {k: v for k, v in model.items() if k in ModelConfig.FACTORY_FIELDS}
            sections["model"] = {**kept, "factory_kwargs": {
                **trial.config.model.factory_kwargs, **kept.get("factory_kwargs", {}), **flat}}
    if max_epochs is not None:
        epochs = sections.get("train", {}).get("epochs", trial.config.train.epochs)
        if isinstance(epochs, int) and not isinstance(epochs, bool):  # else validation says
            sections.setdefault("train", {})["epochs"] = min(epochs, max_epochs)
    try:
        config = trial.config.replace(**sections)
    except SchemaError as err:
        where = flags.get(err.path) or " ".join(dict.fromkeys(flags.values()))
        raise ConfigError(one_line(f"{where}: {err} (trial {trial.name})")) from None
    return TrialSpec(name=trial.name, params=trial.params, config=config)
