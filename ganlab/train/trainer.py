"""The GAN training loop, for a *pack*: trials of one shape trained as one vectorised model, each a *lane*.
A single trial is a pack of one lane (``Trainer``); there is one training loop. It knows nothing of Ray or
MLflow: ``run()`` yields each logged step's figures per lane, and whoever drives it decides where they go.

Every random number a lane uses (its initial weights, data, latents, noise, evaluation) comes from its own
seed alone, through counter-based streams addressed by iteration and purpose (``ganlab.data.streams``), so
a lane's numbers do not depend on which other trials share its pack, evaluating more or less often never
changes training, and a checkpoint resumes to exactly the uninterrupted run. The per-iteration hot path has
no Python loop over lanes: models, losses, regularizers and optimisers act on all lanes at once, and a lane
that diverges is frozen while the others go on.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.config import TrialConfig
from ganlab.data import make_dataset
from ganlab.data.streams import Streams, lane_keys
from ganlab.diagnose.balance import acc_gap, binomial_var, d_auc
from ganlab.diagnose.oscillation import beyond_noise, periodicity, zero_crossings
from ganlab.diagnose.stats import Collector, SlidingWindow
from ganlab.diagnose.verdict import VerdictTracker, blown_up
from ganlab.train import checkpoint
from ganlab.train.evaluation import Evaluator
from ganlab.train.lanes import Hyper, check_packable
from ganlab.train.losses import CRITICS, EQUILIBRIUM_LOSS, decision_threshold, discriminator_terms, generator_terms
from ganlab.train.models import build_models
from ganlab.train.optim import FlatPlayer, PackedOptimizer
from ganlab.train.packed import PackedNet
from ganlab.train.regularizers import clip_weights, instance_noise_sigma, wgan_gp_penalty, zero_centered_penalty

CheckpointMismatch = checkpoint.CheckpointMismatch  # what resuming under another config raises

# A lane's slice of a flat parameter buffer is not dense, so autograd calls its gradient layout suboptimal; the
# gradients still accumulate in place into the buffer (FlatPlayer.gathered checks), and one optimiser update
# over the whole buffer beats any layout.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

# The per-iteration series whose oscillation is measured beyond batch noise (osc/<series>_*), in the order of
# the columns of the series window: each series' value, then its noise variance.
SERIES = ("loss_d", "loss_g", "acc_real", "acc_fake")
# Random streams of a lane (ids mixed into its keys); each draw's address is (iteration, step, purpose).
DATA, LATENT, NOISE = 1, 2, 3
SLOTS = 256  # addresses per iteration: D steps take 0..127, G steps 128..255
G_SLOT = 128


@dataclass(frozen=True)
class StepReport:
    step: int  # training iterations so far: the x-axis of every metric
    metrics: dict[str, float]
    evaluated: bool  # the metrics include the eval/* figures
    verdict: str = "unbalanced"
    reason: str = ""
    stopped: bool = False  # training ended early (diverged): this is the lane's last report


@dataclass(frozen=True)
class PackReport:
    step: int
    lanes: list[StepReport | None]  # None for a lane that stopped before this step


def _stream_seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for n torch-generated streams (SeedSequence avoids correlated neighbouring seeds)."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(n)]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is visible to this process")
    return torch.device(requested)


def _mean_var(values: torch.Tensor) -> torch.Tensor:
    """The variance of the mean of each lane's values (L, n) from their own spread (0 for n = 1)."""
    n = values.shape[-1]
    return values.var(-1) / n if n > 1 else torch.zeros(values.shape[:-1], dtype=values.dtype, device=values.device)


