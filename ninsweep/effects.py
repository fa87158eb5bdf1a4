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
the trials involved (``statsmodels`` OLS, one indicator per cell). When seeds are shared
between cells the fit adds one indicator per seed, so the comparison is *paired by seed*
(a seed that is lucky in every cell does not count as noise); with two cells and complete
seeds this is exactly the paired t-test. Missing seeds are handled by the same fit. The 95%
confidence interval and the two-sided p-value are Student's t on the fit's residual
degrees of freedom (``t_test`` of the contrast); ``p_holm`` adjusts the p-values of one
family (main effects, interactions, baseline comparisons) with Holm's method
(``analysis.holm``, the one the config table uses). Intervals are clipped to what a
difference of two accuracies can be, [-100, 100] points. With one seed per cell there is
no residual variance: the effect is given, its interval and p-value are not.

The reference level of a factor is the library default when the grid has it (relu, no
BatchNorm, keras init, lr 0.1), else the first value in the grid's order.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import fields
from typing import Any, Optional

import numpy as np
import pandas as pd

from . import analysis as A
from .config import DataConfig, ModelConfig, TrainConfig
from .errors import NinsweepError

OBJECTIVE = "final_test_acc_pct"
OBJECTIVE_RANGE = (0.0, 100.0)  # what the objective can be: an accuracy in %
EFFECT_RANGE = (OBJECTIVE_RANGE[0] - OBJECTIVE_RANGE[1], OBJECTIVE_RANGE[1] - OBJECTIVE_RANGE[0])
CI_LEVEL = A.CI_LEVEL

MAIN = "main"
INTERACTION = "interaction"
BASELINE = "baseline"
CONFIG_FACTOR = "config"  # the ``factor`` of a row comparing whole configs

EFFECT_COLUMNS = ["kind", "factor", "level", "baseline", "effect_pct", "ci_low_pct", "ci_high_pct",
                  "p", "p_holm", "n", "n_level", "n_baseline", "contexts", "paired", "df", "over", "note"]

NOTE_ONE_SEED = "one seed per cell: no interval"
NOTE_NO_CONTEXT = "no context holds both levels"
NOTE_FLAT = "zero variance: no interval"


# --------------------------------------------------------------------------- design


def level_text(value: Any) -> str:
    """A factor level as text: ``true``/``false`` as in YAML, floats short (0.1, 1e-05)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return A._fmt_value(value)


def factor_columns(trials: pd.DataFrame) -> list[str]:
    """The grid keys of the trial table: activation, batchnorm, init, then the extra keys."""
    fixed = set(A.TRIAL_COLUMNS)
    return list(A.BASE_PARAMS) + [c for c in trials.columns if c not in fixed]


def _default_of(key: str) -> Any:
    """The library default of a grid key ("batchnorm", "train.lr"), or None."""
    section, _, name = key.rpartition(".")
    classes = {"": ModelConfig, "model": ModelConfig, "train": TrainConfig, "data": DataConfig}
    cls = classes.get(section)
    if cls is None or name not in {f.name for f in fields(cls)}:
        return None
    return level_text(getattr(cls(), name))


def design(trials: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(finished trials with one text column per factor, factor -> levels, reference first).

    Only factors with more than one level among the finished trials are returned.
    """
    done = trials[trials["status"] == A.FINISHED]
    done = done[np.isfinite(done[OBJECTIVE].to_numpy(float))]
    data = pd.DataFrame({"y": done[OBJECTIVE].to_numpy(float),
                         "seed": [level_text(s) for s in done["seed"]],
                         "config": done["config"].to_numpy()}, index=done.index)
    levels: dict[str, list[str]] = {}
    for key in factor_columns(trials):
        if key not in done.columns:
            continue
        text = [level_text(v) for v in done[key]]
        order = list(dict.fromkeys(text))
        if len(order) < 2:
            continue
        ref = _default_of(key)
        if ref in order:
            order.remove(ref)
            order.insert(0, ref)
        levels[key] = order
        data[key] = text
    return data, levels


# --------------------------------------------------------------------------- estimation


