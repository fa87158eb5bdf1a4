"""The Markdown report and its PNG figures, from the analysis tables alone.

``write_report(exp, out_dir)`` writes ``report.md`` and its figures into ``out_dir``
(default ``<exp>/report``): test accuracy, training loss and test loss per epoch (one
mean line per config, a band over its seeds), the final test accuracy per config, the
factor effects (a forest plot) and the two-way interactions. Everything is derived, so
every call regenerates the files (each written to a temporary file and renamed).

One error convention for the whole report, stated once at its top (``ERROR_CONVENTION``):
every interval, in the tables, the curve bands and the error bars, is a 95% confidence
interval of a mean (Student's t over seeds), clipped to what the metric can be. A config
with one finished seed has no interval and no band.

Matplotlib is imported only when figures are drawn, and only its object-oriented API
with the Agg canvas: no pyplot, no global backend switch, so a caller's own plotting
(a notebook) is left alone.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from . import analysis as A
from . import effects as E
from . import metrics as M
from .atomic import write_output
from .errors import NinsweepError
from .fmt import duration, markdown_cell, markdown_table, reason

REPORT_DIR = "report"
REPORT_FILE = "report.md"
REPORT_HTML = "report.html"  # report --html: the dashboard's views in one file
FIG_TEST_ACC = "test_accuracy.png"
FIG_TRAIN_LOSS = "train_loss.png"
FIG_TEST_LOSS = "test_loss.png"
FIG_FINAL_ACC = "final_accuracy.png"
FIG_EFFECTS = "effects.png"
FIG_INTERACTIONS = "interactions.png"

ERROR_CONVENTION = (
    "**Error convention:** every interval in this report -- table columns, curve bands, error "
    "bars, effect intervals -- is a 95% confidence interval (Student's t over seeds: the seeds "
    "are the replicates), clipped to what the quantity can be (an accuracy in [0, 100] %, a "
    "loss >= 0, a difference of accuracies in [-100, 100] points). A config with one finished "
    "seed has no interval and no band.")
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p"]

DPI = 120


def write_report(exp: A.Experiment, out_dir: Optional[os.PathLike | str] = None,
                 alpha: float = A.ALPHA, baseline: Optional[str] = None,
                 force: bool = False, html: bool = False) -> Path:
    """Write ``report.md`` and its figures into ``out_dir``; return the report's path.

    ``html``: also ``report.html`` beside it, one self-contained file with the dashboard's
    views (``ninsweep.dashboard.html``).

    ``baseline``: a config label; the report then compares every config with it too.
    ``<exp>/report`` (the default) is derived and regenerated on every call; in any other
    folder an existing report or figure is replaced only with ``force``, and no other place
    inside the experiment is written (``outputs.check_outputs``).
    """
    from .outputs import check_outputs

    out = Path(out_dir).expanduser() if out_dir is not None else exp.path / REPORT_DIR
    names = (REPORT_FILE, FIG_TEST_ACC, FIG_TRAIN_LOSS, FIG_TEST_LOSS, FIG_FINAL_ACC,
             FIG_EFFECTS, FIG_INTERACTIONS) + ((REPORT_HTML,) if html else ())
    if out.exists() and not out.is_dir():
        raise NinsweepError(f"{out}: not a directory (the report needs a folder)")
    check_outputs([out / n for n in names], exp.path,
                  [exp.path / REPORT_DIR / n for n in names], force=force, command="report")
    trials, configs, sig = A.tables(exp, alpha)
    effects = E.effects_table(trials, baseline)  # an unknown baseline fails before any file
    if html:
        from .dashboard.assets import served_assets

        served_assets()  # plotly missing: one line before any file
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NinsweepError(f"{out}: cannot create the report directory: {reason(err)}") from None

    figures = write_figures(exp, trials, configs, out)
    figures.update(write_effect_figures(exp, trials, effects, out))
    text = render_markdown(exp, trials, configs, sig, figures, alpha, effects, baseline)
    path = out / REPORT_FILE
    write_output(path, text)
    if html:
        from .dashboard.html import render_report

        write_output(out / REPORT_HTML, render_report(exp, alpha=alpha, baseline=baseline))
    return path


# --------------------------------------------------------------------------- Markdown


def render_markdown(exp: A.Experiment, trials: pd.DataFrame, configs: pd.DataFrame,
                    sig: pd.DataFrame, figures: dict[str, Optional[str]], alpha: float = A.ALPHA,
                    effects: Optional[pd.DataFrame] = None, baseline: Optional[str] = None) -> str:
    md: list[str] = [f"# ninsweep report: {exp.name}", ""]
    created = (exp.manifest or {}).get("created")
    space_file = (exp.manifest or {}).get("space_file")
    facts = [f"experiment `{exp.path}`"]
    if exp.space_name:
        facts.append(f"space `{exp.space_name}`" + (f" (`{space_file}`)" if space_file else ""))
    if created:
        facts.append(f"created {created}")
    facts.append(f"report generated {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    md += [" · ".join(facts), ""]
    md += [ERROR_CONVENTION, ""]

    counts = exp.counts()
    planned = sorted(set(trials["epochs_planned"]))
    md.append(f"**Trials:** {len(trials)} planned: " + ", ".join(
        f"{counts[s]} {s}" for s in A.STATUSES if counts[s]) + ". "
        f"**Epochs per trial:** {', '.join(map(str, planned))}.")
    md.append("")
    unfinished = len(trials) - counts[A.FINISHED]
    if unfinished:
        md += [f"> {unfinished} of {len(trials)} trials are not finished (running, interrupted, "
               f"failed or not started). They are listed below and in the curves, but only "
               f"finished trials count toward the statistics.", ""]

    md += ["## Final test accuracy by configuration", ""]
    if configs.empty or configs["n"].sum() == 0:
        md += ["No trial has finished yet: there are no final accuracies to compare.", ""]
    md += _config_markdown(configs, sig)
    md += ["",
           "n: finished seeds. Accuracies in %, final epoch. 95% CI: of the mean over seeds "
           "(see the error convention). Δ best: mean minus the best config's mean (points). "
           "p (Holm): Welch's t-test against the best config, Holm-adjusted. "
           "Losses: mean final cross-entropy. Time: mean wall time per trial (training + evaluation).",
           ""]

    md += ["## Which differences are real", ""]
    md += _significance_markdown(sig, configs, alpha)

    if effects is None:
        effects = E.effects_table(trials, baseline)
    md += ["## Factor effects", ""]
    md += _effects_markdown(trials, effects, figures)
    if baseline is not None:
        md += [f"## Against the baseline {baseline}", ""]
        md += _baseline_markdown(effects, baseline)

    if exp.is_lab4:
        md += ["## Against the lab report", ""]
        md += _reference_markdown(configs, trials) + _pooling_markdown(exp)

    md += ["## Figures", ""]
    captions = {
        FIG_FINAL_ACC: "Final test accuracy per configuration: mean with 95% CI over seeds, "
                       "one dot per seed" + (", the report's single run as a red cross" if exp.is_lab4 else "") + ".",
        FIG_TEST_ACC: "Test accuracy per epoch: mean over seeds (line, one marker per config) and its "
                      "95% CI (band, configs with >= 2 seeds); right: the last epochs, zoomed.",
        FIG_TRAIN_LOSS: "Training loss per epoch (mean of the epoch's batches): mean over seeds, 95% CI band.",
        FIG_TEST_LOSS: "Test loss per epoch: mean over seeds, 95% CI band.",
    }
    for fig in (FIG_FINAL_ACC, FIG_TEST_ACC, FIG_TRAIN_LOSS, FIG_TEST_LOSS):
        if figures.get(fig):
            md += [f"![{captions[fig]}]({figures[fig]})", "", f"*{captions[fig]}*", ""]
        else:
            md += [f"*{captions[fig].split(':')[0]}: no data yet.*", ""]

    md += ["## Trials", ""]
    md += _trials_markdown(trials)
    md += ["", _best_epoch_note(trials)]
    errors = trials[trials["status"] == A.ERROR]
    if len(errors):
        md += ["", "### Errors", ""]
        md += [f"- `{r.trial}` ({r.trial_dir}/error.txt): {markdown_cell(r.error)}" for r in errors.itertuples()]
    md.append("")
    return "\n".join(md)


def _config_markdown(configs: pd.DataFrame, sig: pd.DataFrame) -> list[str]:
    if configs.empty:
        return []
    s = sig.set_index("config").to_dict("index") if not sig.empty else {}
    lab4 = "report_acc_pct" in configs.columns
    head = ["#", "config", "n", "test acc. % (mean ± std)", "95% CI", "min – max"]
    if lab4:
        head += ["report %", "ours − report"]
    head += ["Δ best", "p (Holm)", "verdict", "train loss", "test loss", "time / trial"]
    if (configs[["n_incomplete", "n_error", "n_pending"]].sum(axis=1) > 0).any():
        head += ["not finished"]
    rows = []
    for _, c in configs.iterrows():
        si = s.get(c["config"], {})
        row = [str(c["rank"]), f"**{c['config']}**" if si.get("verdict") == A.VERDICT_BEST else c["config"],
               str(c["n"]), A.fmt_pm(c["mean_test_acc_pct"], c["std_test_acc_pct"]),
               A.fmt_ci(c["ci95_low_pct"], c["ci95_high_pct"]),
               "-" if pd.isna(c["min_test_acc_pct"]) else f"{c['min_test_acc_pct']:.2f} – {c['max_test_acc_pct']:.2f}"]
        if lab4:
            row += [A.fmt_num(c["report_acc_pct"], none="none"), A.fmt_num(c["diff_vs_report_pct"], signed=True)]
        row += [A.fmt_num(si.get("diff_vs_best_pct", np.nan), signed=True), A.fmt_p(si.get("p_holm", np.nan)),
                str(si.get("verdict", "")), A.fmt_num(c["mean_final_train_loss"], digits=3),
                A.fmt_num(c["mean_final_test_loss"], digits=3), duration(c["mean_wall_time_s"])]
        if len(row) < len(head):
            row.append(A.fmt_unfinished(c))
        rows.append(row)
    return markdown_table(head, rows, right={"#", "n", "report %", "ours − report", "Δ best", "p (Holm)",
                                         "train loss", "test loss", "time / trial"})


def _significance_markdown(sig: pd.DataFrame, configs: pd.DataFrame, alpha: float) -> list[str]:
    best = sig[sig["verdict"] == A.VERDICT_BEST]
    if best.empty:
        return ["No finished trials, nothing to compare.", ""]
    b = best.iloc[0]
    nb = int(b["n"])
    metric, mode, _ = A.objective_of(configs)
    if metric == A.M.TEST_ACC and mode == "max":
        out = [f"Best by mean final test accuracy: **{b['config']}** ({b['mean_test_acc_pct']:.2f}%, "
               f"n = {nb}).", ""]
    else:  # the space's objective: differences below are in its units
        best_value = configs.loc[configs["config"] == b["config"], "mean_objective"].iloc[0]
        out = [f"Best by the objective, {'highest' if mode == 'max' else 'lowest'} mean final "
               f"{metric}: **{b['config']}** ({best_value:.4g}, n = {nb}); differences below are "
               f"in {metric}{' points' if A.M.is_accuracy(metric) else ''}.", ""]

    def names(verdict: str, with_p: bool = False) -> list[str]:
        rows = sig[sig["verdict"] == verdict]
        return [f"{r.config} ({r.diff_vs_best_pct:+.2f} points" + (f", p = {A.fmt_p(r.p_holm)}" if with_p else "")
                + ")" for r in rows.itertuples()]

    lower, same = names(A.VERDICT_LOWER, True), names(A.VERDICT_SAME, True)
    few, flat = names(A.VERDICT_FEW), names(A.VERDICT_FLAT)
    none = list(sig[sig["verdict"] == A.VERDICT_NONE]["config"])
    if lower:
        out.append(f"- **Significantly lower than {b['config']}** (Holm-adjusted p < {alpha:g}): "
                   + "; ".join(lower) + ".")
    if same:
        out.append(f"- **Not distinguishable from {b['config']}** (inside seed-to-seed noise at this "
                   f"number of seeds): " + "; ".join(same) + ".")
    if few:
        why = f"{b['config']} has only {nb} finished seed" if nb < 2 else "fewer than 2 finished seeds"
        out.append(f"- **Not testable** ({why}; a t-test needs >= 2 per config): " + "; ".join(few) + ".")
    if flat:
        out.append("- **Not testable** (every seed gave the same accuracy in both configs): "
                   + "; ".join(flat) + ".")
    if none:
        out.append("- No finished trial yet: " + ", ".join(none) + ".")
    if len(out) == 2:
        out.append("- Only one configuration has finished trials.")
    out += ["",
            f"Method: each configuration's final test accuracies (one per seed) are compared with "
            f"the best configuration's by Welch's two-sided t-test (as `scipy.stats.ttest_ind` with "
            f"`equal_var=False`: the two spreads may differ). The p-values of the "
            f"{int(sig['p_value'].notna().sum())} comparisons are adjusted with Holm's step-down "
            f"method, which keeps the chance of any false \"significantly lower\" at {alpha:g}. "
            f"\"Not distinguishable\" is not \"equal\": with few seeds only large gaps are "
            f"detectable; more seeds narrow the intervals.", ""]
    return out


def _effects_markdown(trials: pd.DataFrame, effects: pd.DataFrame, figures: dict[str, Optional[str]]) -> list[str]:
    out = [" ".join(E.design_summary(trials)), ""]
    main = effects[effects["kind"] == E.MAIN]
    inter = effects[effects["kind"] == E.INTERACTION]
    if main.empty:
        return out
    out += ["### Main effects", ""]
    out += _effect_rows(main, "level vs reference")
    out += ["", "Effect: the level's mean final test accuracy minus the reference level's, in "
            "percentage points, averaged with equal weights over the combinations of the other "
            "factors in which both ran (*over*: that part of the design; \"all\": every "
            "combination). 95% CI and p: Student's t on an OLS fit of the trials involved, "
            "paired by seed where seeds are shared (*paired*); p (Holm): adjusted over the main "
            "effects.", ""]
    if figures.get(FIG_EFFECTS):
        caption = ("Factor effects: each level against its factor's reference, 95% CI; "
                   "interactions below the line. Zero: no effect.")
        out += [f"![{caption}]({figures[FIG_EFFECTS]})", "", f"*{caption}*", ""]
    supported = inter[inter["contexts"] > 0]
    unsupported = inter[inter["contexts"] == 0]
    if len(inter):
        out += ["### Two-way interactions", ""]
    if len(supported):
        out += _effect_rows(supported, "levels vs references")
        out += ["", "Interaction of A x B: (La,Lb) − (La,Rb) − (Ra,Lb) + (Ra,Rb), the change of A's "
                "effect when B goes from its reference to its level, in points; averaged over the "
                "other factors where all four cells ran. Near 0: the two effects simply add.", ""]
        if figures.get(FIG_INTERACTIONS):
            caption = ("Interaction plots: mean final test accuracy per level of one factor, one "
                       "line per level of the other (cell means averaged over the rest of the "
                       "balanced part). Parallel lines: no interaction.")
            out += [f"![{caption}]({figures[FIG_INTERACTIONS]})", "", f"*{caption}*", ""]
    if len(unsupported):
        pairs = "; ".join(f"{r.factor}: {r.level}" for r in unsupported.itertuples())
        out += [f"Not estimable from this design (the four cells never ran together): {pairs}.", ""]
    return out


def _effect_rows(rows: pd.DataFrame, level_head: str) -> list[str]:
    head = ["factor", level_head, "effect (points)", "95% CI", "p", "p (Holm)", "n", "paired", "over"]
    body = []
    for r in rows.itertuples():
        body.append([r.factor, f"{r.level} vs {r.baseline}", A.fmt_num(r.effect_pct, signed=True),
                     A.fmt_ci(r.ci_low_pct, r.ci_high_pct) if not r.note else r.note,
                     A.fmt_p(r.p), A.fmt_p(r.p_holm), f"{r.n_level} + {r.n_baseline}",
                     "yes" if r.paired else "no", r.over])
    return markdown_table(head, body, right={"effect (points)", "p", "p (Holm)", "n"})


def _baseline_markdown(effects: pd.DataFrame, baseline: str) -> list[str]:
    rows = effects[effects["kind"] == E.BASELINE].sort_values("effect_pct", ascending=False)
    if rows.empty:
        return [f"No other config has finished trials to compare with {baseline}.", ""]
    out = _effect_rows(rows, "config vs baseline")
    out += ["", f"Each config's mean final test accuracy minus {baseline}'s, in points, with the "
            f"same method as the factor effects (paired by seed where seeds are shared); "
            f"p (Holm): adjusted over these {int(rows['p'].notna().sum())} comparisons.", ""]
    return out


def _reference_markdown(configs: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    out = []
    ref = configs.dropna(subset=["report_acc_pct"])
    values = [v for v in A.REFERENCE_ACC_PCT.values() if v is not None]
    out.append(f"The lab report trained each configuration once for {A.REFERENCE_EPOCHS} epochs; "
               f"its {len(values)} numbers span {max(values) - min(values):.2f} points "
               f"({min(values):.2f}-{max(values):.2f}%) and were ranked as if every gap were real.")
    stds = configs["std_test_acc_pct"].dropna()
    if len(stds):
        out.append(f"Here the seed-to-seed standard deviation of one configuration is "
                   f"{stds.min():.2f}-{stds.max():.2f} points (median {stds.median():.2f}).")
    inside = [r.config for r in ref.itertuples()
              if not pd.isna(r.ci95_low_pct) and r.ci95_low_pct <= r.report_acc_pct <= r.ci95_high_pct]
    tested = [r for r in ref.itertuples() if not pd.isna(r.ci95_low_pct)]
    if tested:
        out.append(f"The report's number lies inside our 95% CI for {len(inside)} of {len(tested)} "
                   f"configurations" + (f" ({', '.join(inside)})" if inside else "") + ".")
    if "Maxout+BN+WI" in set(configs["config"]):
        out.append("The report has no Maxout number (its Maxout never trained).")
    planned = set(trials["epochs_planned"])
    if planned != {A.REFERENCE_EPOCHS}:
        out.append(f"**Caution:** these trials run {', '.join(map(str, sorted(planned)))} epochs, "
                   f"the report {A.REFERENCE_EPOCHS}: the comparison is only indicative.")
    return [" ".join(out), ""]


def _pooling_markdown(exp: A.Experiment) -> list[str]:
    """Which pool 2 our trials ran, against the report's table (max) and its code (avg)."""
    pools = sorted({((t.get("config") or {}).get("model") or {}).get("pool2", "max")
                    for t in (exp.manifest or {}).get("trials", [])})
    if not pools:
        return []
    text = (f"**Pool 2:** these trials ran {' and '.join(pools)} pooling after block 2. The "
            "report's Table 1 says max pooling there, but the code that produced its numbers "
            "(Lab4-NIN2 dlhw2_nin.py) used average pooling, as lab4.yaml does "
            "(`model.pool2: avg`)")
    if pools == ["avg"]:
        text += ": the comparison is with the network that produced the report's numbers."
    else:
        text += (": trials with max pooling ran the table's network, not the one that "
                 "produced the report's numbers.")
    return [text, ""]


