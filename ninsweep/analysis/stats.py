"""The statistics every table, interval and test of ninsweep uses: one formula each.

- Intervals of a mean: Student's t over the seeds (``t_quantile``), at ``CI_LEVEL``, clipped to
  what the quantity can be (``clip_interval``); ``mean_ci`` per epoch for the curves' bands.
- Two configurations: Welch's two-sided t-test (``welch``: what
  ``scipy.stats.ttest_ind(equal_var=False)`` computes, without assuming equal variances).
- Many comparisons: Holm's step-down adjustment (``holm``), which controls the family-wise
  error rate at ``ALPHA`` without assuming independence.
- Unreplicated factorials (one seed per cell): least squares of the additive model with the
  interactions pooled as error (``additive_ols``), or Lenth's (1989) pseudo standard error of
  a two-level design's contrasts (``lenth_pse``, referred to Student's t on ``m / 3`` df).

Student's t comes from ``scipy.special``, because importing ``scipy.stats`` alone costs more
than reading a 1,600-trial experiment; the tests check both agree.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import special

# The one error convention of every interval ninsweep draws or prints, as the report states it.
ERROR_CONVENTION = (
    "**Error convention:** every interval in this report -- table columns, curve bands, error "
    "bars, effect intervals -- is a 95% confidence interval (Student's t over seeds: the seeds "
    "are the replicates), clipped to what the quantity can be (an accuracy in [0, 100] %, a "
    "loss >= 0, a difference of accuracies in [-100, 100] points). A config with one finished "
    "seed has no interval and no band. Two exceptions say so where they appear: main effects "
    "of a factorial with one seed per cell rest on the interactions pooled as error, and "
    "adaptive replication's decisions on intervals at the alpha it spends per look.")

ALPHA = 0.05
CI_LEVEL = 0.95


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out



def t_quantile(q: float, df: Any) -> Any:
    """Student's t quantile (``scipy.stats.t.ppf``) without importing scipy.stats."""
    return special.stdtrit(df, q)


def t_two_sided_p(t: Any, df: Any) -> Any:
    """2 P(T > |t|) for Student's t with ``df`` degrees of freedom (``scipy.special.stdtr``)."""
    return 2.0 * special.stdtr(df, -np.abs(t))


def welch(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Welch's t, its Welch-Satterthwaite df and two-sided p: ``ttest_ind(x, y, equal_var=False)``."""
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    with np.errstate(all="ignore"):
        t = (x.mean() - y.mean()) / np.sqrt(vx + vy)
        df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return float(t), float(df), float(t_two_sided_p(t, df))


def clip_interval(lo: float, hi: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """An interval cut to what the quantity can be (NaN stays NaN)."""
    if np.isnan(lo) or np.isnan(hi):
        return lo, hi
    return float(min(max(lo, bounds[0]), bounds[1])), float(min(max(hi, bounds[0]), bounds[1]))


def mean_ci(wide: pd.DataFrame, bounds: tuple[float, float]) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Per row (epoch) of a seeds-as-columns frame: mean, 95% CI low / high (clipped), count.

    The interval is the report's one error convention; NaN where fewer than 2 seeds.
    """
    mean, count = wide.mean(axis=1), wide.count(axis=1)
    sem = wide.std(axis=1, ddof=1) / np.sqrt(count.clip(lower=1))
    with np.errstate(invalid="ignore"):
        t = pd.Series(t_quantile(0.5 + CI_LEVEL / 2, (count - 1).clip(lower=1).to_numpy(float)), index=wide.index)
    half = (t * sem).where(count >= 2)
    return (mean, (mean - half).clip(lower=bounds[0], upper=bounds[1]),
            (mean + half).clip(lower=bounds[0], upper=bounds[1]), count)


def additive_ols(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Least squares of every column of ``Y`` (n x S) on ``X`` (n x p): (coefficients p x S,
    standard errors p x S, residual df).

    Each column is one response (one study; the simulation tests pass thousands at once) with
    its own residual variance, rss / df. The standard errors are NaN when df is 0.
    """
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    pinv = np.linalg.pinv(X)
    coef = pinv @ Y
    df = int(X.shape[0] - np.linalg.matrix_rank(X))
    if df < 1:
        return coef, np.full_like(coef, np.nan), df
    residual_var = ((Y - X @ coef) ** 2).sum(axis=0) / df
    unscaled = np.diag(pinv @ pinv.T)  # diag of (X'X)^+: pinv(X) pinv(X)' is (X'X)^+
    return coef, np.sqrt(unscaled[:, None] * residual_var[None, :]), df


def lenth_pse(contrasts: np.ndarray) -> np.ndarray:
    """Lenth's pseudo standard error of the m contrasts in each column of ``contrasts`` (m x S).

    s0 = 1.5 median |c|; PSE = 1.5 median of the |c| < 2.5 s0 (the large, real effects
    trimmed). Lenth (1989), "Quick and easy analysis of unreplicated factorials",
    Technometrics 31:469-473. Refer c / PSE to Student's t on ``lenth_df(m)``.
    """
    a = np.abs(np.asarray(contrasts, dtype=float).reshape(len(contrasts), -1))
    s0 = 1.5 * np.median(a, axis=0)
    kept = np.where(a < 2.5 * s0, a, np.nan)
    with np.errstate(all="ignore"):
        # Every |c| trimmed (s0 = 0: half the contrasts are exactly 0) leaves no estimate.
        pse = 1.5 * np.nanmedian(np.where(np.isnan(kept).all(axis=0), 0.0, kept), axis=0)
    return np.where(np.isnan(kept).all(axis=0), np.nan, pse)


def lenth_df(m: int) -> float:
    """Lenth's reference degrees of freedom for m contrasts: m / 3."""
    return m / 3.0
