"""What a pack's trials store beside their metrics, as artifacts of their MLflow runs: sample pictures spread
over training, the best eval step's models (``artifacts.save_best``: kept in memory and beside every checkpoint,
so a restarted trial keeps them) and, at a trial's end, its curves and final weights.

Pictures are made at pack cost: a plot step generates every live lane's samples in one forward pass of the
packed generator and rasterises them together (``plots.scatters`` / ``plots.image_grids``); the files wait in
the writer's staging folder and reach the store with the next flush, one request per lane.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ganlab.config import ArtifactsConfig, TrainConfig
from ganlab.diagnose import plots
from ganlab.study.trial_run import TrialRun
from ganlab.track.writer import PackWriter
from ganlab.track.store import TAG_BEST

BEST_FILE = "best{lane}.pt"  # artifacts.save_best's models beside the trainer checkpoint ("best.pt" for lane 0)


class PackArtifacts:
    def __init__(self, cfg: ArtifactsConfig, train: TrainConfig, trainer) -> None:
        self.cfg, self.train, self.trainer = cfg, train, trainer

    def plot_due(self, step: int) -> bool:
        """``artifacts.sample_plots`` plots spread evenly over training, the last step included; decided from
        the step alone, so a restarted trial plots the same steps."""
        n, t = self.cfg.sample_plots, self.train
        if n == 0:
            return False
        return step == t.steps or (step * n) // t.steps > (max(0, step - t.eval_every) * n) // t.steps

    def sample_pictures(self, writer: PackWriter, runs: Sequence[TrialRun], step: int) -> None:
        """Every given trial's samples at ``step``, generated and drawn for all of them at once."""
        from ganlab.data import GaussianMixture

        trainer, lanes = self.trainer, [run.lane for run in runs]
        if not lanes:
            return
        name = f"step_{step:06d}.png"
        paths = [writer.stage(lane) / "samples" / name for lane in lanes]
        title = f"step {step}"
        if trainer.data.kind == "images":
            images = trainer.evaluator.generate(plots.SAMPLE_IMAGES, trainer.iteration)[lanes].cpu()
            plots.image_grids(images, paths, titles=[title] * len(lanes))
            return
        means = trainer.data.means.cpu() if isinstance(trainer.data, GaussianMixture) else None
        samples = trainer.evaluator.generate(trainer.cfg.train.eval_samples, trainer.iteration)[lanes].cpu()
        plots.scatters(samples, paths, means, titles=[title] * len(lanes))

    def keep_if_best(self, runs: Sequence[TrialRun], values: dict[str, torch.Tensor], step: int) -> None:
        """At an eval step: each trial whose ``artifacts.save_best`` metric beats its best keeps its models."""
        wanted = self.cfg.save_best
        if wanted is None or wanted.metric not in values:
            return
        column = values[wanted.metric]
        for run in runs:
            run.keep_if_best(float(column[run.lane]), step, wanted.mode, lambda: self.trainer.export_models(run.lane))

    def final(self, writer: PackWriter, runs: Sequence[TrialRun], histories: dict) -> None:
        """Each ending trial's curves (from its history in memory), final and best weights, staged."""
        columns = [c.format(acc=self.trainer.acc) for c in plots.CURVES]
        for run in runs:
            folder = writer.stage(run.lane)
            history = histories.get(run.lane)
            if history is not None and len(history):
                plots.curves(history, folder / "curves.png", columns)
            if self.cfg.save_models:
                (folder / "model").mkdir(exist_ok=True)
                torch.save(self.trainer.export_models(run.lane), folder / "model" / "final.pt")
            if run.best is not None:
                wanted = self.cfg.save_best
                best = {**run.best["models"], "best": {"metric": wanted.metric, "mode": wanted.mode,
                                                       "value": run.best["value"], "iteration": run.best["iteration"]}}
                (folder / "model").mkdir(exist_ok=True)
                torch.save(best, folder / "model" / "best.pt")
                writer.set_tags(run.lane, {TAG_BEST: f"{wanted.metric} {run.best['value']:.6g} "
                                                     f"at iteration {run.best['iteration']}"})

    # --- checkpoints: a restarted trial must not forget its best step ---

    @staticmethod
    def _best_file(lane: int) -> str:
        return BEST_FILE.format(lane=f"_{lane}" if lane else "")

    def save(self, checkpoint_dir: str | Path, runs: Sequence[TrialRun]) -> None:
        for run in runs:
            if run.best is not None:
                torch.save(run.best, Path(checkpoint_dir) / self._best_file(run.lane))

    def load(self, checkpoint_dir: str | Path, runs: Sequence[TrialRun]) -> None:
        """A PBT clone inherits its source's best: the weights it continues from descend from them."""
        for run in runs:
            best = Path(checkpoint_dir) / self._best_file(run.lane)
            run.best = torch.load(best, weights_only=True) if best.is_file() else None
