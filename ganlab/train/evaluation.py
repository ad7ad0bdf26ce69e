"""What every lane's current generator is worth: sample quality and the opt-in costly analyses, at eval steps.
Each lane draws from its own evaluation stream addressed by iteration, so evaluating more or less often never
changes training. Sample quality is computed for all lanes at once (generation, mode statistics, sliced
Wasserstein, Frechet distance); the opt-in analyses that need a lane's game as single models (probe,
Jacobian, duality gap) take the lanes one by one.
"""

from __future__ import annotations

import torch

from ganlab.data import GaussianMixture, digit_classifier
from ganlab.data.streams import Streams, lane_keys
from ganlab.diagnose.equilibrium import duality_gap, jacobian_eigenvalues, spectrum_metrics
from ganlab.diagnose.samples import digit_statistics, mode_statistics, sliced_w1
from ganlab.train.losses import discriminator_terms, generator_terms
from ganlab.train.packed import lane_state
from ganlab.train.regularizers import wgan_gp_penalty, zero_centered_penalty

SLICED_W_PROJECTIONS = 64  # random directions of the sliced Wasserstein estimate
EVAL = 4  # the evaluation stream's id (the training streams are 1 to 3)
EVAL_SLOTS = 16  # addresses per eval step: 0 latents, 2-3 real samples, 4 directions, 6-8 Jacobian, 10-12 gap


class LaneGame:
    """One lane as a game of single models (G, D in training mode) with its own objectives: what the
    Jacobian and the duality gap analyse, exactly the objective the pack optimises for that lane."""

    def __init__(self, cfg, G: torch.nn.Module, D: torch.nn.Module):
        self.cfg, self.G, self.D = cfg, G.train(), D.train()

    def discriminator_objective(self, real_in: torch.Tensor, fake_in: torch.Tensor, rng: torch.Generator):
        r, loss_cfg = self.cfg.regularizer, self.cfg.loss
        real_out, fake_out = self.D(real_in), self.D(fake_in)
        loss = self.d_loss(real_out, fake_out)
        reg = torch.zeros((), device=real_out.device)
        if r.r1 > 0:
            reg = reg + zero_centered_penalty(real_out, real_in, torch.tensor(r.r1))
        if r.r2 > 0:
            reg = reg + zero_centered_penalty(fake_out, fake_in, torch.tensor(r.r2))
        if loss_cfg.name == "wgan_gp":
            eps = torch.rand(real_in.shape[0], generator=rng).to(real_in.device)
            reg = reg + wgan_gp_penalty(self.D, real_in, fake_in, torch.tensor(loss_cfg.gp_weight),
                                        torch.tensor(loss_cfg.gp_center), eps)
        return loss, reg, real_out, fake_out

    def generator_objective(self, fake_in: torch.Tensor) -> torch.Tensor:
        return generator_terms(self.cfg.loss.name, self.D(fake_in)).mean(-1)

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        on_real, on_fake = discriminator_terms(self.cfg.loss.name, real_out, fake_out)
        return on_real.mean(-1) + on_fake.mean(-1)


