"""What every lane's current generator is worth: sample quality and the opt-in costly analyses, at eval steps.
Each lane draws from its own evaluation stream addressed by iteration, so evaluating more or less often never
changes training. Sample quality is computed for all lanes at once (generation, mode statistics, sliced
Wasserstein, Frechet distance); the opt-in analyses that need a lane's game as single models (probe,
Jacobian, duality gap) take the lanes one by one.
"""

from __future__ import annotations

import torch

from ganlab.data import digit_classifier
from ganlab.data.streams import Streams, lane_keys
from ganlab.diagnose import metrics as M
from ganlab.diagnose.equilibrium import duality_gap, jacobian_eigenvalues, spectrum_metrics
from ganlab.diagnose.samples import digit_statistics, mode_statistics, sliced_w1
from ganlab.train.losses import discriminator_loss, generator_loss
from ganlab.train.objective import Penalties, discriminator_objective
from ganlab.train.pack import PackModel

SLICED_W_PROJECTIONS = 64  # random directions of the sliced Wasserstein estimate
EVAL = 4  # the evaluation stream's id (the training streams are 1 to 3)
EVAL_SLOTS = 16  # addresses per eval step: 0 latents, 2-3 real samples, 4 directions, 6-8 Jacobian, 10-12 gap


class LaneGame:
    """One lane as a game of single models (G, D in training mode) with the pack's objectives
    (``ganlab.train.objective``): what the Jacobian and the duality gap analyse, exactly the game that lane
    is trained on."""

    def __init__(self, cfg, G: torch.nn.Module, D: torch.nn.Module):
        self.cfg, self.G, self.D = cfg, G.train(), D.train()
        r, loss = cfg.regularizer, cfg.loss
        self.loss_name = loss.name
        self.penalties = Penalties(
            r1=torch.tensor(r.r1) if r.r1 > 0 else None, r2=torch.tensor(r.r2) if r.r2 > 0 else None,
            gp_weight=torch.tensor(loss.gp_weight) if loss.name == "wgan_gp" else None,
            gp_center=torch.tensor(loss.gp_center) if loss.name == "wgan_gp" else None)

    @property
    def differentiates_real(self) -> bool:
        """R1 differentiates D through its real inputs: they must require grad."""
        return self.penalties.r1 is not None

    def discriminator_objective(self, real_in: torch.Tensor, fake_in: torch.Tensor, rng: torch.Generator):
        """(D's loss, its regularizer) at these inputs; ``rng`` draws WGAN-GP's interpolation weights."""
        eps = torch.rand(real_in.shape[0], generator=rng).to(real_in.device) if self.penalties.gp_weight is not None \
            else None
        obj = discriminator_objective(self.D, self.loss_name, real_in, fake_in, self.penalties, eps)
        return obj.loss, obj.reg

    def generator_objective(self, fake_in: torch.Tensor) -> torch.Tensor:
        return generator_loss(self.loss_name, self.D(fake_in))

    def value(self, G: torch.nn.Module, D: torch.nn.Module, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The game's value M(G, D) = -(D's loss without regularizers), for players G, D (copies of this
        lane's, in the duality gap's inner problems)."""
        return -discriminator_loss(self.loss_name, D(real), D(G(z)))


class Evaluator:
    """The eval/* figures of a pack's lanes; keeps the probe's baselines (each D as initialised), computed once."""

    def __init__(self, pack: PackModel) -> None:
        self.pack = pack
        self.streams = Streams(lane_keys([c.seed for c in pack.cfgs], EVAL), pack.device)
        self.probe_baselines: dict[int, float] = {}
        self._classifier = None
        self.iteration = 0  # the iteration being evaluated: every draw is addressed by it

    @torch.no_grad()
    def generate(self, n: int, iteration: int, offset: int = 0) -> torch.Tensor:
        """(L, n, *shape) samples of every lane's evaluation generator, in evaluation mode, latents from the
        lane's evaluation stream at ``iteration``."""
        G = self.pack.eval_generator
        was_training = G.training
        G.eval()
        z = self.streams.normal(iteration * EVAL_SLOTS + offset, n, self.pack.latent_dim)
        samples = G(z)
        G.train(was_training)
        return samples

    def _address(self, slot: int) -> int:
        return self.iteration * EVAL_SLOTS + slot

    def __call__(self, iteration: int) -> dict[str, torch.Tensor]:
        """The eval/* figures of every lane at ``iteration``: name -> (L,) float64 tensor, on the pack's device
        (the trainer moves a whole report to the host at once)."""
        self.iteration = iteration
        pack, cfg = self.pack, self.pack.cfg
        data, n = pack.data, cfg.train.eval_samples
        out: dict[str, torch.Tensor] = {}
        if data.quality in ("mixture", "points"):
            fake = self.generate(n, iteration)
            real = data.draw(self.streams, self._address(2), n)
            directions = self.streams.normal(self._address(4), fake.flatten(2).shape[-1], SLICED_W_PROJECTIONS,
                                             dtype=torch.float64)
            out[M.EVAL_SLICED_W] = sliced_w1(fake, real, directions)
            if data.quality == "mixture":
                stats = mode_statistics(fake, data.means, data.sigma, cfg.diagnostics.hq_sigmas)
                out.update({f"eval/{k}": v for k, v in stats.items()})
        elif data.quality in ("digits", "stacked_digits"):
            real = data.draw(self.streams, self._address(2), n)
            stats = digit_statistics(self.generate(n, iteration), real, self.classifier(),
                                     stacked=data.quality == "stacked_digits")
            out.update({f"eval/{k}": v for k, v in stats.items()})
        out.update(pack.eval_generator.state_metrics(pack.D))
        for wanted, per_lane in ((cfg.diagnostics.d_probe, self._probe_metrics),
                                 (cfg.diagnostics.jacobian, self._jacobian_metrics),
                                 (cfg.diagnostics.duality_gap, self._duality_gap)):
            if wanted:  # costly, opt-in: lane by lane on single models
                rows = [per_lane(lane) for lane in range(pack.n_lanes)]
                out.update({k: torch.tensor([row[k] for row in rows], dtype=torch.float64) for k in rows[0]})
        return {k: v.detach().double().to(pack.device) for k, v in out.items()}

    def classifier(self):
        if self._classifier is None:
            base = digit_classifier()
            if self.pack.device.type == "cpu":
                self._classifier = base
            else:
                import copy

                self._classifier = copy.copy(base)
                self._classifier.net = copy.deepcopy(base.net).to(self.pack.device)
        return self._classifier

    # --- lane by lane: single models -----------------------------------------------------------

    def game(self, lane: int) -> LaneGame:
        G, D = self.pack.single_models(lane)
        return LaneGame(self.pack.cfgs[lane], G, D)

    def _probe_metrics(self, lane: int) -> dict[str, float]:
        from ganlab.diagnose.probe import d_feature_probe

        pack = self.pack
        d = pack.cfgs[lane].diagnostics
        if lane not in self.probe_baselines:  # deterministic: a resumed trial recomputes the same value
            _, D0 = pack.initial_models(lane)
            self.probe_baselines[lane] = d_feature_probe(D0.to(pack.device), d.d_probe_c, d.d_probe_max_iter,
                                                         d.d_probe_per_class)
        _, D = pack.single_models(lane)
        return {M.EVAL_D_PROBE_ACC: d_feature_probe(D, d.d_probe_c, d.d_probe_max_iter, d.d_probe_per_class),
                M.EVAL_D_PROBE_ACC_RANDOM: self.probe_baselines[lane]}

    def _lane_batch(self, lane: int, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One lane's fixed batch (real, latents) for an analysis at this iteration."""
        pack = self.pack
        b = pack.cfg.data.batch_size
        real = pack.data.draw(self.streams, self._address(slot), b)[lane]
        z = self.streams.normal(self._address(slot + 2), b, pack.latent_dim)[lane]
        return real, z

    def _jacobian_metrics(self, lane: int) -> dict[str, float]:
        """Spectrum of a lane's game Jacobian on a fixed eval batch, on copies of its models (analysing never
        moves the pack's batch-norm statistics or spectral-norm vectors)."""
        real, z = self._lane_batch(lane, 6)
        eigenvalues = jacobian_eigenvalues(self.game(lane), real, z)
        return {f"eval/{k}": v for k, v in spectrum_metrics(eigenvalues).items()}

    def _duality_gap(self, lane: int) -> dict[str, float]:
        d = self.pack.cfgs[lane].diagnostics
        real, z = self._lane_batch(lane, 10)
        return {M.EVAL_DUALITY_GAP: duality_gap(self.game(lane), real, z, d.duality_gap_steps, d.duality_gap_lr,
                                                d.duality_gap_box or None)}
