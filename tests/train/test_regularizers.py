"""Regularizers against closed forms, for a pack of lanes at once: every lane gets its own strength and its own
answer, and no lane's value or gradient leaks into another's."""

import pytest
import torch

from ganlab.train.regularizers import (
    clip_weights,
    grad_sq_norm,
    instance_noise_sigma,
    wgan_gp_penalty,
    zero_centered_penalty,
)


def quadratic(a: torch.Tensor):
    """D_l(x) = a_l * ||x||^2 for each lane l: grad = 2 a_l x, so ||grad||^2 = 4 a_l^2 ||x||^2 everywhere."""
    return lambda x: a.reshape(-1, 1) * x.pow(2).sum(-1)


def test_grad_sq_norm_known_function_per_lane_and_for_a_single_model():
    a = torch.tensor([1.5, -0.5])
    x = torch.tensor([[[1.0, 2.0], [0.0, 3.0]], [[1.0, 1.0], [2.0, 0.0]]], requires_grad=True)  # (L=2, B=2, 2)
    got = grad_sq_norm(quadratic(a)(x), x)
    assert got.shape == (2, 2)
    assert torch.allclose(got, 4 * a.reshape(2, 1) ** 2 * x.detach().pow(2).sum(-1))
    single = x.detach()[0].clone().requires_grad_(True)  # (B, 2): a single model's batch
    assert torch.allclose(grad_sq_norm(1.5 * single.pow(2).sum(-1), single), got[0])


def test_r1_matches_closed_form_and_its_gradient_lane_by_lane():
    # gamma/2 * E||grad||^2 = gamma/2 * 4 a^2 E||x||^2; d/da = gamma * 4 a E||x||^2, each lane its own.
    a = torch.tensor([0.5, 2.0], requires_grad=True)
    gamma = torch.tensor([10.0, 0.1])
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).expand(2, 2, 2).clone().requires_grad_(True)
    pen = zero_centered_penalty(quadratic(a)(x), x, gamma)
    mean_sq = (1.0 + 2.0) / 2
    expected = gamma / 2 * 4 * a.detach() ** 2 * mean_sq
    assert torch.allclose(pen.detach(), expected)
    pen[0].backward()  # lane 0's penalty moves only lane 0's parameter
    assert a.grad[0].item() == pytest.approx(10.0 * 4 * 0.5 * mean_sq) and a.grad[1].item() == 0.0


def test_r1_on_linear_critic_is_half_gamma_w_squared():
    # On the Dirac-GAN, D(x) = psi x: R1 = gamma/2 * psi^2 (the paper's convention, not gamma * psi^2).
    psi = torch.tensor([0.7, -1.2, 0.0])
    x = torch.zeros(3, 4, 1, requires_grad=True)
    pen = zero_centered_penalty(psi.reshape(3, 1) * x.squeeze(-1), x, torch.tensor([2.0, 1.0, 5.0]))
    assert torch.allclose(pen, torch.tensor([0.49, 0.72, 0.0]))


def test_wgan_gp_on_linear_critic():
    # Linear D(x) = w.x has ||grad|| = ||w|| everywhere: penalty = weight * (||w|| - center)^2, per lane.
    w = torch.tensor([[3.0, 0.0, 4.0], [0.0, 1.0, 0.0]])  # norms 5 and 1

    def D(x):
        return (x * w.unsqueeze(1)).sum(-1)

    real, fake, eps = torch.randn(2, 8, 3), torch.randn(2, 8, 3), torch.rand(2, 8)
    pen = wgan_gp_penalty(D, real, fake, torch.tensor([10.0, 2.0]), torch.tensor([1.0, 0.0]), eps)
    assert torch.allclose(pen, torch.tensor([10.0 * (5.0 - 1.0) ** 2, 2.0 * 1.0**2]), rtol=1e-5)


def test_wgan_gp_interpolates_between_real_and_fake_with_one_epsilon_per_sample():
    seen = []

    def D(x):
        seen.append(x.detach().clone())
        return x.sum(-1)

    real, fake = torch.zeros(2, 1000, 2), torch.ones(2, 1000, 2)
    eps = torch.rand(2, 1000, generator=torch.Generator().manual_seed(0))
    wgan_gp_penalty(D, real, fake, torch.ones(2), torch.ones(2), eps)
    x_hat = seen[0]
    assert (x_hat[..., 0] == x_hat[..., 1]).all()  # one epsilon per sample
    assert torch.allclose(x_hat[..., 0], 1 - eps)  # eps * real + (1 - eps) * fake
    assert 0 <= x_hat.min() and x_hat.max() <= 1 and abs(x_hat.mean().item() - 0.5) < 0.05


def test_instance_noise_anneals_linearly_per_lane():
    sigma = torch.tensor([0.7, 1.0, 1.0, 1.0])
    anneal = torch.tensor([0, 100, 100, 40])
    assert torch.allclose(instance_noise_sigma(sigma, anneal, 0), sigma)
    assert torch.allclose(instance_noise_sigma(sigma, anneal, 25), torch.tensor([0.7, 0.75, 0.75, 0.375]))
    assert torch.allclose(instance_noise_sigma(sigma, anneal, 150), torch.tensor([0.7, 0.0, 0.0, 0.0]))


def test_clip_weights_per_lane():
    flat = torch.randn(3, 50) * 100
    clip_weights(flat, torch.tensor([0.01, 1.0, 0.5]))
    for lane, c in enumerate((0.01, 1.0, 0.5)):
        assert flat[lane].abs().max().item() == pytest.approx(c, rel=1e-6)
