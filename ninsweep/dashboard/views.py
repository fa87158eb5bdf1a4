"""The dashboard's views as JSON, built from the analysis tables alone.

Every number here comes from a table the analysis computes (``analysis.export_tables``: the
tables ``export`` writes; ``effects.effects_table``; the report's curve statistics
``report.mean_ci`` / ``report._by_epoch`` / ``report.log_axis``) and is worded by the same
formatters as the console and the Markdown report (``analysis.fmt_*``, ``fmt.duration``,
``fmt.clock``). Nothing is computed twice: the page only draws and lays out.

``build_view(exp)`` is one experiment's page: its trials (status, epoch of epochs, latest
metrics, ETA), the per-config table, the factor effects, the parallel coordinates of the grid
keys against the objective, and which curves there are. ``curves_view(...)`` is the curves of
one metric per configuration: the mean over seeds and its 95% CI band (the report's error
convention), unfinished trials as thin lines.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Optional

import numpy as np
import pandas as pd

from ninsweep import fmt
from ninsweep.analysis.curves import by_epoch, curve_histories, log_axis
from ninsweep.analysis.effects import INTERVAL_SEEDS, design_summary, factor_columns
from ninsweep.analysis.export import export_tables
from ninsweep.analysis.results import Experiment, TrialRecord, compared
from ninsweep.analysis.stats import ALPHA, ERROR_CONVENTION, mean_ci
from ninsweep.analysis.tabulate import VERDICT_BEST, objective_of
from ninsweep.analysis.text import fmt_ci, fmt_num, fmt_p, fmt_pct, fmt_pm, fmt_unfinished
from ninsweep.experiment_dir import ERROR, FINISHED, PENDING, RUNNING, STATUSES
from ninsweep.fmt import value_text
from ninsweep.metrics import (
    EPOCH,
    EPOCH_TIME_S,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    is_accuracy,
)

VIEW_FORMAT = 1
# The curves a page offers, in this order after the objective's metric.
CURVE_METRICS = (TEST_ACC, TEST_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS)
METRIC_LABELS = {TEST_ACC: "test accuracy (%)", TRAIN_ACC: "train accuracy (%)",
                 VAL_ACC: "validation accuracy (%)", TEST_LOSS: "test loss",
                 TRAIN_LOSS: "training loss", VAL_LOSS: "validation loss"}


def clean(value: Any) -> Any:
    """JSON-safe: NaN / inf / NA -> None, numpy scalars -> Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _numbers(values: Iterable[float], digits: int = 6) -> list[Optional[float]]:
    out = []
    for v in values:
        v = float(v)
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


def status_words(statuses: Iterable[str]) -> list[str]:
    """The analysis's words in its order, then any other (``running``, a future word)."""
    present = list(dict.fromkeys(statuses))
    order = [RUNNING, *STATUSES]
    return [s for s in order if s in present] + [s for s in present if s not in order]


def curve_metrics(exp: Experiment) -> list[str]:
    """Metrics some trial has a finite value of: the objective's first."""
    objective = exp.objective["metric"]
    order = [objective] + [m for m in CURVE_METRICS if m != objective]
    have = [m for m in order if any(
        m in t.metrics and len(t.metrics[m]) and np.isfinite(np.asarray(t.metrics[m], dtype=float)).any()
        for t in exp.trials)]
    return have


def build_view(exp: Experiment, statuses: Optional[dict[str, str]] = None, *, alpha: float = ALPHA,
               baseline: Optional[str] = None, version: int = 0, tables=None) -> dict[str, Any]:
    """One experiment's page (everything but the curves: ``curves_view``).

    ``statuses``: the live status word per trial (``LiveExperiment.live_statuses``); default
    the analysis's. ``tables``: ``analysis.export_tables(exp, alpha, baseline)`` if already made.
    """
    trials, configs, effects = tables if tables is not None else export_tables(exp, alpha, baseline)
    statuses = statuses or {t.name: t.status for t in exp.trials}
    counts = Counter(statuses.get(t.name, t.status) for t in exp.trials)
    words = status_words(counts)
    metric, mode, _ = objective_of(trials)
    return clean({
        "format": VIEW_FORMAT,
        "version": version,
        "experiment": {
            "name": exp.name, "path": str(exp.path), "space": exp.space_name,
            "created": (exp.manifest or {}).get("created"),
            "objective": {"metric": metric, "mode": mode, "label": METRIC_LABELS.get(metric, metric)},
            "n_trials": len(exp.trials),
            "counts": [{"status": w, "n": counts[w]} for w in words],
            "summary": ", ".join(f"{counts[w]} {w}" for w in words),
            "epochs_left": int(sum(max(0, t.epochs_planned - t.epochs_done) for t in exp.trials
                                   if statuses.get(t.name, t.status) not in (FINISHED, ERROR))),
        },
        "error_convention": ERROR_CONVENTION.replace("**", ""),
        "trials": _trials_view(exp, trials, statuses),
        "configs": _configs_view(configs, trials),
        "effects": _effects_view(trials, effects),
        "parcoords": _parcoords_view(trials),
        "curve_metrics": [{"metric": m, "label": METRIC_LABELS.get(m, m)} for m in curve_metrics(exp)],
    })


