"""A study phase on Ray Tune: connect to (or start) Ray, build or restore the Tuner, run every trial."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from ganlab.config import PbtSchedulerConfig, StudyConfig
from ganlab.study.progress import StudyCallback
from ganlab.study.search import make_scheduler, make_searcher, param_space
from ganlab.study.trainable import GanTrainable, TrialContext
from ganlab.track.store import StudyRun


@dataclass(frozen=True)
class StudyOutcome:
    n_trials: int
    n_errors: int
    n_unfinished: int  # interrupted: resume to finish them
    ray_path: str


def _connect(num_cpus: int | None, address: str | None) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Checkpointing at every eval step is by design (it makes resume exact); Tune's warning about it is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address:  # a cluster started by `ray start` with token auth: the client must use the token too
        token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
            os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
             log_to_driver=True, configure_logging=True, logging_level="WARNING")


def run_study(
    study: StudyConfig,
    study_run: StudyRun,
    folder: Path,
    *,
    points: list[dict[str, Any]] | None = None,
    resume: bool = False,
    num_cpus: int | None = None,
    address: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> StudyOutcome:
    """Run (or resume) every trial; ``folder`` holds Tune's experiment and Optuna's storage."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = study_run.parent_run_id
    objectives: list[tuple[str, str]] = list(zip(study.search.metrics, study.search.modes))
    sched = study.scheduler_objective()
    if sched and sched not in objectives:
        objectives.append(sched)
    mutated = tuple(study.scheduler.mutations) if isinstance(study.scheduler, PbtSchedulerConfig) else ()
    context = TrialContext(study_run, study, tuple(objectives), mutated, dict(extra_tags or {}), str(folder / "spool"))
    trainable = tune.with_resources(
        tune.with_parameters(GanTrainable, context=context),
        {"cpu": study.resources.cpu, "gpu": study.resources.gpu},
    )
    _connect(num_cpus, address)
    try:
        path = folder / name
        if resume and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
        else:
            pbt = isinstance(study.scheduler, PbtSchedulerConfig)
            t = study.trial.train
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(study, points),
                tune_config=tune.TuneConfig(
                    num_samples=study.num_samples if study.search.algorithm == "optuna" and points is None else 1,
                    max_concurrent_trials=study.max_concurrent,
                    search_alg=make_searcher(study, folder / "optuna.db", name) if points is None else None,
                    scheduler=make_scheduler(study, study_run.tracking_uri),
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(folder),
                    verbose=0,
                    callbacks=[StudyCallback(study_run, t.steps)],
                    # The trainable asks for checkpoints itself (train.checkpoint_every, else every
                    # checkpoint_interval_s); PBT forces one whenever it clones a trial.
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if pbt else 2),
                    failure_config=tune.FailureConfig(max_failures=study.max_failures),
                ),
            )
        results = tuner.fit()
        # An interrupted fit() returns normally: count what ended against what the study plans.
        expected = len(points) if points is not None else study.trial_count()
        ended = sum(r.metrics is not None and bool(r.metrics.get("done")) or r.error is not None for r in results)
        return StudyOutcome(len(results), len(results.errors), max(0, expected - ended), results.experiment_path)
    finally:
        ray.shutdown()