def _trials_markdown(trials: pd.DataFrame) -> list[str]:
    head = ["trial", "config", "seed", "status", "epochs", "final test acc. %", "best %",
            "train loss", "test loss", "time", "images/s"]
    rows = []
    for r in trials.itertuples():
        rows.append([f"`{r.trial}`", r.config, str(r.seed), r.status, f"{r.epochs_done}/{r.epochs_planned}",
                     A.fmt_num(r.final_test_acc_pct), A.fmt_num(r.best_test_acc_pct),
                     A.fmt_num(r.final_train_loss, digits=3), A.fmt_num(r.final_test_loss, digits=3),
                     duration(r.wall_time_s), A.fmt_num(r.images_per_s, digits=0)])
    return markdown_table(head, rows, right={"seed", "epochs", "final test acc. %", "best %", "train loss",
                                        "test loss", "time", "images/s"})


def _best_epoch_note(trials: pd.DataFrame) -> str:
    chosen = set(trials["best_by"]) - {""}
    if chosen == {M.VAL_ACC}:
        return ("best %: the test accuracy at the epoch with the highest validation accuracy "
                "(data.val_size: the test set chose nothing).")
    text = ("best %: the highest test accuracy over the epochs -- chosen on the test set, so "
            "optimistic; a validation split (data.val_size) chooses the epoch honestly.")
    return text if M.VAL_ACC not in chosen else text + " Trials with a validation split used it."


