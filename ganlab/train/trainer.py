"""The GAN training loop. One ``Trainer`` per trial; it knows nothing of Ray or MLflow.

``run()`` yields the diagnostics at every log step (and sample quality at eval steps, ``evaluation``);
whoever drives it decides where they go. Every random stream (model init, data, latents, noise, evaluation)
comes from its own generator derived from the seed, so a trial is reproducible bit for bit on CPU,
evaluating more or less often never changes the training trajectory, and a checkpoint that stores the
streams' states (``checkpoint``) resumes to exactly the uninterrupted run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.config import AdamConfig, RmspropConfig, SgdConfig, TrialConfig
from ganlab.data import make_dataset
from ganlab.diagnose.balance import acc_gap, binomial_var, d_accuracy, d_auc
from ganlab.diagnose.oscillation import beyond_noise, periodicity, zero_crossing_rate
from ganlab.diagnose.stats import Collector, SlidingWindow
from ganlab.diagnose.verdict import VerdictTracker
from ganlab.train import checkpoint
from ganlab.train.evaluation import Evaluator
from ganlab.train.losses import (
    CRITICS,
    EQUILIBRIUM_LOSS,
    decision_threshold,
    discriminator_loss,
    discriminator_terms,
    generator_loss,
    generator_terms,
)
from ganlab.train.models import build_models
from ganlab.train.regularizers import clip_weights, instance_noise_sigma, wgan_gp_penalty, zero_centered_penalty

CheckpointMismatch = checkpoint.CheckpointMismatch  # what resuming under another config raises

# The per-iteration series whose oscillation is measured beyond batch noise (osc/<series>_*), in the order of
# the columns of the trainer's series window: each series' value, then its noise variance.
SERIES = ("loss_d", "loss_g", "acc_real", "acc_fake")



@dataclass(frozen=True)
class StepReport:
    step: int  # training iterations so far: the x-axis of every metric
    metrics: dict[str, float]
    evaluated: bool  # the metrics include the eval/* figures
    verdict: str = "unbalanced"
    reason: str = ""
    stopped: bool = False  # training ended early (diverged): this is the last report


def _stream_seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for n random streams (SeedSequence avoids correlated neighbouring seeds)."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(n)]


def toggle_grad(params, requires_grad: bool) -> None:
    """Freeze the player that is not being updated, so its parameter gradients are never computed."""
    for p in params:
        p.requires_grad_(requires_grad)


def make_optimizer(cfg: AdamConfig | SgdConfig | RmspropConfig, params, lr: float, player: str) -> torch.optim.Optimizer:
    if isinstance(cfg, AdamConfig):
        betas = cfg.betas_d if player == "d" and cfg.betas_d is not None else cfg.betas
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if isinstance(cfg, SgdConfig):
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    if isinstance(cfg, RmspropConfig):
        return torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, momentum=cfg.momentum)
    raise TypeError(f"no optimizer for {type(cfg).__name__}")


def _norm(tensors) -> torch.Tensor:
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def _mean_var(values: torch.Tensor) -> torch.Tensor:
    """The variance of the mean of ``values``, from their own spread (0 for a single value: nothing to tell)."""
    n = values.numel()
    return values.var() / n if n > 1 else torch.zeros((), dtype=values.dtype, device=values.device)


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is visible to this process")
    return torch.device(requested)


class Trainer:
    def __init__(self, cfg: TrialConfig, device: str | None = None):
        self.cfg = cfg
        self.device = resolve_device(device or cfg.device)
        self.data = make_dataset(cfg.data)
        # spawn keys are positional: adding a sixth stream leaves the first five (and every old run) unchanged
        init_seed, data_seed, z_seed, noise_seed, self._eval_seed, self._export_seed = _stream_seeds(cfg.seed, 6)
        G, D = self.initial_models(init_seed)
        self._init_seed = init_seed
        self.G, self.D = G.to(self.device), D.to(self.device)
        self._d_params = list(self.D.parameters())  # walked twice per iteration: list it once
        self._zero = torch.zeros((), device=self.device)
        self.G_ema = None
        if cfg.optim.g_ema > 0:
            self.G_ema = copy.deepcopy(self.G).eval()
            toggle_grad(self.G_ema.parameters(), False)
        self.rngs = {name: torch.Generator().manual_seed(s) for name, s in
                     (("data", data_seed), ("z", z_seed), ("noise", noise_seed))}
        self.opt_g = make_optimizer(cfg.optim, self.G.parameters(), cfg.optim.lr_g, "g")
        self.opt_d = make_optimizer(cfg.optim, self.D.parameters(), cfg.optim.lr_d, "d")
        self.threshold = decision_threshold(cfg.loss.name)
        # Critics have no probability: their accuracy is the sign of the output, and is named so.
        self.acc = "acc_sign" if cfg.loss.name in CRITICS else "acc"
        self._bce = cfg.loss.name in ("minimax", "non_saturating")
        self._d_names = ("loss/d", "reg/d", f"{self.acc}/real", f"{self.acc}/fake", "d/out_real", "d/out_fake")
        self._d_sampled_names = ("grad/d",) + (("d/prob_real", "d/prob_fake") if self._bce else ())
        self._sample_now = True  # set per iteration by train_step: is this iteration's end logged?
        self.stats = Collector()
        window = cfg.diagnostics.window
        self.series_window = SlidingWindow(window, 2 * len(SERIES))  # per iteration: each series and its noise
        self.delta_window = SlidingWindow(window)  # E D(x) - E D(G(z)) per iteration
        self.auc_window = SlidingWindow(max(1, window // cfg.train.log_every))  # d/auc of each logged step
        self._d_series: list[torch.Tensor] = []  # this iteration's D steps: loss, its noise, accuracies, theirs
        self._g_series: list[torch.Tensor] = []
        self._last_params = {"g": _flat_params(self.G), "d": _flat_params(self.D)}
        n_modes = {"digits": 10, "stacked_digits": 1000}.get(cfg.data.name, getattr(self.data, "n_modes", None))
        self.verdict = VerdictTracker(cfg.verdict, n_modes, cfg.diagnostics.period_alpha)
        if cfg.model.name == "dirac":  # the distance the run starts from: what diverging and settling compare to
            self.verdict.first_distance = math.hypot(cfg.model.theta0, cfg.model.psi0)
        self.iteration = 0
        self.g_steps = 0
        self.d_steps = 0
        self.evaluator = Evaluator(self)

    def initial_models(self, init_seed: int):
        """G and D exactly as this trial initialised them (the models' init draws only from the seeded global RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return build_models(self.cfg.model, tuple(self.data.shape), self.cfg.regularizer.spectral_norm)

    # --- inputs --------------------------------------------------------------------------------

    def _latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.G.latent_dim, generator=generator).to(self.device)

    def _real(self) -> torch.Tensor:
        return self.data.sample(self.cfg.data.batch_size, self.rngs["data"]).to(self.device)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        r = self.cfg.regularizer
        sigma = instance_noise_sigma(r.instance_noise, r.instance_noise_anneal, self.iteration)
        if sigma == 0:
            return x
        return x + sigma * torch.randn(x.shape, generator=self.rngs["noise"]).to(self.device)

    # --- one player's gradient, and its update --------------------------------------------------

    def discriminator_objective(self, real_in: torch.Tensor, fake_in: torch.Tensor, rng: torch.Generator):
        """D's loss and regularizer on given inputs: (loss, reg, D(real), D(fake)). Shared by the training
        step and the equilibrium diagnostics, so both analyse exactly the objective that is optimised."""
        reg_cfg, loss_cfg = self.cfg.regularizer, self.cfg.loss
        real_out, fake_out = self.D(real_in), self.D(fake_in)
        loss = discriminator_loss(loss_cfg.name, real_out, fake_out)
        reg = self._zero
        if reg_cfg.r1 > 0:
            reg = reg + zero_centered_penalty(real_out, real_in, reg_cfg.r1)
        if reg_cfg.r2 > 0:
            reg = reg + zero_centered_penalty(fake_out, fake_in, reg_cfg.r2)
        if loss_cfg.name == "wgan_gp":
            reg = reg + wgan_gp_penalty(self.D, real_in, fake_in, loss_cfg.gp_weight, loss_cfg.gp_center, rng)
        return loss, reg, real_out, fake_out

    def generator_objective(self, fake_in: torch.Tensor) -> torch.Tensor:
        """G's loss on given (generated) inputs, as the training step computes it."""
        return generator_loss(self.cfg.loss.name, self.D(fake_in))

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """D's loss on given outputs, without regularizers (the game's value for the duality gap)."""
        return discriminator_loss(self.cfg.loss.name, real_out, fake_out)

    def discriminator_grads(self) -> torch.Tensor:
        """D's loss and regularizers at the current (G, D), gradients left in D's ``.grad``."""
        reg_cfg = self.cfg.regularizer
        toggle_grad(self._d_params, True)
        with torch.no_grad():  # detach too: a view of a parameter (the Dirac-GAN's theta) keeps requires_grad
            fake = self.G(self._latents(self.cfg.data.batch_size, self.rngs["z"])).detach()
        real_in, fake_in = self._noisy(self._real()), self._noisy(fake)
        real_in.requires_grad_(reg_cfg.r1 > 0)
        fake_in.requires_grad_(reg_cfg.r2 > 0)
        loss, reg, real_out, fake_out = self.discriminator_objective(real_in, fake_in, self.rngs["noise"])
        self.opt_d.zero_grad(set_to_none=True)
        (loss if reg is self._zero else loss + reg).backward()
        real_out, fake_out = real_out.detach(), fake_out.detach()
        self._delta = real_out.mean() - fake_out.mean()
        # The batch's own noise: the variance of its mean loss is each term's per-sample variance over B
        on_real, on_fake = discriminator_terms(self.cfg.loss.name, real_out, fake_out)
        loss_noise = _mean_var(on_real) + _mean_var(on_fake)
        if self._sample_now:  # D's ranking of real above generated, sampled at the logged iteration (a sort)
            auc, auc_var = d_auc(real_out, fake_out)
            self.stats.report(("d/auc", "d/auc_noise"), torch.stack([auc, auc_var.sqrt()]))
        if not self.cfg.diagnostics.per_step:
            self.stats.report(("loss/d", "reg/d"), torch.stack([loss.detach(), reg.detach()]))
            nan = torch.full((), math.nan, dtype=torch.float64, device=loss_noise.device)
            self._d_series.append(torch.stack([loss.detach().double(), loss_noise.double(), nan, nan, nan, nan]))
            return loss.detach()
        # Diagnostics from the outputs this step computed anyway, for the D that produced them (pre-update),
        # stacked into one tensor: one accumulation per step, no host sync.
        acc_real, acc_fake = d_accuracy(real_out - self.threshold, fake_out - self.threshold)
        stats = [loss.detach(), reg.detach(), acc_real, acc_fake, real_out.mean(), fake_out.mean()]
        self.stats.report(self._d_names, torch.stack([t.to(torch.float32) for t in stats]))
        n_real, n_fake = real_out.numel(), fake_out.numel()
        self._d_series.append(torch.stack([loss.detach().double(), loss_noise.double(), acc_real,
                                           binomial_var(acc_real, n_real), acc_fake, binomial_var(acc_fake, n_fake)]))
        if self._sample_now:  # the costlier statistics: sampled at the iteration that is logged
            sampled = [_norm(p.grad for p in self.D.parameters())]
            if self._bce:
                sampled += [torch.sigmoid(real_out).mean(), torch.sigmoid(fake_out).mean()]
            self.stats.report(self._d_sampled_names, torch.stack(sampled))
        return loss.detach()

    def discriminator_update(self) -> None:
        self.opt_d.step()
        if self.cfg.loss.name == "wgan":
            clip_weights(self.D, self.cfg.loss.clip)
        self.d_steps += 1

    def generator_grads(self) -> torch.Tensor:
        """G's loss at the current (G, D), gradients left in G's ``.grad``; D is frozen meanwhile."""
        toggle_grad(self._d_params, False)
        fake = self.G(self._latents(self.cfg.data.batch_size, self.rngs["z"]))
        terms = generator_terms(self.cfg.loss.name, self.D(self._noisy(fake)))
        loss = terms.mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.stats.report("loss/g", loss)
        self._g_series.append(torch.stack([loss.detach(), _mean_var(terms.detach())]).double())
        if self.cfg.diagnostics.per_step and self._sample_now:
            self.stats.report("grad/g", _norm(p.grad for p in self.G.parameters()))
        return loss.detach()

    def generator_update(self) -> None:
        self.opt_g.step()
        self.g_steps += 1
        if self.G_ema is not None:
            with torch.no_grad():
                decay = self.cfg.optim.g_ema
                for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                    p_ema.lerp_(p, 1 - decay)
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)

    def discriminator_step(self) -> torch.Tensor:
        loss = self.discriminator_grads()
        self.discriminator_update()
        return loss

    def generator_step(self) -> torch.Tensor:
        loss = self.generator_grads()
        self.generator_update()
        return loss

    def train_step(self) -> None:
        """One iteration of the schedule: simultaneous, or alternating blocks of D and G updates."""
        s, t = self.cfg.schedule, self.cfg.train
        nxt = self.iteration + 1
        self._sample_now = nxt % t.log_every == 0 or nxt == t.steps
        if s.mode == "simultaneous":
            self.discriminator_grads()
            self.generator_grads()  # same point: neither player has moved yet
            self.discriminator_update()
            self.generator_update()
        else:
            blocks = [lambda: [self.discriminator_step() for _ in range(s.d_steps)],
                      lambda: [self.generator_step() for _ in range(s.g_steps)]]
            for block in blocks if s.order == "d_first" else blocks[::-1]:
                block()
        self.iteration += 1
        self.series_window.push(torch.cat([self._iteration_series(self._d_series, (1, 3, 5)),
                                           self._iteration_series(self._g_series, (1,))])[[0, 1, 6, 7, 2, 3, 4, 5]])
        self._d_series, self._g_series = [], []
        self.delta_window.push(self._delta)

    @staticmethod
    def _iteration_series(steps: list[torch.Tensor], noise_columns: tuple[int, ...]) -> torch.Tensor:
        """An iteration's value of each series: the mean over its D (or G) steps, whose batches are independent,
        so a mean of k steps has 1/k of their mean noise variance."""
        if len(steps) == 1:
            return steps[0]
        k = len(steps)
        mean = torch.stack(steps).mean(0)
        scale = torch.ones_like(mean)
        scale[list(noise_columns)] = 1.0 / k
        return mean * scale

    # --- what gets logged ----------------------------------------------------------------------

    def log_metrics(self) -> dict[str, float]:
        metrics = self.stats.reduce()
        if f"{self.acc}/real" in metrics:
            real, fake = metrics[f"{self.acc}/real"], metrics[f"{self.acc}/fake"]
            metrics[f"{self.acc}/mean"] = (real + fake) / 2
            metrics["eq/acc_gap"] = acc_gap(real, fake)
        reference = EQUILIBRIUM_LOSS.get(self.cfg.loss.name)
        if reference is not None:
            metrics["eq/loss_d_gap"] = metrics["loss/d"] - reference[0]
            metrics["eq/loss_g_gap"] = metrics["loss/g"] - reference[1]
        metrics.update(self._oscillation_metrics())
        if "d/auc" in metrics:
            self.auc_window.push(metrics["d/auc"])
            metrics["d/auc_mean"] = float(self.auc_window.values().mean())
        metrics["osc/delta_zcr"] = zero_crossing_rate(self.delta_window.values())
        for player, model in (("g", self.G), ("d", self.D)):
            now = _flat_params(model)
            previous = self._last_params[player]
            metrics[f"param/{player}"] = float(now.norm())
            metrics[f"update/{player}"] = float((now - previous).norm() / previous.norm().clamp(min=1e-12))
            self._last_params[player] = now
        metrics["progress/g_steps"] = float(self.g_steps)
        metrics["progress/d_steps"] = float(self.d_steps)
        metrics["progress/real_samples"] = float(self.d_steps * self.cfg.data.batch_size)
        return metrics

    def _oscillation_metrics(self) -> dict[str, float]:
        """osc/<series>_{std, ptp, noise, excess, trend, period, period_p} over the window, every series at once."""
        window = self.series_window.values()
        if window.shape[0] == 0:
            return {}
        values, noise = window[:, 0::2].T, window[:, 1::2].T  # (series, n)
        d = self.cfg.diagnostics
        period, p = periodicity(values, d.period_min_cycles, d.period_alpha)
        stats = {"std": values.std(-1, unbiased=False), "ptp": values.amax(-1) - values.amin(-1),
                 **beyond_noise(values, noise), "period": period, "period_p": p}
        stats = {k: v.tolist() for k, v in stats.items()}
        keep = SERIES if self.cfg.diagnostics.per_step else SERIES[:2]  # accuracies only with per-step diagnostics
        return {f"osc/{name}_{k}": float(v[i]) for i, name in enumerate(SERIES) if name in keep for k, v in stats.items()}

    def learning_rates(self) -> tuple[float, float]:
        """(lr_g, lr_d) as the optimisers hold them."""
        return self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]

    @property
    def eval_generator(self) -> torch.nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def generate(self, n: int, seed_offset: int = 0) -> torch.Tensor:
        """Samples from the evaluation generator (EMA when enabled), latents fixed by (seed, iteration)."""
        rng = torch.Generator().manual_seed(self._eval_seed + self.iteration + seed_offset)
        G = self.eval_generator
        was_training = G.training
        G.eval()
        samples = G(self._latents(n, rng)).cpu()
        G.train(was_training)
        return samples

    def run(self, stop_at: int | None = None) -> Iterator[StepReport]:
        """Train from the current iteration to ``train.steps`` (or ``stop_at``), yielding at log/eval steps."""
        t = self.cfg.train
        end = t.steps if stop_at is None else min(stop_at, t.steps)
        while self.iteration < end:
            self.train_step()
            step, last = self.iteration, self.iteration == t.steps
            log_now = step % t.log_every == 0 or last
            eval_now = step % t.eval_every == 0 or last
            if log_now or eval_now:
                metrics = self.log_metrics() if log_now else {}
                if eval_now:
                    metrics.update(self.evaluate())
                verdict, reason = self.verdict.update(metrics)
                # A non-finite or exploding run cannot recover: stop it here, as diverged, at this step.
                stop = verdict == "diverged" and not (
                    self.cfg.model.name == "dirac" and all(math.isfinite(v) for v in metrics.values())
                )
                yield StepReport(step, metrics, eval_now or stop, verdict, reason, stop)
                if stop:
                    return


    def evaluate(self) -> dict[str, float]:
        return self.evaluator()

    # --- checkpoints and exported models (``ganlab.train.checkpoint``) ----------------------------

    def export_models(self) -> dict[str, Any]:
        return checkpoint.export_models(self)

    def state_dict(self) -> dict[str, Any]:
        return checkpoint.state_of(self)

    def load_state_dict(self, state: dict[str, Any], same_trajectory: bool = True) -> None:
        checkpoint.restore(self, state, same_trajectory)

    def save(self, path: str | Path) -> None:
        checkpoint.save(self, path)

    def load(self, path: str | Path) -> None:
        checkpoint.load(self, path)


def metric_names(cfg: TrialConfig) -> set[str]:
    """Every diagnostic a trial of this config logs, found by training it for one iteration (a second or
    two): the only list that cannot drift from what the trainer really emits."""
    short = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 1, "log_every": 1, "eval_every": 1})})
    names: set[str] = set()
    for report in Trainer(short, "cpu").run():
        names.update(report.metrics)
    return names
