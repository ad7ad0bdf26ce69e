"""What ganlab takes from Tune around a phase: which interrupted studies it restores, and Ctrl-C (the rest runs end
to end in test_study_scale)."""

import json
import os
import signal
import time

from ray.tune.tune import _setup_signal_catching

from ganlab.study.tuner import _recorded_a_trial, tune_interrupts


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


def test_tune_takes_a_ctrl_c_and_never_keeps_it_after_the_phase():
    """Tune's own SIGINT handler (its real one): it fired -> seen, and the handler before it is back; it did not
    fire -> not seen, and Tune's handler (which would swallow the next Ctrl-C, between a search and its
    confirmation) is gone after the phase all the same."""
    before = signal.getsignal(signal.SIGINT)
    for send in (False, True):
        with tune_interrupts() as interrupt:
            event = _setup_signal_catching()
            assert signal.getsignal(signal.SIGINT) is not before  # Tune's, while the phase runs
            if send:
                os.kill(os.getpid(), signal.SIGINT)
                deadline = time.time() + 10
                while not event.is_set() and time.time() < deadline:
                    time.sleep(0.01)
                assert event.is_set()
        assert interrupt.seen is send
        assert signal.getsignal(signal.SIGINT) is before
