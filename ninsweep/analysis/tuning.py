"""Per-cell tuning (``tune:``) in numbers: what each cell chose, and its tuning curve.

A cell's tuning curve is the expected best validation score of k tuning trials drawn at
random from the ones it ran, for k = 1..budget (Dodge et al. 2019, "Show Your Work:
Improved Reporting of Experimental Results", eq. 1): with the B scores sorted ascending,
E[max of k] = sum_i v_(i) [(i/B)^k - ((i-1)/B)^k], draws with replacement from the observed
scores; its spread is the standard deviation of that maximum. Comparing the cells' curves
says whether the ranking of the cells depends on the tuning budget: a cell that wins only
with many trials wins by its tuning, not at every budget.

A tuning trial's score is its last reported value of ``tune.select_on`` on the validation
split; a trial that reported none (it failed before its first epoch) has no score and is
left out of its cell's curve (the table says how many).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from ninsweep.analysis.labels import base_params, extra_params, trial_label
from ninsweep.analysis.results import Experiment
from ninsweep.space.schema import FINAL_STAGE, TUNE_STAGE


def cell_label(trial) -> str:
    return trial_label(trial, base_params(trial), extra_params(trial))


def tuning_scores(exp: Experiment) -> pd.DataFrame:
    """One row per tuning trial: cell (config label), trial, tuned values, score (NaN: none)."""
    select_on = exp.spec.tune.select_on
    rows = []
    for t in exp.trials:
        if t.stage != TUNE_STAGE:
            continue
        values = t.metrics.get(select_on)
        finite = values[np.isfinite(values)] if values is not None else np.array([])
        rows.append({"cell": cell_label(t), "trial": t.name, **t.tuned,
                     "score": float(finite[-1]) if len(finite) else np.nan})
    return pd.DataFrame(rows)


def expected_best(scores: np.ndarray, k: int, mode: str = "max") -> tuple[float, float]:
    """(E[best of k draws with replacement], its standard deviation) from observed scores."""
    values = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])
    if mode == "min":
        values = np.sort(-values)
    n = len(values)
    if n == 0:
        return np.nan, np.nan
    i = np.arange(1, n + 1)
    weights = (i / n) ** k - ((i - 1) / n) ** k  # P(the max of k draws is v_(i))
    mean = float(weights @ values)
    sd = float(np.sqrt(max(weights @ values**2 - mean**2, 0.0)))
    return (-mean if mode == "min" else mean), sd


def tuning_curves(scores: pd.DataFrame, budget: int, mode: str) -> pd.DataFrame:
    """One row per (cell, k): the expected best score of k tuning trials and its sd."""
    rows = []
    for cell, group in scores.groupby("cell", sort=False):
        for k in range(1, budget + 1):
            mean, sd = expected_best(group["score"].to_numpy(), k, mode)
            rows.append({"cell": cell, "k": k, "expected_best": mean, "sd": sd})
    return pd.DataFrame(rows, columns=["cell", "k", "expected_best", "sd"])


def rankings(curves: pd.DataFrame, mode: str) -> dict[int, list[str]]:
    """k -> the cells from best to worst by expected best score at budget k."""
    out = {}
    for k, group in curves.groupby("k"):
        ordered = group.sort_values("expected_best", ascending=(mode == "min"), kind="stable")
        out[int(k)] = list(ordered["cell"])
    return out


def ranking_changes(ranks: dict[int, list[str]]) -> list[tuple[int, int]]:
    """The budgets (k-1, k) between which the order of the cells changes."""
    ks = sorted(ranks)
    return [(a, b) for a, b in zip(ks, ks[1:]) if ranks[a] != ranks[b]]


def chosen_values(exp: Experiment) -> pd.DataFrame:
    """One row per cell: the values its final trials ran with, and the tuning trial they
    came from (empty until the cell's tuning has ended)."""
    rows: dict[str, dict] = {}
    for t in exp.trials:
        if t.stage == FINAL_STAGE and t.chosen_from:
            rows.setdefault(cell_label(t), {"cell": cell_label(t), **t.tuned,
                                             "chosen_from": t.chosen_from})
    return pd.DataFrame(list(rows.values()))


def describe_rankings(ranks: dict[int, list[str]], changes: list[tuple[int, int]]) -> Optional[str]:
    """A sentence on whether the cells' order depends on the budget; None with one cell."""
    if not ranks or len(next(iter(ranks.values()))) < 2:
        return None
    budget = max(ranks)
    if not changes:
        return (f"The cells rank in the same order at every budget from 1 to {budget} tuning "
                f"trials: {' > '.join(ranks[budget])}.")
    where = ", ".join(f"{a}->{b}" for a, b in changes)
    return (f"**The ranking of the cells changes with the tuning budget** (between k = {where}): "
            f"with 1 trial {' > '.join(ranks[1])}; with {budget}, {' > '.join(ranks[budget])}. "
            "A comparison at one budget does not hold at the others.")


def tuning_keys(exp: Experiment) -> set[str]:
    """The config keys the cells tune (train.lr), as the trials name them."""
    return {k for t in exp.trials if t.stage == TUNE_STAGE for k in t.tuned}