# --------------------------------------------------------------------------- trials


def _trials_view(exp: Experiment, trials: pd.DataFrame, statuses: dict[str, str]) -> dict[str, Any]:
    by_name = {t.name: t for t in exp.trials}
    has_val = trials["final_val_acc_pct"].notna().any()
    head = ["trial", "config", "seed", "status", "epoch", "test acc", "best", *(["val acc"] if has_val else []),
            "train loss", "test loss", "img/s", "wall time", "ETA"]
    rows = []
    for r in trials.itertuples(index=False):
        t = by_name[r.trial]
        status = statuses.get(r.trial, r.status)
        cells = [r.trial, r.config, str(r.seed), status, f"{r.epochs_done}/{r.epochs_planned}",
                 fmt_pct(r.final_test_acc_pct), fmt_pct(r.best_test_acc_pct),
                 *([fmt_pct(r.final_val_acc_pct)] if has_val else []),
                 fmt_num(r.final_train_loss, digits=4), fmt_num(r.final_test_loss, digits=4),
                 fmt_num(r.images_per_s, digits=0), fmt.duration(r.wall_time_s),
                 _eta_text(t, status)]
        rows.append({"cells": cells, "status": status, "error": r.error or ""})
    return {"head": head, "rows": rows}


def trial_seconds_left(trial: TrialRecord) -> Optional[float]:
    """A trial's remaining epochs times its own mean epoch time; None before its first."""
    left = trial.epochs_planned - trial.epochs_done
    times = trial.metrics.get(EPOCH_TIME_S)
    if left <= 0 or times is None or not np.isfinite(times).any():
        return None
    return left * float(np.nanmean(times))


def _eta_text(trial: TrialRecord, status: str) -> str:
    if status in (FINISHED, ERROR, PENDING):
        return "-"
    left = trial_seconds_left(trial)
    return fmt.clock(left) if left is not None else "-"


# --------------------------------------------------------------------------- configs


def _configs_view(configs: pd.DataFrame, trials: pd.DataFrame) -> dict[str, Any]:
    """The per-config table as ``export`` writes it (results-configs.csv), worded as the
    Markdown report words it."""
    if configs.empty:
        return {"head": [], "rows": [], "columns": []}
    metric, _, _ = objective_of(trials)
    lab4 = "report_acc_pct" in configs.columns
    other_objective = metric != TEST_ACC
    head = ["#", "config", "n", "test acc. % (mean ± std)", "95% CI", "min – max"]
    if other_objective:
        head += [f"{metric} (objective, mean ± std)"]
    if lab4:
        head += ["report %", "ours − report"]
    head += ["Δ best", "p (Holm)", "verdict", "train loss", "test loss", "time / trial", "not finished"]
    rows = []
    for c in configs.to_dict("records"):
        cells = [str(c["rank"]), c["config"], str(c["n"]), fmt_pm(c["mean_test_acc_pct"], c["std_test_acc_pct"]),
                 fmt_ci(c["ci95_low_pct"], c["ci95_high_pct"]),
                 "-" if pd.isna(c["min_test_acc_pct"])
                 else f"{c['min_test_acc_pct']:.2f} – {c['max_test_acc_pct']:.2f}"]
        if other_objective:
            cells.append("-" if pd.isna(c["mean_objective"]) else
                         f"{c['mean_objective']:.4g}" + ("" if pd.isna(c["std_objective"])
                                                         else f" ± {c['std_objective']:.2g}"))
        if lab4:
            cells += [fmt_num(c["report_acc_pct"], none="none"), fmt_num(c["diff_vs_report_pct"], signed=True)]
        cells += [fmt_num(c.get("diff_vs_best_pct", np.nan), signed=True), fmt_p(c.get("p_holm", np.nan)),
                  str(c.get("verdict") or ""), fmt_num(c["mean_final_train_loss"], digits=3),
                  fmt_num(c["mean_final_test_loss"], digits=3), fmt.duration(c["mean_wall_time_s"]),
                  fmt_unfinished(pd.Series(c)) or "-"]
        rows.append({"cells": cells, "best": c.get("verdict") == VERDICT_BEST,
                     "values": {k: c[k] for k in ("config", "n", "mean_test_acc_pct", "std_test_acc_pct",
                                                  "ci95_low_pct", "ci95_high_pct", "mean_objective")}})
    return {"head": head, "rows": rows}


