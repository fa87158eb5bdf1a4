"""Adaptive replication: when a comparison has seeds enough, and how many seeds to plan.

The sweep runs ``min_seeds`` per configuration, then waves of one more seed per undecided
configuration up to ``max_seeds``, and looks at the data after every wave. Looking again and
again at a fixed 95% interval would find an "effect" that is not there far more often than
5% of the time; this module's rule keeps its stated error rate across all the looks.

The rule (``SEQUENTIAL_METHOD``)
--------------------------------
Each comparison is a main effect (``effects.main_comparisons``: a factor's level against its
reference, averaged over the contexts of the other factors), measured per seed: for a seed
that finished in every cell of the comparison, the weighted sum of its accuracies. The
look at n seeds is a paired t-interval of those n differences at level 1 - alpha_n, where
alpha_n is what the Lan-DeMets O'Brien-Fleming-type spending function allots to the
information n / max_seeds since the previous look. The alpha_n sum to alpha, so by the union
bound the chance that *any* planned look's interval misses the true effect is at most alpha,
whatever the looks decide about stopping (``ERROR_RATE``). A look decides:

- "effect": the interval excludes zero;
- "negligible": it holds zero and is no wider than +- ``target_half_width``;
- "undecided": neither (or fewer than ``min_seeds`` paired seeds yet).

The first decision stands (a later look does not overturn it). Each comparison is one test
at alpha: for a family of m comparisons with a family-wise rate, pass alpha / m. The t-interval
assumes the per-seed differences are independent and normal. The look at n seeds uses the
first n seeds (by number) that finished in every cell of the comparison; a seed that finishes
late (a failed trial rerun) reorders them and adds a look the plan did not spend for, so the
sweep should rerun a failed seed before adding the next.

Planning (``seeds_needed``)
---------------------------
The seeds per configuration at which a two-sided t-test at alpha detects a difference of
``effect`` with the given power, from the noncentral t (``scipy.special.nctdtr``, the CDF of
``scipy.stats.nct``), the seed SD taken as known: the two-sample test (unpaired, ``seed_sd``
the within-configuration SD of one configuration's seeds) or the paired test (``seed_sd`` the
SD of the per-seed difference between two configurations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import special

from ninsweep.analysis.effects import design, main_comparisons, seed_paired_residual
from ninsweep.analysis.stats import ALPHA, t_quantile
from ninsweep.errors import NinsweepError

SEQUENTIAL_METHOD = (
    "Lan-DeMets O'Brien-Fleming-type alpha spending over the planned looks (Lan & DeMets 1983, "
    "Biometrika 70:659-663; O'Brien & Fleming 1979), each look a paired t-interval over seeds "
    "at its spent alpha, combined by the union (Bonferroni) bound")
ERROR_RATE = (
    "per comparison, the probability that any planned look's interval misses the true effect "
    "-- so a false 'effect' or a false 'negligible' -- is at most alpha, under optional stopping")
PLANNING_METHOD = ("power of the two-sided t-test from the noncentral t distribution "
                   "(scipy.special.nctdtr, as scipy.stats.nct), the measured seed SD taken as known")

EFFECT = "effect"
NEGLIGIBLE = "negligible"
UNDECIDED = "undecided"

_MAX_PLANNED_SEEDS = 10 ** 7  # the search for seeds_needed stops here (an effect ~1e-3 SD)


class NotEnoughSeeds(NinsweepError, ValueError):
    """No configuration has the two finished seeds a seed SD needs."""


class Look(NamedTuple):
    """One planned look: after ``seeds`` seeds per configuration, a test at ``alpha``."""

    index: int
    seeds: int
    alpha: float


class Decision(NamedTuple):
    """A comparison's state after a look (``look_index`` None: no planned look reached)."""

    state: str
    estimate: float
    lo: float
    hi: float
    look_index: Optional[int]
    seeds: int


def obrien_fleming_spent(information: np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets' O'Brien-Fleming-type spending function: 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))."""
    t = np.asarray(information, dtype=float)
    return 2.0 - 2.0 * special.ndtr(special.ndtri(1.0 - alpha / 2.0) / np.sqrt(t))


def plan_looks(min_seeds: int, max_seeds: int, alpha: float = ALPHA) -> list[Look]:
    """One look per seed count min_seeds..max_seeds, each at its increment of the spending
    function (information n / max_seeds); the increments sum to ``alpha``."""
    if min_seeds < 2:
        raise NinsweepError(f"min_seeds {min_seeds}: a look needs >= 2 seeds (a t-interval)")
    if max_seeds < min_seeds:
        raise NinsweepError(f"max_seeds {max_seeds} is below min_seeds {min_seeds}")
    if not 0.0 < alpha < 1.0:
        raise NinsweepError(f"alpha {alpha}: must lie in (0, 1)")
    seeds = np.arange(min_seeds, max_seeds + 1)
    spent = obrien_fleming_spent(seeds / max_seeds, alpha)
    increments = np.diff(spent, prepend=0.0)
    return [Look(i, int(n), float(a)) for i, (n, a) in enumerate(zip(seeds, increments))]


def paired_intervals(differences: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, t half width at level 1 - alpha) of the per-seed differences on the last axis.

    Vectorized: the simulation tests pass thousands of studies at once.
    """
    d = np.asarray(differences, dtype=float)
    n = d.shape[-1]
    half = float(t_quantile(1.0 - alpha / 2.0, n - 1)) * d.std(axis=-1, ddof=1) / math.sqrt(n)
    return d.mean(axis=-1), half


