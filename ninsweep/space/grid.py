"""The grid: a space's blocks expanded into trials, each with its params and its name.

A block is the product of its value lists; the blocks are unioned and repeated once per seed,
seed-major (every configuration once before any repeats, so a sweep cut short still holds one
complete replicate). Each point becomes a ``TrialConfig`` (checked by ``ninsweep.config``), its
params (``BASE_PARAMS`` plus any other grid key by its dotted name) and a readable, unique
name that is also its Ray trial directory (``elu-bn-he-lr0.05-s0``). pydantic only.
"""

from __future__ import annotations

import itertools
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, NoReturn, Optional

from ninsweep.config import ModelConfig, SchemaError, TrialConfig
from ninsweep.errors import ConfigError
from ninsweep.fmt import value_text
from ninsweep.space.schema import (
    AXIS_KEYS,
    MODEL_AXES,
    SECTIONS,
    SEED,
    TrialSpec,
    length_problem,
    refuse,
    yaml_type,
)

# More trials than this is a typo or a runaway grid, not a study: at a CIFAR-10 epoch of
# minutes per trial it would outlast any cluster. Refused before expanding (a 10^6 grid
# would otherwise take minutes and gigabytes to list).
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class Block:
    path: str  # "grid[0]"
    keys: tuple[tuple[str, str], ...]  # (key as written, canonical "section.field")
    values: tuple[tuple[Any, ...], ...]  # one tuple of candidates per key


def _field_hint(section: str, name: str) -> Any:
    return SECTIONS[section].model_fields[name].annotation


def _fields(section: str) -> tuple[str, ...]:
    return tuple(SECTIONS[section].model_fields)


def canonical_key(where: str, path: str, key: Any, factory: bool = False) -> str:
    if not isinstance(key, str):
        refuse(where, path, f"grid keys must be strings, got {yaml_type(key)}")
    if key in ("seed", "train.seed"):
        refuse(where, path, "set seeds with the top-level seeds list (seeds: [0, 1, 2])")
    if "." in key:
        section, _, name = key.partition(".")
        if section not in SECTIONS:
            refuse(where, path,
                    f"not a config field (dotted keys start with {', '.join(SECTIONS)})")
        if name not in _fields(section) and not (factory and section == "model"):
            refuse(where, path,
                    f"not a config field ({section} fields: {', '.join(_fields(section))})")
        return key
    if key in _fields("model") or factory:
        return f"model.{key}"  # with a model factory, a keyword argument of it
    for section in ("train", "data"):
        if key in _fields(section):
            refuse(where, path,
                    f"not a model field; write {section}.{key} (bare names are model fields)")
    refuse(where, path, f"not a config field (model fields: {', '.join(_fields('model'))}; other "
            "sections by dotted name, e.g. train.lr)")


def parse_grid(where: str, grid: Any, base: dict[str, dict],
                factory: bool = False) -> list[Block]:
    if grid is None:
        refuse(where, "grid",
                "missing or empty (give a list of blocks, e.g. - activation: [relu, elu])")
    if isinstance(grid, dict):
        raw_blocks = [("grid", grid)]  # a single block may be written without the list
    elif isinstance(grid, list):
        if not grid:
            refuse(where, "grid", "empty list of blocks")
        raw_blocks = [(f"grid[{i}]", b) for i, b in enumerate(grid)]
    else:
        refuse(where, "grid", f"expected a list of blocks (mappings), got {yaml_type(grid)}")

    blocks = []
    for bpath, block in raw_blocks:
        if not isinstance(block, dict):
            refuse(where, bpath, f"expected a mapping of key: [values], got {yaml_type(block)}")
        if not block:
            refuse(where, bpath, "empty block (give at least one key: [values])")
        keys, values = [], []
        seen: dict[str, str] = {}
        for key, vals in block.items():
            kpath = f"{bpath}.{key}"
            canon = canonical_key(where, kpath, key, factory)
            if canon in seen:
                refuse(where, kpath, f"same field as {bpath}.{seen[canon]}")
            seen[canon] = key
            section, _, name = canon.partition(".")
            if name in base[section]:
                refuse(where, kpath, f"also set in the {section} section; set it in one place "
                        f"(the grid, or {section}: {{{name}: ...}})")
            hint = _field_hint(section, name) if name in _fields(section) else Any
            is_tuple = typing.get_origin(hint) is tuple
            if isinstance(vals, list):
                if not vals:
                    refuse(where, kpath, "empty list of values")
                if is_tuple and not any(isinstance(v, list) for v in vals):
                    vals = [vals]  # lr_milestones: [81, 122] is one value, not two
            elif isinstance(vals, dict):
                refuse(where, kpath, "expected a list of values, got a mapping")
            else:
                vals = [vals]  # a scalar is a one-element list
            keys.append((key, canon))
            values.append(tuple(vals))
        blocks.append(Block(bpath, tuple(keys), tuple(values)))
    return blocks


