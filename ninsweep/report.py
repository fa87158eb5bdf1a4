"""The Markdown report and its PNG figures, from the analysis tables alone.

``write_report(exp, out_dir)`` writes ``report.md`` and four figures into ``out_dir``
(default ``<exp>/report``): test accuracy, training loss and test loss per epoch (one
mean line per config, a band over its seeds) and the final test accuracy with 95%
confidence intervals. Everything is derived, so every call regenerates the files (each
written to a temporary file and renamed).

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
from . import metrics as M
from .errors import NinsweepError

REPORT_DIR = "report"
REPORT_FILE = "report.md"
FIG_TEST_ACC = "test_accuracy.png"
FIG_TRAIN_LOSS = "train_loss.png"
FIG_TEST_LOSS = "test_loss.png"
FIG_FINAL_ACC = "final_accuracy.png"

DPI = 120


def write_report(exp: A.Experiment, out_dir: Optional[os.PathLike | str] = None,
                 alpha: float = A.ALPHA) -> Path:
    """Write ``report.md`` and its figures into ``out_dir``; return the report's path."""
    out = Path(out_dir).expanduser() if out_dir is not None else exp.path / REPORT_DIR
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NinsweepError(f"{out}: cannot create the report directory: {err.strerror or err}") from None

    trials, configs, sig = A.tables(exp, alpha)

    figures = write_figures(exp, trials, configs, out)
    text = render_markdown(exp, trials, configs, sig, figures, alpha)
    path = out / REPORT_FILE
    A.atomic_write_bytes(path, text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- Markdown


def render_markdown(exp: A.Experiment, trials: pd.DataFrame, configs: pd.DataFrame,
                    sig: pd.DataFrame, figures: dict[str, Optional[str]], alpha: float = A.ALPHA) -> str:
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
           "n: finished seeds. Accuracies in %, final epoch. 95% CI: Student's t interval of "
           "the mean over seeds. Δ best: mean minus the best config's mean (points). "
           "p (Holm): Welch's t-test against the best config, Holm-adjusted. "
           "Losses: mean final cross-entropy. Time: mean wall time per trial (training + evaluation).",
           ""]

    md += ["## Which differences are real", ""]
    md += _significance_markdown(sig, configs, alpha)

    if exp.is_lab4:
        md += ["## Against the lab report", ""]
        md += _reference_markdown(configs, trials) + _pooling_markdown(exp)

    md += ["## Figures", ""]
    captions = {
        FIG_FINAL_ACC: "Final test accuracy per configuration: mean with 95% CI over seeds, "
                       "one dot per seed" + (", the report's single run as a red cross" if exp.is_lab4 else "") + ".",
        FIG_TEST_ACC: "Test accuracy per epoch: mean over seeds (line) and min-max over seeds (band).",
        FIG_TRAIN_LOSS: "Training loss per epoch (mean of the epoch's batches): mean over seeds, min-max band.",
        FIG_TEST_LOSS: "Test loss per epoch: mean over seeds, min-max band.",
    }
    for fig in (FIG_FINAL_ACC, FIG_TEST_ACC, FIG_TRAIN_LOSS, FIG_TEST_LOSS):
        if figures.get(fig):
            md += [f"![{captions[fig]}]({figures[fig]})", "", f"*{captions[fig]}*", ""]
        else:
            md += [f"*{captions[fig].split(':')[0]}: no data yet.*", ""]

    md += ["## Trials", ""]
    md += _trials_markdown(trials)
    errors = trials[trials["status"] == A.ERROR]
    if len(errors):
        md += ["", "### Errors", ""]
        md += [f"- `{r.trial}` ({r.trial_dir}/error.txt): {_md_cell(r.error)}" for r in errors.itertuples()]
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
                A.fmt_num(c["mean_final_test_loss"], digits=3), fmt_duration(c["mean_wall_time_s"])]
        if len(row) < len(head):
            row.append(A.fmt_unfinished(c))
        rows.append(row)
    return _md_table(head, rows, right={"#", "n", "report %", "ours − report", "Δ best", "p (Holm)",
                                         "train loss", "test loss", "time / trial"})


def _significance_markdown(sig: pd.DataFrame, configs: pd.DataFrame, alpha: float) -> list[str]:
    best = sig[sig["verdict"] == A.VERDICT_BEST]
    if best.empty:
        return ["No finished trials, nothing to compare.", ""]
    b = best.iloc[0]
    nb = int(b["n"])
    out = [f"Best by mean final test accuracy: **{b['config']}** ({b['mean_test_acc_pct']:.2f}%, "
           f"n = {nb}).", ""]

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
            f"the best configuration's by Welch's two-sided t-test (`scipy.stats.ttest_ind`, "
            f"`equal_var=False`: the two spreads may differ). The p-values of the "
            f"{int(sig['p_value'].notna().sum())} comparisons are adjusted with Holm's step-down "
            f"method, which keeps the chance of any false \"significantly lower\" at {alpha:g}. "
            f"\"Not distinguishable\" is not \"equal\": with few seeds only large gaps are "
            f"detectable; more seeds narrow the intervals.", ""]
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
                     fmt_duration(r.wall_time_s), A.fmt_num(r.images_per_s, digits=0)])
    return _md_table(head, rows, right={"seed", "epochs", "final test acc. %", "best %", "train loss",
                                        "test loss", "time", "images/s"})


