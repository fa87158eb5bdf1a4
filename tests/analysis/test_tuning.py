"""Tuning curves (Dodge et al. 2019): the expected best of k trials checked against every
k-tuple enumerated, the ranking of cells across budgets, and what a tuned experiment's
tables compare (its final trials only)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ninsweep.analysis.tuning import (
    describe_rankings,
    expected_best,
    ranking_changes,
    rankings,
    tuning_curves,
)


@pytest.mark.parametrize("scores, k", [
    ([0.3, 0.9, 0.5], 1), ([0.3, 0.9, 0.5], 2), ([0.3, 0.9, 0.5, 0.5], 3), ([0.1, 0.2], 4),
])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_expected_best_equals_the_mean_over_every_k_tuple(scores, k, mode):
    best = max if mode == "max" else min
    tuples = [best(t) for t in itertools.product(scores, repeat=k)]
    mean, sd = expected_best(np.array(scores), k, mode)
    assert mean == pytest.approx(np.mean(tuples), abs=1e-12)
    assert sd == pytest.approx(np.std(tuples), abs=1e-12)


def test_expected_best_leaves_out_trials_without_a_score():
    assert expected_best(np.array([0.5, np.nan]), 3) == (0.5, 0.0)
    assert all(np.isnan(v) for v in expected_best(np.array([np.nan]), 2))


def test_a_ranking_that_flips_with_the_budget_is_said_plainly():
    # "steady" is good at every draw; "lucky" is poor at most draws but best at one: it wins
    # only when the budget is large enough to find that draw.
    scores = pd.DataFrame({"cell": ["steady"] * 4 + ["lucky"] * 4,
                           "score": [0.70, 0.71, 0.72, 0.70, 0.30, 0.40, 0.50, 0.99]})
    curves = tuning_curves(scores, 4, "max")
    ranks = rankings(curves, "max")
    assert ranks[1] == ["steady", "lucky"] and ranks[4] == ["lucky", "steady"]
    changes = ranking_changes(ranks)
    assert changes and all(b == a + 1 for a, b in changes)
    text = describe_rankings(ranks, changes)
    assert text.startswith("**The ranking of the cells changes with the tuning budget**")
    same = tuning_curves(scores.assign(score=[0.8] * 4 + [0.3, 0.4, 0.5, 0.6]), 4, "max")
    assert describe_rankings(rankings(same, "max"), []).startswith(
        "The cells rank in the same order at every budget from 1 to 4")
