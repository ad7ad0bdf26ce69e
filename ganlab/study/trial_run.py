"""One study trial's side of a pack: its configuration, what it reported last, its verdict, its best models
and how it ended. Its MLflow run is written by the pack's one writer (``ganlab.track.writer.PackWriter``), so
MLflow, ``ganlab.analysis`` and the reports see the same runs, tags and artifacts whether a trial trained alone
or beside hundreds of others.
"""

from __future__ import annotations

import math
from typing import Any

from ganlab.config import TrialConfig
from ganlab.study.packs import TrialId
from ganlab.study.progress import describe
from ganlab.track.writer import RunSpec
from ganlab.track.store import (
    TAG_CONFIG_DIGEST,
    TAG_SEED,
    TAG_STATUS,
    TAG_STOP_REASON,
    TAG_TRIAL_NAME,
    TAG_VERDICT,
    TAG_VERDICT_REASON,
)


class TrialRun:
    def __init__(self, trial_id: str, overrides: dict[str, Any], cfg: TrialConfig, invalid: str | None,
                 lane: int) -> None:
        self.trial_id, self.overrides, self.cfg, self.invalid, self.lane = trial_id, overrides, cfg, invalid, lane
        self.latest: dict[str, float] = {}
        self.step: int | None = None  # the step of its last report in the current Tune step (None: no report)
        self.verdict = ""  # its latest verdict
        self.reason = ""
        self.stopped = False  # diverged: its last report ended it
        self.completed = False
        self.best: dict[str, Any] | None = None  # artifacts.save_best: the best eval step's value, iteration, models

    @property
    def name(self) -> str:
        return f"{TrialId.of(self.trial_id).short} {describe(self.overrides)}"

    def spec(self, tags: dict[str, str]) -> RunSpec:
        """What its run is created with; ``tags``: the pack's (node, device, pack id...)."""
        return RunSpec(self.trial_id, self.name, {**self.cfg.flat(), **(self.overrides if self.invalid else {})},
                       {TAG_SEED: str(self.cfg.seed), TAG_TRIAL_NAME: self.name,
                        TAG_CONFIG_DIGEST: self.cfg.digest(), **tags},
                       self.cfg.model_dump(mode="json"))

    def reported(self, step: int, verdict: str, reason: str, stopped: bool) -> None:
        self.step, self.verdict, self.reason, self.stopped = step, verdict, reason, stopped

    def verdict_tags(self) -> dict[str, str]:
        return {TAG_VERDICT: self.verdict, TAG_VERDICT_REASON: self.reason} if self.step is not None else {}

    def final_tags(self) -> dict[str, str]:
        """The trial trained to its end, or diverged."""
        tags = self.verdict_tags()
        tags[TAG_STATUS] = "diverged" if self.stopped else "finished"
        tags[TAG_STOP_REASON] = (f"diverged at iteration {self.step}: {self.reason}" if self.stopped
                                 else f"completed {self.cfg.train.steps} iterations")
        return tags

    def failed_tags(self) -> dict[str, str]:
        """A configuration no trial can train (a scheduler's perturbation made it invalid)."""
        reason = f"failed: the configuration this trial was given is invalid ({self.invalid})"
        return {TAG_STATUS: "failed", TAG_STOP_REASON: reason[:5000]}

    def keep_if_best(self, value: float, step: int, mode: str, export) -> None:
        """``export()``: the lane's models now, kept when ``value`` beats the best so far (``mode``: min or max)."""
        if not math.isfinite(value):
            return
        if self.best is None or (value < self.best["value"] if mode == "min" else value > self.best["value"]):
            self.best = {"value": float(value), "iteration": step, "models": export()}

    # --- checkpoints ---

    def meta(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "overrides": self.overrides, "latest": self.latest,
                "completed": self.completed, "verdict": self.verdict}

    def restore(self, meta: dict[str, Any]) -> None:
        """This trial's own checkpoint (resume, or a retry after a crash)."""
        self.latest, self.completed, self.verdict = meta["latest"], meta["completed"], meta["verdict"]
