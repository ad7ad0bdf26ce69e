"""How a study's trials are chosen and stopped on Ray Tune: the search space (ganlab's own expansion of
grid and random searches, Optuna's define-by-run space), the searcher, and schedulers (ASHA that records
why it stopped a trial, PBT counted in training iterations)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler

from ganlab.config import AshaSchedulerConfig, PbtSchedulerConfig, StudyConfig, SweepAxis
from ganlab.study.packs import POINT_KEY
from ganlab.track.store import TAG_STATUS, TAG_STOP_REASON


def _axis_domain(axis: SweepAxis) -> Any:
    """PBT's mutation spec for an axis: a list (neighbouring values) or a distribution."""
    if axis.grid is not None or axis.choice is not None:
        return list(axis.grid or axis.choice)  # type: ignore[arg-type]
    if axis.uniform is not None:
        return tune.uniform(*axis.uniform)
    return tune.loguniform(*axis.loguniform)  # type: ignore[misc]


def param_space(study: StudyConfig, points: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Grid and random searches are expanded by ganlab (``StudyConfig.points``: conditions, derived keys,
    seeded draws, no repeated trial) and handed to Tune as one grid over whole trials."""
    if study.search.algorithm == "optuna" and points is None:
        return {}
    return {POINT_KEY: tune.grid_search(points if points is not None else study.points())}


class OptunaSpace:
    """Define-by-run space: an axis whose ``when`` fails is never suggested (conditional parameters).
    A class, not a closure, because Tune pickles the searcher into its experiment state for resume."""

    def __init__(self, study: StudyConfig):
        self.study = study

    def __call__(self, trial) -> dict[str, Any] | None:
        values = self.study.base_values()
        for key, axis in self.study.sweep.items():
            if not axis.holds(values):
                continue
            if axis.grid is not None or axis.choice is not None:
                values[key] = trial.suggest_categorical(key, list(axis.grid or axis.choice))  # type: ignore[arg-type]
            elif axis.uniform is not None:
                values[key] = trial.suggest_float(key, *axis.uniform)
            else:
                values[key] = trial.suggest_float(key, *axis.loguniform, log=True)  # type: ignore[misc]
        return {"seed": self.study.seeds[0]} if self.study.seeds else None


def make_searcher(study: StudyConfig, optuna_db: Path, study_name: str):
    if study.search.algorithm != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    s = study.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metrics, modes = s.metrics, s.modes
    return OptunaSearch(
        space=OptunaSpace(study),
        metric=metrics[0] if len(metrics) == 1 else metrics,
        mode=modes[0] if len(modes) == 1 else modes,
        sampler=optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.startup_trials),
        storage=optuna.storages.RDBStorage(f"sqlite:///{optuna_db.resolve()}"),
        study_name=study_name,
    )


# --- schedulers that say why ----------------------------------------------------------------------


def _tag_run(tracking_uri: str, run_id: str | None, tags: dict[str, str]) -> None:
    if run_id:
        from ganlab.track.store import tag_run

        tag_run(tracking_uri, run_id, tags)


class ExplainedASHA(ASHAScheduler):
    """ASHA that records, on the trial's MLflow run, the rung, its cutoff and the value that lost."""

    def __init__(self, tracking_uri: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._tracking_uri = tracking_uri

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        rung = None
        if self._time_attr in result and self._metric in result and trial.trial_id in self._trial_info:
            for milestone, recorded in self._trial_info[trial.trial_id]._rungs:
                if result[self._time_attr] >= milestone and trial.trial_id not in recorded:
                    rung = (milestone, self._trial_info[trial.trial_id].cutoff(recorded))
                    break
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t and rung:
            milestone, cutoff = rung
            value, sign = result[self._metric], self._metric_op
            better = "below" if sign < 0 else "above"
            reason = (f"asha: stopped at iteration {result[self._time_attr]} of {self._max_t} (rung {milestone:g}): "
                      f"{self._metric} = {value:.4g}, not {better} the rung's cutoff {sign * cutoff:.4g} "
                      f"(the best 1/{self._reduction_factor:g} continue)")
            _tag_run(self._tracking_uri, result.get("mlflow_run_id"), {TAG_STOP_REASON: reason, TAG_STATUS: "stopped"})
        return action


class SyncedPBT(PopulationBasedTraining):
    """Tune 2.60's PBT with a synchronous population that neither stalls nor ends a member early.

    - Stalls. Synchronous PBT runs only members behind the next perturbation time, and after a perturbation sets
      that time to max(previous + interval, the furthest member's time). When no live member is behind it, Tune
      never picks a paused member again and the study waits forever with all of them paused: every resumed study
      (the restored members report first far past the scheduler's fresh first perturbation time), and a study
      whose waited-for member left (it ended early, diverged or was stopped: nothing reports the perturbation
      any more). Here the next perturbation time stays ahead of the slowest live member (the furthest member's
      time plus one interval), checked at each result and whenever Tune looks for a member to run.
    - Members ended early. A member paused at a perturbation time saves its checkpoint first; if the last member
      reaches that time while the save is in flight and the paused one is cloned, Tune stops it mid-save and
      caches a STOP for when the save resolves. That save's future is dropped with the worker, so the STOP waits
      for the clone's next save and ends it there, mid-run, as if finished (seen in CI: a trial "done" at
      iteration 200 of 400, its study reported interrupted). The stale STOP is dropped."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if not self._synch:
            return decision
        self._keep_ahead(tune_controller)
        if (decision == TrialScheduler.PAUSE and trial.status == "RUNNING"
                and self._trial_state[trial].last_train_time < self._next_perturbation_sync):
            # The last member to reach a perturbation, not cloned: Tune pauses it all the same, and with no
            # trial waiting for a slot it ends its worker, so a new one (its imports: seconds of CPU) restores
            # it a moment later. It may run on to the next perturbation: it keeps its worker.
            return TrialScheduler.CONTINUE
        return decision

    def choose_trial_to_run(self, tune_controller):
        if self._synch:
            self._keep_ahead(tune_controller)
        return super().choose_trial_to_run(tune_controller)

    def _keep_ahead(self, tune_controller) -> None:
        times = [self._trial_state[t].last_train_time for t in tune_controller.get_live_trials()
                 if t in self._trial_state]
        if times and min(times) >= self._next_perturbation_sync:
            self._next_perturbation_sync = max(times) + self._perturbation_interval

    def _exploit(self, tune_controller, trial, trial_to_clone) -> None:
        saving = trial.status != "PAUSED" and trial.is_saving
        super()._exploit(tune_controller, trial, trial_to_clone)
        cached = getattr(getattr(tune_controller, "_tune_controller", tune_controller), "_cached_trial_decisions", {})
        if saving and cached.get(trial.trial_id) == TrialScheduler.STOP:  # Tune's private state: read defensively
            del cached[trial.trial_id]


class BoundedExplore:
    """PBT's explore step, kept inside each mutation's range. Ray perturbs a number by x0.8 or x1.2 with no
    bound; the trainable clamps what it trains with, but Tune's own copy would drift past the bound (0.25 ->
    0.2 -> 0.16 ...), so the next perturbations walk from a value no trial ever used and a member sticks at the
    bound for several exploits, and the console showed values outside the range. A class: Tune pickles it with
    the scheduler into the experiment state."""

    def __init__(self, scheduler: PbtSchedulerConfig):
        self.scheduler = scheduler

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, POINT_KEY: self.scheduler.bounded(config[POINT_KEY])}


def make_scheduler(study: StudyConfig, tracking_uri: str) -> TrialScheduler:
    s = study.scheduler
    objective = study.scheduler_objective()
    if isinstance(s, AshaSchedulerConfig):
        metric, mode = objective  # type: ignore[misc]
        return ExplainedASHA(tracking_uri, time_attr="step", metric=metric, mode=mode, max_t=study.trial.train.steps,
                             grace_period=s.grace_steps, reduction_factor=s.reduction_factor)
    if isinstance(s, PbtSchedulerConfig):
        metric, mode = objective  # type: ignore[misc]
        logging.getLogger("ray.tune.schedulers.pbt").setLevel(logging.INFO)  # each exploit, on the console
        # A trial paused before its first result has no result.json yet: Tune warns, harmlessly, per pause.
        logging.getLogger("ray.tune.logger.logger").setLevel(logging.ERROR)
        return SyncedPBT(
            time_attr="step",  # training iterations, not wall clock
            metric=metric, mode=mode, perturbation_interval=s.interval,
            hyperparam_mutations={POINT_KEY: {k: _axis_domain(a) for k, a in s.mutations.items()}},
            quantile_fraction=s.quantile, resample_probability=s.resample_probability, synch=s.synchronous,
            custom_explore_fn=BoundedExplore(s),
        )
    return FIFOScheduler()
