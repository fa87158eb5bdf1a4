"""Beyond the grid: the ``search:`` and ``scheduler:`` keys of a space.

``search:`` draws values for some config keys from distributions (``loguniform: [0.003,
0.3]``...) and crosses each draw with every grid cell and seed: draw 3 gives every cell the
same learning rate, so the grid's factors stay compared on equal terms (common random
numbers) and the design stays a full factorial. Random search is drawn here, before Ray,
from its seed: the same space draws the same values every time, the manifest lists every
trial, ``--dry-run`` shows them, and resume reruns exactly those.

``scheduler:`` stops poor trials early (Ray Tune's ASHA or median stopping rule) on
a metric of the *validation* split, never the test set; ``sweep.schedulers`` builds Tune's
object from it. pydantic and the standard library only.
"""

from __future__ import annotations

import importlib.util
import math
import random
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from ninsweep.config import Schema, describe, fail
from ninsweep.metrics import TEST_METRICS, VAL_ACC, VAL_METRICS

# name -> its arguments and what they mean (the error messages and the docs say this).
DISTRIBUTIONS = {
    "uniform": "[low, high]: any number between, evenly",
    "loguniform": "[low, high], both > 0: evenly in log space (learning rates, decays)",
    "quniform": "[low, high, q]: uniform, rounded to a multiple of q",
    "qloguniform": "[low, high, q], both > 0: loguniform, rounded to a multiple of q",
    "randint": "[low, high]: an integer, low <= n < high (high excluded, as in Ray Tune)",
    "choice": "[a, b, ...]: one of the values, each equally likely",
}
SEARCH_ALGORITHMS = ("random",)
TUNING_ALGORITHMS = ("random", "optuna")
SCHEDULERS = {"asha": "ASHA", "median": "median stopping"}
SIGNIFICANT_DIGITS = 4  # drawn floats are rounded: readable names and CSVs, nothing lost
# Drawing stops after this many tries per wanted sample when draws keep repeating: the keys
# have fewer distinct values than samples asked for.
DRAW_ATTEMPTS = 100


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Distribution(Schema):
    """One searched key's distribution, written ``{loguniform: [0.003, 0.3]}``."""

    kind: str
    args: tuple[Any, ...] = Field(strict=False)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and set(raw) != {"kind", "args"}:
            if len(raw) != 1:
                fail(f"expected one distribution, e.g. {{loguniform: [0.003, 0.3]}} (choose from "
                     f"{', '.join(DISTRIBUTIONS)}), got {describe(raw)}")
            (kind, args), = raw.items()
            if kind not in DISTRIBUTIONS:
                fail(f"unknown distribution {kind!r} (choose from {', '.join(DISTRIBUTIONS)})")
            if not isinstance(args, list):
                fail(f"{kind}: expected a list {DISTRIBUTIONS[kind].split(':')[0]}, got "
                     f"{describe(args)}", kind)
            return {"kind": kind, "args": tuple(args)}
        if not isinstance(raw, (dict, Distribution)):
            fail("expected a distribution, e.g. {loguniform: [0.003, 0.3]} (a fixed value "
                 "goes in its section, a list of values in the grid)")
        return raw

    @model_validator(mode="after")
    def _valid_args(self) -> "Distribution":
        kind, args = self.kind, self.args
        usage = f"{kind} takes {DISTRIBUTIONS[kind]}"
        if kind == "choice":
            if not args:
                fail("choice: empty list of values", kind)
            return self
        count = 3 if kind.startswith("q") else 2
        if len(args) != count or not all(_number(a) for a in args):
            fail(f"{usage}; got {list(args)!r}", kind)
        low, high = args[0], args[1]
        if not low < high:
            fail(f"empty range [{low}, {high}] (low must be below high)", kind)
        if "log" in kind and low <= 0:
            fail(f"{kind} needs bounds > 0 (log space), got low {low}", kind)
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            fail(f"randint bounds must be integers, got {list(args)!r}", kind)
        if count == 3 and not args[2] > 0:
            fail(f"{kind}: q must be > 0, got {args[2]}", kind)
        if count == 3 and math.floor(high / args[2]) < math.ceil(low / args[2]):
            fail(f"no multiple of q={args[2]} lies in [{low}, {high}]", kind)
        return self

    def draw(self, rng: random.Random) -> Any:
        """One value. Only ``rng.random()`` is used: its stream is stable across Pythons."""
        kind, args = self.kind, self.args
        u = rng.random()
        if kind == "choice":
            return args[min(int(u * len(args)), len(args) - 1)]
        low, high = args[0], args[1]
        if kind == "randint":
            return min(low + int(u * (high - low)), high - 1)
        value = (math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if "log" in kind
                 else low + u * (high - low))
        if kind.startswith("q"):
            q = args[2]
            steps = min(max(round(value / q), math.ceil(low / q)), math.floor(high / q))
            value = round(steps * q, 12)
            return int(value) if all(isinstance(a, int) for a in args) else value
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")

    def text(self) -> str:
        return f"{self.kind}{list(self.args)}"


