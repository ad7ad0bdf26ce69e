import math

import pytest
import torch
import torch.nn.functional as F

from ganlab.train.losses import discriminator_loss, generator_loss


@pytest.mark.parametrize("name", ["minimax", "non_saturating"])
def test_equilibrium_values(name):
    # D(x) = 1/2 everywhere: summed D BCE = 2 ln 2; G losses = -ln 2 (minimax) / ln 2 (non-saturating).
    zeros = torch.zeros(16)
    assert discriminator_loss(name, zeros, zeros).item() == pytest.approx(2 * math.log(2), abs=1e-7)
    expected_g = -math.log(2) if name == "minimax" else math.log(2)
    assert generator_loss(name, zeros).item() == pytest.approx(expected_g, abs=1e-7)


def test_discriminator_loss_is_binary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3
    bce = F.binary_cross_entropy(torch.sigmoid(real), torch.ones(64)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros(64)
    )
    assert discriminator_loss("non_saturating", real, fake).item() == pytest.approx(bce.item(), rel=1e-5)


def test_losses_finite_at_extreme_logits():
    big = torch.full((4,), 200.0)
    assert discriminator_loss("minimax", big, -big).item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(discriminator_loss("minimax", -big, big))
    assert torch.isfinite(generator_loss("non_saturating", -big))


def _g_grad(name: str, logit: float) -> float:
    x = torch.tensor([logit], requires_grad=True)
    generator_loss(name, x).backward()
    return x.grad.item()


def test_minimax_saturates_where_non_saturating_does_not():
    # D confidently rejects the fakes (logit -10): minimax's gradient vanishes as sigmoid(-10),
    # the non-saturating loss keeps a gradient of sigmoid(10) ~ 1 (Goodfellow et al. 2014, sec. 3).
    assert abs(_g_grad("minimax", -10.0)) == pytest.approx(torch.sigmoid(torch.tensor(-10.0)).item(), rel=1e-4)
    assert abs(_g_grad("minimax", -10.0)) < 1e-4
    assert abs(_g_grad("non_saturating", -10.0)) == pytest.approx(torch.sigmoid(torch.tensor(10.0)).item(), rel=1e-4)
    # Both push G the same way: towards larger D logits.
    assert _g_grad("minimax", -1.0) < 0 and _g_grad("non_saturating", -1.0) < 0


def test_unknown_loss_rejected():
    with pytest.raises(ValueError, match="unknown loss"):
        generator_loss("wasserstein", torch.zeros(2))


# --- the wider loss family: values and gradient signs at known points -----------------------------

ALL = ["minimax", "non_saturating", "wgan", "wgan_gp", "hinge", "least_squares"]


@pytest.mark.parametrize(
    "name, real, fake, expected",
    [
        ("wgan", [2.0, 4.0], [1.0, -1.0], 0.0 - 3.0),  # E D(fake) - E D(real)
        ("wgan_gp", [1.0], [3.0], 2.0),
        ("hinge", [0.5, 2.0], [-2.0, 0.0], (0.5 + 0.0) / 2 + (0.0 + 1.0) / 2),
        ("least_squares", [1.0, 0.0], [0.0, 1.0], 0.5 * (0.5 + 0.5)),
    ],
)
def test_discriminator_loss_values(name, real, fake, expected):
    got = discriminator_loss(name, torch.tensor(real), torch.tensor(fake)).item()
    assert got == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    "name, fake, expected",
    [("wgan", [1.0, 3.0], -2.0), ("hinge", [1.0, 3.0], -2.0), ("least_squares", [1.0, 3.0], 0.5 * (0 + 4) / 2)],
)
def test_generator_loss_values(name, fake, expected):
    assert generator_loss(name, torch.tensor(fake)).item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_gradient_signs(name):
    # One sign convention for every loss: D descends towards larger outputs on real and smaller on
    # fake; G descends towards larger D outputs on its samples. A flipped sign fails here.
    real = torch.tensor([0.2], requires_grad=True)
    fake = torch.tensor([0.1], requires_grad=True)
    discriminator_loss(name, real, fake).backward()
    assert real.grad.item() < 0 and fake.grad.item() > 0
    fake_g = torch.tensor([0.1], requires_grad=True)
    generator_loss(name, fake_g).backward()
    assert fake_g.grad.item() < 0


def test_hinge_ignores_confident_outputs():
    real = torch.tensor([1.5], requires_grad=True)
    fake = torch.tensor([-1.5], requires_grad=True)
    discriminator_loss("hinge", real, fake).backward()
    assert real.grad.item() == 0 and fake.grad.item() == 0


def test_least_squares_minimum_at_targets():
    assert discriminator_loss("least_squares", torch.ones(3), torch.zeros(3)).item() == 0
    assert generator_loss("least_squares", torch.ones(3)).item() == 0
