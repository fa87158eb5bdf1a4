"""The Markdown report and its PNG figures, from the analysis tables alone.

``write_report(exp, out_dir)`` writes ``report.md`` and its figures into ``out_dir``
(default ``<exp>/report``): test accuracy, training loss and test loss per epoch (one
mean line per config, a band over its seeds), the final test accuracy per config, the
factor effects (a forest plot) and the two-way interactions. Everything is derived, so
every call regenerates the files (each written to a temporary file and renamed).

One error convention for the whole report, stated once at its top (``ERROR_CONVENTION``):
every interval, in the tables, the curve bands and the error bars, is a 95% confidence
interval of a mean (Student's t over seeds), clipped to what the metric can be. A config
with one finished seed has no interval and no band. The figures are drawn by
``analysis.figures``.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
import pandas as pd

from ninsweep.analysis.effects import (
    BASELINE,
    INTERACTION,
    LENTH_ASSUMPTION,
    MAIN,
    POOLED_ASSUMPTION,
    design_summary,
    effects_table,
)
from ninsweep.analysis.figures import (
    FIG_EFFECTS,
    FIG_FINAL_ACC,
    FIG_INTERACTIONS,
    FIG_TEST_ACC,
    FIG_TEST_LOSS,
    FIG_TRAIN_LOSS,
    FIG_TUNING,
    write_effect_figures,
    write_figures,
    write_tuning_figure,
)
from ninsweep.analysis.outputs import check_outputs
from ninsweep.analysis.reference import REFERENCE_ACC_PCT, REFERENCE_EPOCHS
from ninsweep.analysis.results import Experiment, replication_record
from ninsweep.analysis.stats import ALPHA, ERROR_CONVENTION
from ninsweep.analysis.tabulate import (
    VERDICT_BEST,
    VERDICT_FEW,
    VERDICT_FLAT,
    VERDICT_LOWER,
    VERDICT_NONE,
    VERDICT_SAME,
    config_table_of,
    objective_of,
    statistic_columns,
    tables,
)
from ninsweep.analysis.text import fmt_ci, fmt_num, fmt_p, fmt_pm, fmt_unfinished
from ninsweep.analysis.tuning import (
    chosen_values,
    describe_rankings,
    ranking_changes,
    rankings,
    tuning_curves,
    tuning_keys,
    tuning_scores,
)
from ninsweep.atomic import write_output
from ninsweep.errors import NinsweepError
from ninsweep.experiment_dir import (
    ERROR,
    ERROR_FILE,
    FINISHED,
    REPORT_DIR,
    REPORT_FILE,
    SKIPPED,
    STATUSES,
    STOPPED,
)
from ninsweep.fmt import duration, markdown_cell, markdown_table, reason, value_text
from ninsweep.metrics import TEST_ACC, VAL_ACC, difference_unit, digits, heading, is_accuracy, long_name
from ninsweep.space.dry_run import scheduler_line
from ninsweep.space.schema import DEFAULT_STAGE, FINAL_STAGE, SweepSpec

REPORT_HTML = "report.html"  # report --html: the dashboard's views in one file



def write_report(exp: Experiment, out_dir: Optional[os.PathLike | str] = None,
                 alpha: float = ALPHA, baseline: Optional[str] = None,
                 force: bool = False, beside: Optional[Mapping[str, Callable[[], str]]] = None
                 ) -> Path:
    """Write ``report.md`` and its figures into ``out_dir``; return the report's path.

    ``baseline``: a config label; the report then compares every config with it too.
    ``beside``: more files of the report, file name -> a function that renders it (``report
    --html``: ``report.html``, by the dashboard layer), checked and written with the rest.
    ``<exp>/report`` (the default) is derived and regenerated on every call; in any other
    folder an existing report or figure is replaced only with ``force``, and no other place
    inside the experiment is written (``outputs.check_outputs``).
    """
    out = Path(out_dir).expanduser() if out_dir is not None else exp.path / REPORT_DIR
    beside = dict(beside or {})
    names = (REPORT_FILE, FIG_TEST_ACC, FIG_TRAIN_LOSS, FIG_TEST_LOSS, FIG_FINAL_ACC,
             FIG_EFFECTS, FIG_INTERACTIONS, FIG_TUNING, *beside)
    if out.exists() and not out.is_dir():
        raise NinsweepError(f"{out}: not a directory (the report needs a folder)")
    check_outputs([out / n for n in names], exp.path,
                  [exp.path / REPORT_DIR / n for n in names], force=force, command="report")
    trials, configs, sig = tables(exp, alpha)
    effects = effects_table(trials, baseline)  # an unknown baseline fails before any file
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NinsweepError(f"{out}: cannot create the report directory: {reason(err)}") from None

    figures = write_figures(exp, trials, configs, out)
    figures.update(write_effect_figures(exp, trials, effects, out))
    if exp.spec is not None and exp.spec.tune is not None:
        tuning = exp.spec.tune
        curves = tuning_curves(tuning_scores(exp), tuning.budget, tuning.mode)
        figures[FIG_TUNING] = write_tuning_figure(curves, tuning.select_on, out)
    text = render_markdown(exp, trials, configs, sig, figures, alpha, effects, baseline)
    path = out / REPORT_FILE
    write_output(path, text)
    for name, render in beside.items():
        write_output(out / name, render())
    return path


# --------------------------------------------------------------------------- Markdown


def render_markdown(exp: Experiment, trials: pd.DataFrame, configs: pd.DataFrame,
                    sig: pd.DataFrame, figures: dict[str, Optional[str]], alpha: float = ALPHA,
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
        f"{counts[s]} {s}" for s in STATUSES if counts[s]) + ". "
        f"**Epochs per trial:** {', '.join(map(str, planned))}.")
    md.append("")
    md += _search_markdown(exp.spec)
    unfinished = len(trials) - counts[FINISHED] - counts[STOPPED]
    if unfinished:
        md += [f"> {unfinished} of {len(trials)} trials are not finished (running, interrupted, "
               f"failed or not started). They are listed below and in the curves, but only "
               f"finished trials count toward the statistics.", ""]
    if counts[STOPPED]:
        md += [f"> {counts[STOPPED]} of {len(trials)} trials were stopped early by the "
               f"scheduler on the validation split. They are listed below and in the curves; "
               f"the statistics compare the trials that ran every epoch, so they describe the "
               f"survivors of the scheduler, not every configuration drawn.", ""]

    md += [f"## Final {long_name(objective_of(configs)[0])} by configuration", ""]
    if configs.empty or configs["n"].sum() == 0:
        md += ["No trial has finished yet: there are no final accuracies to compare.", ""]
    md += _config_markdown(configs, sig)
    md += ["",
           "n: finished seeds. Accuracies in %, final epoch. 95% CI: of the mean over seeds "
           "(see the error convention). Δ best: mean minus the best config's mean "
           f"({difference_unit(objective_of(configs)[0])}). "
           "p (Holm): Welch's t-test against the best config, Holm-adjusted. "
           "Losses: mean final cross-entropy. Time: mean wall time per trial (training + evaluation).",
           ""]

    md += ["## Which differences are real", ""]
    md += _significance_markdown(sig, configs, alpha)

    if effects is None:
        effects = effects_table(trials, baseline)
    md += ["## Factor effects", ""]
    md += _effects_markdown(trials, effects, figures)
    if baseline is not None:
        md += [f"## Against the baseline {baseline}", ""]
        md += _baseline_markdown(effects, baseline, objective_of(trials)[0])

    if exp.is_lab4:
        md += ["## Against the lab report", ""]
        md += _reference_markdown(configs, trials) + _pooling_markdown(exp)

    if exp.spec is not None and exp.spec.tune is not None:
        md += ["## Per-cell tuning", ""]
        md += _tuning_markdown(exp, figures.get(FIG_TUNING))
        md += _default_markdown(trials, alpha)

    if exp.spec is not None and exp.spec.replication is not None:
        md += ["## Adaptive replication", ""]
        md += _replication_markdown(exp, trials)

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
    md += _trials_markdown(trials, exp.spec.scheduler.label
                           if exp.spec is not None and exp.spec.scheduler else None)
    md += ["", _best_epoch_note(trials)]
    errors = trials[trials["status"] == ERROR]
    if len(errors):
        md += ["", "### Errors", ""]
        md += [f"- `{r.trial}` ({r.trial_dir}/{ERROR_FILE}): {markdown_cell(r.error)}" for r in errors.itertuples()]
    md.append("")
    return "\n".join(md)


def _config_markdown(configs: pd.DataFrame, sig: pd.DataFrame) -> list[str]:
    if configs.empty:
        return []
    s = sig.set_index("config").to_dict("index") if not sig.empty else {}
    lab4 = "report_acc_pct" in configs.columns
    metric = objective_of(configs)[0]  # the table is ranked by the objective and shows it
    column, places = statistic_columns(metric), digits(metric)
    head = ["#", "config", "n", f"{heading(metric)} (mean ± std)", "95% CI", "min – max"]
    if lab4:
        head += ["report %", "ours − report"]
    head += ["Δ best", "p (Holm)", "verdict", "train loss", "test loss", "time / trial"]
    if (configs[["n_incomplete", "n_error", "n_pending"]].sum(axis=1) > 0).any():
        head += ["not finished"]
    rows = []
    for _, c in configs.iterrows():
        si = s.get(c["config"], {})
        row = [str(c["rank"]), f"**{c['config']}**" if si.get("verdict") == VERDICT_BEST else c["config"],
               str(c["n"]), fmt_pm(c[column["mean"]], c[column["std"]], places),
               fmt_ci(c[column["ci_low"]], c[column["ci_high"]], places),
               "-" if pd.isna(c[column["min"]])
               else f"{c[column['min']]:.{places}f} – {c[column['max']]:.{places}f}"]
        if lab4:
            row += [fmt_num(c["report_acc_pct"], none="none"), fmt_num(c["diff_vs_report_pct"], signed=True)]
        row += [fmt_num(si.get("diff_vs_best_pct", np.nan), signed=True, digits=places),
                fmt_p(si.get("p_holm", np.nan)),
                str(si.get("verdict", "")), fmt_num(c["mean_final_train_loss"], digits=3),
                fmt_num(c["mean_final_test_loss"], digits=3), duration(c["mean_wall_time_s"])]
        if len(row) < len(head):
            row.append(fmt_unfinished(c))
        rows.append(row)
    return markdown_table(head, rows, right={"#", "n", "report %", "ours − report", "Δ best", "p (Holm)",
                                         "train loss", "test loss", "time / trial"})


def _significance_markdown(sig: pd.DataFrame, configs: pd.DataFrame, alpha: float) -> list[str]:
    best = sig[sig["verdict"] == VERDICT_BEST]
    if best.empty:
        return ["No finished trials, nothing to compare.", ""]
    b = best.iloc[0]
    nb = int(b["n"])
    metric, mode, _ = objective_of(configs)
    if metric == TEST_ACC and mode == "max":
        out = [f"Best by mean final test accuracy: **{b['config']}** ({b['mean_test_acc_pct']:.2f}%, "
               f"n = {nb}).", ""]
    else:  # the space's objective: differences below are in its units
        best_value = configs.loc[configs["config"] == b["config"], "mean_objective"].iloc[0]
        out = [f"Best by the objective, {'highest' if mode == 'max' else 'lowest'} mean final "
               f"{metric}: **{b['config']}** ({best_value:.4g}, n = {nb}); differences below are "
               f"in {metric}{' points' if is_accuracy(metric) else ''}.", ""]

    def names(verdict: str, with_p: bool = False) -> list[str]:
        rows = sig[sig["verdict"] == verdict]
        return [f"{r.config} ({r.diff_vs_best_pct:+.2f} points" + (f", p = {fmt_p(r.p_holm)}" if with_p else "")
                + ")" for r in rows.itertuples()]

    lower, same = names(VERDICT_LOWER, True), names(VERDICT_SAME, True)
    few, flat = names(VERDICT_FEW), names(VERDICT_FLAT)
    none = list(sig[sig["verdict"] == VERDICT_NONE]["config"])
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
    out = [" ".join(design_summary(trials)), ""]
    main = effects[effects["kind"] == MAIN]
    inter = effects[effects["kind"] == INTERACTION]
    if main.empty:
        return out
    metric = objective_of(trials)[0]  # the effects are on the objective
    out += ["### Main effects", ""]
    out += _effect_rows(main, "level vs reference", metric)
    out += ["", f"Effect: the level's mean final {long_name(metric)} minus the reference level's, in "
            f"{difference_unit(metric, short=False)}, averaged with equal weights over the combinations of the other "
            "factors in which both ran (*over*: that part of the design; \"all\": every "
            "combination). 95% CI and p: Student's t on an OLS fit of the trials involved, "
            "paired by seed where seeds are shared (*paired*); p (Holm): adjusted over the main "
            "effects.", ""]
    out += _unreplicated_note(main)
    if figures.get(FIG_EFFECTS):
        caption = ("Factor effects: each level against its factor's reference, 95% CI; "
                   "interactions below the line. Zero: no effect.")
        out += [f"![{caption}]({figures[FIG_EFFECTS]})", "", f"*{caption}*", ""]
    supported = inter[inter["contexts"] > 0]
    unsupported = inter[inter["contexts"] == 0]
    if len(inter):
        out += ["### Two-way interactions", ""]
    if len(supported):
        out += _effect_rows(supported, "levels vs references", metric)
        out += ["", "Interaction of A x B: (La,Lb) − (La,Rb) − (Ra,Lb) + (Ra,Rb), the change of A's "
                f"effect when B goes from its reference to its level, in {difference_unit(metric)}; averaged over the "
                "other factors where all four cells ran. Near 0: the two effects simply add.", ""]
        if figures.get(FIG_INTERACTIONS):
            caption = (f"Interaction plots: mean final {long_name(metric)} per level of one factor, one "
                       "line per level of the other (cell means averaged over the rest of the "
                       "balanced part). Parallel lines: no interaction.")
            out += [f"![{caption}]({figures[FIG_INTERACTIONS]})", "", f"*{caption}*", ""]
    if len(unsupported):
        pairs = "; ".join(f"{r.factor}: {r.level}" for r in unsupported.itertuples())
        out += [f"Not estimable from this design (the four cells never ran together): {pairs}.", ""]
    return out


def _unreplicated_note(main: pd.DataFrame) -> list[str]:
    """Which main-effect intervals rest on something other than the seeds, and its assumption."""
    out = []
    for prefix, assumption in (("pooled", POOLED_ASSUMPTION), ("Lenth", LENTH_ASSUMPTION)):
        rows = main[main["interval_method"].str.startswith(prefix)]
        if len(rows):
            names = ", ".join(dict.fromkeys(rows["factor"]))
            out += [f"**{rows['interval_method'].iloc[0]}** for {names}: {assumption}.", ""]
    return out


def _effect_rows(rows: pd.DataFrame, level_head: str, metric: str) -> list[str]:
    effect = f"effect ({difference_unit(metric)})"
    head = ["factor", level_head, effect, "95% CI", "p", "p (Holm)", "n", "paired", "over"]
    body = []
    for r in rows.itertuples():
        body.append([r.factor, f"{r.level} vs {r.baseline}", fmt_num(r.effect_pct, signed=True),
                     fmt_ci(r.ci_low_pct, r.ci_high_pct) if not r.note else r.note,
                     fmt_p(r.p), fmt_p(r.p_holm), f"{r.n_level} + {r.n_baseline}",
                     "yes" if r.paired else "no", r.over])
    return markdown_table(head, body, right={effect, "p", "p (Holm)", "n"})


def _baseline_markdown(effects: pd.DataFrame, baseline: str, metric: str) -> list[str]:
    rows = effects[effects["kind"] == BASELINE].sort_values("effect_pct", ascending=False)
    if rows.empty:
        return [f"No other config has finished trials to compare with {baseline}.", ""]
    out = _effect_rows(rows, "config vs baseline", metric)
    out += ["", f"Each config's mean final {long_name(metric)} minus {baseline}'s, in "
            f"{difference_unit(metric)}, with the "
            f"same method as the factor effects (paired by seed where seeds are shared); "
            f"p (Holm): adjusted over these {int(rows['p'].notna().sum())} comparisons.", ""]
    return out


def _reference_markdown(configs: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    out = []
    ref = configs.dropna(subset=["report_acc_pct"])
    values = [v for v in REFERENCE_ACC_PCT.values() if v is not None]
    out.append(f"The lab report trained each configuration once for {REFERENCE_EPOCHS} epochs; "
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
    if planned != {REFERENCE_EPOCHS}:
        out.append(f"**Caution:** these trials run {', '.join(map(str, sorted(planned)))} epochs, "
                   f"the report {REFERENCE_EPOCHS}: the comparison is only indicative.")
    return [" ".join(out), ""]


def _pooling_markdown(exp: Experiment) -> list[str]:
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


def _replication_markdown(exp: Experiment, trials: pd.DataFrame) -> list[str]:
    """How many seeds each configuration ran and why it stopped; each main effect's
    decision and the look it came at; the compute saved against max_seeds everywhere."""
    rep = exp.spec.replication
    record = replication_record(exp.path)
    if not record:
        return ["No wave has ended yet.", ""]
    md = [f"{rep.describe()[0].upper()}{rep.describe()[1:]}. Method: {record['method']}. "
          f"Error rate: {record['error_rate']}.", ""]
    decisions = record.get("decisions", [])
    undecided = {c for d in decisions if d["state"] == "undecided" for c in d["configs"]}
    rows = []
    for config, group in trials.groupby("config", sort=False):
        ran = int((group["status"] == FINISHED).sum())
        why = (f"reached max_seeds ({rep.max_seeds})" if ran >= rep.max_seeds
               else "still running" if not record.get("finished")
               else "its main effects are decided" if config not in undecided
               else "stopped before max_seeds")
        rows.append([config, str(ran), why])
    md += markdown_table(["configuration", "seeds run", "why it stopped"], rows,
                         right={"seeds run"}) + [""]
    rows = [[f"{d['factor']}: {d['level']} vs {d['baseline']}", d["state"],
             fmt_num(d["estimate"]), fmt_ci(d["lo"], d["hi"]),
             f"{d['seeds']} seeds (look {int(d['look']) + 1})" if d["state"] != "undecided"
             else f"{d['seeds']} seeds so far"] for d in decisions]
    if rows:
        md += markdown_table(["main effect", "decision", "estimate", "interval at its look",
                              "decided at"], rows) + [""]
    planned = sum(t.config.train.epochs for t in exp.trials)
    skipped = sum(t.config.train.epochs for t in exp.trials if t.status == SKIPPED)
    if record.get("finished"):
        md += [f"Compute: {planned - skipped:,} of the {planned:,} trial-epochs that "
               f"{rep.max_seeds} seeds everywhere would take ({100 * skipped / planned:.0f}% "
               f"saved; {len(record.get('skipped', []))} trials not needed).", ""]
    return md


def _default_markdown(trials: pd.DataFrame, alpha: float) -> list[str]:
    """With ``tune.default``: the main effects of the tuned arms beside those at the shared
    default, and whether the configurations rank the same."""
    if "stage" not in trials or not (trials["stage"] == DEFAULT_STAGE).any():
        return []
    at_default = trials[trials["stage"] == DEFAULT_STAGE].assign(stage=FINAL_STAGE)
    at_default.attrs = dict(trials.attrs)
    tuned_fx, default_fx = (effects_table(t) for t in (trials, at_default))
    md = ["### Tuned against the shared default", "",
          "The same cells and seeds at the library's default values of the tuned keys (the "
          "untuned comparison a fixed recipe would make), beside the tuned arms:", ""]
    rows = []
    main = lambda fx: {(r.factor, r.level): r for r in fx[fx["kind"] == MAIN].itertuples()}  # noqa: E731
    tuned_main, default_main = main(tuned_fx), main(default_fx)
    for key, t in tuned_main.items():
        d = default_main.get(key)
        cells = [f"{t.factor}: {t.level} vs {t.baseline}",
                 f"{fmt_num(t.effect_pct)} {fmt_ci(t.ci_low_pct, t.ci_high_pct)}",
                 f"{fmt_num(d.effect_pct)} {fmt_ci(d.ci_low_pct, d.ci_high_pct)}" if d else "-"]
        if d is not None and np.sign(t.effect_pct) != np.sign(d.effect_pct):
            cells.append("**sign differs**")
        else:
            cells.append("same sign" if d is not None else "-")
        rows.append(cells)
    md += markdown_table(["main effect", "tuned", "at the default", ""], rows) + [""]
    order = lambda t: list(config_table_of(t)["config"])  # noqa: E731
    tuned_order, default_order = order(trials), order(at_default)
    md += [("The configurations rank the same tuned and at the default: "
            f"{' > '.join(tuned_order)}." if tuned_order == default_order else
            f"**Tuning changes the ranking**: tuned {' > '.join(tuned_order)}; at the default "
            f"{' > '.join(default_order)}."), ""]
    return md


def _tuning_markdown(exp: Experiment, figure: Optional[str]) -> list[str]:
    """Each cell's chosen values, its tuning curve at a few budgets, and whether the
    ranking of the cells depends on the budget."""
    tuning = exp.spec.tune
    scores = tuning_scores(exp)
    curves = tuning_curves(scores, tuning.budget, tuning.mode)
    chosen = chosen_values(exp).set_index("cell") if not chosen_values(exp).empty else None
    keys = sorted(tuning_keys(exp))
    scale, unit = (100.0, " %") if is_accuracy(tuning.select_on) else (1.0, "")
    md = [f"{tuning.describe()[0].upper()}{tuning.describe()[1:]}; each cell's seeds then ran "
          "the full recipe at the chosen values, and only those final trials enter the tables "
          "above. The tuning curve of a cell is the expected best validation score of k of its "
          "tuning trials drawn at random, with its standard deviation (Dodge et al. 2019, "
          "\"Show Your Work\"): where the curves of two cells cross, which cell wins depends "
          "on the tuning budget."
          + (" The curve treats a cell's trials as exchangeable draws; Optuna's later trials "
             "learn from the earlier ones, so for them it is an approximation."
             if tuning.algorithm == "optuna" else ""), ""]
    budgets = sorted({1, max(1, tuning.budget // 2), tuning.budget})
    head = ["cell", *(f"chosen {k}" for k in keys), "chosen from", f"its {tuning.select_on}{unit}",
            "scored", *(f"best of {k}{unit}" for k in budgets)]
    rows = []
    for cell, group in scores.groupby("cell", sort=False):
        pick = chosen.loc[cell] if chosen is not None and cell in chosen.index else None
        source = pick["chosen_from"] if pick is not None else None
        score = group.loc[group["trial"] == source, "score"] if source else pd.Series([], dtype=float)
        at = curves[curves["cell"] == cell].set_index("k")
        rows.append([cell, *(value_text(pick[k]) if pick is not None else "not yet" for k in keys),
                     f"`{source}`" if source else "-",
                     fmt_num(score.iloc[0] * scale) if len(score) else "-",
                     f"{int(group['score'].notna().sum())}/{len(group)}",
                     *(fmt_pm(at.loc[k, "expected_best"] * scale, at.loc[k, "sd"] * scale)
                       if k in at.index else "-" for k in budgets)])
    md += markdown_table(head, rows, right={"scored"}) + [""]
    ranks = rankings(curves, tuning.mode)
    sentence = describe_rankings(ranks, ranking_changes(ranks))
    if sentence:
        md += [sentence, ""]
    if figure:
        caption = ("Tuning curves: the expected best validation score of k tuning trials per "
                   "cell, +- 1 standard deviation.")
        md += [f"![{caption}]({figure})", "", f"*{caption}*", ""]
    return md


def _search_markdown(spec: Optional[SweepSpec]) -> list[str]:
    """The space's search and scheduler, a line each (nothing for a plain grid)."""
    lines = []
    if spec is not None and spec.search is not None:
        lines.append(f"**Search:** {spec.search.describe_draws()}; each draw crosses every grid "
                     "cell and seed.")
    if spec is not None and spec.scheduler is not None:
        lines.append(f"**Early stopping:** {scheduler_line(spec)}.")
    return [" ".join(lines), ""] if lines else []