def some_keys(keys: dict[str, Distribution], verb: str) -> dict[str, Distribution]:
    """A ``keys:`` mapping that names at least one key."""
    if not keys:
        fail(f"no keys to {verb} (give e.g. train.lr: {{loguniform: [0.003, 0.3]}})")
    return keys


def distinct_draws(keys: dict[str, Distribution], samples: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` distinct draws of every key, the same for the same seed; a draw that
    repeats an earlier one is drawn again (a repeated trial would teach nothing). Raises
    ``ValueError`` when the keys have fewer distinct values than that."""
    rng = random.Random(seed)
    names = sorted(keys)
    seen: set[tuple] = set()
    draws: list[dict[str, Any]] = []
    for _ in range(samples * DRAW_ATTEMPTS):
        values = tuple(keys[name].draw(rng) for name in names)
        if values not in seen:
            seen.add(values)
            draws.append(dict(zip(names, values)))
            if len(draws) == samples:
                return draws
    raise ValueError(f"the searched keys gave only {len(draws)} distinct values in "
                     f"{samples * DRAW_ATTEMPTS} draws; ask for fewer samples, or put them in "
                     "the grid")


class Search(Schema):
    """``search:``: which keys are drawn, how many draws, from which seed."""

    algorithm: str = "random"
    samples: int = Field(ge=1)  # draws, each crossed with every grid cell and seed
    seed: int = 0  # the draws' seed (the trials' own seeds are the seeds list)
    max_concurrent: Optional[int] = Field(None, ge=1)  # trials at once (default: what fits)
    keys: dict[str, Distribution]  # dotted config key -> distribution

    @field_validator("algorithm")
    @classmethod
    def _known(cls, algorithm: str) -> str:
        if algorithm == "optuna":
            fail("optuna learns from each trial's validation score, cell by cell: write it as "
                 "tune: {algorithm: optuna, budget: N, keys: ...} (each cell's own study, then "
                 "its seeds at the best values)")
        if algorithm not in SEARCH_ALGORITHMS:
            fail(f"unknown algorithm {algorithm!r} (choose from {', '.join(SEARCH_ALGORITHMS)})")
        return algorithm

    @field_validator("keys")
    @classmethod
    def _some(cls, keys: dict[str, Distribution]) -> dict[str, Distribution]:
        return some_keys(keys, "search")

    def draws(self) -> list[dict[str, Any]]:
        return distinct_draws(self.keys, self.samples, self.seed)

    def describe_draws(self) -> str:
        keys = ", ".join(f"{k} ~ {d.text()}" for k, d in sorted(self.keys.items()))
        return f"{self.algorithm} search: {self.samples} draws (seed {self.seed}) of {keys}"


class Scheduler(Schema):
    """``scheduler:``: stop poor trials early, judged on the validation split."""

    algorithm: str
    metric: Optional[str] = None  # default: the objective's if it is a val metric, else val_acc
    mode: Optional[str] = None  # default: max for an accuracy, min for a loss
    grace_period: int = Field(1, ge=1)  # epochs every trial trains before it can be stopped
    reduction_factor: float = Field(3.0, gt=1)  # asha: keep 1/reduction_factor per rung
    brackets: int = Field(1, ge=1)  # asha only

    @field_validator("algorithm")
    @classmethod
    def _known(cls, algorithm: str) -> str:
        if algorithm == "hyperband":
            # Measured: trials paused by Tune's HyperBand were left incomplete, the run exit 130.
            fail("hyperband: Tune's synchronous HyperBand pauses and resumes trials, which "
                 "ninsweep's trials do not survive yet; use asha, its asynchronous form")
        if algorithm not in SCHEDULERS:
            fail(f"unknown scheduler {algorithm!r} (choose from {', '.join(SCHEDULERS)})")
        return algorithm

    @field_validator("metric")
    @classmethod
    def _validation_only(cls, metric: Optional[str]) -> Optional[str]:
        if metric in TEST_METRICS:
            fail(f"{metric} is measured on the test set: stopping on it would tune to the test "
                 f"set; use {' or '.join(VAL_METRICS)} (needs data.val_size > 0)")
        if metric is not None and metric not in VAL_METRICS:
            fail(f"unknown metric {metric!r} (a scheduler judges trials on "
                 f"{' or '.join(VAL_METRICS)})")
        return metric

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: Optional[str]) -> Optional[str]:
        if mode is not None and mode not in ("max", "min"):
            fail(f"unknown mode {mode!r} (max: higher is better, min: lower)")
        return mode

    def metric_for(self, objective_metric: str) -> str:
        if self.metric is not None:
            return self.metric
        return objective_metric if objective_metric in VAL_METRICS else VAL_ACC

    def mode_for(self, objective_metric: str) -> str:
        if self.mode is not None:
            return self.mode
        return "max" if self.metric_for(objective_metric) == VAL_ACC else "min"

    @property
    def label(self) -> str:
        return SCHEDULERS[self.algorithm]


class Tuning(Schema):
    """``tune:``: every grid cell tuned the same way before the cells are compared.

    Stage 1 trains each cell at the same ``budget`` draws of ``keys`` (one training seed,
    ``epochs`` epochs) and keeps, per cell, the draw with the best ``select_on`` on the
    validation split; stage 2 trains the cell's seeds at that draw for the full recipe. The
    test set takes no part in the choice (Dodge et al. 2019, "Show Your Work"; Schmidt et al.
    2021 tune each optimizer the same way before comparing).
    """

    keys: dict[str, Distribution]
    budget: int = Field(ge=2)  # draws each cell tries
    # random: the same draws for every cell, drawn before Ray; optuna: each cell's own Optuna
    # study (TPE) picks each next value from the cell's scores so far, while the sweep runs.
    algorithm: str = "random"
    seed: int = 0  # the draws' seed: the same values for every cell
    select_on: str = VAL_ACC
    epochs: Optional[int] = Field(None, ge=1)  # of a tuning trial (default: the recipe's)
    trial_seed: Optional[int] = None  # training seed of the tuning trials (default: the first)
    # Also run every cell's seeds at the shared default values (the untuned comparison), so
    # the report can set the effects of the tuned arms beside the effects at the default.
    default: bool = False

    @field_validator("keys")
    @classmethod
    def _some(cls, keys: dict[str, Distribution]) -> dict[str, Distribution]:
        return some_keys(keys, "tune")

    @field_validator("algorithm")
    @classmethod
    def _known(cls, algorithm: str) -> str:
        if algorithm not in TUNING_ALGORITHMS:
            fail(f"unknown algorithm {algorithm!r} (choose from {', '.join(TUNING_ALGORITHMS)})")
        if algorithm == "optuna" and importlib.util.find_spec("optuna") is None:
            fail("optuna is not installed: pip install 'ninsweep[optuna]' (or use random)")
        return algorithm

    @model_validator(mode="after")
    def _optuna_can_sample(self) -> "Tuning":
        if self.algorithm == "optuna":
            for key, dist in self.keys.items():
                if dist.kind == "qloguniform":
                    fail("Optuna has no log scale with a step: use loguniform or quniform",
                         ("keys", key))
        return self

    @field_validator("select_on")
    @classmethod
    def _validation_only(cls, metric: str) -> str:
        if metric in TEST_METRICS:
            fail(f"{metric} is measured on the test set: choosing on it would report the "
                 f"test set's best, not a fair estimate; use {' or '.join(VAL_METRICS)} "
                 "(needs data.val_size > 0)")
        if metric not in VAL_METRICS:
            fail(f"unknown metric {metric!r} (tuning chooses on {' or '.join(VAL_METRICS)})")
        return metric

    @property
    def mode(self) -> str:
        return "max" if self.select_on == VAL_ACC else "min"

    def draws(self) -> list[dict[str, Any]]:
        return distinct_draws(self.keys, self.budget, self.seed)

    def describe(self) -> str:
        keys = ", ".join(f"{k} ~ {d.text()}" for k, d in sorted(self.keys.items()))
        how = (f"every cell tries the same {self.budget} draws (seed {self.seed}) of {keys}"
               if self.algorithm == "random" else
               f"every cell runs its own Optuna TPE study (seed {self.seed}) of {self.budget} "
               f"trials over {keys}")
        return (f"per-cell tuning: {how} and keeps the best {self.select_on} "
                f"({self.mode}, the validation split)")


class Replication(Schema):
    """``replication:``: seeds added a wave at a time, only where a comparison is undecided.

    The sweep starts ``min_seeds`` per configuration; after each wave it adds one seed to
    every configuration that takes part in a main effect still undecided, until every main
    effect is decided or ``max_seeds`` is reached. The decision rule keeps its error rate
    across the looks (``analysis.sequential``: alpha spending over the planned looks).
    ``until: decided``: a main effect is decided when its interval excludes zero; with
    ``until: {ci_half_width_pct: h}`` also when it holds zero and is no wider than +- h
    (points, for an accuracy; the objective's units otherwise).
    """

    min_seeds: int = Field(2, ge=2)
    max_seeds: int = Field(ge=3)
    until: Any = "decided"
    alpha: float = Field(0.05, gt=0, lt=1)  # per comparison, across all its looks

    @field_validator("until")
    @classmethod
    def _rule(cls, until: Any) -> Any:
        if until == "decided":
            return until
        if isinstance(until, dict) and set(until) == {"ci_half_width_pct"}:
            width = until["ci_half_width_pct"]
            if _number(width) and width > 0:
                return {"ci_half_width_pct": float(width)}
        fail(f"expected decided or {{ci_half_width_pct: h}} with h > 0, got {describe(until)}")

    @model_validator(mode="after")
    def _room(self) -> "Replication":
        if self.max_seeds <= self.min_seeds:
            fail(f"max_seeds ({self.max_seeds}) must exceed min_seeds ({self.min_seeds})",
                 "max_seeds")
        return self

    @property
    def target_half_width(self) -> Optional[float]:
        return None if self.until == "decided" else self.until["ci_half_width_pct"]

    def describe(self) -> str:
        target = ("" if self.target_half_width is None else
                  f" or holds zero within +-{self.target_half_width:g}")
        return (f"adaptive replication: {self.min_seeds} seeds per configuration, then one more "
                f"per wave to every configuration in a main effect still undecided (its "
                f"interval excludes zero{target}), up to {self.max_seeds}; alpha "
                f"{self.alpha:g} per comparison across the looks")