# --------------------------------------------------------------------------- figures


def write_figures(exp: A.Experiment, trials: pd.DataFrame, configs: pd.DataFrame,
                  out: Path) -> dict[str, Optional[str]]:
    """Draw the four figures into ``out``; file name per figure, None where no data."""
    colors = _colors(list(configs["config"]) if not configs.empty else [])
    curves = _curves(exp, trials)
    done: dict[str, Optional[str]] = {}
    specs = [
        (FIG_TEST_ACC, M.TEST_ACC, 100.0, "test accuracy (%)", "Test accuracy per epoch", True),
        (FIG_TRAIN_LOSS, M.TRAIN_LOSS, 1.0, "training loss (cross-entropy)", "Training loss per epoch", True),
        (FIG_TEST_LOSS, M.TEST_LOSS, 1.0, "test loss (cross-entropy)", "Test loss per epoch", True),
    ]
    for name, metric, scale, ylabel, title, zoom in specs:
        fig = _curve_figure(curves, configs, colors, metric, scale, ylabel, f"{title} ({exp.name})", zoom)
        done[name] = _save(fig, out / name) if fig is not None else None
    fig = _final_figure(trials, configs, colors, exp)
    done[FIG_FINAL_ACC] = _save(fig, out / FIG_FINAL_ACC) if fig is not None else None
    return done


