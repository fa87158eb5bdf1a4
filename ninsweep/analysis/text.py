"""The analysis as text for a terminal: number cells, the status table, the results table.

``format_status`` is what ``ninsweep status`` prints, ``summary_table`` what ``ninsweep run``
prints at its end (the results table, then the main effects: ``main_effects_text``); the
number cells (``fmt_num``, ``fmt_pm``, ``fmt_ci``, ``fmt_p``) are the Markdown report's too, so a
number reads the same everywhere.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from ninsweep import fmt
from ninsweep.analysis.effects import main_effects
from ninsweep.analysis.reference import REFERENCE_EPOCHS
from ninsweep.analysis.results import Experiment, replication_record
from ninsweep.analysis.stats import ALPHA
from ninsweep.analysis.tabulate import objective_of, statistic_columns, tables, trial_table
from ninsweep.experiment_dir import ERROR, INCOMPLETE, PENDING, RESULT_FILE, STATUSES, STOPPED
from ninsweep.metrics import PEAK_GPU_MEM_MB, difference_unit, digits, heading
from ninsweep.storage import newest_checkpointed_epoch


class StatusRow(NamedTuple):
    """One trial's line of a status table (accuracies in percent; NaN or None: unknown)."""

    trial: str
    status: str
    epochs_done: int
    epochs_planned: int
    test_acc_pct: Any = None
    best_test_acc_pct: Any = None
    train_loss: Any = None
    test_loss: Any = None
    images_per_s: Any = None
    wall_time_s: Any = None
    peak_gpu_mib: Any = None


def status_table(rows: Sequence[StatusRow]) -> list[str]:
    """The one table of trial states: ``ninsweep status`` and a running sweep's progress.

    A ``peak GPU MiB`` column appears when a trial ran on CUDA: the figure to choose the
    fractional GPU per trial from.
    """
    peaks = any(not pd.isna(row.peak_gpu_mib) for row in rows if row.peak_gpu_mib is not None)
    header = ["trial", "status", "epoch", "test acc", "best", "train loss", "test loss",
              "img/s", "wall time"] + (["peak GPU MiB"] if peaks else [])
    cells = [[row.trial, row.status, f"{row.epochs_done}/{row.epochs_planned}",
              fmt_pct(row.test_acc_pct), fmt_pct(row.best_test_acc_pct),
              fmt_num(row.train_loss, digits=4), fmt_num(row.test_loss, digits=4),
              fmt_num(row.images_per_s, digits=0), fmt.duration(row.wall_time_s)]
             + ([fmt_num(row.peak_gpu_mib, digits=0)] if peaks else []) for row in rows]
    return fmt.table(header, cells, align="<<>>>>>>>>")


def format_status(exp: Experiment) -> str:
    """Each trial's state, epochs and latest metrics: what ``ninsweep status`` prints."""
    counts = exp.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    peaks = {}
    for t in exp.trials:
        values = pd.to_numeric(t.metrics.get(PEAK_GPU_MEM_MB, np.zeros(0)), errors="coerce")
        if np.isfinite(values).any():
            peaks[t.name] = float(np.nanmax(values))
    trials = trial_table(exp)
    head, *rows = status_table([
        StatusRow(row.trial, row.status, row.epochs_done, row.epochs_planned,
                  row.final_test_acc_pct, row.best_test_acc_pct, row.final_train_loss,
                  row.final_test_loss, row.images_per_s, row.wall_time_s, peaks.get(row.trial))
        for row in trials.itertuples(index=False)])
    lines = [f"experiment {exp.path}: {len(exp.trials)} trials: {summary}"]
    wave = replication_line(exp)
    if wave:
        lines.append(wave)
    lines.append(head)
    for row, line in zip(trials.itertuples(index=False), rows):
        lines.append(line)
        if row.error:
            lines.append(f"    error: {row.error}")
        checkpointed = _checkpointed_beyond(exp, row.trial, row.epochs_done)
        if checkpointed:
            lines.append(f"    checkpointed through epoch {checkpointed}/{row.epochs_planned} "
                         f"({RESULT_FILE} is behind; resume continues from the checkpoint)")
    return "\n".join(lines)


def replication_line(exp: Experiment) -> Optional[str]:
    """Adaptive replication's state, from replication.json: the wave, the decisions so far."""
    record = replication_record(exp.path)
    if not record:
        return None
    states = Counter(d["state"] for d in record.get("decisions", []))
    decided = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none yet"
    waves = len(record.get("waves", []))
    return (f"replication: {'done after' if record.get('finished') else 'at'} wave {waves - 1} "
            f"(seeds {record.get('min_seeds')}..{record.get('max_seeds')}); main effects: "
            f"{decided}")


def _checkpointed_beyond(exp: Experiment, name: str, epochs_done: int) -> Optional[int]:
    """The newest checkpointed epoch of a trial when its results stop earlier (a driver
    killed between a checkpoint's upload and logging that epoch), else None."""
    trial = next((t for t in exp.trials if t.name == name), None)
    if trial is None or trial.trial_dir is None:
        return None
    newest = newest_checkpointed_epoch(trial.trial_dir)
    return newest if newest is not None and newest > epochs_done else None


