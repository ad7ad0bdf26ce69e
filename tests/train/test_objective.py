"""D's objective is written once (``ganlab.train.objective``): the packed step and a lane's single-model game
(what the Jacobian and the duality gap analyse) must compute the same numbers, and the numbers must be the
closed forms where they are known."""

import math

import pytest
import torch

from ganlab.config import apply_overrides
from ganlab.train.objective import Penalties, discriminator_objective
from ganlab.train.trainer import Trainer

RING = {"data": {"name": "ring8", "batch_size": 32}, "model": {"width": 16, "depth": 2}, "device": "cpu",
        "train": {"steps": 4, "log_every": 2, "eval_every": 4, "eval_samples": 200}}


@pytest.mark.parametrize("extra", [
    {"regularizer": {"r1": 0.5, "r2": 0.2}},
    {"loss": {"name": "wgan_gp", "gp_weight": 5.0}},
    {"loss": {"name": "hinge"}, "regularizer": {"r1": 1.0}},
])
def test_the_packed_objective_equals_each_lanes_single_model_game(extra):
    """Lanes with different strengths: each lane's loss and regularizer from the pack equal its single models'
    through the game the analyses use, on the same inputs."""
    cfgs = [apply_overrides(RING, {**extra, "seed": s}) for s in (0, 1)]
    if "regularizer" in extra:  # a second lane with other strengths (R1/R2 are per-lane)
        cfgs[1] = apply_overrides(cfgs[1].model_dump(mode="json"), {"regularizer.r1": 2.0})
    trainer = Trainer(cfgs)
    pack = trainer.model
    obj = pack.d_objective(iteration=0, k=0)
    for lane in range(2):
        game = trainer.game(lane)
        real = pack.real(256)[lane].detach().clone().requires_grad_(game.differentiates_real)
        fake = pack.G(pack.latents(256))[lane].detach().clone().requires_grad_(cfgs[lane].regularizer.r2 > 0)
        if cfgs[0].loss.name == "wgan_gp":  # the GP's interpolation weights come from the caller's stream
            eps = pack.streams[3].uniform(4 * 256 + 2, 32)[lane]
            single = discriminator_objective(game.D, "wgan_gp", real, fake, game.penalties, eps)
            loss, reg = single.loss, single.reg
        else:
            loss, reg = game.discriminator_objective(real, fake, torch.Generator().manual_seed(0))
        assert float(loss.detach()) == pytest.approx(float(obj.loss[lane]), rel=1e-5, abs=1e-6)
        assert float(reg.detach()) == pytest.approx(float(obj.reg[lane]), rel=1e-4, abs=1e-6)


def test_a_d_at_one_half_everywhere_has_the_bce_equilibrium_loss():
    """D's output 0 everywhere (D = 1/2): the summed BCE is 2 ln 2 whatever the inputs, and no penalty applies."""
    zero = lambda x: x.flatten(2).sum(-1) * 0.0  # noqa: E731
    x = torch.randn(3, 8, 2)
    obj = discriminator_objective(zero, "non_saturating", x, x + 1, Penalties(), None)
    assert obj.loss.tolist() == pytest.approx([2 * math.log(2)] * 3)
    assert obj.reg.tolist() == [0.0] * 3
    assert obj.on_real.shape == obj.on_fake.shape == (3, 8)


def test_r1_and_r2_on_the_dirac_discriminator_are_their_closed_forms():
    """D(x) = psi x: R1 = gamma/2 * psi^2 per lane (Mescheder et al. 2018), R2 likewise on the generated
    samples, each lane with its own strengths."""
    psi = torch.tensor([0.5, -2.0])
    D = lambda x: x.reshape(2, -1) * psi.reshape(2, 1)  # noqa: E731
    real = torch.zeros(2, 4, 1, requires_grad=True)
    fake = torch.ones(2, 4, 1, requires_grad=True)
    g1, g2 = torch.tensor([1.0, 0.3]), torch.tensor([0.2, 4.0])
    obj = discriminator_objective(D, "minimax", real, fake, Penalties(r1=g1), None)
    assert obj.reg.tolist() == pytest.approx((g1 / 2 * psi**2).tolist())
    obj = discriminator_objective(D, "minimax", real, fake, Penalties(r1=g1, r2=g2), None)
    assert obj.reg.tolist() == pytest.approx(((g1 + g2) / 2 * psi**2).tolist())


def test_the_games_value_is_minus_ds_unregularized_loss():
    trainer = Trainer(apply_overrides(RING, {"regularizer.r1": 1.0}))
    game = trainer.game(0)
    real, z = torch.randn(16, 2), torch.randn(16, game.G.latent_dim)
    fake = game.G(z)
    loss = torch.nn.functional.softplus(-game.D(real)).mean() + torch.nn.functional.softplus(game.D(fake)).mean()
    assert float(game.value(game.G, game.D, real, z)) == pytest.approx(-float(loss), rel=1e-6)
