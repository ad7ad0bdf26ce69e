"""Ray Tune integration: a study becomes Tune trials, each trial a ``Trainer`` run in a warm worker.

The trainable is a class (``GanTrainable``): one ``step()`` trains to the next eval step and reports once
(each report costs milliseconds in the driver), Tune can checkpoint it whenever a scheduler needs (PBT),
and with ``reuse_actors`` a worker process, its torch import and its CUDA context serve trial after trial
instead of being paid per trial. Every trial sends its diagnostics to its own MLflow child run, which it
finds again after a restart (resume, worker crash, PBT), so no trial ever gets two runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler

from ganlab import plots
from ganlab.config import (
    AshaSchedulerConfig,
    PbtSchedulerConfig,
    StudyConfig,
    SweepAxis,
    TrialConfig,
    apply_overrides,
)
from ganlab.tracking import (
    TAG_SEED,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_VERDICT,
    StudyRun,
    TrialLogger,
    find_trial_run,
)
from ganlab.trainer import Trainer, resolve_device

CHECKPOINT_FILE = "trainer.pt"
META_FILE = "trial.json"
BEST_FILE = "best.pt"  # artifacts.save_best's models, beside the trainer checkpoint
PROGRESS_EVERY_S = float(os.environ.get("GANLAB_PROGRESS_EVERY", 15))  # seconds between progress tables


def short_names(keys: list[str]) -> dict[str, str]:
    """``optim.lr_ratio`` -> ``lr_ratio`` unless two swept keys end alike, then the full path."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def describe(overrides: dict[str, Any]) -> str:
    names = short_names(list(overrides))
    return " ".join(f"{names[k]}={v:.4g}" if isinstance(v, float) else f"{names[k]}={v}" for k, v in overrides.items())


# --- the search space ---------------------------------------------------------------------------


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
    return {"point": tune.grid_search(points if points is not None else study.points())}


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
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        for k, v in tags.items():
            client.set_tag(run_id, k, v)


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
        return PopulationBasedTraining(
            time_attr="step",  # training iterations, not wall clock
            metric=metric, mode=mode, perturbation_interval=s.interval,
            hyperparam_mutations={"point": {k: _axis_domain(a) for k, a in s.mutations.items()}},
            quantile_fraction=s.quantile, resample_probability=s.resample_probability, synch=s.synchronous,
        )
    return FIFOScheduler()


# --- the trainable -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialContext:
    """Constants every trial needs, shipped once through Ray's object store."""

    study_run: StudyRun
    study: StudyConfig
    objectives: tuple[tuple[str, str], ...]  # (metric, mode) the searcher and scheduler read
    mutated: tuple[str, ...] = ()  # keys PBT changes: also logged as metrics (hp/...)
    extra_tags: dict[str, str] = field(default_factory=dict)
    spool_folder: str | None = None  # where requests to an unreachable tracking server wait


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


