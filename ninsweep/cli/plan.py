"""``ninsweep plan``: how many seeds per configuration an effect of a given size needs.

Reads the experiment directory alone (``analysis``: no Ray, no torch), measures its
seed-to-seed SD and plans from it (``analysis.sequential.seeds_needed``).
"""

from __future__ import annotations

import argparse

from ninsweep.analysis.results import load_experiment
from ninsweep.analysis.sequential import (
    PLANNING_METHOD,
    NotEnoughSeeds,
    difference_sd_of,
    seed_sd_of,
    seeds_needed,
)
from ninsweep.analysis.stats import ALPHA
from ninsweep.analysis.tabulate import objective_of, trial_table
from ninsweep.errors import NinsweepError
from ninsweep.metrics import difference_unit

DEFAULT_POWER = 0.8


def command_plan(args: argparse.Namespace) -> int:
    # The defaults live here, not in the parser: it may not import the analysis (pandas).
    power = DEFAULT_POWER if args.power is None else args.power
    alpha = ALPHA if args.alpha is None else args.alpha
    if not args.effect > 0:
        raise NinsweepError(f"--effect {args.effect:g}: must be > 0 (the difference to detect)")
    if not 0 < power < 1:
        raise NinsweepError(f"--power {power:g}: must lie in (0, 1)")
    if not 0 < alpha < 1:
        raise NinsweepError(f"--alpha {alpha:g}: must lie in (0, 1)")
    experiment = load_experiment(args.experiment)
    trials = trial_table(experiment)
    metric = objective_of(trials)[0]
    unit = difference_unit(metric)
    spread = seed_sd_of(trials)  # NotEnoughSeeds (a NinsweepError): one line, exit 2
    lines = [f"seed SD of final {metric}: {spread.sd:.3g} {unit} (pooled within {spread.configs} "
             f"configurations with >= 2 finished seeds, df {spread.df})"]
    try:
        paired = difference_sd_of(trials)
    except NotEnoughSeeds as why:
        paired, lines = None, lines + [f"paired difference SD: not measurable ({why})"]
    else:
        lines.append(f"paired difference SD (seeds shared across configurations): {paired.sd:.3g} "
                     f"{unit} (df {paired.df})")
    lines.append(f"to detect a difference of {args.effect:g} {unit} between two configurations "
                 f"with power {power:g} (two-sided alpha {alpha:g}):")
    unpaired_n = seeds_needed(args.effect, spread.sd, power, alpha, paired=False)
    lines.append(f"  unpaired (two-sample t-test): {unpaired_n} seeds per configuration")
    if paired is not None:
        paired_n = seeds_needed(args.effect, paired.sd, power, alpha, paired=True)
        lines.append(f"  paired by seed (paired t-test, the same seeds in every configuration): "
                     f"{paired_n} seeds per configuration")
    lines.append(f"method: {PLANNING_METHOD}; the SD is itself an estimate (df above), so the "
                 f"numbers are a guide, not a guarantee")
    print("\n".join(lines))
    return 0