class Evaluator:
    """The eval/* figures of a pack's lanes; keeps the probe's baselines (each D as initialised), computed once."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.streams = Streams(lane_keys([c.seed for c in trainer.cfgs], EVAL), trainer.device)
        self.probe_baselines: dict[int, float] = {}
        self._classifier = None

    @property
    def eval_generator(self) -> torch.nn.Module:
        t = self.trainer
        return t.G_ema if t.G_ema is not None else t.G  # a lane without EMA has its G there (decay 0)

    @torch.no_grad()
    def generate(self, n: int, offset: int = 0) -> torch.Tensor:
        """(L, n, *shape) samples of every lane's evaluation generator, in evaluation mode, latents from the
        lane's evaluation stream at this iteration."""
        t = self.trainer
        G = self.eval_generator
        was_training = G.training
        G.eval()
        z = self.streams.normal(self._address(offset), n, t.latent_dim)
        samples = G(z)
        G.train(was_training)
        return samples

    def _address(self, slot: int) -> int:
        return self.trainer.iteration * EVAL_SLOTS + slot

    def __call__(self) -> dict[str, torch.Tensor]:
        """The eval/* figures of every lane at the trainer's current iteration: name -> (L,) tensor."""
        t = self.trainer
        cfg, n = t.cfg, t.cfg.train.eval_samples
        out: dict[str, torch.Tensor] = {}
        if t.data.kind == "points" and cfg.model.name != "dirac":
            fake = self.generate(n)
            real = t.data.draw(self.streams, self._address(2), n)
            directions = self.streams.normal(self._address(4), fake.flatten(2).shape[-1], SLICED_W_PROJECTIONS,
                                             dtype=torch.float64)
            out["eval/sliced_w"] = sliced_w1(fake, real, directions)
            if isinstance(t.data, GaussianMixture):
                stats = mode_statistics(fake, t.data.means, t.data.sigma, cfg.diagnostics.hq_sigmas)
                out.update({f"eval/{k}": v for k, v in stats.items()})
        if cfg.data.name in ("digits", "stacked_digits"):
            real = t.data.draw(self.streams, self._address(2), n)
            stats = digit_statistics(self.generate(n), real, self.classifier(), stacked=cfg.data.name == "stacked_digits")
            out.update({f"eval/{k}": v for k, v in stats.items()})
        if cfg.model.name == "dirac":
            theta, psi = self.eval_generator.theta.detach().double(), self._psi()
            out.update({"eval/dirac_theta": theta, "eval/dirac_psi": psi, "eval/dirac_distance": (theta**2 + psi**2).sqrt()})
        for name, wanted, per_lane in (("probe", cfg.diagnostics.d_probe, self._probe_metrics),
                                       ("jacobian", cfg.diagnostics.jacobian, self._jacobian_metrics),
                                       ("duality_gap", cfg.diagnostics.duality_gap, self._duality_gap)):
            if wanted:  # costly, opt-in: lane by lane on single models
                rows = [per_lane(lane) for lane in range(t.lanes)]
                out.update({k: torch.tensor([row[k] for row in rows], dtype=torch.float64) for k in rows[0]})
        return {k: v.detach().double().cpu() for k, v in out.items()}

    def _psi(self) -> torch.Tensor:
        """Each lane's D slope as D uses it in evaluation (spectrally normalised without advancing its power
        iteration)."""
        D = self.trainer.D
        was_training = D.training
        D.eval()
        try:
            return D.linear.current_weight().detach().reshape(-1).double()
        finally:
            D.train(was_training)

    def classifier(self):
        if self._classifier is None:
            base = digit_classifier()
            if self.trainer.device.type == "cpu":
                self._classifier = base
            else:
                import copy

                self._classifier = copy.copy(base)
                self._classifier.net = copy.deepcopy(base.net).to(self.trainer.device)
        return self._classifier

    # --- lane by lane: single models -----------------------------------------------------------

    def single_models(self, lane: int, ema: bool = False):
        """(G, D) of one lane as the single models ``build_models`` makes, with the lane's current weights."""
        t = self.trainer
        G, D = t.initial_models(lane)
        G.load_state_dict(lane_state(t.G_ema if ema and t.G_ema is not None else t.G, lane))
        D.load_state_dict(lane_state(t.D, lane))
        return G.to(t.device), D.to(t.device)

    def game(self, lane: int) -> LaneGame:
        G, D = self.single_models(lane)
        return LaneGame(self.trainer.cfgs[lane], G, D)

    def _probe_metrics(self, lane: int) -> dict[str, float]:
        from ganlab.diagnose.probe import d_feature_probe

        t = self.trainer
        d = t.cfgs[lane].diagnostics
        if lane not in self.probe_baselines:  # deterministic: a resumed trial recomputes the same value
            _, D0 = t.initial_models(lane)
            self.probe_baselines[lane] = d_feature_probe(D0.to(t.device), d.d_probe_c, d.d_probe_max_iter,
                                                         d.d_probe_per_class)
        _, D = self.single_models(lane)
        return {"eval/d_probe_acc": d_feature_probe(D, d.d_probe_c, d.d_probe_max_iter, d.d_probe_per_class),
                "eval/d_probe_acc_random": self.probe_baselines[lane]}

    def _lane_batch(self, lane: int, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One lane's fixed batch (real, latents) for an analysis at this iteration."""
        t = self.trainer
        b = t.cfg.data.batch_size
        real = t.data.draw(self.streams, self._address(slot), b)[lane]
        z = self.streams.normal(self._address(slot + 2), b, t.latent_dim)[lane]
        return real, z

    def _jacobian_metrics(self, lane: int) -> dict[str, float]:
        """Spectrum of a lane's game Jacobian on a fixed eval batch, on copies of its models (analysing never
        moves the pack's batch-norm statistics or spectral-norm vectors)."""
        real, z = self._lane_batch(lane, 6)
        eigenvalues = jacobian_eigenvalues(self.game(lane), real, z)
        return {f"eval/{k}": v for k, v in spectrum_metrics(eigenvalues).items()}

    def _duality_gap(self, lane: int) -> dict[str, float]:
        d = self.trainer.cfgs[lane].diagnostics
        real, z = self._lane_batch(lane, 10)
        return {"eval/duality_gap": duality_gap(self.game(lane), real, z, d.duality_gap_steps, d.duality_gap_lr,
                                                d.duality_gap_box or None)}
