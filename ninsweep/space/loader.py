"""Finding, reading and checking a space file: the YAML loader, its guards, ``--set`` values.

``load_space(path)`` reads a file, ``build_space(raw)`` validates a mapping and expands it
into a ``SweepSpec`` (the schema is ``space.schema``, the grid ``space.grid``). The loader is
PyYAML's SafeLoader with three changes: duplicate keys are errors, ``1e-4`` is a float (as in
YAML 1.2) and dates stay strings, so the mapping goes into the manifest as it was written; a
file that expands to more than ``MAX_YAML_NODES`` values through aliases is refused before it
is built. A ``--set`` value is read by the same rules (``parse_value``).

A model or data factory named by the space is imported and its keywords checked here (user
code; no torch of ours): building the models is preflight's (``sweep.preflight``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Optional, Union

import yaml

from ninsweep.errors import ConfigError
from ninsweep.fmt import one_line
from ninsweep.space.grid import Block, canonical_key, check_size, expand, parse_grid
from ninsweep.space.schema import (
    DEFAULT_STAGE,
    FINAL_STAGE,
    SECTIONS,
    TUNE_STAGE,
    SpaceFile,
    SpaceKeys,
    SweepSpec,
    TrialSpec,
    check_objective_split,
    check_trial_devices,
    name_problem,
    refuse,
    yaml_type,
)
from ninsweep.space.search import Search
from ninsweep.user_code import code_path, keyword_problem, load_callable

SPACE_SUFFIXES = (".yaml", ".yml")
# The most values a YAML file may expand to through aliases (*anchor): a "billion laughs"
# file is a few lines that expand to 10^9 values.
MAX_YAML_NODES = 1_000_000


def package_spaces_dir() -> Path:
    """The spaces shipped with ninsweep (the repository's ``search_spaces/``)."""
    return Path(__file__).resolve().parents[2] / "search_spaces"


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
        raise ConfigError(f"{where}: cannot read: {one_line(str(err))}") from None
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
        refuse(where, "", "the file is empty (expected a mapping with at least a grid)")
    if not isinstance(raw, dict):
        refuse(where, "", f"expected a mapping at the top level, got {yaml_type(raw)}")
    _check_json_plain(where, raw, "")
    top = SpaceFile.from_dict(raw, where)
    name = top.name
    if name is None:  # the file's stem, by the rule of the name key
        name = Path(where).stem if where and not where.startswith("<") else "space"
        if name_problem(name) is not None:
            refuse(where, "name", name_problem(name))
    base = {section: dict(getattr(top, section)) for section in SECTIONS}
    factory = _names_factory(raw, base)
    blocks = parse_grid(where, top.grid, base, factory)
    draws = searched_draws(where, top.search, blocks, base, factory)
    check_size(where, blocks, top.seeds, len(draws) if draws else 1)
    if top.tune is not None:
        trials = tuned_trials(where, top, blocks, base, factory)
    elif top.replication is not None:
        trials = replicated_trials(where, raw, top, blocks, base)
    else:
        trials = expand(where, blocks, base, top.seeds, draws)
    check_trial_devices(trials, top.resources.gpus, "train.device", where)
    code = _check_factories(where, blocks, trials)
    check_objective_split(trials, top.objective.metric, where, "objective.metric")
    if top.tune is not None:
        check_objective_split(trials, top.tune.select_on, where, "tune.select_on")
    if top.scheduler is not None:
        metric = top.scheduler.metric_for(top.objective.metric)
        check_objective_split(trials, metric, where, "scheduler")
    carried = {key: getattr(top, key) for key in SpaceKeys.model_fields}
    return SweepSpec.model_construct(**{**carried, "name": name,
                                        "description": top.description.strip()},
                                     source=where, raw=raw, trials=tuple(trials), code=code)


def tuned_trials(where: str, top: SpaceFile, blocks: list[Block], base: dict[str, dict],
                 factory: bool) -> list[TrialSpec]:
    """``tune:``'s two stages: every cell at every draw (one training seed, the tuning
    epochs), then every cell x seed at the values its tuning will choose (unknown yet)."""
    tuning = top.tune
    if top.search is not None:
        refuse(where, "tune", "search: and tune: together: tune draws the values each cell "
               "tries; put the searched keys under tune.keys")
    if top.scheduler is not None:
        refuse(where, "tune", "scheduler: with tune: would stop the final stage's trials too; "
               "leave the scheduler out (every tuning trial gets the same epochs)")
    draws = _checked_draws(where, "tune", tuning.keys, tuning.draws, blocks, base, factory)
    check_size(where, blocks, top.seeds, 1 + len(draws))
    tuning_base = {section: dict(values) for section, values in base.items()}
    if tuning.epochs is not None:
        tuning_base["train"]["epochs"] = tuning.epochs
    seed = top.seeds[0] if tuning.trial_seed is None else tuning.trial_seed
    # The draws' trials, built even for optuna: each drawn value is checked as a config here.
    drawn = expand(where, blocks, tuning_base, (seed,), draws, draw_label="tune")
    stage1 = []
    for trial in drawn:
        params = {k: v for k, v in trial.params.items() if k not in draws[0]}
        # optuna: the slot's values are asked of the cell's study when it starts.
        tuned = {k: trial.params[k] for k in draws[0]} if tuning.algorithm == "random" else {}
        stage1.append(trial.model_copy(update={"params": params, "stage": TUNE_STAGE,
                                               "tuned": tuned}))
    stage2 = [t.model_copy(update={"stage": FINAL_STAGE, "tuned": {}})
              for t in expand(where, blocks, base, top.seeds)]
    at_default = []
    if tuning.default:  # the same seeds at the library's defaults of the tuned keys
        for t in expand(where, blocks, base, top.seeds):
            stem = t.name[:-len(f"-s{t.params['seed']}")]
            at_default.append(t.model_copy(update={
                "name": f"{stem}-default-s{t.params['seed']}", "stage": DEFAULT_STAGE,
                "tuned": {k: _library_default(k) for k in tuning.keys}}))
    return stage1 + stage2 + at_default


def _library_default(key: str) -> Any:
    section, _, name = key.partition(".")
    return SECTIONS[section].model_fields[name].default


def replicated_trials(where: str, raw: dict[str, Any], top: SpaceFile, blocks: list[Block],
                      base: dict[str, dict]) -> list[TrialSpec]:
    """Every configuration x seeds 0..max_seeds-1, all named in the manifest; the sweep runs
    the first min_seeds of each and then only the seeds its comparisons still need."""
    rep = top.replication
    for key in ("seeds", "search", "tune", "scheduler"):
        if raw.get(key) is not None:
            refuse(where, "replication", f"{key}: with replication: the seeds are "
                   f"0..max_seeds-1 and run as the comparisons need them; "
                   + ("leave seeds out" if key == "seeds" else f"{key}: and replication: "
                      "together are not supported yet"))
    seeds = tuple(range(rep.max_seeds))
    check_size(where, blocks, seeds)
    return expand(where, blocks, base, seeds)


def searched_draws(where: str, search: Optional[Search], blocks: list[Block],
                   base: dict[str, dict], factory: bool) -> Optional[list[dict[str, Any]]]:
    """The search's draws by canonical key (``train.lr``), after checking that each key is a
    config field that neither the grid nor a section sets; None without a search."""
    if search is None:
        return None
    return _checked_draws(where, "search", search.keys, search.draws, blocks, base, factory)


def _checked_draws(where: str, what: str, keys: dict, draw: Callable[[], list[dict]],
                   blocks: list[Block], base: dict[str, dict], factory: bool
                   ) -> list[dict[str, Any]]:
    gridded = {canon: f"{block.path}.{key}" for block in blocks for key, canon in block.keys}
    canonical: dict[str, str] = {}
    for key in keys:
        path = f"{what}.keys.{key}"
        canon = canonical_key(where, path, key, factory)
        if canon in gridded:
            refuse(where, path, f"also a grid key ({gridded[canon]}): a key is either a factor "
                   "of the grid or searched, not both")
        section, _, name = canon.partition(".")
        if name in base[section]:
            refuse(where, path, f"also set in the {section} section; search it or fix it there")
        if canon in canonical.values():
            refuse(where, path, "same field as another searched key")
        canonical[key] = canon
    try:
        draws = draw()
    except ValueError as err:  # fewer distinct values than samples
        refuse(where, f"{what}.{'samples' if what == 'search' else 'budget'}", str(err))
    return [{canonical[k]: v for k, v in values.items()} for values in draws]


def _names_factory(raw: dict[str, Any], base: dict[str, dict]) -> bool:
    """Whether the space names a model factory (in the model section or as a grid key)."""
    if base["model"].get("factory") is not None:
        return True
    grid = raw.get("grid")
    blocks = [grid] if isinstance(grid, dict) else grid if isinstance(grid, list) else []
    return any(isinstance(b, dict) and ("factory" in b or "model.factory" in b) for b in blocks)


def space_dirs(where: str) -> list[Path]:
    """Where a space's user modules are looked for: its own directory, the working one."""
    dirs = [Path.cwd()]
    if where and not where.startswith("<"):
        dirs.insert(0, Path(where).expanduser().resolve().parent)
    return dirs


def override_space(spec: SweepSpec, settings: Optional[dict[str, Any]] = None,
                   **flags: Any) -> SweepSpec:
    """``spec.with_overrides``, and a factory named or given keywords by ``--set`` checked as
    one named in the file is (imported, its keywords matched), before any dry run or Ray;
    its module joins the code shipped to Ray workers."""
    spec = spec.with_overrides(settings=settings, **flags)
    set_keys = {key for key in settings or {} if key.partition(".")[0] in ("model", "data")}
    if not set_keys:
        return spec
    code = _check_factories(spec.source, [], list(spec.trials), set_keys)
    return spec.model_copy(update={"code": tuple(dict.fromkeys((*spec.code, *code)))})


def _check_factories(where: str, blocks: list[Block], trials: list[TrialSpec],
                     set_keys: Iterable[str] = ()) -> tuple[str, ...]:
    """Import each model and data factory and check its keywords against the space.

    Before Ray starts, a bad path, a keyword the function does not take (or one it needs
    and does not get) each fail in one line naming the space key. Returns the user modules
    to ship to Ray workers. The models themselves are built by preflight
    (``sweep.preflight.check_trials``), which needs torch.
    """
    if not any(t.config.model.factory or t.config.data.factory for t in trials):
        return ()
    dirs = space_dirs(where)
    set_keys = set(set_keys)

    def fail_at(key: str, problem: str) -> NoReturn:  # a value of --set is named as given
        given = next((k for k in set_keys if key == k or key.startswith(f"{k}.")), None)
        if given is not None:
            raise ConfigError(f"--set {given}: {problem}")
        refuse(where, key, problem)

    def label(key: str) -> str:
        return f"--set {key}" if key in set_keys else f"{where}: {key}"

    code: list[str] = []
    for trial in trials:
        data = trial.config.data
        if data.factory is not None:
            # Checked, not called: loading data may take long; the first trial calls it.
            function = load_callable(label("data.factory"), data.factory, dirs)
            problem = keyword_problem(function, data.factory, data.factory_kwargs)
            if problem is not None:
                key = problem[0]
                fail_at(f"data.factory_kwargs.{key}" if key in data.factory_kwargs
                        else "data.factory", problem[1])
            path = code_path(data.factory, dirs)
            if path is not None and path not in code:
                code.append(path)
        model = trial.config.model
        if model.factory is None:
            continue
        function = load_callable(label("model.factory") if "model.factory" in set_keys
                                 else f"{where}: {_space_key(blocks, 'factory')}",
                                 model.factory, dirs)
        # num_classes is supplied by ninsweep when the function takes it.
        problem = keyword_problem(function, model.factory, model.factory_kwargs,
                                  supplied=("num_classes",))
        if problem is not None:
            keyword, text = problem
            if f"model.{keyword}" in set_keys:
                fail_at(f"model.{keyword}", text)
            fail_at(_space_key(blocks, keyword) if keyword in model.factory_kwargs
                    else "model.factory", text)
        path = code_path(model.factory, dirs)
        if path is not None and path not in code:
            code.append(path)
    return tuple(code)


def _space_key(blocks: list[Block], name: str) -> str:
    """Where the space sets model key ``name``: its first grid key, else model.<name>."""
    for block in blocks:
        for key, canon in block.keys:
            if canon == f"model.{name}":
                return f"{block.path}.{key}"
    return f"model.{name}"



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
        raise ConfigError(f"{where}: {at}: invalid YAML: {one_line(problem)}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: invalid YAML: {one_line(str(err))}") from None



def _check_json_plain(where: str, value: Any, path: str) -> None:
    """Only what JSON holds: the loaded mapping goes into the manifest as it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                refuse(where, f"{path}.{key!r}" if path else repr(key),
                        f"keys must be strings, got {yaml_type(key)}")
            _check_json_plain(where, item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_plain(where, item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        refuse(where, path, f"{value!r} is not a usable number")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        refuse(where, path, f"unsupported YAML value of type {type(value).__name__}")