def _colors(labels: list[str]) -> dict[str, tuple[Any, str, str]]:
    """(colour, line style, marker) per config, in rank order, so every figure agrees.

    The marker and line style tell apart configs whose curves coincide (or share a colour).
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    n = cmap.N
    styles = ["-", "--", ":", "-."]
    return {lab: (cmap(i % n), styles[(i // n) % len(styles)] if len(labels) > n else styles[i % 2],
                  MARKERS[i % len(MARKERS)]) for i, lab in enumerate(labels)}


History = dict  # a trial's metrics: name -> one value per kept epoch (TrialRecord.metrics)


def _curves(exp: A.Experiment, trials: pd.DataFrame) -> dict[str, tuple[list[History], list[History]]]:
    """Config label -> (histories its mean is drawn from, other histories drawn thin).

    The mean and band come from the finished trials when the config has any (a mean over a
    set of seeds that changes along the x axis would jump where a trial stops); unfinished
    trials are then drawn as thin lines. A config with no finished trial is drawn from the
    trials that have started.
    """
    label_of = dict(zip(trials["trial"], trials["config"]))
    grouped: dict[str, tuple[list[History], list[History]]] = {}
    for t in exp.trials:
        if len(t.metrics[M.EPOCH]):
            done, other = grouped.setdefault(label_of[t.name], ([], []))
            (done if t.status == A.FINISHED else other).append(t.metrics)
    return {label: (done, other) if done else (other, []) for label, (done, other) in grouped.items()}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def mean_ci(wide: pd.DataFrame, bounds: tuple[float, float]) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Per row (epoch) of a seeds-as-columns frame: mean, 95% CI low / high (clipped), count.

    The interval is the report's one error convention; NaN where fewer than 2 seeds.
    """
    mean, count = wide.mean(axis=1), wide.count(axis=1)
    sem = wide.std(axis=1, ddof=1) / np.sqrt(count.clip(lower=1))
    with np.errstate(invalid="ignore"):
        t = pd.Series(A.t_quantile(0.5 + A.CI_LEVEL / 2, (count - 1).clip(lower=1).to_numpy(float)), index=wide.index)
    half = (t * sem).where(count >= 2)
    return (mean, (mean - half).clip(lower=bounds[0], upper=bounds[1]),
            (mean + half).clip(lower=bounds[0], upper=bounds[1]), count)


