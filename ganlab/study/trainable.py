"""The Ray Tune trainable: one trial, a ``Trainer`` run in a warm, reused worker.

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
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ganlab.config import ConfigError, PbtSchedulerConfig, StudyConfig, TrialConfig, apply_overrides
from ganlab.study.artifacts import TrialArtifacts
from ganlab.study.progress import describe
from ganlab.track.logger import TrialLogger
from ganlab.track.store import TAG_SEED, TAG_STATUS, TAG_STOP_REASON, TAG_VERDICT, StudyRun
from ganlab.train.trainer import Trainer, resolve_device

CHECKPOINT_FILE = "trainer.pt"
META_FILE = "trial.json"


@dataclass(frozen=True)
class TrialContext:
    """Constants every trial needs, shipped once through Ray's object store."""

    study_run: StudyRun
    study: StudyConfig
    objectives: tuple[tuple[str, str], ...]  # (metric, mode) the searcher and scheduler read
    mutated: tuple[str, ...] = ()  # keys PBT changes: also logged as metrics (hp/...)
    extra_tags: dict[str, str] = field(default_factory=dict)
    spool_folder: str | None = None  # where requests to an unreachable tracking server wait


def _working(method):
    """Marks a Tune call as work in progress for the SIGTERM handler below."""
    def wrapper(self, *args, **kwargs):
        self._busy = True
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy = False
    return wrapper


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


