"""Regularizers of D: small functions sharing one gradient helper (as in GAN_stability's compute_grad2).

R1/R2 follow the paper's convention (Mescheder et al. 2018): gamma/2 * E||grad_x D(x)||^2. On the
Dirac-GAN, D(x) = psi * x, so R1 = gamma/2 * psi^2 and its gradient adds -gamma * psi to D's update.
"""

from __future__ import annotations

import torch
from torch import nn


def grad_sq_norm(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Per-sample ||d outputs / d inputs||^2, differentiable (the penalty is trained through)."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1)


def zero_centered_penalty(outputs: torch.Tensor, inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 on real inputs, R2 on generated ones; reuses the D outputs of the loss, no extra forward pass."""
    return 0.5 * gamma * grad_sq_norm(outputs, inputs).mean()


def wgan_gp_penalty(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float, center: float, generator: torch.Generator
) -> torch.Tensor:
    """weight * E(||grad D(x_hat)|| - center)^2 at random interpolates of real and fake (Gulrajani et al.)."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator).to(real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    norms = grad_sq_norm(D(x_hat), x_hat).add(1e-12).sqrt()
    return weight * (norms - center).pow(2).mean()


def instance_noise_sigma(sigma: float, anneal: int, iteration: int) -> float:
    """Linearly annealed to 0 over ``anneal`` iterations; constant when ``anneal`` is 0."""
    if anneal <= 0:
        return sigma
    return sigma * max(0.0, 1.0 - iteration / anneal)


@torch.no_grad()
def clip_weights(model: nn.Module, clip: float) -> None:
    """WGAN's Lipschitz constraint by weight clipping, applied after every D update."""
    for p in model.parameters():
        p.clamp_(-clip, clip)