def _by_epoch(histories: list[History], metric: str) -> pd.DataFrame:
    """One row per epoch, one column per trial (NaN where a trial has no such epoch)."""
    last = max(int(h[M.EPOCH][-1]) for h in histories)
    wide = np.full((last, len(histories)), np.nan)
    for j, h in enumerate(histories):
        values = h.get(metric)
        if values is not None:
            ok = h[M.EPOCH] >= 1  # 1-based; anything else is no epoch to draw
            wide[h[M.EPOCH][ok] - 1, j] = pd.to_numeric(values[ok], errors="coerce")
    frame = pd.DataFrame(wide, index=pd.RangeIndex(1, last + 1, name=M.EPOCH))
    return frame[frame.notna().any(axis=1)]


def log_axis(means, bounds: tuple[float, float]) -> bool:
    """Whether a curve figure needs a log y axis: an unbounded metric (a loss) whose mean
    curves span more than a factor 50 (a diverged run dwarfs the rest)."""
    positive = [v for mean in means for v in np.asarray(mean, dtype=float) if v > 0]
    return bounds[1] == np.inf and len(positive) > 1 and max(positive) / min(positive) > 50


def off_scale(values: dict[str, float]) -> set[str]:
    """Configs whose level is far from the rest (a diverged run): left out of a zoom's y range.

    Far: more than 8 median absolute deviations and a quarter of the typical value away from
    the median of the configs' levels.
    """
    finite = {k: v for k, v in values.items() if np.isfinite(v)}
    if len(finite) < 3:
        return set()
    x = np.array(list(finite.values()))
    center = float(np.median(x))
    mad = float(np.median(np.abs(x - center)))
    limit = max(8 * mad, 0.25 * abs(center), 1e-9)
    return {k for k, v in finite.items() if abs(v - center) > limit}


