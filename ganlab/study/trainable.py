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
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from ganlab.config import ConfigError, PbtSchedulerConfig, StudyConfig, apply_overrides
from ganlab.study.artifacts import PackArtifacts
from ganlab.study.chart import ChartPlan
from ganlab.study.packs import PackSpec
from ganlab.study.trial_run import TrialRun
from ganlab.track.writer import PackWriter
from ganlab.track.store import (
    TAG_DEVICE,
    TAG_GPU_NAME,
    TAG_NODE_ID,
    TAG_NODE_IP,
    TAG_PACK,
    TAG_PACK_LANES,
    TAG_PBT_EXPLOITS,
    TAG_PID,
    TAG_RESUMED_AT,
    StudyRun,
)
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
        self.packed = pack.packed
        self.runs = [TrialRun(str(trial_id), overrides, cfg, invalid, lane)
                     for lane, (trial_id, (overrides, cfg, invalid)) in enumerate(zip(pack.trial_ids(self.trial_id), specs))]
        self.cfg = cfgs[0]
        background = study.background_flush if study.background_flush is not None else self.device.startswith("cuda")
        self.writer = PackWriter(self.context.study_run, self.trial_id, self.context.spool_folder, background)
        self.opened = False
        self.artifacts = PackArtifacts(study.artifacts, self.cfg.train, self.trainer)
        self.latest: dict[str, np.ndarray] = {}  # metric -> (L,) each lane's latest value
        self.chart = ChartPlan(self.cfg.train, study.chart_points)
        self.ended: list[TrialRun] = []  # trials that ended in the last step (a pack reports them)

    def _open(self) -> None:
        """Every lane's run, found or created by the pack's writer (once per worker)."""
        if self.opened:
            return
        node = ray.get_runtime_context()
        tags = {TAG_DEVICE: self.device, TAG_NODE_ID: node.get_node_id(), TAG_NODE_IP: ray.util.get_node_ip_address(),
                TAG_PID: str(os.getpid()), **self.context.extra_tags}
        if self.packed:
            tags.update({TAG_PACK: self.trial_id, TAG_PACK_LANES: str(len(self.runs))})
        if self.device.startswith("cuda"):
            tags[TAG_GPU_NAME] = torch.cuda.get_device_name()
        self.writer.open([run.spec(tags) for run in self.runs])
        self.opened = True

    def _live(self) -> list[TrialRun]:
        return [run for run in self.runs if not run.completed]

    # --- Tune's interface ---

    @_working
    def step(self) -> dict[str, Any]:
        if self.runs[0].invalid is not None:
            return self._fail_alone()
        io_started = time.perf_counter()
        self._open()
        for run in self._live():
            run.step = None
        self.io_s += time.perf_counter() - io_started
        t = self.cfg.train
        stop_at = min((self.trainer.iteration // t.eval_every + 1) * t.eval_every, t.steps)
        started, start_iteration, start_samples = time.perf_counter(), self.trainer.iteration, self._samples()
        live = np.array([not run.completed for run in self.runs])
        record = 0.0
        for report in self.trainer.run_pack(stop_at=stop_at):
            record_started = time.perf_counter()
            self._record(report, live)
            record += time.perf_counter() - record_started
        elapsed = time.perf_counter() - started - record
        self.compute_s += elapsed
        self.io_s += record
        io_started = time.perf_counter()
        reported = [run for run in self._live() if run.step is not None]
        cost = self._cost(elapsed, start_iteration, start_samples)
        for run in reported:
            self.writer.log(run.lane, run.step, cost)  # a lane that diverged mid-step: at its last step, as alone
            run.latest.update(cost)
            if self.context.mutated:  # PBT changes these mid-run: MLflow params cannot, metrics can
                hp = {f"hp/{k}": float(v) for k, v in run.overrides.items() if k in self.context.mutated}
                # what the optimisers really step with, read back from them: a mutation that never reached them shows
                hp["hp/lr_g"], hp["hp/lr_d"] = self.trainer.learning_rates(run.lane)
                self.writer.log(run.lane, run.step, hp)
                run.latest.update(hp)
        for step in sorted({run.step for run in reported}):
            if self.artifacts.plot_due(step):
                self.artifacts.sample_pictures(self.writer, [run for run in reported if run.step == step], step)
        at_end = self.trainer.iteration >= t.steps
        self.ended = [run for run in reported if run.stopped or at_end]
        for run in reported:
            if run not in self.ended:
                self.writer.set_tags(run.lane, run.verdict_tags())
        if self.ended:
            self._finish(self.ended, "FINISHED", final=True)
        elif len(self.runs) == 1:
            self._sync_latest(self.runs)
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
        else:
            self.writer.close()
        self.io_s += time.perf_counter() - io_started
        result = self._result()
        if done:
            result["done"] = True
        elif checkpoint:
            result["should_checkpoint"] = True
        return result

    def _record(self, report, live: np.ndarray) -> None:
        """One logged step of every lane, to the pack's writer: every figure to the Parquet history, to MLflow
        what ``ChartPlan`` says (every figure at a lane's last step)."""
        step, names = report.step, report.names
        values = report.values.numpy()
        reported = report.reported.numpy() & live
        stopped = report.stopped.numpy() & reported
        lanes = np.flatnonzero(reported)
        if not len(lanes):
            return
        last = stopped[lanes]
        if (~last).any():
            self.writer.record(step, names, values[lanes[~last]], lanes[~last], self.chart.columns(names, step, report.evaluated))
        if last.any():
            self.writer.record(step, names, values[lanes[last]], lanes[last], None)
        n_lanes = len(self.runs)
        for k, name in enumerate(names):
            column = self.latest.get(name)
            if column is None:
                column = self.latest[name] = np.full(n_lanes, np.nan)
            column[lanes] = values[lanes, k]
        for lane in lanes.tolist():
            self.runs[lane].reported(step, report.verdicts[lane], report.reasons[lane], bool(stopped[lane]))
        if report.evaluated:
            self.artifacts.keep_if_best([self.runs[lane] for lane in lanes.tolist()],
                                        {n: values[:, k] for k, n in enumerate(names)}, step)

    def _sync_latest(self, runs) -> None:
        """Each run's latest figures as a dict (what Tune, the progress lines and checkpoints read)."""
        for run in runs:
            run.latest.update({name: float(column[run.lane]) for name, column in self.latest.items()
                               if not np.isnan(column[run.lane])})

    def _finish(self, runs: list[TrialRun], status: str, final: bool) -> None:
        """End these trials' runs together: final tags (``final``: trained to the end or diverged; else verdict
        tags only), curves, weights and each history, then the runs closed with ``status``."""
        self._sync_latest(runs)
        lanes = [run.lane for run in runs]
        histories = self.writer.histories(lanes)
        try:
            self.artifacts.final(self.writer, runs, histories)
        except Exception as e:  # noqa: BLE001 - closing the runs matters more than their curves
            if final:
                raise
            print(f"ganlab: could not store the final artifacts of {self.trial_id}: {e}", file=sys.stderr)
        tags = {run.lane: run.final_tags() if final else run.verdict_tags() for run in runs}
        self.writer.end(lanes, status, tags, histories)
        for run in runs:
            run.completed = run.completed or final

    def _result(self) -> dict[str, Any]:
        """What Tune sees: a single trial's figures (its searcher and scheduler read them), or a pack's counts."""
        result: dict[str, Any] = {"step": self.trainer.iteration, "lanes": len(self.runs)}
        if len(self.runs) > 1:
            verdicts = Counter(run.verdict for run in self.runs)
            result["lanes_done"] = sum(run.completed for run in self.runs)
            result["verdicts"] = ", ".join(f"{n} {v}" for v, n in verdicts.most_common() if v)
            result["ended"] = [{"name": run.name, "step": run.step if run.step is not None else self.trainer.iteration,
                                "verdict": run.verdict, **{k: run.latest[k] for k in ENDED_KEYS if k in run.latest}}
                               for run in self.ended]
            return result
        run = self.runs[0]
        diverged = run.stopped
        result.update({"verdict": run.verdict if run.step is not None else "", "diverged": int(diverged),
                       "mlflow_run_id": self.writer.lanes[0].run_id if self.opened else "", **_finite(run.latest)})
        for metric, mode in self.context.objectives:
            # A diverged trial is the worst outcome, whatever its last finite figures said (a gap logged before
            # the loss blew up can look good); an undefined objective likewise. Both report the penalty, never
            # NaN (an Optuna trial would stay RUNNING forever), and `diverged` says what happened.
            if diverged or metric not in result:
                result[metric] = self.context.study.search.penalty * (1 if mode == "min" else -1)
        return result

    def _fail_alone(self) -> dict[str, Any]:
        run = self.runs[0]
        self._open()
        self.writer.end([0], "FAILED", {0: run.failed_tags()})
        self.writer.close()
        run.completed = True
        run_id = self.writer.lanes[0].run_id
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

    def _flush(self, wait: bool = False) -> None:
        """A periodic flush runs in the writer thread where there is one; a checkpoint's waits for the store."""
        if self.opened:
            self.writer.flush(wait=wait)
        self.last_flush = time.perf_counter()

    @_working
    def save_checkpoint(self, checkpoint_dir: str) -> str:
        started = time.perf_counter()
        # Every metric up to this step is in MLflow before the checkpoint exists: a trial restored from it
        # skips exactly the steps already stored, so none is lost or stored twice.
        self._flush(wait=True)
        self.trainer.save(Path(checkpoint_dir) / CHECKPOINT_FILE)
        self.artifacts.save(checkpoint_dir, self.runs)
        self._sync_latest(self._live())
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
        self.artifacts.load(checkpoint_dir, self.runs)
        self._open()
        if meta["trial_id"] == self.trial_id:  # this trial's own checkpoint: resume, or retry after a crash
            self.trainer.load_state_dict(state)
            self.compute_s = meta["compute_s"]
            for run, saved in zip(self.runs, meta["lanes"]):
                run.restore(saved)
                if not run.completed:
                    self.writer.set_tags(run.lane, {TAG_RESUMED_AT: str(self.trainer.iteration)})
            return
        # Population-based training cloned another trial: its weights, this trial's new hyper-parameters.
        (run,), (source,) = self.runs, meta["lanes"]
        self.trainer.load_state_dict(state, same_trajectory=False)
        run.latest = source["latest"]
        self.writer.continue_from(0, self.trainer.iteration)
        changed = {k: (source["overrides"].get(k), v) for k, v in run.overrides.items()
                   if source["overrides"].get(k) != v}
        event = (f"iteration {self.trainer.iteration}: cloned {meta['trial_id']}; "
                 + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
        history = self.writer.client.get_run(self.writer.lanes[0].run_id).data.tags.get(TAG_PBT_EXPLOITS, "")
        self.writer.set_tags(0, {TAG_PBT_EXPLOITS: (history + "\n" if history else "") + event})

    @_working
    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """A warm worker takes the next trial (``reuse_actors``) or PBT's new config: close, rebuild."""
        self._close_live()
        self._configure(new_config)
        return True

    @_working
    def cleanup(self) -> None:
        self._close_live()  # stopped by a scheduler or the driver; a resume reopens the runs

    def _close_live(self) -> None:
        live = self._live()
        if self.opened and live:
            self._finish(live, "KILLED", final=False)
        self.writer.close()
