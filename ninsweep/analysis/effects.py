"""Factor effects of a grid study: main effects, two-way interactions, configs vs a baseline.

The questions of an ablation study are factor questions -- does BatchNorm help, does He
init help, which activation is best, do they interact -- not "which config won". This
module answers them from the per-trial table of ``ninsweep.analysis`` (finished trials
only; the objective is the final test accuracy in %, so effects are in percentage points).

What is computed
----------------
A *factor* is every grid key that takes more than one value among the finished trials
(``activation``, ``batchnorm``, ``init``, any dotted key such as ``train.lr``); a *cell* is
one combination of factor levels (a config); the seeds are the replicates.

- **Main effect** of a factor, level L against its reference level R: the difference of
  the cell means, L minus R, averaged with equal weights over the *contexts* (the
  combinations of the other factors) in which both L and R ran. Where the grid is a full
  factorial that is every context; where it is not (lab4: LeakyReLU and Maxout ran only
  with BN + He init) the effect is computed on that balanced part, and ``over`` names it.
- **Two-way interaction** of factors A and B, levels (La, Lb) against (Ra, Rb): the
  difference of differences (La,Lb) - (La,Rb) - (Ra,Lb) + (Ra,Rb), averaged over the
  contexts of the other factors in which all four cells ran: how much A's effect changes
  when B goes from Rb to Lb.
- **Against a baseline config**: every config minus the chosen one.

Every estimate is a linear contrast of the cell means in one ordinary least squares fit of
the trials in the cells it involves (one indicator per cell). When seeds are shared between
cells the fit adds one indicator per seed, so the comparison is *paired by seed* (a seed
that is lucky in every cell does not count as noise); with two cells and complete seeds
this is exactly the paired t-test (``scipy.stats.ttest_rel``), without shared seeds the
two-sample t-test (``ttest_ind``). Missing seeds are handled by the same fit. The 95%
confidence interval and the two-sided p-value are Student's t (``scipy.special``) on the
fit's residual degrees of freedom; ``p_holm`` adjusts the p-values of one family (main
effects, interactions, baseline comparisons) with Holm's method (``analysis.holm``, the one
the config table uses). The fit solves the normal equations with the seeds absorbed, a
cells x cells system, instead of forming the trials x (cells + seeds) design matrix that
statsmodels' OLS would take: the tests check the two agree. Intervals are clipped to what a
difference of two accuracies can be, [-100, 100] points.

With one seed per cell there is no replicate to measure noise by. In a full factorial of two
or more factors the main effects then rest on the design's own replication: the additive
(main-effects) model is fitted with every interaction pooled as error, and each main effect
gets Student's t on the pooled residual df (``interval_method`` "pooled interactions
(df=4)" for a 2^3) -- valid when the interactions are negligible; a real one enters the
error and widens the intervals. ``unreplicated="lenth"`` uses Lenth's pseudo standard error
instead (two-level designs only; it assumes few effects are real, not that interactions are
zero). A single factor has no interaction to pool: its effect is given, its interval and
p-value are not. Interactions of an unreplicated design get no interval either.

The reference level of a factor is the library default when the grid has it (relu, no
BatchNorm, keras init, lr 0.1), else the first value in the grid's order.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple, Optional

import numpy as np
import pandas as pd

from ninsweep.analysis.results import compared
from ninsweep.analysis.stats import (
    CI_LEVEL,
    additive_ols,
    clip_interval,
    holm,
    lenth_df,
    lenth_pse,
    t_quantile,
    t_two_sided_p,
)
from ninsweep.analysis.tabulate import TRIAL_COLUMNS, TUNED_PREFIX, objective_of
from ninsweep.config import DataConfig, ModelConfig, TrainConfig
from ninsweep.errors import NinsweepError
from ninsweep.fmt import value_text
from ninsweep.metrics import is_accuracy
from ninsweep.space.schema import MODEL_AXES

OBJECTIVE = "final_test_acc_pct"  # the default objective's column; analysis.objective_of gives the one in use
OBJECTIVE_RANGE = (0.0, 100.0)  # what the objective can be: an accuracy in %
EFFECT_RANGE = (OBJECTIVE_RANGE[0] - OBJECTIVE_RANGE[1], OBJECTIVE_RANGE[1] - OBJECTIVE_RANGE[0])

MAIN = "main"
INTERACTION = "interaction"
BASELINE = "baseline"
CONFIG_FACTOR = "config"  # the ``factor`` of a row comparing whole configs

EFFECT_COLUMNS = ["kind", "factor", "level", "baseline", "effect_pct", "ci_low_pct", "ci_high_pct",
                  "p", "p_holm", "n", "n_level", "n_baseline", "contexts", "paired", "df", "over", "note",
                  "interval_method"]

NOTE_ONE_SEED = "one seed per cell: no interval"
NOTE_NO_CONTEXT = "no context holds both levels"
NOTE_FLAT = "zero variance: no interval"

# What an interval rests on (column ``interval_method``): the seeds, or for one seed per cell
# the pooled interactions / Lenth's PSE (``main_effects(unreplicated=...)``).
INTERVAL_SEEDS = "seeds"
POOLED = "pooled"
LENTH = "lenth"
POOLED_ASSUMPTION = ("one seed per cell: the interval rests on the interactions pooled as error "
                     "and assumes they are negligible (a real interaction widens it)")
LENTH_ASSUMPTION = ("one seed per cell: the interval rests on Lenth's pseudo standard error of "
                    "all the design's contrasts and assumes few of them are real (effect sparsity)")


def pooled_method(df: int) -> str:
    return f"pooled interactions (df={df})"


def lenth_method(m: int) -> str:
    return f"Lenth PSE (df={lenth_df(m):.3g})"


# --------------------------------------------------------------------------- design


def factor_columns(trials: pd.DataFrame) -> list[str]:
    """The grid keys of the trial table: activation, batchnorm, init, then the extra keys."""
    fixed = set(TRIAL_COLUMNS)
    # A tuned space's stage and chosen values describe how a cell was run, not a factor.
    return list(MODEL_AXES) + [c for c in trials.columns if c not in fixed and c != "stage"
                               and not c.startswith(TUNED_PREFIX)]


def _default_of(key: str) -> Any:
    """The library default of a grid key ("batchnorm", "train.lr"), or None."""
    section, _, name = key.rpartition(".")
    classes = {"": ModelConfig, "model": ModelConfig, "train": TrainConfig, "data": DataConfig}
    cls = classes.get(section)
    if cls is None or name not in cls.model_fields:
        return None
    return value_text(getattr(cls(), name))


def design(trials: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(finished trials with one text column per factor, factor -> levels, reference first).

    Only factors with more than one level among the finished trials are returned.
    """
    objective = objective_of(trials)[2]  # final_test_acc_pct unless the space names another
    done = trials[compared(trials)]
    done = done[np.isfinite(pd.to_numeric(done[objective], errors="coerce").to_numpy(float))]
    data = pd.DataFrame({"y": pd.to_numeric(done[objective], errors="coerce").to_numpy(float),
                         "seed": [value_text(s) for s in done["seed"]],
                         "config": done["config"].to_numpy()}, index=done.index)
    levels: dict[str, list[str]] = {}
    for key in factor_columns(trials):
        if key not in done.columns:
            continue
        text = [value_text(v) for v in done[key]]
        order = list(dict.fromkeys(text))
        if len(order) < 2:
            continue
        ref = _default_of(key)
        if ref in order:
            order.remove(ref)
            order.insert(0, ref)
        levels[key] = order
        data[key] = text
    if not is_accuracy(objective_of(trials)[0]):
        data.attrs["effect_range"] = (-math.inf, math.inf)
    return data, levels


