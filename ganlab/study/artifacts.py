"""What a trial stores beside its metrics, as artifacts of its MLflow run: sample plots spread over
training, the best eval step's models (``artifacts.save_best``: kept in memory and beside every checkpoint,
so a restarted trial keeps them) and, at its end, the merged history, its curves and the final weights."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from ganlab.config import ArtifactsConfig, TrainConfig
from ganlab.diagnose import plots
from ganlab.track.logger import TrialLogger
from ganlab.track.store import TAG_BEST

BEST_FILE = "best{lane}.pt"  # artifacts.save_best's models beside the trainer checkpoint ("best.pt" for lane 0)


class TrialArtifacts:
    def __init__(self, cfg: ArtifactsConfig, train: TrainConfig, trainer, lane: int = 0) -> None:
        """``lane``: this trial's lane of ``trainer`` (a pack trains several trials)."""
        self.cfg, self.train, self.trainer, self.lane = cfg, train, trainer, lane
        self.best: dict[str, Any] | None = None  # the best eval step's value, iteration and exported models

    def plot_due(self, step: int) -> bool:
        """``artifacts.sample_plots`` plots spread evenly over training, the last step included; decided from
        the step alone, so a restarted trial plots the same steps."""
        n, t = self.cfg.sample_plots, self.train
        if n == 0:
            return False
        return step == t.steps or (step * n) // t.steps > (max(0, step - t.eval_every) * n) // t.steps

    def log_sample_plot(self, logger: TrialLogger, step: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            logger.log_artifact(plots.samples(self.trainer, Path(tmp) / f"step_{step:06d}.png", step, self.lane), "samples")

    def keep_if_best(self, report) -> None:
        wanted = self.cfg.save_best
        if wanted is None:
            return
        value = report.metrics.get(wanted.metric)
        if value is None or not math.isfinite(value):
            return
        if self.best is None or (value < self.best["value"] if wanted.mode == "min" else value > self.best["value"]):
            self.best = {"value": float(value), "iteration": report.step, "models": self.trainer.export_models(self.lane)}

    def store_final(self, logger: TrialLogger) -> None:
        """The full-resolution history as one Parquet file, its curves, and the final (and best) weights."""
        history = logger.merge_history()  # None while the server is down: `ganlab sync` merges it later
        with tempfile.TemporaryDirectory() as tmp:
            if history is not None:
                logger.log_artifact(plots.curves(history, Path(tmp) / "curves.png",
                                                 [c.format(acc=self.trainer.acc) for c in plots.CURVES]))
            if self.cfg.save_models:
                torch.save(self.trainer.export_models(self.lane), Path(tmp) / "final.pt")
                logger.log_artifact(Path(tmp) / "final.pt", "model")
            if self.best is not None:
                wanted = self.cfg.save_best
                best = {**self.best["models"], "best": {"metric": wanted.metric, "mode": wanted.mode,
                                                        "value": self.best["value"], "iteration": self.best["iteration"]}}
                torch.save(best, Path(tmp) / "best.pt")
                logger.log_artifact(Path(tmp) / "best.pt", "model")
                logger.set_tags({TAG_BEST: f"{wanted.metric} {self.best['value']:.6g} "
                                          f"at iteration {self.best['iteration']}"})

    @property
    def _best_file(self) -> str:
        return BEST_FILE.format(lane=f"_{self.lane}" if self.lane else "")

    def save(self, checkpoint_dir: str | Path) -> None:
        if self.best is not None:  # a restarted trial must not forget its best step
            torch.save(self.best, Path(checkpoint_dir) / self._best_file)

    def load(self, checkpoint_dir: str | Path) -> None:
        """A PBT clone inherits its source's best: the weights it continues from descend from them."""
        best = Path(checkpoint_dir) / self._best_file
        self.best = torch.load(best, weights_only=True) if best.is_file() else None