class PackTrainer:
    def __init__(self, cfgs: list[TrialConfig], device: str | None = None):
        check_packable(cfgs)
        self.cfgs = list(cfgs)
        cfg = self.cfg = cfgs[0]  # the pack's shape (per-lane values: self.hyper)
        self.lanes = len(cfgs)
        self.device = resolve_device(device or cfg.device)
        self.data = make_dataset(cfg.data).to(self.device)
        seeds = [c.seed for c in cfgs]
        # spawn keys are positional: the init stream is the first, the eval and export seeds the fifth and sixth
        self._seeds = [_stream_seeds(s, 6) for s in seeds]
        singles = [self.initial_models(lane) for lane in range(self.lanes)]
        self.G = PackedNet([g for g, _ in singles]).to(self.device)
        self.D = PackedNet([d for _, d in singles]).to(self.device)
        self.latent_dim = singles[0][0].latent_dim
        self.hyper = Hyper.of(cfgs, self.device)
        self.g_player, self.d_player = FlatPlayer(self.G, self.lanes), FlatPlayer(self.D, self.lanes)
        self.G_ema = self.ema_player = None
        if any(c.optim.g_ema > 0 for c in cfgs):
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            self.ema_player = FlatPlayer(self.G_ema, self.lanes)
        self.opt_g = self._optimizer(self.g_player, "g")
        self.opt_d = self._optimizer(self.d_player, "d")
        self.streams = {name: Streams(lane_keys(seeds, name), self.device) for name in (DATA, LATENT, NOISE)}
        self.threshold = decision_threshold(cfg.loss.name)
        # Critics have no probability: their accuracy is the sign of the output, and is named so.
        self.acc = "acc_sign" if cfg.loss.name in CRITICS else "acc"
        self._bce = cfg.loss.name in ("minimax", "non_saturating")
        self._r1, self._r2 = bool((self.hyper.r1 > 0).any()), bool((self.hyper.r2 > 0).any())
        self._noise = bool((self.hyper.noise > 0).any())
        self._d_names = ("loss/d", "reg/d", f"{self.acc}/real", f"{self.acc}/fake", "d/out_real", "d/out_fake")
        self._d_sampled = ("grad/d", "d/auc", "d/auc_noise") + (("d/prob_real", "d/prob_fake") if self._bce else ())
        self._sample_now = True  # set per iteration by train_step: is this iteration's end logged?
        self.stats = Collector()
        window = cfg.diagnostics.window
        self.series_window = SlidingWindow(window, self.lanes, 2 * len(SERIES), device=self.device)
        self.delta_window = SlidingWindow(window, self.lanes, device=self.device)  # E D(x) - E D(G(z))
        self.auc_window = SlidingWindow(max(1, window // cfg.train.log_every), self.lanes, device=self.device)
        self._d_series: list[torch.Tensor] = []  # this iteration's D steps: loss, its noise, accuracies, theirs
        self._g_series: list[torch.Tensor] = []
        self._last_params = {"g": self.g_player.flat.clone(), "d": self.d_player.flat.clone()}
        n_modes = {"digits": 10, "stacked_digits": 1000}.get(cfg.data.name, getattr(self.data, "n_modes", None))
        self.verdicts = [VerdictTracker(c.verdict, n_modes, c.diagnostics.period_alpha) for c in cfgs]
        if cfg.model.name == "dirac":  # the distance each run starts from: what diverging and settling compare to
            for tracker, c in zip(self.verdicts, cfgs):
                tracker.first_distance = math.hypot(c.model.theta0, c.model.psi0)
        self.active = torch.ones(self.lanes, dtype=torch.bool, device=self.device)
        self.stopped: list[int | None] = [None] * self.lanes  # the iteration a lane stopped at (diverged)
        self.iteration = self.g_steps = self.d_steps = 0
        self.evaluator = Evaluator(self)

    def initial_models(self, lane: int):
        """G and D exactly as this lane's trial alone initialises them (init draws only from the seeded global
        RNG, forked): single models, which the pack stacks and a lane's export becomes again."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._seeds[lane][0])
            return build_models(self.cfgs[lane].model, tuple(self.data.shape), self.cfg.regularizer.spectral_norm)

    def _optimizer(self, player: FlatPlayer, who: str) -> PackedOptimizer:
        h = self.hyper
        return PackedOptimizer(player, self.cfg.optim.name, h.lr_g if who == "g" else h.lr_d,
                               h.betas_g if who == "g" else h.betas_d, h.momentum, h.alpha)

    def set_hyper(self, cfgs: list[TrialConfig]) -> None:
        """Continue under other per-lane hyper-parameters (PBT's exploit): learning rates and the rest."""
        self.cfgs = list(cfgs)
        self.hyper = Hyper.of(cfgs, self.device)
        for opt, who in ((self.opt_g, "g"), (self.opt_d, "d")):
            fresh = self._optimizer(opt.player, who)
            opt.lr, opt.betas, opt.momentum, opt.alpha = fresh.lr, fresh.betas, fresh.momentum, fresh.alpha
        self._r1, self._r2 = bool((self.hyper.r1 > 0).any()), bool((self.hyper.r2 > 0).any())
        self._noise = bool((self.hyper.noise > 0).any())

    # --- inputs --------------------------------------------------------------------------------

    def _latents(self, address: int) -> torch.Tensor:
        return self.streams[LATENT].normal(address, self.cfg.data.batch_size, self.latent_dim)

    def _real(self, address: int) -> torch.Tensor:
        return self.data.draw(self.streams[DATA], 2 * address, self.cfg.data.batch_size)

    def _noisy(self, x: torch.Tensor, address: int) -> torch.Tensor:
        if not self._noise:
            return x
        sigma = instance_noise_sigma(self.hyper.noise, self.hyper.noise_anneal, self.iteration)
        noise = self.streams[NOISE].normal(address, *x.shape[1:])
        return x + sigma.reshape(-1, *([1] * (x.dim() - 1))) * noise

    # --- one player's gradient, and its update --------------------------------------------------

    def discriminator_objective(self, real_in: torch.Tensor, fake_in: torch.Tensor, address: int):
        """D's loss and regularizer per lane on given inputs: (loss (L,), reg (L,), D(real), D(fake)). Shared
        by the training step and the equilibrium analyses, so both see exactly the objective optimised."""
        h, loss_cfg = self.hyper, self.cfg.loss
        real_out, fake_out = self.D(real_in), self.D(fake_in)
        on_real, on_fake = discriminator_terms(loss_cfg.name, real_out, fake_out)
        loss = on_real.mean(-1) + on_fake.mean(-1)
        reg = torch.zeros_like(loss)
        if self._r1:
            reg = reg + zero_centered_penalty(real_out, real_in, h.r1)
        if self._r2:
            reg = reg + zero_centered_penalty(fake_out, fake_in, h.r2)
        if loss_cfg.name == "wgan_gp":
            eps = self.streams[NOISE].uniform(address, self.cfg.data.batch_size)
            reg = reg + wgan_gp_penalty(self.D, real_in, fake_in, h.gp_weight, h.gp_center, eps)
        return loss, reg, real_out, fake_out

    def discriminator_grads(self, k: int = 0) -> None:
        """D's loss and regularizers at the current (G, D) for D step k, gradients in D's flat buffer."""
        address = (self.iteration + 1) * SLOTS + k
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(self._latents(address))
        real_in, fake_in = self._noisy(self._real(address), 4 * address), self._noisy(fake, 4 * address + 1)
        if self._r1:  # R1/R2 differentiate D with respect to its inputs
            real_in = real_in.detach().requires_grad_(True)
        if self._r2:
            fake_in = fake_in.detach().requires_grad_(True)
        loss, reg, real_out, fake_out = self.discriminator_objective(real_in, fake_in, 4 * address + 2)
        self.d_player.zero_grad()
        (loss + reg).sum().backward()
        self._record_d(loss.detach(), reg.detach(), real_out.detach(), fake_out.detach())

    def _record_d(self, loss, reg, real_out, fake_out) -> None:
        """Diagnostics from the outputs this step computed anyway, for the D that produced them (pre-update),
        stacked: one accumulation per step, no host sync."""
        self._delta = real_out.mean(-1) - fake_out.mean(-1)
        on_real, on_fake = discriminator_terms(self.cfg.loss.name, real_out, fake_out)
        loss_noise = (_mean_var(on_real) + _mean_var(on_fake)).double()
        if self._sample_now:  # the costlier statistics: sampled at the iteration that is logged
            auc, auc_var = d_auc(real_out, fake_out)
            sampled = [self.d_player.grad.norm(dim=1).double(), auc, auc_var.sqrt()]
            if self._bce:
                sampled += [torch.sigmoid(real_out).mean(-1).double(), torch.sigmoid(fake_out).mean(-1).double()]
            self.stats.report(self._d_sampled, torch.stack(sampled, dim=1))
        if not self.cfg.diagnostics.per_step:
            self.stats.report(("loss/d", "reg/d"), torch.stack([loss, reg], dim=1))
            nan = torch.full_like(loss_noise, math.nan)
            self._d_series.append(torch.stack([loss.double(), loss_noise, nan, nan, nan, nan], dim=1))
            return
        acc_real = (real_out > self.threshold).double().mean(-1)
        acc_fake = (fake_out < self.threshold).double().mean(-1)
        stats = [loss.double(), reg.double(), acc_real, acc_fake, real_out.mean(-1).double(), fake_out.mean(-1).double()]
        self.stats.report(self._d_names, torch.stack(stats, dim=1))
        b_real, b_fake = real_out.shape[-1], fake_out.shape[-1]
        self._d_series.append(torch.stack([loss.double(), loss_noise, acc_real, binomial_var(acc_real, b_real),
                                           acc_fake, binomial_var(acc_fake, b_fake)], dim=1))

    def discriminator_update(self) -> None:
        self.opt_d.step(self.active)
        if self.cfg.loss.name == "wgan":
            clip_weights(self.d_player.flat, self.hyper.clip)
        self.d_steps += 1

    def generator_objective(self, fake_in: torch.Tensor) -> torch.Tensor:
        """G's loss per lane (L,) on given (generated) inputs, as the training step computes it."""
        return generator_terms(self.cfg.loss.name, self.D(fake_in)).mean(-1)

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        """D's loss per lane on given outputs, without regularizers (the game's value for the duality gap)."""
        on_real, on_fake = discriminator_terms(self.cfg.loss.name, real_out, fake_out)
        return on_real.mean(-1) + on_fake.mean(-1)

    def generator_grads(self, j: int = 0) -> None:
        """G's loss at the current (G, D) for G step j, gradients in G's flat buffer; D is frozen meanwhile."""
        address = (self.iteration + 1) * SLOTS + G_SLOT + j
        self.D.requires_grad_(False)
        fake = self.G(self._latents(address))
        terms = generator_terms(self.cfg.loss.name, self.D(self._noisy(fake, 4 * address + 1)))
        loss = terms.mean(-1)
        self.g_player.zero_grad()
        loss.sum().backward()
        self.stats.report("loss/g", loss.detach().double())
        if self.cfg.diagnostics.per_step and self._sample_now:
            self.stats.report("grad/g", self.g_player.grad.norm(dim=1).double())
        self._g_series.append(torch.stack([loss.detach().double(), _mean_var(terms.detach()).double()], dim=1))

    def generator_update(self) -> None:
        self.opt_g.step(self.active)
        self.g_steps += 1
        if self.ema_player is not None:
            with torch.no_grad():
                decay = self.hyper.g_ema.reshape(-1, 1).to(self.ema_player.flat.dtype)
                ema = torch.lerp(self.ema_player.flat, self.g_player.flat, 1 - decay)
                self.ema_player.flat.copy_(torch.where(self.active.reshape(-1, 1), ema, self.ema_player.flat))
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)

    def discriminator_step(self, k: int = 0) -> None:
        self.discriminator_grads(k)
        self.discriminator_update()

    def generator_step(self, j: int = 0) -> None:
        self.generator_grads(j)
        self.generator_update()

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
            blocks = [lambda: [self.discriminator_step(k) for k in range(s.d_steps)],
                      lambda: [self.generator_step(j) for j in range(s.g_steps)]]
            for block in blocks if s.order == "d_first" else blocks[::-1]:
                block()
        self.iteration += 1
        d = self._iteration_series(self._d_series, (1, 3, 5))
        g = self._iteration_series(self._g_series, (1,))
        self.series_window.push(torch.cat([d[:, :2], g, d[:, 2:]], dim=1))
        self._d_series, self._g_series = [], []
        self.delta_window.push(self._delta)

    @staticmethod
    def _iteration_series(steps: list[torch.Tensor], noise_columns: tuple[int, ...]) -> torch.Tensor:
        """An iteration's value of each series (L, columns): the mean over its D (or G) steps, whose batches are
        independent, so a mean of k steps has 1/k of their mean noise variance."""
        if len(steps) == 1:
            return steps[0]
        mean = torch.stack(steps).mean(0)
        scale = torch.ones(mean.shape[1], dtype=mean.dtype, device=mean.device)
        scale[list(noise_columns)] = 1.0 / len(steps)
        return mean * scale

    # --- what gets logged ----------------------------------------------------------------------

    def log_metrics(self) -> dict[str, torch.Tensor]:
        """Every lane's logged figures at this step: name -> (L,) tensor."""
        metrics = self.stats.reduce_lanes()
        acc = self.acc
        if f"{acc}/real" in metrics:
            real, fake = metrics[f"{acc}/real"], metrics[f"{acc}/fake"]
            metrics[f"{acc}/mean"] = (real + fake) / 2
            metrics["eq/acc_gap"] = acc_gap(real, fake)
        reference = EQUILIBRIUM_LOSS.get(self.cfg.loss.name)
        if reference is not None:
            metrics["eq/loss_d_gap"] = metrics["loss/d"] - reference[0]
            metrics["eq/loss_g_gap"] = metrics["loss/g"] - reference[1]
        metrics.update(self._oscillation_metrics())
        if "d/auc" in metrics:
            self.auc_window.push(metrics["d/auc"])
            metrics["d/auc_mean"] = self.auc_window.values().mean(0)
        metrics["osc/delta_zcr"] = zero_crossings(self.delta_window.values())
        for player, flat in (("g", self.g_player.flat), ("d", self.d_player.flat)):
            previous = self._last_params[player]
            metrics[f"param/{player}"] = flat.norm(dim=1)
            metrics[f"update/{player}"] = (flat - previous).norm(dim=1) / previous.norm(dim=1).clamp(min=1e-12)
            self._last_params[player] = flat.clone()
        metrics["progress/g_steps"] = torch.full((self.lanes,), float(self.g_steps))
        metrics["progress/d_steps"] = torch.full((self.lanes,), float(self.d_steps))
        metrics["progress/real_samples"] = torch.full((self.lanes,), float(self.d_steps * self.cfg.data.batch_size))
        return metrics

    def _oscillation_metrics(self) -> dict[str, torch.Tensor]:
        """osc/<series>_{std, ptp, noise, excess, trend, period, period_p} over the window, every lane at once."""
        window = self.series_window.values()  # (n, L, 2 * series)
        if window.shape[0] == 0:
            return {}
        values, noise = window[..., 0::2].permute(1, 2, 0), window[..., 1::2].permute(1, 2, 0)  # (L, series, n)
        d = self.cfg.diagnostics
        period, p = periodicity(values, d.period_min_cycles, d.period_alpha)
        stats = {"std": values.std(-1, unbiased=False), "ptp": values.amax(-1) - values.amin(-1),
                 **beyond_noise(values, noise), "period": period, "period_p": p}
        keep = SERIES if d.per_step else SERIES[:2]  # accuracies only with per-step diagnostics
        return {f"osc/{name}_{k}": v[:, i] for i, name in enumerate(SERIES) if name in keep for k, v in stats.items()}

    def dirac_state(self) -> torch.Tensor:
        """(theta, psi) of every lane of a Dirac-GAN pack, (L, 2) in float64: the point the closed forms of
        Mescheder et al. (2018) describe (psi as D applies it, after spectral norm if any)."""
        return torch.stack([self.G.theta.detach(), self.D.linear.current_weight().detach().reshape(-1)], 1).double()

    def learning_rates(self, lane: int = 0) -> tuple[float, float]:
        """(lr_g, lr_d) a lane's optimisers step with."""
        return float(self.opt_g.lr[lane]), float(self.opt_d.lr[lane])

    @torch.no_grad()
    def generate(self, n: int, lane: int = 0, seed_offset: int = 0) -> torch.Tensor:
        """One lane's samples from its evaluation generator (EMA when kept), latents fixed by (seed, iteration)."""
        return self.evaluator.generate(n, seed_offset)[lane].cpu()

    # --- the loop --------------------------------------------------------------------------------

    def run_pack(self, stop_at: int | None = None) -> Iterator[PackReport]:
        """Train from the current iteration to ``train.steps`` (or ``stop_at``), yielding at log and eval steps.
        A lane whose loss or gradient blows up stops there (frozen, reported ``stopped``); the rest go on."""
        t = self.cfg.train
        end = t.steps if stop_at is None else min(stop_at, t.steps)
        while self.iteration < end and bool(self.active.any()):
            self.train_step()
            step, last = self.iteration, self.iteration == t.steps
            log_now = step % t.log_every == 0 or last
            eval_now = step % t.eval_every == 0 or last
            if not (log_now or eval_now):
                continue
            columns = self.log_metrics() if log_now else {}
            if eval_now:
                columns.update(self.evaluator())
            yield PackReport(step, self._lane_reports(step, columns, eval_now))

    def _lane_reports(self, step: int, columns: dict[str, torch.Tensor], evaluated: bool) -> list[StepReport | None]:
        names = list(columns)
        rows = torch.stack([columns[k].double().cpu() for k in names], dim=1).tolist() if names else [[]] * self.lanes
        reports: list[StepReport | None] = []
        for lane, row in enumerate(rows):
            if self.stopped[lane] is not None:
                reports.append(None)
                continue
            metrics = dict(zip(names, row))
            tracker = self.verdicts[lane]
            why = blown_up(metrics, tracker.cfg)
            if why is not None:  # a non-finite or exploding run cannot recover: it stops here, as diverged
                tracker.latest.update(metrics)
                tracker.verdict, tracker.reason = "diverged", why
                self.stopped[lane] = step
                self.active[lane] = False
                reports.append(StepReport(step, metrics, True, "diverged", why, True))
                continue
            if evaluated:
                tracker.update(metrics)
            else:
                tracker.latest.update(metrics)
            reports.append(StepReport(step, metrics, evaluated, tracker.verdict, tracker.reason))
        return reports

    # --- trained models, checkpoints (``ganlab.train.checkpoint``) ----------------------------------

    def export_models(self, lane: int = 0) -> dict[str, Any]:
        return checkpoint.export_models(self, lane)

    def evaluate(self) -> dict[str, torch.Tensor]:
        return self.evaluator()

    def state_dict(self) -> dict[str, Any]:
        return checkpoint.state_of(self)

    def load_state_dict(self, state: dict[str, Any], same_trajectory: bool = True) -> None:
        checkpoint.restore(self, state, same_trajectory)

    def save(self, path: str | Path) -> None:
        checkpoint.save(self, path)

    def load(self, path: str | Path) -> None:
        checkpoint.load(self, path)


class Trainer(PackTrainer):
    """One trial: a pack of one lane, with that lane's reports."""

    def __init__(self, cfg: TrialConfig, device: str | None = None):
        super().__init__([cfg], device)

    def run(self, stop_at: int | None = None) -> Iterator[StepReport]:
        for report in self.run_pack(stop_at):
            if report.lanes[0] is not None:
                yield report.lanes[0]

    @property
    def verdict(self) -> VerdictTracker:
        return self.verdicts[0]

    def game(self):
        """This trial as a game of single models, for the analyses that take one (Jacobian, duality gap)."""
        return self.evaluator.game(0)


def metric_names(cfg: TrialConfig) -> set[str]:
    """Every diagnostic a trial of this config logs, found by training it for one iteration (a second or
    two): the only list that cannot drift from what the trainer really emits."""
    short = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 1, "log_every": 1, "eval_every": 1})})
    names: set[str] = set()
    for report in Trainer(short, "cpu").run():
        names.update(report.metrics)
    return names
