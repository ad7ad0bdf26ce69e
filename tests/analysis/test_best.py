"""Which trial `ganlab sample --best` and the reports take: best_trial's choice among several candidates, in
both directions, the direction it infers, and the trials that are never candidates."""

import math

import pandas as pd
import pytest

from ganlab.analysis.trials import METRIC_MODES, TrialNotFound, pick_best

FRAME = pd.DataFrame({
    "run_id": ["a", "b", "c", "d", "e", "f"],
    "trial_status": ["finished", "finished", "finished", "diverged", "stopped", "finished"],
    "window/eq/acc_gap": [0.30, 0.10, 0.20, 0.01, 0.02, math.nan],  # d and e would win, but did not finish
    "eval/modes": [5.0, 8.0, 7.0, 8.0, 8.0, 8.0],
    "window/eval/modes": [4.5, 6.0, 7.5, 8.0, 8.0, math.nan],  # the windowed mean of a coverage metric: also max
    "eval/fd": [9.0, 3.0, math.inf, 1.0, 2.0, 4.0],
})


def test_min_picks_the_smallest_finished_finite_value():
    assert pick_best(FRAME, "window/eq/acc_gap") == ("b", 0.10, "min")
    assert pick_best(FRAME, "eval/fd") == ("b", 3.0, "min")  # inf is not a candidate, nor diverged d


def test_max_picks_the_largest_and_is_inferred_for_coverage_metrics():
    assert METRIC_MODES["eval/modes"] == "max"
    run, value, mode = pick_best(FRAME, "eval/modes")
    assert (run, value, mode) == ("b", 8.0, "max")  # first of the finished trials with 8 modes
    assert pick_best(FRAME, "window/eval/modes") == ("c", 7.5, "max")  # its window/ prefix keeps the direction
    assert pick_best(FRAME, "window/eq/acc_gap", mode="max") == ("a", 0.30, "max")
    assert pick_best(FRAME, "eval/fd", mode="max") == ("a", 9.0, "max")  # inf is not finite


def test_direction_given_overrides_the_inferred_one():
    assert pick_best(FRAME, "eval/modes", mode="min") == ("a", 5.0, "min")


def test_no_candidate_and_unknown_metric_are_errors():
    with pytest.raises(TrialNotFound, match="no finished trial with a finite eval/fd"):
        pick_best(FRAME[FRAME["run_id"].isin(["c", "d"])], "eval/fd")
    with pytest.raises(KeyError, match="no metric 'eval/nope'"):
        pick_best(FRAME, "eval/nope")
