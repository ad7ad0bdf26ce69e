"""What a running study prints: a table of the running trials with counts by state, a line per finished
trial; and the MLflow side of a trial whose worker died for good."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ray import tune

from ganlab.config.study import short_names
from ganlab.diagnose import metrics as M
from ganlab.study.packs import PackSpec
from ganlab.track.store import StudyRun, fail_trial_runs

PROGRESS_EVERY_S = float(os.environ.get("GANLAB_PROGRESS_EVERY", 15))  # seconds between progress tables

# Stalls each Tune experiment (by its path) had in this process. Tune restores a run's callbacks from its
# pickle, so the copy that sees a stall after a restart is not the object the caller made: they meet here.
STALLS: dict[str, int] = {}


def describe(overrides: dict[str, Any]) -> str:
    names = short_names(list(overrides))
    return " ".join(f"{names[k]}={v:.4g}" if isinstance(v, float) else f"{names[k]}={v}" for k, v in overrides.items())


def trial_counts(total: int, statuses: dict[str, str], done: set[str], failed: set[str],
                 sizes: dict[str, int] | None = None, lanes_done: dict[str, int] | None = None) -> str:
    """``8 trials: 3 done, 2 running, 3 pending``: every count adds up to the study's ``total`` (study trials:
    a pack counts its lanes). ``statuses``: Tune's status of each Tune trial it created (it creates them
    lazily: the others are pending); ``done`` and ``failed``: Tune trials finished or failed for good, which
    Tune may not have marked yet; ``sizes``: lanes per pack (default 1); ``lanes_done``: lanes of a running
    pack that already ended (diverged)."""
    sizes, lanes_done = sizes or {}, lanes_done or {}
    ended = {i for i, s in statuses.items() if s == "TERMINATED"} | done
    errored = ({i for i, s in statuses.items() if s == "ERROR"} | failed) - ended
    running = {i for i, s in statuses.items() if s == "RUNNING"} - ended - errored
    paused = {i for i, s in statuses.items() if s == "PAUSED"} - ended - errored

    def n(ids: set[str]) -> int:
        return sum(sizes.get(i, 1) - (lanes_done.get(i, 0) if i in running | paused else 0) for i in ids)

    n_ended = n(ended) + sum(lanes_done.get(i, 0) for i in running | paused)
    pending = max(0, total - n_ended - n(errored) - n(running) - n(paused))
    parts = [(n_ended, "done"), (n(running), "running"), (n(paused), "paused"), (pending, "pending"),
             (n(errored), "failed")]
    shown = [f"{n} {name}" for n, name in parts if n] or ["0 done"]
    return f"{total} trials: " + ", ".join(shown)


class StudyCallback(tune.Callback):
    """Live progress (a table of running trials and counts by state, every ``PROGRESS_EVERY_S`` seconds,
    and one line per finished trial), and the MLflow side of trials whose worker died for good."""

    # No watchdog in a callback Tune restores from a study saved before it existed (its pickle lacks these).
    experiment = ""
    stall_s = math.inf
    _all_paused_since: float | None = None

    def __init__(self, study_run: StudyRun, total_steps: int, total_trials: int, every_s: float = PROGRESS_EVERY_S,
                 experiment: str = "", stall_s: float = math.inf):
        self.study_run = study_run
        self.total_steps = total_steps
        self.total_trials = total_trials
        self.every_s = every_s
        self.experiment = experiment
        self.stall_s = stall_s
        self._all_paused_since = None
        self._latest: dict[str, dict] = {}
        self._done: set[str] = set()  # Tune calls on_trial_complete before it marks the trial TERMINATED
        self._failed: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._last_print = 0.0

    def _counts(self, trials) -> str:
        for t in trials:  # a Tune trial's pack never changes size: read once (per result, it cost O(trials))
            if t.trial_id not in self._sizes:
                self._sizes[t.trial_id] = len(PackSpec.of(t.config).trials)
        sizes = {t.trial_id: self._sizes[t.trial_id] for t in trials}
        lanes_done = {i: int(r.get("lanes_done", 0)) for i, r in self._latest.items()}
        return trial_counts(self.total_trials, {t.trial_id: t.status for t in trials}, self._done, self._failed,
                            sizes, lanes_done)

    def _print(self, text: str) -> None:
        print(f"[ganlab {time.strftime('%H:%M:%S')}] {text}", file=sys.stdout, flush=True)

    @staticmethod
    def _label(trial) -> str:
        pack = PackSpec.of(trial.config)
        if pack.packed:
            return f"pack of {len(pack.trials)} trials ({describe(pack.trials[0].point)} ...)"
        return describe(pack.trials[0].point)

    def _row(self, trial, result: dict, label: str | None = None) -> str:
        pack = PackSpec.of(trial.config)
        if pack.packed and label is None:
            n = len(pack.trials)
            return (f"{self._label(trial):<34} step {result.get('step', 0):>6}/{self.total_steps} | "
                    f"{result.get('lanes_done', 0)}/{n} ended | {result.get('verdicts', '')}")
        acc = M.acc_prefix(result)
        modes = result.get(M.EVAL_MODES)
        extra = f" modes {modes:.0f}" if modes is not None else ""
        dist = result.get(M.EVAL_DIRAC_DISTANCE)
        extra += f" |(theta, psi)| {dist:.3g}" if dist is not None else ""
        return (f"{label or self._label(trial):<34} step {result.get('step', 0):>6}/"
                f"{self.total_steps} | D acc real {result.get(M.acc_name(acc, 'real'), math.nan):.2f} "
                f"fake {result.get(M.acc_name(acc, 'fake'), math.nan):.2f}{extra} | {result.get('verdict', '')}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._latest[trial.trial_id] = result
        for lane in result.get("ended", []):  # a pack's trials that ended at this step: a line each
            self._print(f"done {self._row(trial, lane, lane['name'])} | {self._counts(trials)}")
        now = time.time()
        if now - self._last_print >= self.every_s:
            self._last_print = now
            running = [t for t in trials if t.status == "RUNNING" and t.trial_id in self._latest]
            lines = [self._counts(trials)]
            lines += [f"  {self._row(t, self._latest[t.trial_id])}" for t in running]
            self._print("\n".join(lines))

    def on_step_end(self, iteration, trials, **info):
        """The stall watchdog. Each step Tune picks a paused trial to run again (PBT time-multiplexes a population
        larger than the cluster's slots this way), so unfinished trials that are all paused, none running or
        waiting to start, for ``stall_s`` seconds mean Tune's loop lost track of them: it would spin forever.
        Stop it as Ctrl-C does (Tune saves the experiment, paused trials stay resumable); the caller sees the
        stall in ``STALLS`` and restarts the loop from that saved state."""
        unfinished = [t for t in trials if t.status not in ("TERMINATED", "ERROR") and t.trial_id not in self._done]
        if not unfinished or any(t.status != "PAUSED" for t in unfinished):
            self._all_paused_since = None
            return
        now = time.monotonic()
        if self._all_paused_since is None:
            self._all_paused_since = now
        if now - self._all_paused_since < self.stall_s or threading.current_thread() is not threading.main_thread():
            return
        self._all_paused_since = math.inf  # once per loop
        STALLS[self.experiment] = STALLS.get(self.experiment, 0) + 1
        self._print(f"Tune's trial loop stalled: {len(unfinished)} trial(s) paused, none running or starting, for "
                    f"{self.stall_s:g} s; stopping it to restart it from its saved state")
        if int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0")):  # no handler of Tune's to stop it gently
            self._print("Tune's Ctrl-C handler is disabled (TUNE_DISABLE_SIGINT_HANDLER): press Ctrl-C, then "
                        "`ganlab run` the study again to resume it")
            return
        signal.raise_signal(signal.SIGINT)  # Tune's own handler: the loop ends after this step, state saved

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._done.add(trial.trial_id)
        if not PackSpec.of(trial.config).packed:  # a pack's trials had their lines as they ended
            self._print(f"done {self._row(trial, self._latest.get(trial.trial_id, {}))} | {self._counts(trials)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._failed.add(trial.trial_id)
        self._print(f"FAILED {self._label(trial)}; log: {trial.local_path} | "
                    f"{self._counts(trials)}")
        error = (trial.error_file and Path(trial.error_file).is_file() and Path(trial.error_file).read_text()) or ""
        fail_trial_runs(self.study_run, trial.trial_id, PackSpec.of(trial.config).packed,  # the worker died
                        f"failed: {error.strip().splitlines()[-1] if error else 'worker error'}")
