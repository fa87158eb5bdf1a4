"""The report's figures, drawn from the analysis tables and ``analysis.curves``' data.

Matplotlib's object-oriented API with the Agg canvas only: no pyplot, no global backend
switch, so a caller's own plotting (a notebook) is left alone. Each figure is written whole
(``atomic.write_output``); a figure with nothing to draw is not written (None).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ninsweep.analysis.curves import by_epoch, curve_histories, log_axis, off_scale
from ninsweep.analysis.effects import INTERACTION, MAIN, design
from ninsweep.analysis.reference import REFERENCE_EPOCHS
from ninsweep.analysis.results import Experiment, compared
from ninsweep.analysis.stats import mean_ci
from ninsweep.analysis.tabulate import objective_of
from ninsweep.atomic import write_output
from ninsweep.metrics import (
    ACCURACY_METRICS,
    EPOCH,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_LOSS,
    difference_unit,
    heading,
    long_name,
)

FIG_TEST_ACC = "test_accuracy.png"
FIG_TRAIN_LOSS = "train_loss.png"
FIG_TEST_LOSS = "test_loss.png"
FIG_FINAL_ACC = "final_accuracy.png"
FIG_EFFECTS = "effects.png"
FIG_INTERACTIONS = "interactions.png"
FIG_TUNING = "tuning_curves.png"
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p"]
DPI = 120


def write_figures(exp: Experiment, trials: pd.DataFrame, configs: pd.DataFrame,
                  out: Path) -> dict[str, Optional[str]]:
    """Draw the four figures into ``out``; file name per figure, None where no data."""
    colors = _colors(list(configs["config"]) if not configs.empty else [])
    curves = curve_histories(exp, trials)
    done: dict[str, Optional[str]] = {}
    specs = [
        (FIG_TEST_ACC, TEST_ACC, 100.0, "test accuracy (%)", "Test accuracy per epoch", True),
        (FIG_TRAIN_LOSS, TRAIN_LOSS, 1.0, "training loss (cross-entropy)", "Training loss per epoch", True),
        (FIG_TEST_LOSS, TEST_LOSS, 1.0, "test loss (cross-entropy)", "Test loss per epoch", True),
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
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    n = cmap.N
    styles = ["-", "--", ":", "-."]
    return {lab: (cmap(i % n), styles[(i // n) % len(styles)] if len(labels) > n else styles[i % 2],
                  MARKERS[i % len(MARKERS)]) for i, lab in enumerate(labels)}


def _figure(width: float, height: float):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _curve_figure(curves, configs, colors, metric, scale, ylabel, title, zoom):
    if not curves:
        return None
    bounds = (0.0, 100.0) if metric in ACCURACY_METRICS else (0.0, np.inf)
    max_epoch = max(int(h[EPOCH].max()) for pair in curves.values() for hs in pair for h in hs)
    order = [c for c in configs["config"] if c in curves]
    stats_by_config = {}
    for label in order:
        wide = by_epoch(curves[label][0], metric) * scale
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
                x = np.asarray(h[EPOCH])
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
    finished = trials[compared(trials)]
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
                    label=None if "ref" in labels_done else f"lab report (1 run, {REFERENCE_EPOCHS} ep.)")
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


def write_effect_figures(exp: Experiment, trials: pd.DataFrame, effects: pd.DataFrame,
                         out: Path) -> dict[str, Optional[str]]:
    """The forest plot of the effects and the interaction plots; None where nothing to draw."""
    done: dict[str, Optional[str]] = {FIG_EFFECTS: None, FIG_INTERACTIONS: None}
    fig = _forest_figure(effects, exp.name, objective_of(trials)[0])
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


def _forest_figure(effects: pd.DataFrame, name: str, metric: str = TEST_ACC):
    rows = effects[effects["kind"].isin([MAIN, INTERACTION]) & effects["effect_pct"].notna()]
    if rows.empty:
        return None
    k = len(rows)
    fig = _figure(9.0, max(2.6, 0.34 * k + 1.6))
    ax = fig.subplots()
    ys = np.arange(k)[::-1]
    seen: set[str] = set()
    for y, r in zip(ys, rows.itertuples()):
        color = "tab:blue" if r.kind == MAIN else "tab:purple"
        if np.isfinite(r.ci_low_pct):
            ax.errorbar(r.effect_pct, y, xerr=[[r.effect_pct - r.ci_low_pct], [r.ci_high_pct - r.effect_pct]],
                        fmt="o", color=color, capsize=3, markersize=6, linewidth=1.8,
                        label=None if r.kind in seen else ("main effect" if r.kind == MAIN else "interaction")
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
    main_count = int((rows["kind"] == MAIN).sum())
    if 0 < main_count < k:
        ax.axhline(ys[main_count - 1] - 0.5, color="0.6", linewidth=0.8)
    ax.axvline(0.0, color="0.3", linewidth=1, linestyle="--", zorder=1)
    ax.set_yticks(ys, [f"{r.factor}: {r.level} vs {r.baseline}" + ("" if r.over == "all" else " *")
                       for r in rows.itertuples()], fontsize=8)
    ax.set_xlabel(f"effect on final {long_name(metric)} ({difference_unit(metric, short=False)})")
    ax.set_title(f"Factor effects ({name})")
    ax.grid(True, axis="x", alpha=0.3)
    ax.margins(y=0.5 / max(k, 1))
    labels = ["* on part of the design (see the table's 'over')"] if (rows["over"] != "all").any() else []
    handles, names = ax.get_legend_handles_labels()
    if labels:
        handles.append(Line2D([], [], linestyle="none"))
        names += labels
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def _interaction_figure(trials: pd.DataFrame, effects: pd.DataFrame, name: str):
    """One panel per factor pair with a supported interaction: cell means, lines per level."""
    inter = effects[(effects["kind"] == INTERACTION) & (effects["contexts"] > 0)]
    if inter.empty:
        return None
    data, levels = design(trials)
    metric = objective_of(trials)[0]
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
        ax.set_ylabel(f"mean final {heading(metric)}")
        ax.set_title(pair, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(f"Two-way interactions ({name})")
    return fig


def write_tuning_figure(curves: pd.DataFrame, select_on: str, out: Path) -> Optional[str]:
    """Each cell's tuning curve: expected best ``select_on`` of k tuning trials, +- 1 sd."""
    if curves.empty:
        return None
    scale = 100.0 if select_on in ACCURACY_METRICS else 1.0
    cells = list(dict.fromkeys(curves["cell"]))
    colors = _colors(cells)
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for cell in cells:
        rows = curves[curves["cell"] == cell]
        color, style, marker = colors[cell]
        mean, sd = rows["expected_best"].to_numpy() * scale, rows["sd"].to_numpy() * scale
        ax.plot(rows["k"], mean, style, color=color, marker=marker, label=cell)
        ax.fill_between(rows["k"], mean - sd, mean + sd, color=color, alpha=0.12, linewidth=0)
    ax.set_xlabel("tuning trials per cell (k)")
    ax.set_ylabel(f"expected best {select_on}" + (" (%)" if scale == 100.0 else ""))
    ax.set_title("Tuning curves: expected best validation score of k trials (Dodge et al. 2019)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, out / FIG_TUNING)


def _jitter(n: int) -> np.ndarray:
    return np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(n)


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    write_output(path, buf.getvalue())
    return path.name
