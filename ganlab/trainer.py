"""The GAN training loop. One ``Trainer`` per trial; it knows nothing of Ray or MLflow.

``run()`` yields the diagnostics at every log step (and sample quality at eval steps); whoever drives
it decides where they go. Every random stream (model init, data, latents, evaluation) comes from its
own generator derived from the seed, so a trial is reproducible bit for bit on CPU, and evaluating
more or less often never changes the training trajectory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ganlab.config import TrialConfig
from ganlab.data import make_dataset
from ganlab.diagnostics import Collector, SlidingWindow, d_accuracy, mode_metrics, oscillation
from ganlab.losses import discriminator_loss, generator_loss
from ganlab.models import build_models


@dataclass(frozen=True)
class StepReport:
    step: int  # generator updates so far: the x-axis of every metric
    metrics: dict[str, float]
    evaluated: bool  # the metrics include the eval/* sample-quality figures


def _stream_seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for n random streams (SeedSequence avoids correlated neighbouring seeds)."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(n)]


def toggle_grad(model: torch.nn.Module, requires_grad: bool) -> None:
    """Freeze the player that is not being updated, so its parameter gradients are never computed."""
    for p in model.parameters():
        p.requires_grad_(requires_grad)


class Trainer:
    def __init__(self, cfg: TrialConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.data = make_dataset(cfg.data)
        init_seed, data_seed, z_seed, self._eval_seed = _stream_seeds(cfg.seed, 4)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.G, self.D = build_models(cfg.model, self.data.dim)
        self.G.to(self.device)
        self.D.to(self.device)
        self.data_rng = torch.Generator().manual_seed(data_seed)
        self.z_rng = torch.Generator().manual_seed(z_seed)
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas)
        self.stats = Collector()
        self.d_loss_window = SlidingWindow(cfg.diagnostics.window)
        self.g_loss_window = SlidingWindow(cfg.diagnostics.window)
        self.g_steps = 0
        self.d_steps = 0

    # --- one update of each player -------------------------------------------------------------

    def _latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.latent_dim, generator=generator).to(self.device)

    def discriminator_step(self) -> torch.Tensor:
        bs = self.cfg.data.batch_size
        toggle_grad(self.D, True)
        real = self.data.sample(bs, self.data_rng).to(self.device)
        with torch.no_grad():
            fake = self.G(self._latents(bs, self.z_rng))
        real_logits, fake_logits = self.D(real), self.D(fake)
        loss = discriminator_loss(self.cfg.loss.name, real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self.d_steps += 1
        # Accuracy of the D that produced these logits, i.e. before this update.
        acc_real, acc_fake = d_accuracy(real_logits.detach(), fake_logits.detach())
        self.stats.report("acc/real", acc_real)
        self.stats.report("acc/fake", acc_fake)
        self.stats.report("acc/mean", (acc_real + acc_fake) / 2)
        self.stats.report("loss/d", loss)
        return loss.detach()

    def generator_step(self) -> torch.Tensor:
        toggle_grad(self.D, False)
        fake = self.G(self._latents(self.cfg.data.batch_size, self.z_rng))
        loss = generator_loss(self.cfg.loss.name, self.D(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.g_steps += 1
        self.stats.report("loss/g", loss)
        return loss.detach()

    def train_step(self) -> None:
        """``d_steps`` discriminator updates, then one generator update (alternating)."""
        d_losses = torch.stack([self.discriminator_step() for _ in range(self.cfg.schedule.d_steps)])
        g_loss = self.generator_step()
        self.d_loss_window.push(d_losses.mean())
        self.g_loss_window.push(g_loss)

    # --- what gets logged ----------------------------------------------------------------------

    def log_metrics(self) -> dict[str, float]:
        metrics = self.stats.reduce()
        for name, window in (("loss_d", self.d_loss_window), ("loss_g", self.g_loss_window)):
            for stat, value in oscillation(window.values()).items():
                metrics[f"osc/{name}_{stat}"] = value
        metrics["progress/g_steps"] = float(self.g_steps)
        metrics["progress/d_steps"] = float(self.d_steps)
        metrics["progress/real_samples"] = float(self.d_steps * self.cfg.data.batch_size)
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Sample quality on a fresh batch whose latents depend only on (seed, step)."""
        rng = torch.Generator().manual_seed(self._eval_seed + self.g_steps)
        self.G.eval()
        samples = self.G(self._latents(self.cfg.train.eval_samples, rng)).cpu()
        self.G.train()
        stats = mode_metrics(samples, self.data, self.cfg.diagnostics.hq_sigmas)
        return {f"eval/{k}": v for k, v in stats.items()}

    def run(self) -> Iterator[StepReport]:
        t = self.cfg.train
        while self.g_steps < t.steps:
            self.train_step()
            step, last = self.g_steps, self.g_steps == t.steps
            log_now = step % t.log_every == 0 or last
            eval_now = step % t.eval_every == 0 or last
            if log_now or eval_now:
                metrics = self.log_metrics() if log_now else {}
                if eval_now:
                    metrics.update(self.evaluate())
                yield StepReport(step, metrics, eval_now)