# --------------------------------------------------------------------------- estimation


class _Fit(NamedTuple):
    """One least-squares fit of the trials in a set of cells (cell coefficients only)."""

    position: dict[int, int]  # cell code -> index into the coefficients
    coef: np.ndarray  # cell coefficients (cell means, shifted by seed effects when paired)
    gram: np.ndarray  # the cells' block of X'X after the seeds are absorbed
    gram_pinv: np.ndarray
    rss: float
    df: int
    n: int
    shared_seeds: bool  # some seed ran in two or more of the cells


class _Layout:
    """The finished trials as cells (one code per combination of ``keys``) and seeds.

    Fits are cached by their set of cells: every main effect of a full factorial, and its
    interactions, use one fit of all the trials.
    """

    def __init__(self, data: pd.DataFrame, keys: list[str]):
        self.keys = keys
        self.y = data["y"].to_numpy(float)
        # An accuracy difference lies in [-100, 100]; another objective's is not bounded.
        self.bounds = data.attrs.get("effect_range", EFFECT_RANGE)
        self.seed = pd.factorize(data["seed"])[0]
        if len(keys) > 1:
            codes, uniques = pd.factorize(pd.MultiIndex.from_frame(data[keys]))
            cells = list(uniques)
        else:
            codes, uniques = pd.factorize(data[keys[0]])
            cells = [(v,) for v in uniques]
        self.cell = codes
        self.code = {c: i for i, c in enumerate(cells)}
        self.count = np.bincount(codes, minlength=len(cells))
        self._fits: dict[tuple[frozenset, bool], _Fit] = {}

    def has(self, cell: tuple) -> bool:
        return cell in self.code

    def fit(self, codes: frozenset, paired: bool) -> _Fit:
        key = (codes, paired)
        if key not in self._fits:
            self._fits[key] = self._solve(sorted(codes), paired)
        return self._fits[key]

    def _solve(self, codes: list[int], paired: bool) -> _Fit:
        """Least squares of y on cell indicators (+ seed indicators when ``paired``).

        The seeds are absorbed (their block of the normal equations is diagonal), which
        leaves a k x k system for the k cells: the cost grows with the number of cells, not
        trials. statsmodels' OLS would form the n x (cells + seeds) design and its
        pseudo-inverse: seconds per fit at 10,000 trials; tests/analysis/test_effects.py checks this
        fit against it.
        """
        lookup = np.full(len(self.count), -1)
        lookup[codes] = np.arange(len(codes))
        sel = lookup[self.cell] >= 0
        r, y = lookup[self.cell[sel]], self.y[sel]
        k, n = len(codes), len(y)
        n_c = np.bincount(r, minlength=k).astype(float)
        sum_c = np.bincount(r, y, minlength=k)
        s = pd.factorize(self.seed[sel])[0]
        seeds = int(s.max()) + 1 if n else 0
        incidence = np.zeros((k, seeds))
        np.add.at(incidence, (r, s), 1.0)
        shared = bool(((incidence > 0).sum(axis=0) >= 2).any())
        if not paired:
            gram = np.diag(n_c)
            gram_pinv = np.diag(1.0 / n_c)
            coef = sum_c / n_c
            fitted = coef[r]
            rank = k
        else:
            n_s = np.bincount(s, minlength=seeds).astype(float)
            sum_s = np.bincount(s, y, minlength=seeds)
            weighted = incidence / n_s
            gram = np.diag(n_c) - weighted @ incidence.T
            gram_pinv = np.linalg.pinv(gram, hermitian=True)
            coef = gram_pinv @ (sum_c - weighted @ sum_s)
            seed_coef = (sum_s - incidence.T @ coef) / n_s
            fitted = coef[r] + seed_coef[s]
            rank = int(np.linalg.matrix_rank(gram, hermitian=True)) + seeds
        rss = float(np.sum((y - fitted) ** 2))
        return _Fit({c: i for i, c in enumerate(codes)}, coef, gram, gram_pinv, rss, n - rank, n, shared)

    def contrast(self, weights: dict[tuple, float], alpha: float) -> dict[str, Any]:
        """sum(w * cell mean) over the weighted cells: estimate, CI, p (``EFFECT_COLUMNS``).

        Paired by seed when seeds are shared, the contrast stays estimable with the seed
        indicators (seeds connect the cells) and they leave residual degrees of freedom
        where the plain fit has some; otherwise the cells alone (pooled within-cell variance).
        """
        codes = frozenset(self.code[c] for c in weights)
        plain = self.fit(codes, paired=False)
        chosen, paired = plain, False
        vector = np.zeros(len(codes))
        for cell, w in weights.items():
            vector[plain.position[self.code[cell]]] += w
        if plain.shared_seeds:
            with_seeds = self.fit(codes, paired=True)
            estimable = np.allclose(vector @ with_seeds.gram_pinv @ with_seeds.gram, vector, atol=1e-8)
            if estimable and (with_seeds.df >= 1 or plain.df < 1):
                chosen, paired = with_seeds, True
        estimate = float(vector @ chosen.coef)
        out = {"n": chosen.n, "paired": paired, "effect_pct": estimate, "ci_low_pct": np.nan,
               "ci_high_pct": np.nan, "p": np.nan, "df": chosen.df, "note": "", "interval_method": "",
               "n_level": int(sum(self.count[self.code[c]] for c, w in weights.items() if w > 0)),
               "n_baseline": int(sum(self.count[self.code[c]] for c, w in weights.items() if w < 0))}
        if chosen.df < 1:
            out["note"] = NOTE_ONE_SEED
            return out
        out["interval_method"] = INTERVAL_SEEDS
        variance = chosen.rss / chosen.df * float(vector @ chosen.gram_pinv @ vector)
        if not variance > 1e-12 * max(1.0, estimate ** 2):
            out.update(note=NOTE_FLAT, ci_low_pct=estimate, ci_high_pct=estimate)
            return out
        se = math.sqrt(variance)
        half = float(t_quantile(1 - alpha / 2, chosen.df)) * se
        out["p"] = float(t_two_sided_p(estimate / se, chosen.df))
        out["ci_low_pct"], out["ci_high_pct"] = clip_interval(estimate - half, estimate + half, self.bounds)
        return out


