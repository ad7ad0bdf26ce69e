"""What a running study prints: a table of the running trials with counts by state, a line per finished
trial; and the MLflow side of a trial whose worker died for good."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from ganlab.config.study import short_names
from ganlab.track.store import TAG_STATUS, TAG_STOP_REASON, StudyRun, find_trial_run

PROGRESS_EVERY_S = float(os.environ.get("GANLAB_PROGRESS_EVERY", 15))  # seconds between progress tables


def describe(overrides: dict[str, Any]) -> str:
    names = short_names(list(overrides))
    return " ".join(f"{names[k]}={v:.4g}" if isinstance(v, float) else f"{names[k]}={v}" for k, v in overrides.items())


def trial_counts(total: int, statuses: dict[str, str], done: set[str], failed: set[str]) -> str:
    """``8 trials: 3 done, 2 running, 3 pending``: every count adds up to the study's ``total``. ``statuses``:
    Tune's status of each trial it created (it creates them lazily: the others are pending); ``done`` and
    ``failed``: trials finished or failed for good, which Tune may not have marked yet."""
    ended = {i for i, s in statuses.items() if s == "TERMINATED"} | done
    errored = ({i for i, s in statuses.items() if s == "ERROR"} | failed) - ended
    running = {i for i, s in statuses.items() if s == "RUNNING"} - ended - errored
    paused = {i for i, s in statuses.items() if s == "PAUSED"} - ended - errored
    pending = max(0, total - len(ended) - len(errored) - len(running) - len(paused))
    parts = [(len(ended), "done"), (len(running), "running"), (len(paused), "paused"), (pending, "pending"),
             (len(errored), "failed")]
    shown = [f"{n} {name}" for n, name in parts if n] or ["0 done"]
    return f"{total} trials: " + ", ".join(shown)


class StudyCallback(tune.Callback):
    """Live progress (a table of running trials and counts by state, every ``PROGRESS_EVERY_S`` seconds,
    and one line per finished trial), and the MLflow side of trials whose worker died for good."""

    def __init__(self, study_run: StudyRun, total_steps: int, total_trials: int, every_s: float = PROGRESS_EVERY_S):
        self.study_run = study_run
        self.total_steps = total_steps
        self.total_trials = total_trials
        self.every_s = every_s
        self._latest: dict[str, dict] = {}
        self._done: set[str] = set()  # Tune calls on_trial_complete before it marks the trial TERMINATED
        self._failed: set[str] = set()
        self._last_print = 0.0

    def _counts(self, trials) -> str:
        return trial_counts(self.total_trials, {t.trial_id: t.status for t in trials}, self._done, self._failed)

    def _print(self, text: str) -> None:
        print(f"[ganlab {time.strftime('%H:%M:%S')}] {text}", file=sys.stdout, flush=True)

    def _row(self, trial, result: dict) -> str:
        acc = "acc" if "acc/real" in result else "acc_sign"
        modes = result.get("eval/modes")
        extra = f" modes {modes:.0f}" if modes is not None else ""
        dist = result.get("eval/dirac_distance")
        extra += f" |(theta, psi)| {dist:.3g}" if dist is not None else ""
        return (f"{describe(trial.config.get('point', trial.config)):<34} step {result.get('step', 0):>6}/"
                f"{self.total_steps} | D acc real {result.get(f'{acc}/real', math.nan):.2f} "
                f"fake {result.get(f'{acc}/fake', math.nan):.2f}{extra} | {result.get('verdict', '')}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._latest[trial.trial_id] = result
        now = time.time()
        if now - self._last_print >= self.every_s:
            self._last_print = now
            running = [t for t in trials if t.status == "RUNNING" and t.trial_id in self._latest]
            lines = [self._counts(trials)]
            lines += [f"  {self._row(t, self._latest[t.trial_id])}" for t in running]
            self._print("\n".join(lines))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._done.add(trial.trial_id)
        result = self._latest.get(trial.trial_id, {})
        self._print(f"done {self._row(trial, result)} | {self._counts(trials)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._failed.add(trial.trial_id)
        self._print(f"FAILED {describe(trial.config.get('point', trial.config))}; log: {trial.local_path} | "
                    f"{self._counts(trials)}")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.study_run.tracking_uri)
        run = find_trial_run(client, self.study_run, trial.trial_id)
        if run is not None:  # the worker died without closing it
            error = (trial.error_file and Path(trial.error_file).is_file() and Path(trial.error_file).read_text()) or ""
            client.set_tag(run.info.run_id, TAG_STATUS, "failed")
            client.set_tag(run.info.run_id, TAG_STOP_REASON, f"failed: {error.strip().splitlines()[-1] if error else 'worker error'}"[:5000])
            client.set_terminated(run.info.run_id, status="FAILED")