class GanTrainable(tune.Trainable):
    """One trial. ``step()`` trains to the next eval step; the MLflow run is committed at every step."""

    def setup(self, config: dict[str, Any], context: TrialContext) -> None:
        for name in ("ray.tune", "ray.train"):  # one "checkpoint created" line per save otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        self.context = context
        self._configure(config)

    def _configure(self, config: dict[str, Any]) -> None:
        point = dict(config.get("point", config))
        self.overrides = self.context.study.resolve(point)
        self.cfg: TrialConfig = apply_overrides(self.context.study.trial, self.overrides)
        resources = self.context.study.resources
        torch.set_num_threads(max(1, math.floor(resources.cpu)))  # no oversubscription beside other trials
        # Ray exposes only the GPUs it assigned to this trial; without a GPU share the trial runs on CPU even
        # on a GPU node, so that GPU-less trials never crowd a GPU another trial was given.
        self.device = "cpu" if resources.gpu == 0 else str(resolve_device(self.cfg.device))
        started = time.perf_counter()
        self.trainer = Trainer(self.cfg, self.device)
        self.compute_s = time.perf_counter() - started  # the trial's own work: building and training, no I/O
        self.io_s = 0.0  # the trial's MLflow calls and checkpoint writes
        self.last_checkpoint = self.last_flush = time.perf_counter()
        self.pending_tags: dict[str, str] = {}
        self.logger: TrialLogger | None = None
        self.latest: dict[str, float] = {}
        self.completed = False
        self.best: dict[str, Any] | None = None  # artifacts.save_best: the best eval step's exported models

    # --- MLflow ---

    def _open_logger(self) -> TrialLogger:
        if self.logger is None:
            node = ray.get_runtime_context()
            tags = {TAG_SEED: str(self.cfg.seed), "ganlab.trial_name": self.trial_name, "ganlab.device": self.device,
                    "ganlab.config_digest": self.cfg.digest(), "ganlab.node_id": node.get_node_id(),
                    "ganlab.node_ip": ray.util.get_node_ip_address(), "ganlab.pid": str(os.getpid()),
                    **self.context.extra_tags}
            if self.device.startswith("cuda"):
                tags["ganlab.gpu_name"] = torch.cuda.get_device_name()
            self.logger = TrialLogger.open(
                self.context.study_run, self.trial_id, f"{self.trial_id.rsplit('_', 1)[-1]} {describe(self.overrides)}",
                self.cfg.flat(), tags, self.cfg.model_dump(mode="json"), self.context.spool_folder,
            )
        return self.logger

    def _close(self, status: str, tags: dict[str, str] | None = None) -> None:
        if self.logger is not None:
            logger, self.logger = self.logger, None
            if status == "KILLED":  # stopped by a scheduler (final) or interrupted (a resume rewrites them)
                try:
                    logger.flush(tags)
                    self._final_artifacts(logger)
                except Exception as e:  # noqa: BLE001 - closing the run matters more than its curves
                    print(f"ganlab: could not store the final artifacts of {self.trial_id}: {e}", file=sys.stderr)
            logger.end(status, tags)

    # --- Tune's interface ---

    def step(self) -> dict[str, Any]:
        io_started = time.perf_counter()
        logger = self._open_logger()
        self.io_s += time.perf_counter() - io_started
        t = self.cfg.train
        stop_at = min((self.trainer.iteration // t.eval_every + 1) * t.eval_every, t.steps)
        last = None
        started, start_iteration = time.perf_counter(), self.trainer.iteration
        start_samples = self.trainer.d_steps * self.cfg.data.batch_size
        every = t.log_every * self.context.study.mlflow_every_logs
        for last in self.trainer.run(stop_at=stop_at):
            to_mlflow = last.evaluated or last.step % every == 0 or last.step == t.steps
            logger.log_metrics(last.step, last.metrics, to_mlflow)
            self.latest.update(last.metrics)
            if last.evaluated:
                self._keep_if_best(last)
        elapsed = time.perf_counter() - started
        self.compute_s += elapsed
        logger.log_metrics(self.trainer.iteration, self._cost(elapsed, start_iteration, start_samples))
        io_started = time.perf_counter()
        if last is not None and self._plot_due(last.step):
            with tempfile.TemporaryDirectory() as tmp:
                logger.log_artifact(plots.samples(self.trainer, Path(tmp) / f"step_{last.step:06d}.png", last.step),
                                    "samples")
        self.io_s += time.perf_counter() - io_started
        if self.context.mutated:  # PBT changes these mid-run: MLflow params cannot, metrics can
            hp = {f"hp/{k}": float(v) for k, v in self.overrides.items() if k in self.context.mutated}
            hp["hp/lr_d"] = self.cfg.optim.lr_d
            logger.log_metrics(self.trainer.iteration, hp)
            self.latest.update(hp)
        diverged = bool(last and last.stopped)
        done = diverged or self.trainer.iteration >= t.steps
        tags = {TAG_VERDICT: last.verdict, "ganlab.verdict_reason": last.reason} if last else {}
        io_started = now = time.perf_counter()
        checkpoint = False
        if done:
            self.completed = True
            tags[TAG_STATUS] = "diverged" if diverged else "finished"
            tags[TAG_STOP_REASON] = (f"diverged at iteration {last.step}: {last.reason}" if diverged
                                     else f"completed {t.steps} iterations")
            logger.flush(tags)
            self._final_artifacts(logger)
            self._close("FINISHED")
        else:
            study = self.context.study
            if t.checkpoint_every:
                checkpoint = self.trainer.iteration % t.checkpoint_every == 0
            else:
                checkpoint = now - self.last_checkpoint >= study.checkpoint_interval_s
            self.pending_tags = tags
            if not checkpoint and now - self.last_flush >= study.flush_interval_s:
                self._flush()  # a checkpoint flushes anyway, in save_checkpoint
        self.io_s += time.perf_counter() - io_started
        result = {"step": self.trainer.iteration, "verdict": last.verdict if last else "", "diverged": int(diverged),
                  "mlflow_run_id": logger.run_id, **_finite(self.latest)}
        for metric, mode in self.context.objectives:
            # Searchers choke on NaN (an Optuna trial would stay RUNNING forever): a diverged or undefined
            # objective is reported as the worst finite value, and `diverged` says what happened.
            if metric not in result:
                result[metric] = self.context.study.search.penalty * (1 if mode == "min" else -1)
        if done:
            result["done"] = True
        elif checkpoint:
            result["should_checkpoint"] = True
        return result

    def _cost(self, elapsed: float, start_iteration: int, start_samples: int) -> dict[str, float]:
        """What the trial costs, so a study compares configurations on cost as well as stability."""
        iterations = max(1, self.trainer.iteration - start_iteration)
        samples = self.trainer.d_steps * self.cfg.data.batch_size - start_samples
        cost = {"cost/compute_s": self.compute_s, "cost/io_s": self.io_s, "cost/s_per_step": elapsed / iterations,
                "cost/samples_per_s": samples / max(elapsed, 1e-9),
                # the worker process's peak resident memory (Linux reports KiB); a reused worker's peak
                # includes the trials it ran before
                "cost/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if self.device.startswith("cuda"):
            cost["cost/cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.latest.update(cost)
        return cost

    def _plot_due(self, step: int) -> bool:
        """``artifacts.sample_plots`` plots spread evenly over training, the last step included; decided from
        the step alone, so a restarted trial plots the same steps."""
        n, t = self.context.study.artifacts.sample_plots, self.cfg.train
        if n == 0:
            return False
        return step == t.steps or (step * n) // t.steps > (max(0, step - t.eval_every) * n) // t.steps

    def _keep_if_best(self, report) -> None:
        wanted = self.context.study.artifacts.save_best
        if wanted is None:
            return
        value = report.metrics.get(wanted.metric)
        if value is None or not math.isfinite(value):
            return
        if self.best is None or (value < self.best["value"] if wanted.mode == "min" else value > self.best["value"]):
            self.best = {"value": float(value), "iteration": report.step, "models": self.trainer.export_models()}

    def _final_artifacts(self, logger: TrialLogger) -> None:
        """The full-resolution history as one Parquet file, its curves, and the final (and best) weights."""
        history = logger.merge_history()  # None while the server is down: `ganlab sync` merges it later
        artifacts = self.context.study.artifacts
        with tempfile.TemporaryDirectory() as tmp:
            if history is not None:
                logger.log_artifact(plots.curves(history, Path(tmp) / "curves.png",
                                                 [c.format(acc=self.trainer.acc) for c in plots.CURVES]))
            if artifacts.save_models:
                torch.save(self.trainer.export_models(), Path(tmp) / "final.pt")
                logger.log_artifact(Path(tmp) / "final.pt", "model")
            if self.best is not None:
                best = {**self.best["models"], "best": {"metric": artifacts.save_best.metric, "mode": artifacts.save_best.mode,
                                                        "value": self.best["value"], "iteration": self.best["iteration"]}}
                torch.save(best, Path(tmp) / "best.pt")
                logger.log_artifact(Path(tmp) / "best.pt", "model")
                logger.set_tags({"ganlab.best": f"{artifacts.save_best.metric} {self.best['value']:.6g} "
                                                f"at iteration {self.best['iteration']}"})

    def _flush(self) -> None:
        """Metrics and the latest verdict tags in one request; never behind the last checkpoint."""
        if self.logger is not None:
            self.logger.flush(self.pending_tags)
            self.pending_tags = {}
        self.last_flush = time.perf_counter()

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        started = time.perf_counter()
        # Every metric up to this step is in MLflow before the checkpoint exists: a trial restored from it
        # skips exactly the steps already stored, so none is lost or stored twice.
        self._flush()
        self.trainer.save(Path(checkpoint_dir) / CHECKPOINT_FILE)
        if self.best is not None:  # a restarted trial must not forget its best step
            torch.save(self.best, Path(checkpoint_dir) / BEST_FILE)
        self.last_checkpoint = time.perf_counter()
        self.io_s += self.last_checkpoint - started
        meta = {"trial_id": self.trial_id, "overrides": self.overrides, "latest": self.latest,
                "iteration": self.trainer.iteration, "compute_s": self.compute_s}
        (Path(checkpoint_dir) / META_FILE).write_text(json.dumps(meta))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        meta = json.loads((Path(checkpoint_dir) / META_FILE).read_text())
        state = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, map_location=self.device, weights_only=True)
        best = Path(checkpoint_dir) / BEST_FILE
        # a PBT clone inherits its source's best: the weights it continues from descend from them
        self.best = torch.load(best, weights_only=True) if best.is_file() else None
        logger = self._open_logger()
        if meta["trial_id"] == self.trial_id:  # this trial's own checkpoint: resume, or retry after a crash
            self.trainer.load_state_dict(state)
            self.latest, self.compute_s = meta["latest"], meta["compute_s"]
            logger.set_tags({"ganlab.resumed_at": str(self.trainer.iteration)})
            return
        # Population-based training cloned another trial: its weights, this trial's new hyper-parameters.
        self.trainer.load_state_dict(state, same_trajectory=False)
        self.latest = meta["latest"]
        logger.flush()
        logger.logged_through = self.trainer.iteration - 1  # a new trajectory from the clone's step on
        changed = {k: (meta["overrides"].get(k), v) for k, v in self.overrides.items() if meta["overrides"].get(k) != v}
        event = (f"iteration {self.trainer.iteration}: cloned {meta['trial_id']}; "
                 + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
        run = logger.client.get_run(logger.run_id)
        history = run.data.tags.get("ganlab.pbt_exploits", "")
        logger.set_tags({"ganlab.pbt_exploits": (history + "\n" if history else "") + event})

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """A warm worker takes the next trial (``reuse_actors``) or PBT's new config: close, rebuild."""
        if not self.completed:
            self._close("KILLED")
        self._configure(new_config)
        return True

    def cleanup(self) -> None:
        if not self.completed:
            self._close("KILLED")  # stopped by a scheduler or the driver; a resume reopens the run


# --- progress --------------------------------------------------------------------------------------


class StudyCallback(tune.Callback):
    """Live progress (a table of running trials and counts by state, every ``PROGRESS_EVERY_S`` seconds,
    and one line per finished trial), and the MLflow side of trials whose worker died for good."""

    def __init__(self, study_run: StudyRun, total_steps: int, every_s: float = PROGRESS_EVERY_S):
        self.study_run = study_run
        self.total_steps = total_steps
        self.every_s = every_s
        self._latest: dict[str, dict] = {}
        self._last_print = 0.0

    @staticmethod
    def _counts(trials) -> str:
        names = {"TERMINATED": "done", "ERROR": "failed", "RUNNING": "running", "PENDING": "pending",
                 "PAUSED": "paused"}
        states: dict[str, int] = {}
        for t in trials:
            states[t.status] = states.get(t.status, 0) + 1
        return ", ".join(f"{n} {names.get(s, s.lower())}" for s, n in states.items())

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
            lines = [f"{len(trials)} trials: {self._counts(trials)}"]
            lines += [f"  {self._row(t, self._latest[t.trial_id])}" for t in running]
            self._print("\n".join(lines))

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = self._latest.get(trial.trial_id, {})
        self._print(f"done {self._row(trial, result)} | {self._counts(trials)}")

    def on_trial_error(self, iteration, trials, trial, **info):
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


# --- the study -------------------------------------------------------------------------------------


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
