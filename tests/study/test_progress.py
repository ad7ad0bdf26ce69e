"""What a running study prints: counts that always add up to the study's trial count."""

import re

from ganlab.study.progress import trial_counts


def total_of(line: str) -> tuple[int, int]:
    total = int(re.match(r"(\d+) trials: ", line).group(1))
    return total, sum(int(n) for n in re.findall(r"(\d+) (?:done|running|paused|pending|failed)", line))


def test_trials_tune_has_not_created_yet_are_pending():
    line = trial_counts(8, {"a": "RUNNING", "b": "RUNNING"}, set(), set())
    assert line == "8 trials: 2 running, 6 pending"


def test_a_trial_completing_is_done_before_tune_marks_it():
    """Tune calls on_trial_complete while the trial still reads RUNNING: it counts as done, not running."""
    line = trial_counts(4, {"a": "RUNNING", "b": "RUNNING"}, {"a"}, set())
    assert line == "4 trials: 1 done, 1 running, 2 pending"
    line = trial_counts(4, {"a": "TERMINATED", "b": "TERMINATED", "c": "RUNNING", "d": "RUNNING"}, {"a", "b", "d"}, set())
    assert line == "4 trials: 3 done, 1 running"


def test_failed_paused_and_restored_trials():
    statuses = {"a": "TERMINATED", "b": "ERROR", "c": "PAUSED", "d": "RUNNING", "e": "PENDING"}
    line = trial_counts(6, statuses, set(), set())
    assert line == "6 trials: 1 done, 1 running, 1 paused, 2 pending, 1 failed"
    assert trial_counts(3, {"a": "RUNNING"}, set(), {"a"}) == "3 trials: 2 pending, 1 failed"


def test_every_line_adds_up():
    cases = [(5, {}, set(), set()), (5, {"a": "RUNNING", "b": "ERROR"}, {"a"}, {"b"}),
             (2, {"a": "TERMINATED", "b": "TERMINATED"}, {"a", "b"}, set())]
    for total, statuses, done, failed in cases:
        assert total_of(trial_counts(total, statuses, done, failed)) == (total, total)