def seed_paired_residual(data: pd.DataFrame) -> tuple[float, int, bool]:
    """(residual sum of squares, residual df, whether any seed ran in two configs) of the fit of
    a ``design()``'s trials on one indicator per config and per seed: the seed-paired noise."""
    if data.empty:
        return math.nan, 0, False
    layout = _Layout(data, ["config"])
    fit = layout.fit(frozenset(range(len(layout.count))), paired=True)
    return fit.rss, fit.df, fit.shared_seeds


def _describe_contexts(contexts: list[tuple], others: list[str], levels: dict[str, list[str]]) -> str:
    """Name the part of the design a comparison uses.

    "all" (every context), "batchnorm=true, init=he", "activation in {relu, elu}", or the
    contexts one by one when they are no product: "activation=relu/init=he; ...".
    """
    if not others:
        return "all"
    if not contexts:
        return "none"
    present = [sorted({c[i] for c in contexts}, key=levels[o].index) for i, o in enumerate(others)]
    if len(contexts) == int(np.prod([len(p) for p in present])):  # a product: name each factor
        parts = [f"{o}={p[0]}" if len(p) == 1 else f"{o} in {{{', '.join(p)}}}"
                 for o, p in zip(others, present) if len(p) < len(levels[o])]
        return ", ".join(parts) if parts else "all"
    return "; ".join("/".join(f"{o}={v}" for o, v in zip(others, c)) for c in contexts)


