"""``ninsweep run --dry-run``: the trials a run would start, one line each, and the totals."""

from __future__ import annotations

from ninsweep.fmt import table, value_text
from ninsweep.space.schema import DEFAULT_STAGE, TUNE_STAGE, SweepSpec, TrialSpec


def format_dry_run(spec: SweepSpec) -> str:
    """The trials a run would start, one line each, with a header and totals."""
    n = len(spec.trials)
    epochs = sorted({t.config.train.epochs for t in spec.trials})
    epochs_text = (f"{epochs[0]} epoch{'s' if epochs[0] != 1 else ''} each" if len(epochs) == 1
                   else f"{epochs[0]}-{epochs[-1]} epochs")
    sources = sorted({t.config.data.source for t in spec.trials})
    header = (f"space {spec.name}" + (f" ({spec.source})" if spec.source else "")
              + f": {n} trial{'s' if n != 1 else ''}, {epochs_text}, data {', '.join(sources)}")
    if spec.overrides:
        header += "; overrides: " + ", ".join(f"{k}={value_text(v)}" for k, v in spec.overrides.items())
    res = spec.resources
    res_text = f"cpus={value_text(res.cpus)} gpus={value_text(res.gpus)}"
    lines = [header] + table(None, [[t.name, _values_text(t, spec), res_text] for t in spec.trials],
                             indent="  ")
    lines.append(
        f"total: {n} trial{'s' if n != 1 else ''}, {spec.trial_epochs} trial-epochs; each "
        f"{res_text}; all at once cpus={value_text(round(res.cpus * n, 6))} "
        f"gpus={value_text(round(res.gpus * n, 6))}")
    if spec.search is not None:
        lines.append(f"{spec.search.describe_draws()}; each draw crosses every grid cell and seed")
    if spec.scheduler is not None:
        lines.append(scheduler_line(spec))
    if spec.replication is not None:
        first = sum(t.params.get("seed", 0) < spec.replication.min_seeds for t in spec.trials)
        lines.append(f"{spec.replication.describe()}: {first} trials first, at most {n}")
    if spec.tune is not None:
        tuning = sum(t.stage == TUNE_STAGE for t in spec.trials)
        lines.append(f"{spec.tune.describe()}: stage 1, {tuning} trials; then stage 2, "
                     f"{n - tuning} trials at each cell's chosen values")
    every, retries = spec.checkpoint.every, spec.failure.max_retries
    lines.append(
        f"checkpoint every {every} epoch{'s' if every != 1 else ''}, keep {spec.checkpoint.keep}; "
        f"up to {retries} retr{'ies' if retries != 1 else 'y'} per trial")
    return "\n".join(lines)


def scheduler_line(spec: SweepSpec) -> str:
    """What the space's scheduler does, in a line (the dry run's, the sweep's first)."""
    sched = spec.scheduler
    metric = sched.metric_for(spec.objective.metric)
    return (f"scheduler {sched.label}: stops trials early on {metric} "
            f"({sched.mode_for(spec.objective.metric)}, the validation split) after at least "
            f"{sched.grace_period} epoch{'s' if sched.grace_period != 1 else ''}; a stopped trial "
            "is not counted in the final table")


def _values_text(trial: TrialSpec, spec: SweepSpec) -> str:
    values = [f"{k}={value_text(v)}" for k, v in trial.params.items()]
    if trial.stage in (TUNE_STAGE, DEFAULT_STAGE) and (trial.tuned or trial.stage == DEFAULT_STAGE):
        values += [f"stage={trial.stage}", *(f"{k}={value_text(v)}" for k, v in trial.tuned.items())]
    elif trial.stage is not None:
        values += [f"stage={trial.stage}", *(f"{k}=(chosen by tuning)" for k in
                                             sorted(canonical_tuned_keys(spec)))]
    return " ".join(values)


def canonical_tuned_keys(spec: SweepSpec) -> list[str]:
    """The config keys a tuned space's cells choose (as the trials name them: train.lr)."""
    return sorted({k for t in spec.trials if t.stage == TUNE_STAGE for k in t.tuned})
