"""What ganlab takes from Tune around a phase: which interrupted studies it restores, and Ctrl-C (the rest runs end
to end in test_study_scale)."""

import json
import os
import signal
import time

from ray.tune.tune import _setup_signal_catching

from ganlab.study.tuner import _recorded_a_trial, tune_interrupts
from ganlab.track.store import TAG_RESUMED_AT


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


# A `ganlab run` whose Tune scheduler stalls the loop the way Tune 2.60's PBT was seen to (every unfinished trial
# paused, none ever picked again): each trial pauses at its first result and no paused trial is picked. Only the
# scheduler of the first loop does this; a loop restored from Tune's saved tuner gets a fresh copy, which runs
# every trial to its end (os.environ tells it that the stall already happened).
STALLING_DRIVER = '''
import os, sys
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
import ganlab.study.tuner
from ganlab.cli import main

class StallOnce(FIFOScheduler):
    def on_trial_result(self, tune_controller, trial, result):
        return TrialScheduler.CONTINUE if os.environ.get("STALLED") else TrialScheduler.PAUSE

    def choose_trial_to_run(self, tune_controller):
        if os.environ.get("STALLED") and not getattr(self, "stuck", False):
            return super().choose_trial_to_run(tune_controller)
        unfinished = [t for t in tune_controller.get_trials() if not t.is_finished()]
        if unfinished and all(t.status == "PAUSED" for t in unfinished):
            os.environ["STALLED"] = "1"
            self.stuck = True
        return None  # PENDING trials start anyway; a PAUSED one never again

ganlab.study.tuner.make_scheduler = lambda study, tracking_uri: StallOnce()
sys.exit(main(sys.argv[1:]))
'''


def test_a_stalled_tune_loop_is_restarted_and_every_trial_finishes_from_its_checkpoint(tmp_path, ray_cluster):
    """The stall watchdog (StudyCallback.on_step_end) against a real stalled Tune loop: once every unfinished
    trial has been paused for stall_timeout_s, the loop is stopped, restored from Tune's saved state and every
    trial finishes, continuing from the checkpoint it paused at (tagged resumed_at 50; each MLflow history has
    every step once). Without the watchdog this study never ends (the subprocess timeout fails it)."""
    import subprocess
    import sys
    import textwrap

    from mlflow.tracking import MlflowClient

    from conftest import seed_store
    from ganlab.analysis import load_study

    address, cluster_env = ray_cluster
    (tmp_path / "study.yaml").write_text(textwrap.dedent("""
        name: stall
        trial:
          data: {name: ring8, batch_size: 32}
          model: {width: 16, depth: 1}
          train: {steps: 100, eval_every: 50, log_every: 10, eval_samples: 200}
        resources: {cpu: 1}
        artifacts: {sample_plots: 0}
        stall_timeout_s: 2
        """))
    proc = subprocess.run([sys.executable, "-c", STALLING_DRIVER, "run", "study.yaml", "--address", address],
                          cwd=seed_store(tmp_path), env={**cluster_env, "GANLAB_PROGRESS_EVERY": "0"},
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("Tune's trial loop stalled: 1 trial(s) paused") == 1, proc.stdout[-4000:]
    assert proc.stdout.count("restarting Tune's trial loop from its saved state (restart 1 of at most 3)") == 1
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    df = load_study("stall", tracking_uri=uri)
    assert len(df) == 1 and (df["trial_status"] == "finished").all() and (df["status"] == "FINISHED").all()
    client = MlflowClient(uri)
    for run_id in df["run_id"]:
        run = client.get_run(run_id)
        assert run.data.tags.get(TAG_RESUMED_AT) == "50", run.data.tags
        assert [m.step for m in client.get_metric_history(run_id, "loss/d")] == list(range(10, 101, 10))