def _contexts_with(layout: _Layout, factors: list[str], others: list[str],
                   need: dict[str, list[str]]) -> list[tuple]:
    """The combinations of ``others`` in which every combination of the ``need`` levels ran."""
    pos = {f: i for i, f in enumerate(factors)}
    candidates = list(dict.fromkeys(tuple(cell[pos[o]] for o in others) for cell in layout.code))
    combos = list(itertools.product(*need.values()))

    def cell(ctx: tuple, combo: tuple) -> tuple:
        assign = {**dict(zip(others, ctx)), **dict(zip(need, combo))}
        return tuple(assign[f] for f in factors)

    return [ctx for ctx in candidates if all(layout.has(cell(ctx, combo)) for combo in combos)]


class Comparison(NamedTuple):
    """A main effect as a contrast of cells: level minus reference, averaged over ``contexts``.

    ``weights``: cell (a tuple of levels, in the order of the design's factors) -> weight;
    +1/len(contexts) for the level's cells, -1/len(contexts) for the reference's.
    """

    factor: str
    level: str
    baseline: str
    contexts: list[tuple]
    weights: dict[tuple, float]
    over: str


def main_comparisons(data: pd.DataFrame, levels: dict[str, list[str]]) -> list[Comparison]:
    """Every main effect of a ``design()``: each factor's levels against its reference."""
    factors = list(levels)
    if not factors:
        return []
    layout = _Layout(data, factors)
    out = []
    for factor in factors:
        others = [f for f in factors if f != factor]
        ref = levels[factor][0]
        for level in levels[factor][1:]:
            contexts = _contexts_with(layout, factors, others, {factor: [level, ref]})
            weights: dict[tuple, float] = {}
            for ctx in contexts:
                for lev, sign in ((level, 1.0), (ref, -1.0)):
                    assign = {**dict(zip(others, ctx)), factor: lev}
                    weights[tuple(assign[f] for f in factors)] = sign / len(contexts)
            out.append(Comparison(factor, level, ref, contexts, weights,
                                  _describe_contexts(contexts, others, levels)))
    return out


