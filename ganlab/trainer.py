"""The GAN training loop. One ``Trainer`` per trial; it knows nothing of Ray or MLflow.

``run()`` yields the diagnostics at every log step (and sample quality at eval steps); whoever drives
it decides where they go. Every random stream (model init, data, latents, noise, evaluation) comes from
its own generator derived from the seed, so a trial is reproducible bit for bit on CPU, evaluating more
or less often never changes the training trajectory, and a checkpoint that stores the streams' states
resumes to exactly the uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.classifier import digit_classifier
from ganlab.config import AdamConfig, RmspropConfig, SgdConfig, TrialConfig
from ganlab.data import GaussianMixture, make_dataset
from ganlab.diagnostics import (
    Collector,
    SlidingWindow,
    d_accuracy,
    digit_metrics,
    dominant_period,
    mode_metrics,
    oscillation,
    sliced_wasserstein,
    zero_crossing_rate,
)
from ganlab.equilibrium import duality_gap, jacobian_eigenvalues, spectrum_metrics
from ganlab.losses import CRITICS, EQUILIBRIUM_LOSS, decision_threshold, discriminator_loss, generator_loss
from ganlab.models import build_models
from ganlab.regularizers import clip_weights, instance_noise_sigma, wgan_gp_penalty, zero_centered_penalty
from ganlab.verdict import VerdictTracker

CHECKPOINT_VERSION = 1
MODELS_FORMAT = 1  # of export_models' dict (model/final.pt, model/best.pt)
EXPORT_CHECK_BATCH = 16  # inputs whose outputs are stored with exported weights


class CheckpointMismatch(ValueError):
    """A checkpoint written under a different training configuration: resuming would mix two runs."""


SLICED_W_PROJECTIONS = 64  # random directions of the sliced Wasserstein estimate


@dataclass(frozen=True)
class StepReport:
    step: int  # training iterations so far: the x-axis of every metric
    metrics: dict[str, float]
    evaluated: bool  # the metrics include the eval/* figures
    verdict: str = "oscillating"
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
        self._probe_baseline: float | None = None  # the probe on D as initialised: computed once, when first asked
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
        self.d_loss_window = SlidingWindow(cfg.diagnostics.window)
        self.g_loss_window = SlidingWindow(cfg.diagnostics.window)
        self.delta_window = SlidingWindow(cfg.diagnostics.window)  # E D(x) - E D(G(z)) per iteration
        self._last_params = {"g": _flat_params(self.G), "d": _flat_params(self.D)}
        n_modes = {"digits": 10, "stacked_digits": 1000}.get(cfg.data.name, getattr(self.data, "n_modes", None))
        self.verdict = VerdictTracker(cfg.verdict, n_modes)
        self.iteration = 0
        self.g_steps = 0
        self.d_steps = 0

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
        self._delta = real_out.detach().mean() - fake_out.detach().mean()
        if not self.cfg.diagnostics.per_step:
            self.stats.report(("loss/d", "reg/d"), torch.stack([loss.detach(), reg.detach()]))
            return loss.detach()
        # Diagnostics from the outputs this step computed anyway, for the D that produced them (pre-update),
        # stacked into one tensor: one accumulation per step, no host sync.
        real_out, fake_out = real_out.detach(), fake_out.detach()
        acc_real, acc_fake = d_accuracy(real_out - self.threshold, fake_out - self.threshold)
        stats = [loss.detach(), reg.detach(), acc_real, acc_fake, real_out.mean(), fake_out.mean()]
        self.stats.report(self._d_names, torch.stack([t.to(torch.float32) for t in stats]))
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
        loss = generator_loss(self.cfg.loss.name, self.D(self._noisy(fake)))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.stats.report("loss/g", loss)
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
            d_losses = [self.discriminator_grads()]
            g_losses = [self.generator_grads()]  # same point: neither player has moved yet
            self.discriminator_update()
            self.generator_update()
        else:
            d_block = lambda: [self.discriminator_step() for _ in range(s.d_steps)]  # noqa: E731
            g_block = lambda: [self.generator_step() for _ in range(s.g_steps)]  # noqa: E731
            if s.order == "d_first":
                d_losses, g_losses = d_block(), g_block()
            else:
                g_losses, d_losses = g_block(), d_block()
        self.iteration += 1
        self.d_loss_window.push(d_losses[0] if len(d_losses) == 1 else torch.stack(d_losses).mean())
        self.g_loss_window.push(g_losses[0] if len(g_losses) == 1 else torch.stack(g_losses).mean())
        self.delta_window.push(self._delta)

    # --- what gets logged ----------------------------------------------------------------------

    def log_metrics(self) -> dict[str, float]:
        metrics = self.stats.reduce()
        if f"{self.acc}/real" in metrics:
            real, fake = metrics[f"{self.acc}/real"], metrics[f"{self.acc}/fake"]
            metrics[f"{self.acc}/mean"] = (real + fake) / 2
            metrics["eq/acc_gap"] = abs(real - 0.5) + abs(fake - 0.5)
        reference = EQUILIBRIUM_LOSS.get(self.cfg.loss.name)
        if reference is not None:
            metrics["eq/loss_d_gap"] = metrics["loss/d"] - reference[0]
            metrics["eq/loss_g_gap"] = metrics["loss/g"] - reference[1]
        for name, window in (("loss_d", self.d_loss_window), ("loss_g", self.g_loss_window)):
            values = window.values()
            for stat, value in oscillation(values).items():
                metrics[f"osc/{name}_{stat}"] = value
            metrics[f"osc/{name}_period"] = dominant_period(values)
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

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.data.kind == "points" and self.cfg.model.name != "dirac":
            n = self.cfg.train.eval_samples
            fake = self.generate(n)
            rng = torch.Generator().manual_seed(self._eval_seed - 1 - self.iteration)
            out["eval/sliced_w"] = sliced_wasserstein(fake, self.data.sample(n, rng), SLICED_W_PROJECTIONS, rng)
            if isinstance(self.data, GaussianMixture):
                stats = mode_metrics(fake, self.data, self.cfg.diagnostics.hq_sigmas)
                out.update({f"eval/{k}": v for k, v in stats.items()})
        if self.cfg.data.name in ("digits", "stacked_digits"):
            n = self.cfg.train.eval_samples
            rng = torch.Generator().manual_seed(self._eval_seed - 1 - self.iteration)
            stats = digit_metrics(self.generate(n), self.data.sample(n, rng), digit_classifier(),
                                  stacked=self.cfg.data.name == "stacked_digits")
            out.update({f"eval/{k}": v for k, v in stats.items()})
        if self.cfg.diagnostics.d_probe:
            out.update(self._probe_metrics())
        if self.cfg.diagnostics.jacobian:
            out.update(self._jacobian_metrics())
        if self.cfg.diagnostics.duality_gap:
            d = self.cfg.diagnostics
            rng = torch.Generator().manual_seed(self._eval_seed + 11 + self.iteration)
            n = self.cfg.data.batch_size
            out["eval/duality_gap"] = duality_gap(self, self.data.sample(n, rng).to(self.device), self._latents(n, rng),
                                                  d.duality_gap_steps, d.duality_gap_lr, d.duality_gap_box or None)
        if self.cfg.model.name == "dirac":
            theta, psi = self.eval_generator.theta.item(), self.D.psi.item()
            out.update({"eval/dirac_theta": theta, "eval/dirac_psi": psi,
                        "eval/dirac_distance": (theta**2 + psi**2) ** 0.5})
        return out

    def _probe_metrics(self) -> dict[str, float]:
        from ganlab.probe import d_feature_probe

        d = self.cfg.diagnostics
        if self._probe_baseline is None:  # deterministic: a resumed trial recomputes the same value
            _, D0 = self.initial_models(self._init_seed)
            self._probe_baseline = d_feature_probe(D0.to(self.device), d.d_probe_c, d.d_probe_max_iter,
                                                   d.d_probe_per_class)
        return {"eval/d_probe_acc": d_feature_probe(self.D, d.d_probe_c, d.d_probe_max_iter, d.d_probe_per_class),
                "eval/d_probe_acc_random": self._probe_baseline}

    def _jacobian_metrics(self) -> dict[str, float]:
        """Spectrum of the game's Jacobian on a fixed eval batch. Forward passes in training mode move
        batch-norm statistics and spectral-norm vectors: they are restored, so evaluating never changes
        the training trajectory."""
        buffers = [b for m in (self.G, self.D) for b in m.buffers()]
        saved = [b.clone() for b in buffers]
        rng = torch.Generator().manual_seed(self._eval_seed + 7 + self.iteration)
        n = self.cfg.data.batch_size
        try:
            eigenvalues = jacobian_eigenvalues(self, self.data.sample(n, rng).to(self.device), self._latents(n, rng))
        finally:
            with torch.no_grad():
                for b, v in zip(buffers, saved):
                    b.copy_(v)
        return {f"eval/{k}": v for k, v in spectrum_metrics(eigenvalues).items()}

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

    # --- the trained models, for use after the study --------------------------------------------

    @torch.no_grad()
    def export_models(self) -> dict[str, Any]:
        """G, D (and EMA G) weights on CPU with what load_trial needs to rebuild them without the data, and the
        outputs they give in evaluation mode on a fixed batch, so a loader can prove it rebuilt the same
        functions bit for bit. Loads with ``torch.load(weights_only=True)``: tensors and plain types only."""
        rng = torch.Generator().manual_seed(self._export_seed)
        z = torch.randn(EXPORT_CHECK_BATCH, self.G.latent_dim, generator=rng)
        x = self.data.sample(EXPORT_CHECK_BATCH, rng)
        models = {"G": self.G, "D": self.D, "G_ema": self.G_ema}
        outputs: dict[str, torch.Tensor] = {}
        for name, model in models.items():
            if model is None:
                continue
            was_training = model.training
            model.eval()
            outputs[name] = model((x if name == "D" else z).to(self.device)).cpu()
            model.train(was_training)
        return {
            "format": MODELS_FORMAT,
            "config": self.cfg.model_dump(mode="json"),
            "data_shape": list(self.data.shape),
            "iteration": self.iteration,
            "device": self.device.type,
            **{name: None if m is None else {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
               for name, m in models.items()},
            "check": {"z": z, "x": x, "outputs": outputs},
        }

    # --- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "trajectory_digest": self.cfg.trajectory_digest(),
            "config": self.cfg.model_dump(mode="json"),
            "counters": {"iteration": self.iteration, "g_steps": self.g_steps, "d_steps": self.d_steps},
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rngs": {name: g.get_state() for name, g in self.rngs.items()},
            "stats": self.stats.state_dict(),
            "windows": {"d": self.d_loss_window.state_dict(), "g": self.g_loss_window.state_dict(),
                        "delta": self.delta_window.state_dict()},
            "last_params": self._last_params,
            "verdict": {"first_distance": self.verdict.first_distance, "latest": self.verdict.latest},
        }

    def load_state_dict(self, state: dict[str, Any], same_trajectory: bool = True) -> None:
        """``same_trajectory=False`` is population-based training's exploit: the state of another trial,
        continued under this trial's (mutated) hyper-parameters; the learning rates are this config's."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointMismatch(f"checkpoint format {state.get('version')} is not {CHECKPOINT_VERSION}")
        if same_trajectory and state["trajectory_digest"] != self.cfg.trajectory_digest():
            raise CheckpointMismatch(
                "the checkpoint was written under a different trial config (only train.* and diagnostics.* "
                "may change on resume); start a new run or restore the original config"
            )
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for name, g in self.rngs.items():
            g.set_state(state["rngs"][name])
        self.stats.load_state_dict(state["stats"])
        self.d_loss_window.load_state_dict(state["windows"]["d"])
        self.g_loss_window.load_state_dict(state["windows"]["g"])
        self.delta_window.load_state_dict(state["windows"]["delta"])
        self._last_params = state["last_params"]
        self.verdict.first_distance = state["verdict"]["first_distance"]
        self.verdict.latest = dict(state["verdict"]["latest"])
        c = state["counters"]
        self.iteration, self.g_steps, self.d_steps = c["iteration"], c["g_steps"], c["d_steps"]
        if not same_trajectory:
            for opt, lr in ((self.opt_g, self.cfg.optim.lr_g), (self.opt_d, self.cfg.optim.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr

    def save(self, path: str | Path) -> None:
        """Atomic: a crash mid-write leaves the previous checkpoint intact."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))


def metric_names(cfg: TrialConfig) -> set[str]:
    """Every diagnostic a trial of this config logs, found by training it for one iteration (a second or
    two): the only list that cannot drift from what the trainer really emits."""
    short = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 1, "log_every": 1, "eval_every": 1})})
    names: set[str] = set()
    for report in Trainer(short, "cpu").run():
        names.update(report.metrics)
    return names