class GanTrainable(tune.Trainable):
    """One trial. ``step()`` trains to the next eval step; the MLflow run is committed at every step."""

    def setup(self, config: dict[str, Any], context: TrialContext) -> None:
        for name in ("ray.tune", "ray.train"):  # one "checkpoint created" line per save otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        self.context = context
        self._quiet_idle_exit()
        self._configure(config)

    def _quiet_idle_exit(self) -> None:
        """Ray ends an actor with SIGTERM and its handler raises SystemExit wherever Python happens to be; in
        an idle worker that is often a garbage-collector callback, which prints an "Exception ignored"
        traceback into the user's study output. An idle worker has committed everything (every step, tag
        and checkpoint; requests to an unreachable server wait on disk), so it exits at once and quietly;
        a busy one keeps Ray's behaviour."""
        self._busy = False
        ray_handler = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum, frame):
            if self._busy and callable(ray_handler):
                ray_handler(signum, frame)
            os._exit(0)

        try:
            signal.signal(signal.SIGTERM, on_sigterm)
        except ValueError:  # not the main thread: Ray's handler stays
            pass

    def _configure(self, config: dict[str, Any]) -> None:
        study = self.context.study
        point = dict(config.get("point", config))
        if isinstance(study.scheduler, PbtSchedulerConfig):
            point = study.scheduler.bounded(point)
        self.overrides = study.resolve(point)
        self.invalid: str | None = None  # why a scheduler's configuration cannot be trained: this trial fails alone
        try:
            self.cfg: TrialConfig = apply_overrides(study.trial, self.overrides)
        except ConfigError as e:
            self.invalid, self.cfg = f"{e.key}: {e.message}", study.trial
        resources = study.resources
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
        self.artifacts = TrialArtifacts(self.context.study.artifacts, self.cfg.train, self.trainer)

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
                {**self.cfg.flat(), **(self.overrides if self.invalid else {})}, tags,
                self.cfg.model_dump(mode="json"), self.context.spool_folder,
            )
        return self.logger

    def _close(self, status: str, tags: dict[str, str] | None = None) -> None:
        if self.logger is not None:
            logger, self.logger = self.logger, None
            if status == "KILLED":  # stopped by a scheduler (final) or interrupted (a resume rewrites them)
                try:
                    logger.flush(tags)
                    self.artifacts.store_final(logger)
                except Exception as e:  # noqa: BLE001 - closing the run matters more than its curves
                    print(f"ganlab: could not store the final artifacts of {self.trial_id}: {e}", file=sys.stderr)
            logger.end(status, tags)

    # --- Tune's interface ---

    @_working
    def step(self) -> dict[str, Any]:
        if self.invalid is not None:
            return self._fail_alone()
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
                self.artifacts.keep_if_best(last)
        elapsed = time.perf_counter() - started
        self.compute_s += elapsed
        logger.log_metrics(self.trainer.iteration, self._cost(elapsed, start_iteration, start_samples))
        io_started = time.perf_counter()
        if last is not None and self.artifacts.plot_due(last.step):
            self.artifacts.log_sample_plot(logger, last.step)
        self.io_s += time.perf_counter() - io_started
        if self.context.mutated:  # PBT changes these mid-run: MLflow params cannot, metrics can
            hp = {f"hp/{k}": float(v) for k, v in self.overrides.items() if k in self.context.mutated}
            # what the optimisers really step with, read back from them: a mutation that never reached them shows
            hp["hp/lr_g"], hp["hp/lr_d"] = self.trainer.learning_rates()
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
            self.artifacts.store_final(logger)
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
            # A diverged trial is the worst outcome, whatever its last finite figures said (a gap logged before
            # the loss blew up can look good); an undefined objective likewise. Both report the penalty, never
            # NaN (an Optuna trial would stay RUNNING forever), and `diverged` says what happened.
            if diverged or metric not in result:
                result[metric] = self.context.study.search.penalty * (1 if mode == "min" else -1)
        if done:
            result["done"] = True
        elif checkpoint:
            result["should_checkpoint"] = True
        return result

    def _fail_alone(self) -> dict[str, Any]:
        """A configuration no trial can train (a scheduler's perturbation made it invalid): this trial ends
        FAILED with the reason on its run, and the study goes on."""
        logger = self._open_logger()
        reason = f"failed: the configuration this trial was given is invalid ({self.invalid})"
        logger.end("FAILED", {TAG_STATUS: "failed", TAG_STOP_REASON: reason[:5000]})
        self.logger, self.completed = None, True
        result = {"step": self.trainer.iteration, "verdict": "", "diverged": 0, "done": True,
                  "mlflow_run_id": logger.run_id}
        for metric, mode in self.context.objectives:
            result[metric] = self.context.study.search.penalty * (1 if mode == "min" else -1)
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

    def _flush(self) -> None:
        """Metrics and the latest verdict tags in one request; never behind the last checkpoint."""
        if self.logger is not None:
            self.logger.flush(self.pending_tags)
            self.pending_tags = {}
        self.last_flush = time.perf_counter()

    @_working
    def save_checkpoint(self, checkpoint_dir: str) -> str:
        started = time.perf_counter()
        # Every metric up to this step is in MLflow before the checkpoint exists: a trial restored from it
        # skips exactly the steps already stored, so none is lost or stored twice.
        self._flush()
        self.trainer.save(Path(checkpoint_dir) / CHECKPOINT_FILE)
        self.artifacts.save(checkpoint_dir)
        self.last_checkpoint = time.perf_counter()
        self.io_s += self.last_checkpoint - started
        meta = {"trial_id": self.trial_id, "overrides": self.overrides, "latest": self.latest,
                "iteration": self.trainer.iteration, "compute_s": self.compute_s}
        (Path(checkpoint_dir) / META_FILE).write_text(json.dumps(meta))
        return checkpoint_dir

    @_working
    def load_checkpoint(self, checkpoint_dir: str) -> None:
        meta = json.loads((Path(checkpoint_dir) / META_FILE).read_text())
        state = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, map_location=self.device, weights_only=True)
        self.artifacts.load(checkpoint_dir)
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

    @_working
    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """A warm worker takes the next trial (``reuse_actors``) or PBT's new config: close, rebuild."""
        if not self.completed:
            self._close("KILLED")
        self._configure(new_config)
        return True

    @_working
    def cleanup(self) -> None:
        if not self.completed:
            self._close("KILLED")  # stopped by a scheduler or the driver; a resume reopens the run