def main_effects(trials: pd.DataFrame, alpha: float = 1 - CI_LEVEL,
                 unreplicated: str = POOLED) -> pd.DataFrame:
    """One row per factor level against the factor's reference level (``EFFECT_COLUMNS``).

    ``unreplicated``: the interval of a full factorial with one seed per cell, ``POOLED``
    (the interactions pooled as error) or ``LENTH`` (Lenth's PSE; two-level factors only).
    """
    if unreplicated not in (POOLED, LENTH):
        raise ValueError(f"unreplicated={unreplicated!r}: expected {POOLED!r} or {LENTH!r}")
    data, levels = design(trials)
    factors = list(levels)
    if not factors:
        return _finish([])
    layout = _Layout(data, factors)
    rows = [_row(MAIN, c.factor, c.level, c.baseline, layout, c.weights, alpha, c.contexts, c.over)
            for c in main_comparisons(data, levels)]
    if _is_unreplicated_factorial(data, levels):
        fill = _lenth_rows if unreplicated == LENTH else _pooled_rows
        fill(rows, data, levels, alpha, layout.bounds)
    elif unreplicated == LENTH and (data.groupby(factors).size() == 1).all():
        raise NinsweepError("Lenth's PSE needs a full factorial of two-level factors with one seed per cell")
    return _finish(rows)


def _is_unreplicated_factorial(data: pd.DataFrame, levels: dict[str, list[str]]) -> bool:
    """Two or more factors, every cell of their full factorial ran, each exactly once."""
    factors = list(levels)
    counts = data.groupby(factors).size()
    full = int(np.prod([len(v) for v in levels.values()]))
    return len(factors) >= 2 and len(counts) == full and bool((counts == 1).all())


