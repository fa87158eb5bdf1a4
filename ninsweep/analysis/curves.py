"""The data behind the report's curves: per configuration, the histories its mean and band
are drawn from, as seeds-by-epoch tables; and which configurations lie far from the rest.

Drawing is ``analysis.figures``'s; the numbers are here, so a page or a test reads the same
curves without matplotlib.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ninsweep.analysis.results import Experiment
from ninsweep.experiment_dir import FINISHED
from ninsweep.metrics import EPOCH
from ninsweep.space.schema import FINAL_STAGE

History = dict  # a trial's metrics: name -> one value per kept epoch (TrialRecord.metrics)


def curve_histories(exp: Experiment, trials: pd.DataFrame) -> dict[str, tuple[list[History], list[History]]]:
    """Config label -> (histories its mean is drawn from, other histories drawn thin).

    The mean and band come from the finished trials when the config has any (a mean over a
    set of seeds that changes along the x axis would jump where a trial stops); unfinished
    trials are then drawn as thin lines. A config with no finished trial is drawn from the
    trials that have started.
    """
    label_of = dict(zip(trials["trial"], trials["config"]))
    grouped: dict[str, tuple[list[History], list[History]]] = {}
    for t in exp.trials:
        if len(t.metrics[EPOCH]) and t.stage in (None, FINAL_STAGE):  # the compared trials
            done, other = grouped.setdefault(label_of[t.name], ([], []))
            (done if t.status == FINISHED else other).append(t.metrics)
    return {label: (done, other) if done else (other, []) for label, (done, other) in grouped.items()}


def by_epoch(histories: list[History], metric: str) -> pd.DataFrame:
    """One row per epoch, one column per trial (NaN where a trial has no such epoch)."""
    last = max(int(h[EPOCH][-1]) for h in histories)
    wide = np.full((last, len(histories)), np.nan)
    for j, h in enumerate(histories):
        values = h.get(metric)
        if values is not None:
            ok = h[EPOCH] >= 1  # 1-based; anything else is no epoch to draw
            wide[h[EPOCH][ok] - 1, j] = pd.to_numeric(values[ok], errors="coerce")
    frame = pd.DataFrame(wide, index=pd.RangeIndex(1, last + 1, name=EPOCH))
    return frame[frame.notna().any(axis=1)]


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


def log_axis(means, bounds: tuple[float, float]) -> bool:
    """Whether a curve figure needs a log y axis: an unbounded metric (a loss) whose mean
    curves span more than a factor 50 (a diverged run dwarfs the rest)."""
    positive = [v for mean in means for v in np.asarray(mean, dtype=float) if v > 0]
    return bounds[1] == np.inf and len(positive) > 1 and max(positive) / min(positive) > 50