def summary_table(exp: Experiment, alpha: float = ALPHA) -> str:
    """The terminal tables (what ``ninsweep run`` prints at its end): a status line, the
    results table, then the main effects when a grid key varies (``main_effects_text``)."""
    trials, configs, sig = tables(exp, alpha)
    counts = exp.counts()
    status = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    head = f"experiment {exp.name}" + (f" (space {exp.space_name})" if exp.space_name else "")
    effects = main_effects_text(trials)
    return (f"{head}: {len(exp.trials)} trials: {status}\n" + format_table(configs, sig, alpha)
            + ("\n" + effects if effects else ""))


def main_effects_text(trials: pd.DataFrame) -> str:
    """The main effects (``analysis.effects.main_effects``) as a fixed-width table with its
    notes; "" when no grid key varies among the finished trials. The effects CSV and the
    report hold them too, with the interactions."""
    main = main_effects(trials)
    if main.empty:
        return ""
    metric = objective_of(trials)[0]
    places = digits(metric)
    effect = f"effect ({difference_unit(metric)})"
    headers = ["factor", "level vs reference", effect, "95% CI", "p (Holm)", "over"]
    rows = [[r.factor, f"{r.level} vs {r.baseline}", fmt_num(r.effect_pct, signed=True, digits=places),
             r.note if r.note else fmt_ci(r.ci_low_pct, r.ci_high_pct, places), fmt_p(r.p_holm),
             r.over] for r in main.itertuples()]
    out = fmt.table(headers, rows, align="".join(">" if h in {effect, "p (Holm)"} else "<"
                                                 for h in headers), rule=True)
    paired = " paired by seed," if main["paired"].any() else ""
    notes = [f"main effects on the final {heading(metric)}: the level's mean minus the reference's,",
             "averaged over the combinations of the other factors where both ran (over); 95% CI:",
             f"Student's t,{paired} on the fit's residual df; p (Holm): over the main effects."]
    methods = sorted({m for m in main["interval_method"] if m and m != "seeds"})
    if methods:
        notes.append(f"one seed per cell: intervals from {', '.join(methods)} "
                     "(what that assumes: docs/statistics.md).")
    return "\n".join(out + [""] + notes) + "\n"


def format_table(config_df: pd.DataFrame, significance_df: Optional[pd.DataFrame] = None,
                 alpha: float = ALPHA) -> str:
    """A fixed-width text table of ``config_table`` (plus ``significance`` when given)."""
    if config_df.empty:
        return "(no configs)\n"
    sig = {}
    if significance_df is not None and not significance_df.empty:
        sig = significance_df.set_index("config").to_dict("index")
    lab4 = "report_acc_pct" in config_df.columns
    unfinished = (config_df[["n_incomplete", "n_error", "n_pending"]].sum(axis=1) > 0).any()
    metric = objective_of(config_df)[0]  # what the table is ranked by, and shows
    column, places = statistic_columns(metric), digits(metric)
    headers = ["#", "config", "n", f"{heading(metric)} (mean ± std)", "95% CI", "min", "max"]
    if lab4:
        headers += ["report", "diff"]
    if sig:
        headers += ["p (Holm)", "vs best"]
    if unfinished:
        headers += ["not finished"]
    rows = []
    for _, c in config_df.iterrows():
        row = [str(c["rank"]), str(c["config"]), str(c["n"]),
               fmt_pm(c[column["mean"]], c[column["std"]], places),
               fmt_ci(c[column["ci_low"]], c[column["ci_high"]], places),
               fmt_num(c[column["min"]], digits=places), fmt_num(c[column["max"]], digits=places)]
        if lab4:
            row += [fmt_num(c["report_acc_pct"], none="none"), fmt_num(c["diff_vs_report_pct"], signed=True)]
        if sig:
            s = sig.get(c["config"], {})
            row += [fmt_p(s.get("p_holm", np.nan)), str(s.get("verdict", ""))]
        if unfinished:
            row += [fmt_unfinished(c)]
        rows.append(row)
    right = {"#", "n", "min", "max", "report", "diff", "p (Holm)"}
    out = fmt.table(headers, rows, align="".join(">" if h in right else "<" for h in headers),
                    rule=True)
    notes = ["n: finished seeds; statistics over finished trials only."]
    if sig:
        notes.append(f"vs best: Welch's t-test against the best config, Holm-corrected, alpha {alpha:g}.")
    if lab4:
        notes.append(f"report: the lab report's single run after {REFERENCE_EPOCHS} epochs; diff = ours - report.")
    return "\n".join(out + [""] + notes) + "\n"


def fmt_num(v: Any, signed: bool = False, none: str = "-", digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)) or pd.isna(v):
        return none
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_pct(v: Any) -> str:
    text = fmt_num(v)
    return text if text == "-" else text + "%"


def fmt_pm(mean: float, std: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not pd.isna(std) else f"{mean:.{digits}f}"


def fmt_ci(lo: float, hi: float, digits: int = 2) -> str:
    return "-" if pd.isna(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_p(p: float) -> str:
    if pd.isna(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_unfinished(c: pd.Series) -> str:
    parts = [f"{int(c[k])} {name}" for k, name in
             (("n_stopped", STOPPED), ("n_incomplete", INCOMPLETE), ("n_error", ERROR),
              ("n_pending", PENDING)) if c.get(k, 0)]
    return ", ".join(parts)