def additive_model(data: pd.DataFrame, levels: dict[str, list[str]]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The additive model's design matrix (intercept, then treatment dummies of each level
    against its factor's reference) and the (factor, level) of each dummy column."""
    columns: list[tuple[str, str]] = [(f, lev) for f, values in levels.items() for lev in values[1:]]
    X = np.ones((len(data), 1 + len(columns)))
    for j, (f, lev) in enumerate(columns, start=1):
        X[:, j] = (data[f].to_numpy() == lev).astype(float)
    return X, columns


def _pooled_rows(rows: list[dict[str, Any]], data: pd.DataFrame, levels: dict[str, list[str]],
                 alpha: float, bounds: tuple[float, float]) -> None:
    """Intervals of main effects from the additive model, the interactions pooled as error.

    In a full factorial with one trial per cell the additive model's dummy coefficient is
    the equal-weight average effect the rows already hold; only its interval is new.
    """
    X, columns = additive_model(data, levels)
    coef, se, df = additive_ols(X, data["y"].to_numpy(float))
    if df < 1:
        return
    t = float(t_quantile(1 - alpha / 2, df))
    for row in rows:
        j = 1 + columns.index((row["factor"], row["level"]))
        _set_interval(row, float(coef[j, 0]), float(se[j, 0]), t, df, pooled_method(df), bounds)


def _lenth_rows(rows: list[dict[str, Any]], data: pd.DataFrame, levels: dict[str, list[str]],
                alpha: float, bounds: tuple[float, float]) -> None:
    """Intervals of main effects from Lenth's PSE of all 2^k - 1 factorial contrasts."""
    if any(len(v) != 2 for v in levels.values()):
        raise NinsweepError("Lenth's PSE needs two-level factors: "
                            + ", ".join(f"{f} has {len(v)} levels" for f, v in levels.items() if len(v) != 2))
    signs = np.column_stack([np.where(data[f].to_numpy() == v[1], 1.0, -1.0) for f, v in levels.items()])
    contrasts, mains = two_level_contrasts(signs, data["y"].to_numpy(float))
    m = len(contrasts)
    pse = float(lenth_pse(contrasts)[0])
    df = lenth_df(m)
    t = float(t_quantile(1 - alpha / 2, df))
    for row, j in zip(rows, mains):
        _set_interval(row, float(contrasts[j, 0]), pse, t, df, lenth_method(m), bounds)


def two_level_contrasts(signs: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Every factorial contrast of a 2^k design, mean at + minus mean at -: ((2^k - 1) x S,
    the rows of the k main effects). ``signs``: n x k of +-1 (+1: the level, -1: the reference)."""
    n, k = signs.shape
    Y = np.asarray(Y, dtype=float).reshape(n, -1)
    subsets = [s for size in range(1, k + 1) for s in itertools.combinations(range(k), size)]
    columns = np.column_stack([np.prod(signs[:, list(s)], axis=1) for s in subsets])
    return (columns.T @ Y) * (2.0 / n), [subsets.index((i,)) for i in range(k)]


def _set_interval(row: dict[str, Any], estimate: float, se: float, t: float, df: float,
                  method: str, bounds: tuple[float, float]) -> None:
    # The additive model has no seed indicators (one seed per cell): the rows are unpaired.
    row.update(effect_pct=estimate, df=df, interval_method=method, note="", paired=False)
    if not se > 1e-12 * max(1.0, abs(estimate)):
        row.update(note=NOTE_FLAT, ci_low_pct=estimate, ci_high_pct=estimate)
        return
    row["p"] = float(t_two_sided_p(estimate / se, df))
    row["ci_low_pct"], row["ci_high_pct"] = clip_interval(estimate - t * se, estimate + t * se, bounds)


def interactions(trials: pd.DataFrame, alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """Two-way interactions: one row per (level of A, level of B) against (ref A, ref B)."""
    data, levels = design(trials)
    factors = list(levels)
    if len(factors) < 2:
        return _finish([])
    layout = _Layout(data, factors)
    rows = []
    for fa, fb in itertools.combinations(factors, 2):
        others = [f for f in factors if f not in (fa, fb)]
        ra, rb = levels[fa][0], levels[fb][0]
        for la, lb in itertools.product(levels[fa][1:], levels[fb][1:]):
            contexts = _contexts_with(layout, factors, others, {fa: [la, ra], fb: [lb, rb]})
            weights: dict[tuple, float] = {}
            for ctx in contexts:
                for a, b, sign in ((la, lb, 1), (la, rb, -1), (ra, lb, -1), (ra, rb, 1)):
                    assign = {**dict(zip(others, ctx)), fa: a, fb: b}
                    weights[tuple(assign[f] for f in factors)] = sign / len(contexts)
            rows.append(_row(INTERACTION, f"{fa} x {fb}", f"{la} x {lb}", f"{ra} x {rb}", layout, weights,
                             alpha, contexts, _describe_contexts(contexts, others, levels)))
    return _finish(rows)


def against_baseline(trials: pd.DataFrame, baseline: str, alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """Every config with finished trials minus the ``baseline`` config (a config label)."""
    labels = list(dict.fromkeys(trials["config"]))
    if baseline not in labels:
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        raise NinsweepError(f"--baseline {baseline!r}: no such config (configs: {shown})")
    data, _ = design(trials)
    if data.empty:
        return _finish([])
    layout = _Layout(data, ["config"])
    rows = []
    for label in dict.fromkeys(data["config"]):
        if label == baseline:
            continue
        contexts = [()] if layout.has((baseline,)) else []
        weights = {(label,): 1.0, (baseline,): -1.0} if contexts else {}
        rows.append(_row(BASELINE, CONFIG_FACTOR, label, baseline, layout, weights, alpha,
                         contexts, "all" if contexts else "none"))
    return _finish(rows)


def _row(kind: str, factor: str, level: str, baseline: str, layout: _Layout, weights: dict,
         alpha: float, contexts: list[tuple], over: str) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": kind, "factor": factor, "level": level, "baseline": baseline,
                           "contexts": len(contexts), "over": over}
    if not contexts:
        row.update(n=0, paired=False, note=NOTE_NO_CONTEXT)
        return row
    row.update(layout.contrast(weights, alpha))
    return row


def _finish(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    if df.empty:
        return df
    for col in ("n", "n_level", "n_baseline", "contexts"):
        df[col] = df[col].fillna(0).astype(int)
    df["paired"] = df["paired"].fillna(False).astype(bool)
    df["note"] = df["note"].fillna("")
    df["interval_method"] = df["interval_method"].astype(object).fillna("")
    df["p_holm"] = holm(df["p"].to_numpy(float))
    return df


def effects_table(trials: pd.DataFrame, baseline: Optional[str] = None,
                  alpha: float = 1 - CI_LEVEL, unreplicated: str = POOLED) -> pd.DataFrame:
    """Main effects, then interactions, then (with ``baseline``) each config against it."""
    parts = [main_effects(trials, alpha, unreplicated), interactions(trials, alpha)]
    if baseline is not None:
        parts.append(against_baseline(trials, baseline, alpha))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def design_summary(trials: pd.DataFrame) -> list[str]:
    """Sentences on the design: the factors, whether it is a full factorial, what is missing."""
    data, levels = design(trials)
    if not levels:
        return ["No grid key varies among the finished trials: there are no factor effects."]
    factors = list(levels)
    full = int(np.prod([len(v) for v in levels.values()]))
    ran = data.groupby(factors).ngroups
    parts = [f"{f} ({', '.join(levels[f])}; reference {levels[f][0]})" for f in factors]
    out = [f"Factors: {'; '.join(parts)}."]
    if ran == full:
        out.append(f"The finished trials cover all {full} cells of a full factorial: every effect "
                   f"averages over every combination of the other factors.")
    else:
        out.append(f"Not a full factorial: {ran} of the {full} cells have finished trials. Each "
                   f"comparison uses only the contexts where both of its levels ran, named in "
                   f"the column *over* (\"all\" when that is every context).")
    return out
