"""The space's ``scheduler:`` as Ray Tune's own trial scheduler (ASHA, median stopping).

Every scheduler judges trials by the epoch they report (``time_attr``), not by Tune's count of
reports: a restored trial re-reports epochs from its checkpoint, which would count twice.
Tune does not save a scheduler's state in its snapshot: after a resume the rungs fill again
from the results the trials report from then on (docs/search-spaces.md says so).
"""

from __future__ import annotations

from typing import Optional

from ray.tune.schedulers import (
    ASHAScheduler,
    MedianStoppingRule,
    TrialScheduler,
)

from ninsweep.metrics import EPOCH
from ninsweep.space.schema import SweepSpec


def make_scheduler(spec: SweepSpec) -> Optional[TrialScheduler]:
    """Tune's scheduler for the space, or None (FIFO: every trial runs its epochs)."""
    sched = spec.scheduler
    if sched is None:
        return None
    metric = sched.metric_for(spec.objective.metric)
    mode = sched.mode_for(spec.objective.metric)
    max_t = max(t.config.train.epochs for t in spec.trials)
    if sched.algorithm == "asha":
        return ASHAScheduler(time_attr=EPOCH, metric=metric, mode=mode, max_t=max_t,
                             grace_period=min(sched.grace_period, max_t),
                             reduction_factor=sched.reduction_factor,
                             brackets=sched.brackets)
    return MedianStoppingRule(time_attr=EPOCH, metric=metric, mode=mode,
                              grace_period=sched.grace_period, min_samples_required=3)