def _curve_figure(curves, configs, colors, metric, scale, ylabel, title, zoom):
    from matplotlib.ticker import MaxNLocator

    if not curves:
        return None
    bounds = (0.0, 100.0) if metric in (M.TEST_ACC, M.TRAIN_ACC, M.VAL_ACC) else (0.0, np.inf)
    max_epoch = max(int(h[M.EPOCH].max()) for pair in curves.values() for hs in pair for h in hs)
    order = [c for c in configs["config"] if c in curves]
    stats_by_config = {}
    for label in order:
        wide = _by_epoch(curves[label][0], metric) * scale
        stats_by_config[label] = mean_ci(wide, bounds)
    start = int(max_epoch * 0.6) if max_epoch >= 10 else 1
    levels = {label: float(np.nanmedian(m[m.index >= start].to_numpy(float)))
              if m[m.index >= start].notna().any() else np.nan
              for label, (m, _, _, _) in stats_by_config.items()}
    outliers = off_scale(levels)
    # A zoom on the last epochs, or (short runs) on every epoch without the diverged configs.
    zoom = zoom and (max_epoch >= 10 or bool(outliers))
    # Losses that span decades (a diverged run): a log axis keeps the others readable.
    log_y = log_axis([stats_by_config[label][0] for label in order], bounds)
    fig = _figure(13.0 if zoom else 10.0, 5.5)
    axes = fig.subplots(1, 2, width_ratios=[3, 2]) if zoom else [fig.subplots()]
    any_thin = any(curves[label][1] for label in order)
    any_band = any((stats_by_config[label][3] >= 2).any() for label in order)
    step = max(1, max_epoch // 10)
    for ax_i, ax in enumerate(axes):
        lo_all, hi_all = [], []
        for i, label in enumerate(order):
            mean, lo, hi, count = stats_by_config[label]
            if ax_i == 1:
                keep = mean.index >= start
                mean, lo, hi, count = mean[keep], lo[keep], hi[keep], count[keep]
                if mean.dropna().empty:
                    continue
                if label not in outliers:
                    lo_all.append(np.nanmin(lo.fillna(mean).to_numpy(float)))
                    hi_all.append(np.nanmax(hi.fillna(mean).to_numpy(float)))
            color, style, marker = colors[label]
            n = len(curves[label][0])
            # Markers at staggered epochs: coinciding curves still show every config.
            ax.plot(mean.index, mean.to_numpy(float), color=color, linestyle=style, linewidth=1.6,
                    marker=marker, markersize=4.5, markevery=(i % step, step),
                    label=f"{label} (n={n}{'' if n >= 2 else ', no band'})")
            for h in curves[label][1]:
                x = np.asarray(h[M.EPOCH])
                y = np.asarray(pd.to_numeric(h[metric], errors="coerce"), dtype=float) * scale
                if ax_i == 1:
                    x, y = x[x >= start], y[x >= start]
                ax.plot(x, y, color=color, linestyle=style, linewidth=0.8, alpha=0.7)
            band = (count >= 2).to_numpy()
            if band.any():
                ax.fill_between(mean.index, lo.to_numpy(float), hi.to_numpy(float), where=band,
                                color=color, alpha=0.18, linewidth=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.2"
        ax.grid(True, alpha=0.3)
        if log_y:
            ax.set_yscale("log")
        if ax_i == 0:
            ax.set_ylabel(ylabel + (" (log scale)" if log_y else ""))
            ax.set_title(title)
        else:
            note = f"; off scale: {', '.join(sorted(outliers))}" if outliers else ""
            ax.set_title(f"zoom: epochs {start}-{max_epoch}{note}", fontsize=9 if note else None)
            ax.set_xlim(start, max_epoch)
            if lo_all:
                lo_v, hi_v = min(lo_all), max(hi_all)
                if log_y and lo_v > 0:
                    ax.set_ylim(lo_v / 1.1, hi_v * 1.1)
                else:
                    pad = max(0.05 * (hi_v - lo_v), 1e-3)
                    ax.set_ylim(lo_v - pad, hi_v + pad)
    handles, labels = axes[0].get_legend_handles_labels()
    if order:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
        if any_band:
            handles.append(Patch(color="grey", alpha=0.3))
            labels.append("band: 95% CI of the mean (n >= 2)")
        if any_thin:
            handles.append(Line2D([], [], color="grey", linewidth=0.8, alpha=0.7))
            labels.append("thin: an unfinished trial")
    fig.legend(handles, labels, loc="outside right upper", fontsize=9, title="config (seeds)",
               title_fontsize=9, frameon=False)
    return fig


def _final_figure(trials, configs, colors, exp):
    if configs.empty or configs["n"].sum() == 0:
        return None
    shown = configs[configs["n"] > 0]
    k = len(shown)
    fig = _figure(9.0, max(2.8, 0.45 * k + 1.6))
    ax = fig.subplots()
    finished = trials[trials["status"] == A.FINISHED]
    ys = np.arange(k)[::-1]  # the best on top
    lab4 = "report_acc_pct" in shown.columns
    labels_done = set()
    for y, (_, c) in zip(ys, shown.iterrows()):
        color = colors[c["config"]][0]
        seeds = finished[finished["config"] == c["config"]]["final_test_acc_pct"].to_numpy(float)
        ax.scatter(seeds, np.full(len(seeds), y) + _jitter(len(seeds)), s=12, color="black", alpha=0.55, zorder=2,
                   label=None if "seed" in labels_done else "one seed")
        labels_done.add("seed")
        if c["n"] >= 2:
            err = [[c["mean_test_acc_pct"] - c["ci95_low_pct"]], [c["ci95_high_pct"] - c["mean_test_acc_pct"]]]
            ax.errorbar(c["mean_test_acc_pct"], y, xerr=err, fmt="o", color=color, capsize=4,
                        markersize=7, linewidth=2, zorder=3,
                        label=None if "mean" in labels_done else "mean ± 95% CI")
            labels_done.add("mean")
        else:
            ax.plot(c["mean_test_acc_pct"], y, "o", color=color, markersize=7, zorder=3,
                    markerfacecolor="white", label=None if "one" in labels_done else "single seed (no CI)")
            labels_done.add("one")
        if lab4 and not pd.isna(c["report_acc_pct"]):
            ax.plot(c["report_acc_pct"], y, "x", color="red", markersize=9, markeredgewidth=2, zorder=4,
                    label=None if "ref" in labels_done else f"lab report (1 run, {A.REFERENCE_EPOCHS} ep.)")
            labels_done.add("ref")
    ax.axvline(shown.iloc[0]["mean_test_acc_pct"], color="0.5", linestyle=":", linewidth=1, zorder=1,
               label="best mean")
    # A diverged config (10 %) would squash the differences between the others.
    far = off_scale(dict(zip(shown["config"], shown["mean_test_acc_pct"])))
    extent = ["mean_test_acc_pct", "ci95_low_pct", "ci95_high_pct", "min_test_acc_pct", "max_test_acc_pct"]
    extent += ["report_acc_pct"] if lab4 else []
    if far:
        near = shown[~shown["config"].isin(far)]
        _zoom_past_far(ax, shown["mean_test_acc_pct"].to_numpy(float), ys, near[extent].to_numpy(float),
                       shown[extent].to_numpy(float), signed=False)
    ax.set_yticks(ys, [f"{c} (n={n})" for c, n in zip(shown["config"], shown["n"])])
    epochs = ", ".join(map(str, sorted(set(finished["epochs_planned"]))))
    ax.set_xlabel(f"final test accuracy (%) after {epochs} epochs")
    ax.set_title(f"Final test accuracy by configuration ({exp.name})")
    ax.grid(True, axis="x", alpha=0.3)
    ax.margins(y=0.6 / max(k, 1))
    fig.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig


def write_effect_figures(exp: A.Experiment, trials: pd.DataFrame, effects: pd.DataFrame,
                         out: Path) -> dict[str, Optional[str]]:
    """The forest plot of the effects and the interaction plots; None where nothing to draw."""
    done: dict[str, Optional[str]] = {FIG_EFFECTS: None, FIG_INTERACTIONS: None}
    fig = _forest_figure(effects, exp.name)
    if fig is not None:
        done[FIG_EFFECTS] = _save(fig, out / FIG_EFFECTS)
    fig = _interaction_figure(trials, effects, exp.name)
    if fig is not None:
        done[FIG_INTERACTIONS] = _save(fig, out / FIG_INTERACTIONS)
    return done


def _zoom_past_far(ax, values: np.ndarray, ys: np.ndarray, near: np.ndarray, everything: np.ndarray,
                   signed: bool) -> None:
    """When far values (a diverged run) would squash the rest, the x axis spans the near
    ones only and each far value is marked at the edge with its number."""
    near_lo, near_hi = float(np.nanmin(near)), float(np.nanmax(near))
    full_lo, full_hi = float(np.nanmin(everything)), float(np.nanmax(everything))
    span = max(near_hi - near_lo, 1e-9)
    if full_hi - full_lo <= 5 * span:
        return
    pad = 0.08 * max(span, 0.1)
    lo, hi = near_lo - pad, near_hi + pad
    ax.set_xlim(lo, hi)
    for v, y in zip(values, ys):
        if not np.isfinite(v) or lo <= v <= hi:
            continue
        left = v < lo
        edge = lo if left else hi
        ax.annotate(f"{v:+.1f} (off scale)" if signed else f"{v:.1f} (off scale)", (edge, y),
                    xytext=(6 if left else -6, 0), textcoords="offset points",
                    ha="left" if left else "right", va="center", fontsize=8, color="tab:red")
        ax.plot(edge, y, "<" if left else ">", color="tab:red", markersize=9, clip_on=False)


def _forest_figure(effects: pd.DataFrame, name: str):
    rows = effects[effects["kind"].isin([E.MAIN, E.INTERACTION]) & effects["effect_pct"].notna()]
    if rows.empty:
        return None
    k = len(rows)
    fig = _figure(9.0, max(2.6, 0.34 * k + 1.6))
    ax = fig.subplots()
    ys = np.arange(k)[::-1]
    seen: set[str] = set()
    for y, r in zip(ys, rows.itertuples()):
        color = "tab:blue" if r.kind == E.MAIN else "tab:purple"
        if np.isfinite(r.ci_low_pct):
            ax.errorbar(r.effect_pct, y, xerr=[[r.effect_pct - r.ci_low_pct], [r.ci_high_pct - r.effect_pct]],
                        fmt="o", color=color, capsize=3, markersize=6, linewidth=1.8,
                        label=None if r.kind in seen else ("main effect" if r.kind == E.MAIN else "interaction")
                        + ", 95% CI")
            seen.add(r.kind)
        else:
            ax.plot(r.effect_pct, y, "o", color=color, markerfacecolor="white", markersize=6,
                    label=None if "none" in seen else "no interval (one seed per cell)")
            seen.add("none")
    # One diverged level (Maxout at 10 %) would squash every other effect to a dot at zero:
    # then the axis spans the others, and the far ones sit at its edge with their value.
    far = off_scale({i: v for i, v in enumerate(rows["effect_pct"])})
    near = rows.iloc[[i for i in range(k) if i not in far]]
    cols = ["effect_pct", "ci_low_pct", "ci_high_pct"]
    _zoom_past_far(ax, rows["effect_pct"].to_numpy(float), ys, np.append(near[cols].to_numpy(float), 0.0),
                   np.append(rows[cols].to_numpy(float), 0.0), signed=True)
    main_count = int((rows["kind"] == E.MAIN).sum())
    if 0 < main_count < k:
        ax.axhline(ys[main_count - 1] - 0.5, color="0.6", linewidth=0.8)
    ax.axvline(0.0, color="0.3", linewidth=1, linestyle="--", zorder=1)
    ax.set_yticks(ys, [f"{r.factor}: {r.level} vs {r.baseline}" + ("" if r.over == "all" else " *")
                       for r in rows.itertuples()], fontsize=8)
    ax.set_xlabel("effect on final test accuracy (percentage points)")
    ax.set_title(f"Factor effects ({name})")
    ax.grid(True, axis="x", alpha=0.3)
    ax.margins(y=0.5 / max(k, 1))
    labels = ["* on part of the design (see the table's 'over')"] if (rows["over"] != "all").any() else []
    handles, names = ax.get_legend_handles_labels()
    if labels:
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], linestyle="none"))
        names += labels
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def _interaction_figure(trials: pd.DataFrame, effects: pd.DataFrame, name: str):
    """One panel per factor pair with a supported interaction: cell means, lines per level."""
    inter = effects[(effects["kind"] == E.INTERACTION) & (effects["contexts"] > 0)]
    if inter.empty:
        return None
    data, levels = E.design(trials)
    pairs = list(dict.fromkeys(inter["factor"]))
    ncols = min(3, len(pairs))
    nrows = -(-len(pairs) // ncols)
    fig = _figure(4.2 * ncols + 1.0, 3.4 * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, pair in zip(axes, pairs):
        fa, fb = pair.split(" x ")
        sub = inter[inter["factor"] == pair]
        la = [levels[fa][0]] + list(dict.fromkeys(v.split(" x ")[0] for v in sub["level"]))
        lb = [levels[fb][0]] + list(dict.fromkeys(v.split(" x ")[1] for v in sub["level"]))
        others = [f for f in levels if f not in (fa, fb)]
        cells = data.groupby(others + [fa, fb])["y"].mean() if others else data.groupby([fa, fb])["y"].mean()
        table = cells.reset_index()
        table = table[table[fa].isin(la) & table[fb].isin(lb)]
        if others:
            # The contexts in which every shown (a, b) combination ran: the balanced part.
            complete = table.groupby(others).size() == len(la) * len(lb)
            keep = set(complete[complete].index if len(others) > 1 else [(v,) for v in complete[complete].index])
            idx = [tuple(r) if len(others) > 1 else (r,) for r in
                   (table[others].itertuples(index=False, name=None) if len(others) > 1 else table[others[0]])]
            table = table[[i in keep for i in idx]]
        means = table.groupby([fa, fb])["y"].mean()
        for j, b in enumerate(lb):
            ys = [means.get((a, b), np.nan) for a in la]
            ax.plot(range(len(la)), ys, marker=MARKERS[j % len(MARKERS)], linewidth=1.6,
                    linestyle=["-", "--", ":", "-."][j % 4], label=f"{fb}={b}")
        ax.set_xticks(range(len(la)), la, fontsize=8)
        ax.set_xlabel(fa)
        ax.set_ylabel("mean final test acc. (%)")
        ax.set_title(pair, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(f"Two-way interactions ({name})")
    return fig


def _jitter(n: int) -> np.ndarray:
    return np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(n)


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    write_output(path, buf.getvalue())
    return path.name
