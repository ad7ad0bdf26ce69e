import math

import pytest
import torch
from torch import nn

from ganlab.train.regularizers import (
    clip_weights,
    grad_sq_norm,
    instance_noise_sigma,
    wgan_gp_penalty,
    zero_centered_penalty,
)


class Quadratic(nn.Module):
    """D(x) = a * ||x||^2: grad = 2 a x, so ||grad||^2 = 4 a^2 ||x||^2 is known at every point."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x):
        return self.a * x.pow(2).sum(1)


def test_grad_sq_norm_known_function():
    D = Quadratic(1.5)
    x = torch.tensor([[1.0, 2.0], [0.0, 3.0]], requires_grad=True)
    got = grad_sq_norm(D(x), x)
    assert torch.allclose(got, 4 * 1.5**2 * x.detach().pow(2).sum(1))


def test_r1_matches_closed_form_and_its_gradient():
    # gamma/2 * E||grad||^2 = gamma/2 * 4 a^2 E||x||^2; d/da = gamma * 4 a E||x||^2.
    D, gamma = Quadratic(0.5), 10.0
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    pen = zero_centered_penalty(D(x), x, gamma)
    mean_sq = (1.0 + 2.0) / 2
    assert pen.item() == pytest.approx(gamma / 2 * 4 * 0.25 * mean_sq)
    pen.backward()
    assert D.a.grad.item() == pytest.approx(gamma * 4 * 0.5 * mean_sq)


def test_r1_on_linear_critic_is_half_gamma_w_squared():
    # On the Dirac-GAN, D(x) = psi x: R1 = gamma/2 * psi^2 (the paper's convention, not gamma * psi^2).
    D = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        D.weight.fill_(0.7)
    x = torch.zeros(4, 1, requires_grad=True)
    assert zero_centered_penalty(D(x).squeeze(1), x, 2.0).item() == pytest.approx(0.49, rel=1e-6)


def test_wgan_gp_on_linear_critic():
    # Linear D(x) = w.x has ||grad|| = ||w|| everywhere: penalty = weight * (||w|| - center)^2.
    D = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
    real, fake = torch.randn(8, 3), torch.randn(8, 3)
    pen = wgan_gp_penalty(lambda x: D(x).squeeze(1), real, fake, 10.0, 1.0, torch.Generator().manual_seed(0))
    assert pen.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2, rel=1e-5)


def test_wgan_gp_interpolates_between_real_and_fake():
    seen = []

    def D(x):
        seen.append(x.detach().clone())
        return x.sum(1)

    real, fake = torch.zeros(1000, 2), torch.ones(1000, 2)
    wgan_gp_penalty(D, real, fake, 1.0, 1.0, torch.Generator().manual_seed(0))
    x_hat = seen[0]
    assert (x_hat[:, 0] == x_hat[:, 1]).all()  # one epsilon per sample
    assert 0 <= x_hat.min() and x_hat.max() <= 1 and abs(x_hat.mean().item() - 0.5) < 0.05


def test_instance_noise_anneals_linearly():
    assert instance_noise_sigma(0.7, 0, 12345) == 0.7
    assert instance_noise_sigma(1.0, 100, 0) == 1.0
    assert instance_noise_sigma(1.0, 100, 25) == pytest.approx(0.75)
    assert instance_noise_sigma(1.0, 100, 150) == 0.0


def test_clip_weights():
    m = nn.Linear(4, 4)
    with torch.no_grad():
        m.weight.mul_(100)
    clip_weights(m, 0.01)
    assert all(p.abs().max() <= 0.01 + 1e-9 for p in m.parameters())
    assert math.isclose(m.weight.abs().max().item(), 0.01, rel_tol=1e-6)