def _contrast(data: pd.DataFrame, weights: dict[tuple, float], cell_keys: list[str],
              alpha: float) -> dict[str, Any]:
    """The contrast sum(w * cell mean) over the rows of ``data`` in the weighted cells.

    OLS with one indicator per cell and, where seeds are shared, one per seed (paired).
    """
    cells = list(weights)
    cell_of = pd.MultiIndex.from_frame(data[cell_keys]) if len(cell_keys) > 1 else data[cell_keys[0]]
    index = {c if len(cell_keys) > 1 else c[0]: i for i, c in enumerate(cells)}
    rows = np.array([index.get(c, -1) for c in cell_of])
    used = data[rows >= 0]
    rows = rows[rows >= 0]
    y = used["y"].to_numpy(float)
    k = len(cells)
    X = np.zeros((len(y), k))
    X[np.arange(len(y)), rows] = 1.0
    L = np.array([weights[c] for c in cells], dtype=float)
    seeds = used["seed"].to_numpy()
    paired = False
    shared = pd.Series(rows).groupby(seeds).nunique()
    if (shared >= 2).any() and shared.size >= 2:
        # One indicator per seed but the first (the cell indicators carry the level).
        codes, uniques = pd.factorize(seeds)
        S = np.zeros((len(y), len(uniques) - 1))
        mask = codes > 0
        S[np.flatnonzero(mask), codes[mask] - 1] = 1.0
        Xp = np.hstack([X, S])
        Lp = np.concatenate([L, np.zeros(S.shape[1])])
        # Paired only if the contrast stays estimable (seeds connect the cells) and the seed
        # indicators leave residual degrees of freedom when the plain fit has some.
        rank, rank_p = np.linalg.matrix_rank(X), np.linalg.matrix_rank(Xp)
        if (np.allclose(Lp @ np.linalg.pinv(Xp) @ Xp, Lp, atol=1e-8)
                and (len(y) - rank_p >= 1 or len(y) - rank < 1)):
            X, L, paired = Xp, Lp, True
    out = {"n": len(y), "paired": paired, "effect_pct": np.nan, "ci_low_pct": np.nan,
           "ci_high_pct": np.nan, "p": np.nan, "df": np.nan, "note": ""}
    if not len(y):
        return out
    # The point estimate needs no variance: the contrast of the cell means (exact OLS).
    from statsmodels.regression.linear_model import OLS

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = OLS(y, X).fit()
        estimate = float(L @ fit.params)
        out["effect_pct"] = estimate
        df = float(fit.df_resid)
        out["df"] = df
        if df < 1:
            out["note"] = NOTE_ONE_SEED
            return out
        if not fit.ssr > 1e-12 * max(1.0, float(np.sum(y ** 2))):
            out.update(note=NOTE_FLAT, ci_low_pct=estimate, ci_high_pct=estimate)
            return out
        test = fit.t_test(L.reshape(1, -1))
        lo, hi = np.asarray(test.conf_int(alpha=alpha), dtype=float).ravel()
        out["p"] = float(np.asarray(test.pvalue).ravel()[0])
    out["ci_low_pct"], out["ci_high_pct"] = clip_interval(lo, hi, EFFECT_RANGE)
    return out


