"""The Ray Tune trainable: one trial, or a pack of trials trained as one vectorised model, in a warm worker.

The trainable is a class (``GanTrainable``): one ``step()`` trains to the next eval step and reports once
(each report costs milliseconds in the driver), Tune can checkpoint it whenever a scheduler needs (PBT),
and with ``reuse_actors`` a worker process, its torch import and its CUDA context serve trial after trial
instead of being paid per trial. A pack (``config["pack"]``, planned by ``ganlab.study.packs``) trains its
study trials as the lanes of one ``Trainer`` step; each study trial still sends its diagnostics to its own
MLflow child run (``TrialRun``), which it finds again after a restart (resume, worker crash, PBT), so no trial
ever gets two runs, and a lane that diverges ends alone while its pack goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ray import tune

from ganlab.config import ConfigError, PbtSchedulerConfig, StudyConfig, apply_overrides
from ganlab.study.packs import PackSpec
from ganlab.study.trial_run import TrialRun
from ganlab.track.store import TAG_PACK, TAG_PACK_LANES, TAG_PBT_EXPLOITS, StudyRun
from ganlab.train.trainer import Trainer, resolve_device

ENDED_KEYS = ("acc/real", "acc/fake", "acc_sign/real", "acc_sign/fake", "eval/modes", "eval/dirac_distance")
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
    """One trial or one pack. ``step()`` trains to the next eval step; every MLflow run is committed at every
    step."""

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
        pack = PackSpec.of(config)  # the study's trials this Tune trial trains, as the lanes of one model
        resources = study.resources
        torch.set_num_threads(max(1, math.floor(resources.cpu)))  # no oversubscription beside other trials
        specs = []
        for trial in pack.trials:
            point = trial.point
            if isinstance(study.scheduler, PbtSchedulerConfig):
                point = study.scheduler.bounded(point)
            overrides = study.resolve(point)
            try:
                specs.append((overrides, apply_overrides(study.trial, overrides), None))
            except ConfigError as e:  # this trial fails alone (the planner never packs it with others)
                specs.append((overrides, study.trial, f"{e.key}: {e.message}"))
        cfgs = [cfg for _, cfg, _ in specs]
        # Ray exposes only the GPUs it assigned to this trial; without a GPU share the trial runs on CPU even
        # on a GPU node, so that GPU-less trials never crowd a GPU another trial was given.
        self.device = "cpu" if resources.gpu == 0 else str(resolve_device(cfgs[0].device))
        started = time.perf_counter()
        self.trainer = Trainer(cfgs, self.device)
        self.compute_s = time.perf_counter() - started  # the pack's own work: building and training, no I/O
        self.io_s = 0.0  # MLflow calls and checkpoint writes
        self.last_checkpoint = self.last_flush = time.perf_counter()
        pack_tags = {TAG_PACK: self.trial_id, TAG_PACK_LANES: str(len(specs))} if pack.packed else {}
        self.runs = [
            TrialRun(self.context, str(trial_id), overrides, cfg, invalid, self.trainer, lane, self.device, pack_tags)
            for lane, (trial_id, (overrides, cfg, invalid)) in enumerate(zip(pack.trial_ids(self.trial_id), specs))
        ]
        self.cfg = cfgs[0]
        self.ended: list[TrialRun] = []  # trials that ended in the last step (a pack reports them)

    def _live(self) -> list[TrialRun]:
        return [run for run in self.runs if not run.completed]

    # --- Tune's interface ---

    @_working
    def step(self) -> dict[str, Any]:
        if self.runs[0].invalid is not None:
            return self._fail_alone()
        io_started = time.perf_counter()
        for run in self._live():
            run.open()
            run.last = None
        self.io_s += time.perf_counter() - io_started
        t = self.cfg.train
        stop_at = min((self.trainer.iteration // t.eval_every + 1) * t.eval_every, t.steps)
        started, start_iteration, start_samples = time.perf_counter(), self.trainer.iteration, self._samples()
        every = t.log_every * self.context.study.mlflow_every_logs
        record = 0.0
        for report in self.trainer.run_pack(stop_at=stop_at):
            to_mlflow = report.step % t.eval_every == 0 or report.step % every == 0 or report.step == t.steps
            record_started = time.perf_counter()
            for run, lane in zip(self.runs, report.lanes):
                if lane is not None:
                    run.record(lane, to_mlflow or lane.evaluated or lane.stopped)
            record += time.perf_counter() - record_started
        elapsed = time.perf_counter() - started - record
        self.compute_s += elapsed
        self.io_s += record
        io_started = time.perf_counter()
        live = [run for run in self._live() if run.last is not None]
        cost = self._cost(elapsed, start_iteration, start_samples)
        for run in live:
            run.log(run.last.step, cost)  # a lane that diverged mid-step: at its last step, as alone
            if run.artifacts.plot_due(run.last.step):
                run.artifacts.log_sample_plot(run.open(), run.last.step)
            if self.context.mutated:  # PBT changes these mid-run: MLflow params cannot, metrics can
                hp = {f"hp/{k}": float(v) for k, v in run.overrides.items() if k in self.context.mutated}
                # what the optimisers really step with, read back from them: a mutation that never reached them shows
                hp["hp/lr_g"], hp["hp/lr_d"] = self.trainer.learning_rates(run.lane)
                run.log(run.last.step, hp)
        at_end = self.trainer.iteration >= t.steps
        self.ended = []
        for run in live:
            if run.diverged or at_end:
                run.finish()
                self.ended.append(run)
            else:
                run.pending_tags = run.verdict_tags()
        done = not self._live()
        now = time.perf_counter()
        checkpoint = False
        if not done:
            study = self.context.study
            if t.checkpoint_every:
                checkpoint = self.trainer.iteration % t.checkpoint_every == 0
            else:
                checkpoint = now - self.last_checkpoint >= study.checkpoint_interval_s
            if not checkpoint and now - self.last_flush >= study.flush_interval_s:
                self._flush()  # a checkpoint flushes anyway, in save_checkpoint
        self.io_s += time.perf_counter() - io_started
        result = self._result()
        if done:
            result["done"] = True
        elif checkpoint:
            result["should_checkpoint"] = True
        return result

    def _result(self) -> dict[str, Any]:
        """What Tune sees: a single trial's figures (its searcher and scheduler read them), or a pack's counts."""
        result: dict[str, Any] = {"step": self.trainer.iteration, "lanes": len(self.runs)}
        if len(self.runs) > 1:
            verdicts = Counter(run.verdict for run in self.runs)
            result["lanes_done"] = sum(run.completed for run in self.runs)
            result["verdicts"] = ", ".join(f"{n} {v}" for v, n in verdicts.most_common() if v)
            result["ended"] = [{"name": run.name, "step": run.last.step if run.last else self.trainer.iteration,
                                "verdict": run.verdict, **{k: run.latest[k] for k in ENDED_KEYS if k in run.latest}}
                               for run in self.ended]
            return result
        run = self.runs[0]
        last = run.last
        diverged = run.diverged
        result.update({"verdict": last.verdict if last else "", "diverged": int(diverged),
                       "mlflow_run_id": run.logger.run_id if run.logger else "", **_finite(run.latest)})
        for metric, mode in self.context.objectives:
            # A diverged trial is the worst outcome, whatever its last finite figures said (a gap logged before
            # the loss blew up can look good); an undefined objective likewise. Both report the penalty, never
            # NaN (an Optuna trial would stay RUNNING forever), and `diverged` says what happened.
            if diverged or metric not in result:
                result[metric] = self.context.study.search.penalty * (1 if mode == "min" else -1)
        return result

    def _fail_alone(self) -> dict[str, Any]:
        run = self.runs[0]
        run_id = run.fail()
        result = {"step": self.trainer.iteration, "lanes": 1, "verdict": "", "diverged": 0, "done": True,
                  "mlflow_run_id": run_id}
        for metric, mode in self.context.objectives:
            result[metric] = self.context.study.search.penalty * (1 if mode == "min" else -1)
        return result

    def _samples(self) -> int:
        return self.trainer.d_steps * self.cfg.data.batch_size

    def _cost(self, elapsed: float, start_iteration: int, start_samples: int) -> dict[str, float]:
        """What a trial costs, so a study compares configurations on cost as well as stability. In a pack of L
        trials each trial's share: the pack's time over L (what the trial would take on its own is larger)."""
        lanes = len(self.runs)
        iterations = max(1, self.trainer.iteration - start_iteration)
        samples = self._samples() - start_samples
        share = elapsed / lanes
        cost = {"cost/compute_s": self.compute_s / lanes, "cost/io_s": self.io_s / lanes,
                "cost/s_per_step": share / iterations, "cost/samples_per_s": samples / max(share, 1e-9),
                # the worker process's peak resident memory (Linux reports KiB); a reused worker's peak
                # includes the trials it ran before; the pack's, for a trial in a pack
                "cost/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "cost/pack_lanes": float(lanes)}
        if self.device.startswith("cuda"):
            cost["cost/cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return cost

    def _flush(self) -> None:
        for run in self.runs:
            run.flush()
        self.last_flush = time.perf_counter()

    @_working
    def save_checkpoint(self, checkpoint_dir: str) -> str:
        started = time.perf_counter()
        # Every metric up to this step is in MLflow before the checkpoint exists: a trial restored from it
        # skips exactly the steps already stored, so none is lost or stored twice.
        self._flush()
        self.trainer.save(Path(checkpoint_dir) / CHECKPOINT_FILE)
        for run in self.runs:
            run.artifacts.save(checkpoint_dir)
        self.last_checkpoint = time.perf_counter()
        self.io_s += self.last_checkpoint - started
        meta = {"trial_id": self.trial_id, "iteration": self.trainer.iteration, "compute_s": self.compute_s,
                "lanes": [run.meta() for run in self.runs]}
        (Path(checkpoint_dir) / META_FILE).write_text(json.dumps(meta))
        return checkpoint_dir

    @_working
    def load_checkpoint(self, checkpoint_dir: str) -> None:
        meta = json.loads((Path(checkpoint_dir) / META_FILE).read_text())
        state = torch.load(Path(checkpoint_dir) / CHECKPOINT_FILE, map_location=self.device, weights_only=True)
        for run in self.runs:
            run.artifacts.load(checkpoint_dir)
        if meta["trial_id"] == self.trial_id:  # this trial's own checkpoint: resume, or retry after a crash
            self.trainer.load_state_dict(state)
            self.compute_s = meta["compute_s"]
            for run, saved in zip(self.runs, meta["lanes"]):
                run.restore(saved)
            return
        # Population-based training cloned another trial: its weights, this trial's new hyper-parameters.
        (run,), (source,) = self.runs, meta["lanes"]
        self.trainer.load_state_dict(state, same_trajectory=False)
        run.latest = source["latest"]
        logger = run.open()
        logger.continue_from(self.trainer.iteration)
        changed = {k: (source["overrides"].get(k), v) for k, v in run.overrides.items()
                   if source["overrides"].get(k) != v}
        event = (f"iteration {self.trainer.iteration}: cloned {meta['trial_id']}; "
                 + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
        history = logger.client.get_run(logger.run_id).data.tags.get(TAG_PBT_EXPLOITS, "")
        logger.set_tags({TAG_PBT_EXPLOITS: (history + "\n" if history else "") + event})

    @_working
    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """A warm worker takes the next trial (``reuse_actors``) or PBT's new config: close, rebuild."""
        for run in self._live():
            run.close("KILLED")
        self._configure(new_config)
        return True

    @_working
    def cleanup(self) -> None:
        for run in self._live():
            run.close("KILLED")  # stopped by a scheduler or the driver; a resume reopens the run