# --------------------------------------------------------------------------- effects


def _effects_view(trials: pd.DataFrame, effects: pd.DataFrame) -> dict[str, Any]:
    head = ["kind", "factor", "level vs reference", "effect (points)", "95% CI", "p", "p (Holm)", "n",
            "paired", "over"]
    rows = []
    for r in effects.itertuples(index=False):
        # An interval not over seeds says what it rests on (pooled interactions, Lenth's PSE).
        method = getattr(r, "interval_method", "") or ""
        interval = fmt_ci(r.ci_low_pct, r.ci_high_pct) + (
            f" ({method})" if method and method != INTERVAL_SEEDS else "")
        rows.append({
            "cells": [r.kind, r.factor, f"{r.level} vs {r.baseline}", fmt_num(r.effect_pct, signed=True),
                      interval if not r.note else r.note,
                      fmt_p(r.p), fmt_p(r.p_holm), f"{r.n_level} + {r.n_baseline}",
                      "yes" if r.paired else "no", r.over],
            "kind": r.kind, "label": f"{r.factor}: {r.level} vs {r.baseline}" + ("" if r.over == "all" else " *"),
            "effect": r.effect_pct, "lo": r.ci_low_pct, "hi": r.ci_high_pct,
        })
    return {"head": head, "rows": rows, "design": " ".join(design_summary(trials)),
            "axis": "effect on the objective (" + ("percentage points" if is_accuracy(
                objective_of(trials)[0]) else objective_of(trials)[0]) + ")"}


# --------------------------------------------------------------------------- parallel coordinates


def _parcoords_view(trials: pd.DataFrame) -> dict[str, Any]:
    """One line per finished trial: its grid keys (the factors: more than one level) against
    its final objective (the trial table's column the statistics use)."""
    metric, _, column = objective_of(trials)
    done = trials[compared(trials)]
    y = pd.to_numeric(done[column], errors="coerce")
    done = done[np.isfinite(y.to_numpy(float))]
    dims = []
    for key in factor_columns(trials):
        if key not in done.columns:
            continue
        text = [value_text(v) for v in done[key]]
        levels = list(dict.fromkeys(text))
        if len(levels) < 2:
            continue
        try:  # numeric grid levels (train.lr) in numeric order
            levels = sorted(levels, key=float)
        except ValueError:
            pass
        code = {level: i for i, level in enumerate(levels)}
        dims.append({"label": key, "values": [code[v] for v in text],
                     "tickvals": list(range(len(levels))), "ticktext": levels})
    label = METRIC_LABELS.get(metric, metric) + " (final)"
    values = pd.to_numeric(done[column], errors="coerce").to_numpy(float)
    return {"dimensions": dims, "objective": {"label": label, "values": _numbers(values)},
            "trials": list(done["trial"]), "n": int(len(done))}


# --------------------------------------------------------------------------- curves


def curves_view(exp: Experiment, trials: pd.DataFrame, configs: pd.DataFrame, metric: str) -> dict[str, Any]:
    """One metric per configuration and epoch: mean over seeds, 95% CI band (n >= 2), the
    unfinished trials as thin lines; ``log``: the report's rule for a log axis."""
    percent = is_accuracy(metric)
    scale = 100.0 if percent else 1.0
    bounds = (0.0, 100.0) if percent else (0.0, np.inf)
    grouped = curve_histories(exp, trials)
    order = [c for c in (configs["config"] if not configs.empty else []) if c in grouped]
    order += [c for c in grouped if c not in order]
    out, means = [], []
    for label in order:
        mean_from, thin = grouped[label]
        wide = by_epoch(mean_from, metric) * scale
        if wide.empty:
            continue
        mean, lo, hi, count = mean_ci(wide, bounds)
        means.append(mean)
        lines = []
        for h in thin:
            values = h.get(metric)
            if values is None:
                continue
            lines.append({"epoch": [int(e) for e in h[EPOCH]],
                          "value": _numbers(np.asarray(values, dtype=float) * scale)})
        out.append({"config": label, "n": len(mean_from), "epoch": [int(e) for e in mean.index],
                    "mean": _numbers(mean), "lo": _numbers(lo.where(count >= 2)),
                    "hi": _numbers(hi.where(count >= 2)), "band": bool((count >= 2).any()),
                    "thin": lines})
    return clean({"metric": metric, "label": METRIC_LABELS.get(metric, metric), "percent": percent,
                  "log": log_axis(means, bounds), "configs": out})