def clip_interval(lo: float, hi: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to what the quantity can be (NaN stays NaN)."""
    if np.isnan(lo) or np.isnan(hi):
        return lo, hi
    return float(min(max(lo, bounds[0]), bounds[1])), float(min(max(hi, bounds[0]), bounds[1]))


def _describe_contexts(contexts: list[tuple], others: list[str], levels: dict[str, list[str]]) -> str:
    """Name the part of the design a comparison uses.

    "all" (every context), "batchnorm=true, init=he", "activation in {relu, elu}", or the
    contexts one by one when they are no product: "activation=relu/init=he; ..."."""
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


def main_effects(trials: pd.DataFrame, alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """One row per factor level against the factor's reference level (``EFFECT_COLUMNS``)."""
    data, levels = design(trials)
    factors = list(levels)
    rows = []
    for factor in factors:
        others = [f for f in factors if f != factor]
        ref = levels[factor][0]
        present = data.groupby(others + [factor]).size() if others else data.groupby(factor).size()
        for level in levels[factor][1:]:
            contexts = _contexts_with(present, others, {factor: [level, ref]})
            weights: dict[tuple, float] = {}
            for ctx in contexts:
                weights[(*ctx, level)] = 1.0 / len(contexts)
                weights[(*ctx, ref)] = -1.0 / len(contexts)
            rows.append(_row(MAIN, factor, level, ref, data, weights, others + [factor], alpha,
                             contexts, _describe_contexts(contexts, others, levels)))
    return _finish(rows)


def interactions(trials: pd.DataFrame, alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """Two-way interactions: one row per (level of A, level of B) against (ref A, ref B)."""
    data, levels = design(trials)
    factors = list(levels)
    rows = []
    for fa, fb in itertools.combinations(factors, 2):
        others = [f for f in factors if f not in (fa, fb)]
        keys = others + [fa, fb]
        present = data.groupby(keys).size()
        ra, rb = levels[fa][0], levels[fb][0]
        for la, lb in itertools.product(levels[fa][1:], levels[fb][1:]):
            contexts = _contexts_with(present, others, {fa: [la, ra], fb: [lb, rb]})
            weights = {}
            for ctx in contexts:
                for a, b, sign in ((la, lb, 1), (la, rb, -1), (ra, lb, -1), (ra, rb, 1)):
                    weights[(*ctx, a, b)] = sign / len(contexts)
            rows.append(_row(INTERACTION, f"{fa} x {fb}", f"{la} x {lb}", f"{ra} x {rb}", data, weights,
                             keys, alpha, contexts, _describe_contexts(contexts, others, levels)))
    return _finish(rows)


def against_baseline(trials: pd.DataFrame, baseline: str, alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """Every config with finished trials minus the ``baseline`` config (a config label)."""
    labels = list(dict.fromkeys(trials["config"]))
    if baseline not in labels:
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        raise NinsweepError(f"--baseline {baseline!r}: no such config (configs: {shown})")
    data, _ = design(trials)
    rows = []
    for label in dict.fromkeys(data["config"]):
        if label == baseline:
            continue
        contexts = [()] if (data["config"] == baseline).any() else []
        weights = {(label,): 1.0, (baseline,): -1.0} if contexts else {}
        rows.append(_row(BASELINE, CONFIG_FACTOR, label, baseline, data, weights, ["config"], alpha,
                         contexts, "all" if contexts else "none"))
    return _finish(rows)


def _contexts_with(present: pd.Series, others: list[str], need: dict[str, list[str]]) -> list[tuple]:
    """The combinations of ``others`` in which every combination of the ``need`` levels ran."""
    have = set(present.index if isinstance(present.index, pd.MultiIndex)
               else [(v,) for v in present.index])
    combos = list(itertools.product(*need.values()))
    k = len(others)
    candidates = list(dict.fromkeys(key[:k] for key in have))
    return [ctx for ctx in candidates if all((*ctx, *combo) in have for combo in combos)]


def _row(kind: str, factor: str, level: str, baseline: str, data: pd.DataFrame, weights: dict,
         keys: list[str], alpha: float, contexts: list[tuple], over: str) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": kind, "factor": factor, "level": level, "baseline": baseline,
                           "contexts": len(contexts), "over": over}
    if not contexts:
        row.update(n=0, paired=False, note=NOTE_NO_CONTEXT)
        return row
    row.update(_contrast(data, weights, keys, alpha))
    positive = {c for c, w in weights.items() if w > 0}
    negative = {c for c, w in weights.items() if w < 0}
    cells = pd.MultiIndex.from_frame(data[keys]) if len(keys) > 1 else data[keys[0]]
    as_tuple = (lambda c: c) if len(keys) > 1 else (lambda c: (c,))
    tuples = [as_tuple(c) for c in cells]
    row["n_level"] = sum(t in positive for t in tuples)
    row["n_baseline"] = sum(t in negative for t in tuples)
    return row


def _finish(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    if df.empty:
        return df
    for col in ("n", "n_level", "n_baseline", "contexts"):
        df[col] = df[col].fillna(0).astype(int)
    df["paired"] = df["paired"].fillna(False).astype(bool)
    df["note"] = df["note"].fillna("")
    df["p_holm"] = A.holm(df["p"].to_numpy(float))
    return df


def effects_table(trials: pd.DataFrame, baseline: Optional[str] = None,
                  alpha: float = 1 - CI_LEVEL) -> pd.DataFrame:
    """Main effects, then interactions, then (with ``baseline``) each config against it."""
    parts = [main_effects(trials, alpha), interactions(trials, alpha)]
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