def _trials_markdown(trials: pd.DataFrame, scheduler: Optional[str] = None) -> list[str]:
    head = ["trial", "config", "seed", "status", "epochs", "final test acc. %", "best %",
            "train loss", "test loss", "time", "images/s"]
    rows = []
    for r in trials.itertuples():
        status = (f"stopped at epoch {r.epochs_done} by {scheduler}"
                  if r.status == STOPPED and scheduler else r.status)
        rows.append([f"`{r.trial}`", r.config, str(r.seed), status, f"{r.epochs_done}/{r.epochs_planned}",
                     fmt_num(r.final_test_acc_pct), fmt_num(r.best_test_acc_pct),
                     fmt_num(r.final_train_loss, digits=3), fmt_num(r.final_test_loss, digits=3),
                     duration(r.wall_time_s), fmt_num(r.images_per_s, digits=0)])
    return markdown_table(head, rows, right={"seed", "epochs", "final test acc. %", "best %", "train loss",
                                        "test loss", "time", "images/s"})


def _best_epoch_note(trials: pd.DataFrame) -> str:
    chosen = set(trials["best_by"]) - {""}
    if chosen == {VAL_ACC}:
        return ("best %: the test accuracy at the epoch with the highest validation accuracy "
                "(data.val_size: the test set chose nothing).")
    text = ("best %: the highest test accuracy over the epochs -- chosen on the test set, so "
            "optimistic; a validation split (data.val_size) chooses the epoch honestly.")
    return text if VAL_ACC not in chosen else text + " Trials with a validation split used it."