def state_of(estimate: np.ndarray, half: np.ndarray, target_half_width: Optional[float]) -> np.ndarray:
    """Each interval's state: "effect", "negligible" or "undecided" (vectorized)."""
    estimate, half = np.asarray(estimate, dtype=float), np.asarray(half, dtype=float)
    # Seeds that agree exactly (an accuracy stuck at chance, rounding) give a zero-width
    # interval that measures no noise: undecided, as the effects table gives no interval.
    measured = half > 0
    excludes = measured & (np.abs(estimate) > half)
    narrow = (np.zeros_like(excludes) if target_half_width is None
              else measured & (half <= target_half_width))
    return np.where(excludes, EFFECT, np.where(narrow, NEGLIGIBLE, UNDECIDED))


def decide(differences: Sequence[float], look: Look, target_half_width: Optional[float] = None) -> Decision:
    """The look's decision from its per-seed differences (the first ``look.seeds`` are used)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < look.seeds:
        raise ValueError(f"look {look.index} needs {look.seeds} seeds, got {len(d)}")
    d = d[:look.seeds]
    estimate, half = paired_intervals(d, look.alpha)
    state = str(state_of(estimate, half, target_half_width))
    return Decision(state, float(estimate), float(estimate - half), float(estimate + half), look.index, len(d))


def decide_sequentially(differences: Sequence[float], looks: Sequence[Look],
                        target_half_width: Optional[float] = None) -> Decision:
    """The first decision over the looks the seeds reach (differences in seed order)."""
    d = np.asarray(differences, dtype=float)
    last = Decision(UNDECIDED, float(d.mean()) if len(d) else math.nan, math.nan, math.nan, None, len(d))
    for look in looks:
        if look.seeds > len(d):
            break
        last = decide(d, look, target_half_width)
        if last.state != UNDECIDED:
            return last
    return last


def first_decisions(differences: np.ndarray, looks: Sequence[Look],
                    target_half_width: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """``decide_sequentially`` for many studies at once: per row of ``differences`` (studies x
    seeds, in seed order), the first decision's state and the seeds it took (the last look's
    seeds where none decided). What the simulation tests, and an operating-characteristics
    study of a plan, run."""
    d = np.asarray(differences, dtype=float)
    states = np.full(len(d), UNDECIDED, dtype=object)
    used = np.zeros(len(d), dtype=int)
    open_ = np.ones(len(d), dtype=bool)
    for look in looks:
        if look.seeds > d.shape[1]:
            break
        estimate, half = paired_intervals(d[open_, :look.seeds], look.alpha)
        now = state_of(estimate, half, target_half_width)
        rows = np.flatnonzero(open_)
        states[rows], used[rows] = now, look.seeds
        open_[rows[now != UNDECIDED]] = False
    return states, used


@dataclass(frozen=True)
class SequentialRule:
    """The adaptive-replication rule: its looks, alpha per comparison, the target half width."""

    min_seeds: int
    max_seeds: int
    alpha: float = ALPHA
    target_half_width: Optional[float] = None

    @property
    def looks(self) -> list[Look]:
        return plan_looks(self.min_seeds, self.max_seeds, self.alpha)


DECISION_COLUMNS = ["factor", "level", "baseline", "state", "estimate", "lo", "hi", "seeds",
                    "look", "configs"]


def _seed_order(seeds: Sequence[str]) -> list[str]:
    """Seeds by number (the waves add seeds in that order), text after numbers."""
    numeric = pd.to_numeric(pd.Series(list(seeds), dtype=object), errors="coerce")
    return [s for _, s in sorted(zip(numeric.fillna(math.inf), seeds), key=lambda p: (p[0], p[1]))]


def comparison_decisions(trials: pd.DataFrame, rule: SequentialRule) -> pd.DataFrame:
    """Every main effect's decision under ``rule`` (``DECISION_COLUMNS``; ``configs``: the
    configuration labels it takes part in), from the finished trials."""
    data, levels = design(trials)
    factors = list(levels)
    looks = rule.looks
    cells = list(data[factors].itertuples(index=False, name=None)) if factors else []
    value = dict(zip(zip(cells, data["seed"]), data["y"]))  # (cell, seed) -> objective
    seeds_of: dict[tuple, set[str]] = {}
    for cell, seed in zip(cells, data["seed"]):
        seeds_of.setdefault(cell, set()).add(seed)
    config_of = dict(zip(cells, data["config"]))
    rows = []
    for c in main_comparisons(data, levels) if factors else []:
        if not c.weights:
            continue  # no context holds both levels: nothing to decide
        # Paired by seed: only seeds that finished in every cell of the comparison count.
        shared = set.intersection(*(seeds_of[cell] for cell in c.weights))
        order = _seed_order(sorted(shared))
        d = np.array([sum(w * value[(cell, s)] for cell, w in c.weights.items()) for s in order])
        decision = decide_sequentially(d, looks, rule.target_half_width)
        rows.append({"factor": c.factor, "level": c.level, "baseline": c.baseline,
                     "state": decision.state, "estimate": decision.estimate, "lo": decision.lo,
                     "hi": decision.hi, "seeds": decision.seeds, "look": decision.look_index,
                     "configs": sorted({config_of[cell] for cell in c.weights})})
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def undecided_configurations(trials: pd.DataFrame, rule: SequentialRule) -> set[str]:
    """The configurations that need another seed: those in a still undecided comparison that
    have fewer than ``rule.max_seeds`` finished seeds. Call it when a wave has finished: a
    running trial does not count yet."""
    decisions = comparison_decisions(trials, rule)
    data, _ = design(trials)
    finished = data.groupby("config")["seed"].nunique()
    out: set[str] = set()
    for r in decisions.itertuples():
        if r.state == UNDECIDED:
            out.update(c for c in r.configs if finished.get(c, 0) < rule.max_seeds)
    return out


# --------------------------------------------------------------------------- planning


def power_of_t_test(n: np.ndarray, effect: float, seed_sd: float, alpha: float = ALPHA,
                    paired: bool = False) -> np.ndarray:
    """Power of the two-sided t-test at ``n`` seeds per configuration (noncentral t).

    Unpaired: two samples of n, df 2n - 2, noncentrality effect / (seed_sd sqrt(2 / n)).
    Paired: n differences of SD ``seed_sd``, df n - 1, noncentrality effect sqrt(n) / seed_sd.
    """
    n = np.asarray(n, dtype=float)
    df = n - 1.0 if paired else 2.0 * n - 2.0
    ncp = effect * np.sqrt(n) / seed_sd if paired else effect / (seed_sd * np.sqrt(2.0 / n))
    crit = t_quantile(1.0 - alpha / 2.0, df)
    return 1.0 - special.nctdtr(df, ncp, crit) + special.nctdtr(df, ncp, -crit)


def seeds_needed(effect: float, seed_sd: float, power: float = 0.8, alpha: float = ALPHA,
                 paired: bool = False) -> int:
    """The fewest seeds per configuration (>= 2) at which the two-sided t-test at ``alpha``
    detects a difference ``effect`` with ``power``; ``seed_sd`` as in ``power_of_t_test``."""
    for name, value in (("effect", effect), ("seed SD", seed_sd)):
        if not value > 0 or not math.isfinite(value):
            raise NinsweepError(f"{name} {value}: must be a positive number")
    for name, value in (("power", power), ("alpha", alpha)):
        if not 0.0 < value < 1.0:
            raise NinsweepError(f"{name} {value}: must lie in (0, 1)")
    lo, hi = 2, 2
    while power_of_t_test(hi, effect, seed_sd, alpha, paired) < power:  # power grows with n
        lo, hi = hi, hi * 2
        if hi > _MAX_PLANNED_SEEDS:
            raise NinsweepError(f"an effect of {effect:g} against a seed SD of {seed_sd:g} needs "
                                f"more than {_MAX_PLANNED_SEEDS:,} seeds")
    while lo < hi:
        mid = (lo + hi) // 2
        if power_of_t_test(mid, effect, seed_sd, alpha, paired) >= power:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)


class SeedSD(NamedTuple):
    """A seed SD measured in an experiment, its degrees of freedom, and from how many configs."""

    sd: float
    df: int
    configs: int


def seed_sd_of(trials: pd.DataFrame) -> SeedSD:
    """The pooled within-configuration SD of the objective over seeds: sqrt(sum of squares
    about each config's mean / sum(n - 1)), over the configs with >= 2 finished seeds."""
    data, _ = design(trials)
    groups = data.groupby("config")["y"]
    n = groups.count()
    ss = groups.var(ddof=1).fillna(0.0) * (n - 1)
    df = int((n - 1).clip(lower=0).sum())
    if df < 1:
        raise NotEnoughSeeds("no configuration has 2 finished seeds: the seed-to-seed SD cannot be "
                             "measured (run more seeds first)")
    return SeedSD(float(math.sqrt(ss.sum() / df)), df, int((n >= 2).sum()))


def difference_sd_of(trials: pd.DataFrame) -> SeedSD:
    """The SD of the per-seed difference between two configurations: sqrt(2) x the residual
    SD of the fit with one indicator per config and per seed (seeds shared across configs)."""
    data, _ = design(trials)
    rss, df, shared = seed_paired_residual(data)
    if not shared or df < 1:
        raise NotEnoughSeeds("no seed finished in two configurations with residual df left: "
                             "the paired difference SD cannot be measured")
    return SeedSD(float(math.sqrt(2.0 * rss / df)), df, int(data["config"].nunique()))
