"""Which interrupted studies Tune is asked to restore (the rest runs end to end in test_study_scale)."""

import json

from ganlab.study.tuner import _recorded_a_trial


def test_a_study_interrupted_before_its_first_trial_starts_again_instead_of_being_restored(tmp_path):
    """Tune 2.60's experiment state, as an interrupted `ganlab run` leaves it: with no trial yet, restoring it
    fails inside Tune (an IndexError traceback in the user's output); the newest state file decides."""
    def state(name: str, trials: list) -> None:
        (tmp_path / f"experiment_state-{name}.json").write_text(
            json.dumps({"trial_data": trials, "runner_data": {}, "stats": {}}))

    assert _recorded_a_trial(tmp_path)  # no state file Tune wrote in a format known here: Tune decides
    state("2026-12-01_14-54-53", [])
    assert not _recorded_a_trial(tmp_path)
    state("2026-12-01_14-54-57", [["{}", "{}"]])  # a later run recorded a trial
    assert _recorded_a_trial(tmp_path)
    (tmp_path / "experiment_state-2026-12-01_14-55-00.json").write_text("{not json")
    assert _recorded_a_trial(tmp_path)
