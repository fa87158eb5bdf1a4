"""Per trial, per configuration (over seeds), and each configuration against the best.

``trial_table``: one row per planned trial, its final and best numbers. ``config_table``:
per configuration (the trial params without ``seed``) the mean, sample std (ddof=1), a 95%
confidence interval of the mean (Student's t) and the range of the objective over its
finished seeds, ranked by the objective. ``significance``: every configuration against the
best one by Welch's two-sided t-test, Holm-corrected (``analysis.stats``): "significantly
lower" when the Holm-adjusted p-value is below ``alpha``, else the difference is inside
seed-to-seed noise. Accuracies are in percent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ninsweep.analysis.labels import base_params, extra_params, seed_of, trial_label
from ninsweep.analysis.reference import REFERENCE_ACC_PCT
from ninsweep.analysis.results import Experiment, compared
from ninsweep.analysis.stats import ALPHA, CI_LEVEL, holm, t_quantile, welch
from ninsweep.experiment_dir import ERROR, INCOMPLETE, PENDING, STOPPED
from ninsweep.metrics import (
    DEFAULT_OBJECTIVE,
    EPOCH,
    EPOCH_TIME_S,
    IMAGES_PER_S,
    OBJECTIVE_METRICS,
    TEST_ACC,
    TEST_LOSS,
    TIME_TOTAL_S,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    is_accuracy,
    objective_column,
)
from ninsweep.space.schema import FINAL_STAGE

# The trial-table column holding each objective metric's final value (accuracies in %).
OBJECTIVE_COLUMNS = {metric: objective_column(metric) for metric in OBJECTIVE_METRICS}

VERDICT_BEST = "best"
VERDICT_LOWER = "significantly lower"
VERDICT_SAME = "not significantly different"
VERDICT_FEW = "needs >= 2 seeds"
VERDICT_NONE = "no finished trials"
VERDICT_FLAT = "untestable: zero variance"


TUNED_PREFIX = "tuned."  # trial-table column of a tuned key's value: tuned.train.lr
TRIAL_COLUMNS = [
    "trial", "config", "activation", "batchnorm", "init", "seed", "status",
    "epochs_done", "epochs_planned", "final_test_acc_pct", "best_test_acc_pct", "best_epoch",
    "best_by", "final_val_acc_pct", "final_train_acc_pct", "final_train_loss", "final_test_loss",
    "final_val_loss", "wall_time_s", "images_per_s", "error", "trial_dir",
]


def trial_table(exp: Experiment) -> pd.DataFrame:
    """One row per planned trial (pending ones too), in manifest order.

    "final" is the last recorded epoch (for an unfinished trial: the latest so far).
    Accuracies are percentages. ``wall_time_s`` is the sum of ``epoch_time_s`` (training
    plus evaluation) over the kept epochs, or Ray's ``time_total_s`` of the last record
    when epoch times are missing; ``images_per_s`` is the mean over epochs.
    """
    rows = []
    extras_order: list[str] = []
    tuned_order: list[str] = []  # with tune: the tuned keys, drawn or chosen per trial
    for t in exp.trials:
        base, extra = base_params(t), extra_params(t)
        for k in extra:
            if k not in extras_order:
                extras_order.append(k)
        row: dict[str, Any] = {
            "trial": t.name,
            "config": trial_label(t, base, extra),
            **base, "seed": seed_of(t), **extra,
            "status": t.status, "epochs_done": t.epochs_done, "epochs_planned": t.epochs_planned,
            **_history_summary(t.metrics),
            "error": t.error or "",
            "trial_dir": t.trial_dir.name if t.trial_dir else "",
        }
        if t.stage is not None:
            row["stage"] = t.stage
            row.update({f"{TUNED_PREFIX}{k}": v for k, v in t.tuned.items()})
            for key in t.tuned:
                if f"{TUNED_PREFIX}{key}" not in tuned_order:
                    tuned_order.append(f"{TUNED_PREFIX}{key}")
        rows.append(row)
    staged = ["stage", *tuned_order] if any(t.stage for t in exp.trials) else []
    columns = TRIAL_COLUMNS[:6] + staged + extras_order + TRIAL_COLUMNS[6:]
    df = pd.DataFrame(rows, columns=columns)
    df["epochs_done"] = df["epochs_done"].astype(int)
    df["epochs_planned"] = df["epochs_planned"].astype(int)
    df["best_epoch"] = df["best_epoch"].astype("Int64")
    df.attrs["objective"] = exp.objective  # what _config_table and the effects rank by
    return df


def objective_of(trials: pd.DataFrame) -> tuple[str, str, str]:
    """(metric, mode, trial-table column) of the objective a trial table was made for."""
    objective = trials.attrs.get("objective") or DEFAULT_OBJECTIVE
    return objective["metric"], objective["mode"], OBJECTIVE_COLUMNS[objective["metric"]]


def _history_summary(h: dict[str, np.ndarray]) -> dict[str, Any]:
    """A trial's final and best numbers from its history (numpy: this runs per trial).

    The best epoch is chosen on the validation split (``val_acc``) when the trial has one,
    else on the test set (then "best" is optimistic: the test set chose it); ``best_by``
    says which. ``best_test_acc_pct`` is the test accuracy *at* that epoch.
    """
    row: dict[str, Any] = {
        "final_test_acc_pct": np.nan, "best_test_acc_pct": np.nan, "best_epoch": np.nan,
        "best_by": "", "final_val_acc_pct": np.nan,
        "final_train_acc_pct": np.nan, "final_train_loss": np.nan, "final_test_loss": np.nan,
        "final_val_loss": np.nan,
        "wall_time_s": np.nan, "images_per_s": np.nan}
    epochs = h[EPOCH]
    if not len(epochs):
        return row

    def col(name: str) -> np.ndarray:
        values = h.get(name)
        if values is None:
            return np.full(len(epochs), np.nan)
        return values if values.dtype.kind == "f" else pd.to_numeric(values, errors="coerce").astype(float)

    test_acc = col(TEST_ACC)
    val_acc = col(VAL_ACC)
    row["final_test_acc_pct"] = 100.0 * test_acc[-1]
    row["final_val_acc_pct"] = 100.0 * val_acc[-1]
    chooser, by = (val_acc, VAL_ACC) if np.isfinite(val_acc).any() else (test_acc, TEST_ACC)
    if np.isfinite(chooser).any():
        best = int(np.nanargmax(chooser))
        row.update(best_test_acc_pct=100.0 * test_acc[best], best_epoch=int(epochs[best]), best_by=by)
    row["final_train_acc_pct"] = 100.0 * col(TRAIN_ACC)[-1]
    row["final_train_loss"] = float(col(TRAIN_LOSS)[-1])
    row["final_test_loss"] = float(col(TEST_LOSS)[-1])
    row["final_val_loss"] = float(col(VAL_LOSS)[-1])
    epoch_times = col(EPOCH_TIME_S)
    if np.isfinite(epoch_times).any():
        row["wall_time_s"] = float(np.nansum(epoch_times))
    elif TIME_TOTAL_S in h:
        row["wall_time_s"] = float(col(TIME_TOTAL_S)[-1])
    speeds = col(IMAGES_PER_S)
    if np.isfinite(speeds).any():
        row["images_per_s"] = float(np.nanmean(speeds))
    return row



def config_table(exp: Experiment) -> pd.DataFrame:
    """Per config (the params without the seed), over seeds, sorted by mean accuracy.

    Only finished trials count toward the statistics (``n``); ``n_incomplete``,
    ``n_error`` and ``n_pending`` count the others. Accuracies are percentages. For a lab4
    space, ``report_acc_pct`` is the lab report's number and ``diff_vs_report_pct`` ours
    minus it.
    """
    return _config_table(trial_table(exp), exp.is_lab4)


def config_table_of(trials: pd.DataFrame, lab4: bool = False) -> pd.DataFrame:
    """The per-config table of a trial table already made (a subset of one, say)."""
    return _config_table(trials, lab4)


def _config_table(trials: pd.DataFrame, lab4: bool) -> pd.DataFrame:
    """Grouped aggregations, one pass per column (a loop over configs cost 10 ms each)."""
    if "stage" in trials:  # tuning trials chose values; the table compares the final ones
        trials = trials[trials["stage"] == FINAL_STAGE]
    fixed = set(TRIAL_COLUMNS)
    extra_cols = [c for c in trials.columns if c not in fixed]
    if trials.empty:
        return pd.DataFrame()
    first = trials.groupby("config", sort=False).head(1).set_index("config")
    labels = first.index
    status = trials["status"]

    def count(mask: pd.Series) -> pd.Series:
        return mask.groupby(trials["config"], sort=False).sum().reindex(labels, fill_value=0).astype(int)

    done = trials[compared(trials)]
    metric, mode, objective_column = objective_of(trials)
    accuracy = _seed_statistics(done, "final_test_acc_pct", labels, (0.0, 100.0))
    n = accuracy["n"]

    def done_mean(col: str) -> pd.Series:
        values = pd.to_numeric(done[col], errors="coerce")
        return values.groupby(done["config"], sort=False).mean().reindex(labels)

    df = pd.DataFrame({
        "config": labels,
        "activation": first["activation"], "batchnorm": first["batchnorm"], "init": first["init"],
        **{c: first[c] for c in extra_cols},
        "n_trials": trials.groupby("config", sort=False).size().reindex(labels),
        "n": n,
        "n_incomplete": count(status == INCOMPLETE),
        # Only when a scheduler stopped some: the CSVs of every other experiment keep their columns.
        **({"n_stopped": count(status == STOPPED)} if (status == STOPPED).any() else {}),
        "n_error": count(status == ERROR),
        "n_pending": count(status == PENDING),
        "epochs_planned": trials.groupby("config", sort=False)["epochs_planned"].max().reindex(labels).astype(int),
        # The final test accuracy over seeds, for every objective (the columns scripts read).
        **{column: accuracy[key] for key, column in statistic_columns(TEST_ACC).items()},
        "mean_best_test_acc_pct": done_mean("best_test_acc_pct"),
        "mean_final_train_loss": done_mean("final_train_loss"),
        "mean_final_test_loss": done_mean("final_test_loss"),
        "mean_wall_time_s": done_mean("wall_time_s"),
        "mean_images_per_s": done_mean("images_per_s"),
        # The space's objective (test_acc by default: then the same as mean_test_acc_pct):
        # what the table is ranked by and the best config chosen on.
        "mean_objective": done_mean(objective_column), "std_objective":
            pd.to_numeric(done[objective_column], errors="coerce").groupby(
                done["config"], sort=False).std(ddof=1).reindex(labels),
    }).reset_index(drop=True)
    if metric != TEST_ACC:  # the same statistics of the objective, named after it
        bounds = (0.0, 100.0) if is_accuracy(metric) else (-np.inf, np.inf)
        objective = _seed_statistics(done, objective_column, labels, bounds)
        for key, column in statistic_columns(metric).items():
            if key != "n":  # n stays the finished seeds of the ranking
                df[column] = objective[key].to_numpy()
    if lab4:
        refs = [REFERENCE_ACC_PCT.get(label) if not extra_cols else None for label in labels]
        df["report_acc_pct"] = [np.nan if r is None else r for r in refs]
        df["diff_vs_report_pct"] = df["mean_test_acc_pct"] - df["report_acc_pct"]
    df.attrs["objective"] = trials.attrs.get("objective") or dict(DEFAULT_OBJECTIVE)
    df = df.sort_values(["mean_objective", "config"], ascending=[mode == "min", True], na_position="last",
                        kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df



def statistic_columns(metric: str) -> dict[str, str]:
    """The config table's columns of a metric's statistics over seeds: n, mean, std, the 95%
    CI of the mean and the range. The final test accuracy keeps the names scripts have read
    since the first release (``mean_test_acc_pct``, ``ci95_low_pct``); any other objective
    has them named after it (``mean_test_loss``, ``ci95_low_test_loss``)."""
    if metric == TEST_ACC:
        return {"n": "n", "mean": "mean_test_acc_pct", "std": "std_test_acc_pct",
                "ci_low": "ci95_low_pct", "ci_high": "ci95_high_pct",
                "min": "min_test_acc_pct", "max": "max_test_acc_pct"}
    name = objective_column(metric).removeprefix("final_")
    return {"n": "n", "mean": f"mean_{name}", "std": f"std_{name}",
            "ci_low": f"ci95_low_{name}", "ci_high": f"ci95_high_{name}",
            "min": f"min_{name}", "max": f"max_{name}"}


def _seed_statistics(done: pd.DataFrame, column: str, labels: pd.Index,
                     bounds: tuple[float, float]) -> dict[str, pd.Series]:
    """Per config: n, mean, sample std (ddof=1), the 95% t interval of the mean (clipped to
    ``bounds``: what the quantity can be) and the range of ``column`` over finished seeds."""
    values = pd.to_numeric(done[column], errors="coerce")
    values = values[np.isfinite(values.to_numpy(float))]
    by = values.groupby(done.loc[values.index, "config"], sort=False)
    n = by.count().reindex(labels, fill_value=0).astype(int)
    mean, std = by.mean().reindex(labels), by.std(ddof=1).reindex(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = t_quantile(0.5 + CI_LEVEL / 2, (n - 1).clip(lower=1).to_numpy())
        half = pd.Series(np.where(n >= 2, t * std.to_numpy(float) / np.sqrt(n.clip(lower=1)), np.nan),
                         index=labels)
    return {"n": n, "mean": mean, "std": std.where(n >= 2),
            "ci_low": (mean - half).clip(lower=bounds[0], upper=bounds[1]),
            "ci_high": (mean + half).clip(lower=bounds[0], upper=bounds[1]),
            "min": by.min().reindex(labels), "max": by.max().reindex(labels)}


def significance(exp: Experiment, alpha: float = ALPHA) -> pd.DataFrame:
    """Each config against the best (highest mean) by Welch's t-test, Holm-corrected.

    Columns: config, n, mean_test_acc_pct, best_config, diff_vs_best_pct, t_stat, df
    (Welch-Satterthwaite), p_value (two-sided, uncorrected), p_holm (adjusted over the
    configs tested against the best), significant (p_holm < alpha) and verdict. Needs >= 2
    finished seeds in both configs; otherwise the verdict says so.
    """
    trials = trial_table(exp)
    return _significance(trials, _config_table(trials, False), alpha)


def _significance(trials: pd.DataFrame, configs: pd.DataFrame, alpha: float) -> pd.DataFrame:
    cols = ["config", "n", "mean_test_acc_pct", "best_config", "diff_vs_best_pct", "t_stat", "df",
            "p_value", "p_holm", "significant", "verdict"]
    if configs.empty:
        return pd.DataFrame(columns=cols)
    finished = trials[compared(trials)]
    objective_column = objective_of(trials)[2]
    # Tested on the objective (final test accuracy unless the space names another); the
    # best is the first of the config table, which is ranked by it.
    samples = {label: pd.to_numeric(g[objective_column], errors="coerce").dropna().to_numpy(float)
               for label, g in finished.groupby("config", sort=False)}
    ranked = configs.dropna(subset=["mean_objective"])
    best = ranked.iloc[0]["config"] if len(ranked) else None
    best_x = samples.get(best, np.array([]))
    rows = []
    for _, c in configs.iterrows():
        label = c["config"]
        x = samples.get(label, np.array([]))
        row = {"config": label, "n": len(x), "mean_test_acc_pct": c["mean_test_acc_pct"],
               "best_config": best, "diff_vs_best_pct": np.nan, "t_stat": np.nan, "df": np.nan,
               "p_value": np.nan, "p_holm": np.nan, "significant": False, "verdict": ""}
        if len(x) == 0:
            row["verdict"] = VERDICT_NONE
        elif label == best:
            row["diff_vs_best_pct"] = 0.0
            row["verdict"] = VERDICT_BEST
        else:
            row["diff_vs_best_pct"] = float(x.mean() - best_x.mean())
            if len(x) < 2 or len(best_x) < 2:
                row["verdict"] = VERDICT_FEW
            elif np.ptp(x) == 0 and np.ptp(best_x) == 0:
                row["verdict"] = VERDICT_FLAT
            else:
                row["t_stat"], row["df"], row["p_value"] = welch(x, best_x)
        rows.append(row)
    df = pd.DataFrame(rows, columns=cols)
    df["p_holm"] = holm(df["p_value"].to_numpy(float))
    tested = df["p_holm"].notna()
    df.loc[tested, "significant"] = df.loc[tested, "p_holm"] < alpha
    df.loc[tested, "verdict"] = np.where(df.loc[tested, "significant"], VERDICT_LOWER, VERDICT_SAME)
    df["significant"] = df["significant"].astype(bool)
    return df



class Tables(NamedTuple):
    trials: pd.DataFrame  # trial_table
    configs: pd.DataFrame  # config_table
    significance: pd.DataFrame  # significance


def tables(exp: Experiment, alpha: float = ALPHA) -> Tables:
    """The three tables at once (each computed once)."""
    trials = trial_table(exp)
    configs = _config_table(trials, exp.is_lab4)
    return Tables(trials, configs, _significance(trials, configs, alpha))

