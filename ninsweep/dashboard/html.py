"""``ninsweep report --html``: the dashboard's views in one self-contained HTML file.

The page is the dashboard's own (template, script, style) with plotly.js and the views'
data inlined: it loads nothing from anywhere (its Content-Security-Policy forbids it), so it
opens on an air-gapped cluster or from an e-mail. Curves of every metric are inside (the
dashboard fetches them on demand); the statuses are those on disk (no ``running``: a file
is a snapshot).
"""

from __future__ import annotations

import datetime as _dt
from typing import Optional

from ninsweep.analysis.export import export_tables
from ninsweep.analysis.results import Experiment
from ninsweep.analysis.stats import ALPHA
from ninsweep.dashboard.assets import page
from ninsweep.dashboard.views import build_view, curve_metrics, curves_view


def render_report(exp: Experiment, alpha: float = ALPHA, baseline: Optional[str] = None) -> str:
    tables = export_tables(exp, alpha, baseline)
    view = build_view(exp, alpha=alpha, baseline=baseline, tables=tables)
    curves = {m: curves_view(exp, tables[0], tables[1], m) for m in curve_metrics(exp)}
    generated = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return page({"mode": "static", "title": exp.name}, inline=True,
                data={"view": view, "curves": curves, "generated": generated})