def check_size(where: str, blocks: list[Block], seeds: tuple[int, ...], samples: int = 1) -> None:
    per_seed = sum(math.prod(len(values) for values in block.values) for block in blocks) * samples
    total = per_seed * len(seeds)
    if total > MAX_TRIALS:
        draws = f", {samples:,} search draws each" if samples > 1 else ""
        refuse(where, "grid", f"expands to {total:,} trials ({per_seed:,} per seed{draws} x "
                f"{len(seeds)} seeds); a sweep runs at most {MAX_TRIALS:,}: split it into several "
                "spaces or narrow the value lists")


def expand(where: str, blocks: list[Block], base: dict[str, dict],
            seeds: tuple[int, ...], draws: Optional[list[dict[str, Any]]] = None,
            draw_label: str = "draw") -> list[TrialSpec]:
    """Every grid cell x search draw (``space.search``; none: one empty draw) x seed; a
    draw's trials are named ``<draw_label><number>``."""
    # Grid keys beyond the three every name has: params by dotted name, names compactly.
    extra: list[str] = []
    for block in blocks:
        for _, canon in block.keys:
            if canon not in AXIS_KEYS and canon not in extra:
                extra.append(canon)
    # Searched keys are params too; a trial's name says its draw's number, not its values.
    searched = list(draws[0]) if draws else []
    draw_width = len(str(len(draws) - 1)) if draws else 0

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
            for combo, (index, draw) in itertools.product(itertools.product(*block.values),
                                                          enumerate(draws or [{}])):
                merged = {section: dict(values) for section, values in base.items()}
                for canon, value in [*zip((c for _, c in block.keys), combo), *draw.items()]:
                    section, _, name = canon.partition(".")
                    merged[section][name] = value
                merged["train"]["seed"] = seed
                try:
                    config = TrialConfig.from_dict(merged)
                except SchemaError as err:
                    _report_trial_error(where, err, block, combo, base_error, draw)
                params = _params(config, extra + searched)
                tname = _trial_name(params, extra, config.model.factory,
                                    f"{draw_label}{index:0{draw_width}d}" if draws else None)
                if length_problem("trial name", tname):  # a directory name: see MAX_NAME_LENGTH
                    refuse(where, block.path, length_problem("trial name", tname))
                key = config
                if key in by_config:
                    other_name, other_block = by_config[key]
                    refuse(where, block.path, f"duplicate configuration {tname} (also produced by "
                            f"{other_block}); each trial must differ")
                if tname in by_name:
                    refuse(where, block.path, f"trial name {tname!r} is not unique (also from "
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


def _report_trial_error(where: str, err: SchemaError, block: Block, combo: tuple,
                        base_error: Optional[str], draw: Optional[dict[str, Any]] = None
                        ) -> NoReturn:
    """Name the place in the file that caused ``TrialConfig.from_dict``'s error."""
    path = err.path
    if draw and path in draw:
        refuse(where, f"search.keys.{path}", f"drew {value_text(draw[path])}: {err.problem}")
    for (key, canon), value in zip(block.keys, combo):
        if path == canon or path.startswith((canon + "[", canon + ".")):
            refuse(where, f"{block.path}.{key}{path[len(canon):]}", err.problem)
    if str(err) == base_error:
        refuse(where, path, err.problem)  # a section override's
    # A rule across fields, broken by this combination of grid values.
    combo_text = ", ".join(f"{key}={value_text(v)}" for (key, _), v in zip(block.keys, combo))
    refuse(where, path, f"{err.problem} (with {block.path}: {combo_text})")


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


def _name_part(value: Any) -> str:
    """A value as part of a trial name: 0.05 and 2 (not 2.0), a list joined by _ (81_122),
    none; these names are on disk (trial directories), so the rule never changes."""
    if isinstance(value, list):
        return "_".join(_name_part(v) for v in value) or "none"
    if value is None:
        return "none"
    return value_text(value) if isinstance(value, float) else str(value)


def _trial_name(params: dict[str, Any], extra: list[str], factory: Optional[str] = None,
                draw: Optional[str] = None) -> str:
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
            parts.append(f"{short}{_name_part(value)}")
        else:
            parts.append(f"{short}_{_name_part(value)}")
    if draw is not None:
        parts.append(draw)
    parts.append(f"s{params['seed']}")
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", "-".join(str(p) for p in parts))