def _md_table(head: list[str], rows: list[list[str]], right: set[str]) -> list[str]:
    rule = ["---:" if h in right else "---" for h in head]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def fmt_duration(seconds: Any) -> str:
    if seconds is None or pd.isna(seconds):
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


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


def _colors(labels: list[str]) -> dict[str, tuple[Any, str]]:
    """(colour, line style) per config, in rank order, so every figure agrees."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    n = cmap.N
    styles = ["-", "--", ":", "-."]
    return {lab: (cmap(i % n), styles[(i // n) % len(styles)]) for i, lab in enumerate(labels)}


def _curves(exp: A.Experiment, trials: pd.DataFrame) -> dict[str, tuple[list[pd.DataFrame], list[pd.DataFrame]]]:
    """Config label -> (histories its mean is drawn from, other histories drawn thin).

    The mean and band come from the finished trials when the config has any (a mean over a
    set of seeds that changes along the x axis would jump where a trial stops); unfinished
    trials are then drawn as thin lines. A config with no finished trial is drawn from the
    trials that have started.
    """
    label_of = dict(zip(trials["trial"], trials["config"]))
    grouped: dict[str, tuple[list[pd.DataFrame], list[pd.DataFrame]]] = {}
    for t in exp.trials:
        if len(t.history):
            done, other = grouped.setdefault(label_of[t.name], ([], []))
            (done if t.status == A.FINISHED else other).append(t.history)
    return {label: (done, other) if done else (other, []) for label, (done, other) in grouped.items()}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _curve_figure(curves, configs, colors, metric, scale, ylabel, title, zoom):
    from matplotlib.ticker import MaxNLocator

    if not curves:
        return None
    max_epoch = max(int(h[M.EPOCH].max()) for pair in curves.values() for hs in pair for h in hs)
    zoom = zoom and max_epoch >= 10
    fig = _figure(13.0 if zoom else 10.0, 5.5)
    axes = fig.subplots(1, 2, width_ratios=[3, 2]) if zoom else [fig.subplots()]
    order = [c for c in configs["config"] if c in curves]
    stats_by_config = {}
    for label in order:
        wide = pd.concat([h.set_index(M.EPOCH)[metric].rename(i) for i, h in enumerate(curves[label][0])], axis=1)
        wide = wide.apply(pd.to_numeric, errors="coerce") * scale
        stats_by_config[label] = (wide.mean(axis=1), wide.min(axis=1), wide.max(axis=1), wide.count(axis=1))
    any_thin = any(curves[label][1] for label in order)
    start = int(max_epoch * 0.6) if zoom else 1
    for ax_i, ax in enumerate(axes):
        lo_all, hi_all = [], []
        for label in order:
            mean, lo, hi, count = stats_by_config[label]
            if ax_i == 1:
                keep = mean.index >= start
                mean, lo, hi, count = mean[keep], lo[keep], hi[keep], count[keep]
                if mean.dropna().empty:
                    continue
                lo_all.append(np.nanmin(lo.to_numpy(float)))
                hi_all.append(np.nanmax(hi.to_numpy(float)))
            color, style = colors[label]
            n = len(curves[label][0])
            ax.plot(mean.index, mean.to_numpy(float), color=color, linestyle=style, linewidth=1.6,
                    label=f"{label} (n={n})")  # n: seeds in the mean
            for h in curves[label][1]:
                x = h[M.EPOCH].to_numpy()
                y = pd.to_numeric(h[metric], errors="coerce").to_numpy(float) * scale
                if ax_i == 1:
                    x, y = x[x >= start], y[x >= start]
                ax.plot(x, y, color=color, linestyle=style, linewidth=0.8, alpha=0.7)
            band = count >= 2
            if band.any():
                ax.fill_between(mean.index, lo.to_numpy(float), hi.to_numpy(float), where=band.to_numpy(),
                                color=color, alpha=0.18, linewidth=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.2"
        ax.grid(True, alpha=0.3)
        if ax_i == 0:
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        else:
            ax.set_title(f"zoom: epochs {start}-{max_epoch}")
            ax.set_xlim(start, max_epoch)
            if lo_all:
                lo_v, hi_v = min(lo_all), max(hi_all)
                pad = max(0.05 * (hi_v - lo_v), 1e-3)
                ax.set_ylim(lo_v - pad, hi_v + pad)
    handles, labels = axes[0].get_legend_handles_labels()
    if order:
        from matplotlib.patches import Patch
        from matplotlib.lines import Line2D
        handles.append(Patch(color="grey", alpha=0.3))
        labels.append("band: min-max over seeds")
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
        color, _ = colors[c["config"]]
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
    ax.set_yticks(ys, [f"{c} (n={n})" for c, n in zip(shown["config"], shown["n"])])
    epochs = ", ".join(map(str, sorted(set(finished["epochs_planned"]))))
    ax.set_xlabel(f"final test accuracy (%) after {epochs} epochs")
    ax.set_title(f"Final test accuracy by configuration ({exp.name})")
    ax.grid(True, axis="x", alpha=0.3)
    ax.margins(y=0.6 / max(k, 1))
    fig.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig


def _jitter(n: int) -> np.ndarray:
    return np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(n)


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    A.atomic_write_bytes(path, buf.getvalue())
    return path.name
