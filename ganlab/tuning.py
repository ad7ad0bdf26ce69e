"""Ray Tune integration: a study becomes a Tune search space, each trial a ``Trainer`` run.

The trainable reports to Tune only at eval steps (each report costs milliseconds in the driver) and
sends every logged diagnostic to its own MLflow child run in batches.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ganlab.config import StudyConfig, SweepAxis, apply_overrides
from ganlab.tracking import TAG_SEED, TAG_TRIAL_ID, TAG_VERDICT, StudyRun, TrialLogger
from ganlab.trainer import Trainer, resolve_device


def short_names(keys: list[str]) -> dict[str, str]:
    """``optim.lr_ratio`` -> ``lr_ratio`` unless two swept keys end alike, then the full path."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def describe(overrides: dict[str, Any]) -> str:
    names = short_names(list(overrides))
    return " ".join(f"{names[k]}={v:.4g}" if isinstance(v, float) else f"{names[k]}={v}" for k, v in overrides.items())


def _axis_space(axis: SweepAxis) -> Any:
    if axis.grid is not None:
        return tune.grid_search(list(axis.grid))
    if axis.choice is not None:
        return tune.choice(list(axis.choice))
    if axis.uniform is not None:
        return tune.uniform(*axis.uniform)
    return tune.loguniform(*axis.loguniform)  # type: ignore[misc]


def param_space(study: StudyConfig) -> dict[str, Any]:
    overrides = {key: _axis_space(axis) for key, axis in study.sweep.items()}
    if study.seeds is not None:
        overrides["seed"] = tune.grid_search(list(study.seeds))
    return {"overrides": overrides}


@dataclass(frozen=True)
class TrialContext:
    """Constants every trial needs, shipped once through Ray's object store."""

    study: StudyRun
    base_trial: dict[str, Any]
    cpus: float
    gpus: float


def train_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Tune trainable: one GAN training run, logged to its own MLflow child run."""
    torch.set_num_threads(max(1, math.floor(context.cpus)))  # no oversubscription beside other trials
    overrides = dict(config["overrides"])
    trial_cfg = apply_overrides(context.base_trial, overrides)
    # Ray exposes only the GPUs it assigned to this trial; without a GPU share the trial runs on CPU
    # even on a GPU node, so that GPU-less trials never crowd a GPU another trial was given.
    device = "cpu" if context.gpus == 0 else str(resolve_device(trial_cfg.device))
    tctx = tune.get_context()
    trial_id = tctx.get_trial_id()
    logger = TrialLogger.start(
        context.study,
        run_name=f"{trial_id.rsplit('_', 1)[-1]} {describe(overrides)}",
        params=trial_cfg.flat(),
        tags={TAG_TRIAL_ID: trial_id, "ganlab.trial_name": tctx.get_trial_name(), TAG_SEED: str(trial_cfg.seed),
              "ganlab.device": device, "ganlab.config_digest": trial_cfg.digest(),
              **({"ganlab.gpu_name": torch.cuda.get_device_name()} if device.startswith("cuda") else {})},
        config=trial_cfg.model_dump(mode="json"),
    )
    status = "FAILED"
    try:
        for report in Trainer(trial_cfg, device).run():
            logger.log_metrics(report.step, report.metrics)
            if report.evaluated:
                tags = {TAG_VERDICT: report.verdict, "ganlab.verdict_reason": report.reason}
                if report.stopped:
                    tags["ganlab.stop_reason"] = f"diverged at iteration {report.step}: {report.reason}"
                logger.set_tags(tags)  # the verdict is kept up to date while the trial runs
                logger.flush()
                # Non-finite values never reach Tune (searchers choke on NaN); `diverged` says what happened.
                finite = {k: v for k, v in report.metrics.items() if math.isfinite(v)}
                tune.report({"step": report.step, "verdict": report.verdict, "diverged": int(report.stopped), **finite})
        status = "FINISHED"
    except (SystemExit, KeyboardInterrupt):
        status = "KILLED"  # a scheduler stop arrives as SystemExit from tune.report
        raise
    finally:
        logger.end(status)


class ProgressPrinter(tune.Callback):
    """One line per eval report and per finished trial, so a long study is never silent."""

    def __init__(self, total_steps: int, n_modes: int | None, stream=None):
        self.total_steps = total_steps
        self.n_modes = n_modes
        self.stream = stream or sys.stdout

    def _counts(self, trials) -> str:
        states: dict[str, int] = {}
        for t in trials:
            states[t.status] = states.get(t.status, 0) + 1
        order = ["TERMINATED", "ERROR", "RUNNING", "PENDING", "PAUSED"]
        names = {"TERMINATED": "done", "ERROR": "failed", "RUNNING": "running", "PENDING": "pending"}
        return ", ".join(f"{states[s]} {names.get(s, s.lower())}" for s in order if states.get(s))

    def _print(self, text: str) -> None:
        print(f"[ganlab {time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        modes, dist = result.get("eval/modes"), result.get("eval/dirac_distance")
        modes_txt = f" | modes {modes:.0f}/{self.n_modes}" if modes is not None and self.n_modes else ""
        modes_txt += f" | |(theta, psi)| {dist:.3g}" if dist is not None else ""
        self._print(
            f"{describe(trial.config['overrides']):<28} step {result['step']:>6}/{self.total_steps}"
            f" | D acc real {result.get('acc/real', result.get('acc_sign/real', math.nan)):.2f}"
            f" fake {result.get('acc/fake', result.get('acc_sign/fake', math.nan)):.2f}"
            f"{modes_txt} | {result.get('verdict', '')} | {self._counts(trials)}"
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(f"{describe(trial.config['overrides'])} FAILED; log: {trial.local_path} | {self._counts(trials)}")


@dataclass(frozen=True)
class StudyOutcome:
    n_trials: int
    n_errors: int
    ray_path: str


def run_study(
    study: StudyConfig,
    study_run: StudyRun,
    storage: Path,
    num_cpus: int | None = None,
    address: str | None = None,
) -> StudyOutcome:
    from ganlab.data import make_dataset  # only for the progress line's mode count

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
             log_to_driver=True, configure_logging=True, logging_level="WARNING")
    try:
        context = TrialContext(study_run, study.trial.model_dump(mode="json"), study.resources.cpu, study.resources.gpu)
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, context=context),
            {"cpu": study.resources.cpu, "gpu": study.resources.gpu},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(study),
            tune_config=tune.TuneConfig(num_samples=study.num_samples, max_concurrent_trials=study.max_concurrent),
            run_config=tune.RunConfig(
                name=study_run.parent_run_id,
                storage_path=str(storage.resolve()),
                verbose=0,
                callbacks=[ProgressPrinter(study.trial.train.steps, getattr(make_dataset(study.trial.data), 'n_modes', None))],
            ),
        )
        results = tuner.fit()
        return StudyOutcome(len(results), len(results.errors), results.experiment_path)
    finally:
        ray.shutdown()
