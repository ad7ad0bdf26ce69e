"""One study trial's MLflow side: its child run, what it logged last, its artifacts and how it ended.

A Tune trial (``GanTrainable``) trains one study trial, or a pack of them as lanes of one vectorised model;
each study trial keeps its own ``TrialRun`` either way, so MLflow, ``ganlab.analysis`` and the reports see the
same runs, tags and artifacts whether a trial trained alone or beside others.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ray
import torch

from ganlab.config import TrialConfig
from ganlab.study.artifacts import TrialArtifacts
from ganlab.study.packs import TrialId
from ganlab.study.progress import describe
from ganlab.track.logger import TrialLogger
from ganlab.track.store import (
    TAG_CONFIG_DIGEST,
    TAG_DEVICE,
    TAG_GPU_NAME,
    TAG_NODE_ID,
    TAG_NODE_IP,
    TAG_PID,
    TAG_RESUMED_AT,
    TAG_SEED,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_TRIAL_NAME,
    TAG_VERDICT,
    TAG_VERDICT_REASON,
)
from ganlab.train.trainer import StepReport


class TrialRun:
    def __init__(self, context, trial_id: str, overrides: dict[str, Any], cfg: TrialConfig, invalid: str | None,
                 trainer, lane: int, device: str, pack: dict[str, str]) -> None:
        """``pack``: tags naming the pack this trial trains in (empty when it trains alone)."""
        self.context, self.trial_id, self.overrides, self.cfg = context, trial_id, overrides, cfg
        self.invalid, self.trainer, self.lane, self.device, self.pack = invalid, trainer, lane, device, pack
        self.artifacts = TrialArtifacts(context.study.artifacts, cfg.train, trainer, lane)
        self.logger: TrialLogger | None = None
        self.latest: dict[str, float] = {}
        self.pending_tags: dict[str, str] = {}
        self.last: StepReport | None = None  # this trial's last report in the current Tune step
        self.verdict = ""  # its latest verdict
        self.completed = False

    @property
    def name(self) -> str:
        return f"{TrialId.of(self.trial_id).short} {describe(self.overrides)}"

    def open(self) -> TrialLogger:
        if self.logger is None:
            node = ray.get_runtime_context()
            tags = {TAG_SEED: str(self.cfg.seed), TAG_TRIAL_NAME: self.name, TAG_DEVICE: self.device,
                    TAG_CONFIG_DIGEST: self.cfg.digest(), TAG_NODE_ID: node.get_node_id(),
                    TAG_NODE_IP: ray.util.get_node_ip_address(), TAG_PID: str(os.getpid()),
                    **self.pack, **self.context.extra_tags}
            if self.device.startswith("cuda"):
                tags[TAG_GPU_NAME] = torch.cuda.get_device_name()
            self.logger = TrialLogger.open(
                self.context.study_run, self.trial_id, self.name,
                {**self.cfg.flat(), **(self.overrides if self.invalid else {})}, tags,
                self.cfg.model_dump(mode="json"), self.context.spool_folder,
            )
        return self.logger

    def record(self, report: StepReport, to_mlflow: bool) -> None:
        self.open().log_metrics(report.step, report.metrics, to_mlflow)
        self.latest.update(report.metrics)
        self.last, self.verdict = report, report.verdict
        if report.evaluated:
            self.artifacts.keep_if_best(report)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.open().log_metrics(step, metrics)
        self.latest.update(metrics)

    @property
    def diverged(self) -> bool:
        return bool(self.last and self.last.stopped)

    def verdict_tags(self) -> dict[str, str]:
        last = self.last
        return {TAG_VERDICT: last.verdict, TAG_VERDICT_REASON: last.reason} if last else {}

    def finish(self) -> None:
        """The trial trained to its end, or diverged: final tags, artifacts, the run closed FINISHED."""
        logger, last, steps = self.open(), self.last, self.cfg.train.steps
        tags = self.verdict_tags()
        tags[TAG_STATUS] = "diverged" if self.diverged else "finished"
        tags[TAG_STOP_REASON] = (f"diverged at iteration {last.step}: {last.reason}" if self.diverged and last
                                 else f"completed {steps} iterations")
        logger.flush(tags)
        self.artifacts.store_final(logger)
        self.completed = True
        self.close("FINISHED")

    def fail(self) -> str:
        """A configuration no trial can train (a scheduler's perturbation made it invalid): this trial ends
        FAILED with the reason on its run, and the study goes on. Returns the run's id."""
        logger = self.open()
        reason = f"failed: the configuration this trial was given is invalid ({self.invalid})"
        logger.end("FAILED", {TAG_STATUS: "failed", TAG_STOP_REASON: reason[:5000]})
        self.logger, self.completed = None, True
        return logger.run_id

    def flush(self) -> None:
        """Metrics and the latest verdict tags in one request; never behind the last checkpoint."""
        if self.logger is not None:
            self.logger.flush(self.pending_tags)
            self.pending_tags = {}

    def close(self, status: str, tags: dict[str, str] | None = None) -> None:
        if self.logger is not None:
            logger, self.logger = self.logger, None
            if status == "KILLED":  # stopped by a scheduler (final) or interrupted (a resume rewrites them)
                try:
                    logger.flush(tags)
                    self.artifacts.store_final(logger)
                except Exception as e:  # noqa: BLE001 - closing the run matters more than its curves
                    print(f"ganlab: could not store the final artifacts of {self.trial_id}: {e}", file=sys.stderr)
            logger.end(status, tags)

    # --- checkpoints ---

    def meta(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "overrides": self.overrides, "latest": self.latest,
                "completed": self.completed, "verdict": self.verdict}

    def restore(self, meta: dict[str, Any]) -> None:
        """This trial's own checkpoint (resume, or a retry after a crash)."""
        self.latest, self.completed, self.verdict = meta["latest"], meta["completed"], meta["verdict"]
        if not self.completed:
            self.open().set_tags({TAG_RESUMED_AT: str(self.trainer.iteration)})
