"""Regularizers of D: small functions sharing one gradient helper (as in GAN_stability's compute_grad2), each
for a pack of lanes at once: inputs (L, B, ...), D outputs (L, B), one strength per lane (L,).

R1/R2 follow the paper's convention (Mescheder et al. 2018): gamma/2 * E||grad_x D(x)||^2. On the
Dirac-GAN, D(x) = psi * x, so R1 = gamma/2 * psi^2 and its gradient adds -gamma * psi to D's update.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _against(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-lane (L,) or per-sample (L, B) values broadcast against ``like`` (L, B, ...); a single model's
    () or (B,) against (B, ...) alike."""
    return values.reshape(*values.shape, *([1] * (like.dim() - values.dim())))


def grad_sq_norm(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Per-sample ||d outputs / d inputs||^2, shaped like ``outputs`` ((L, B) for a pack, (B,) for a single
    model), differentiable (the penalty is trained through). Lanes and samples are independent, so the
    gradient of their sum is each one's own."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(outputs.dim()).sum(-1)


def zero_centered_penalty(outputs: torch.Tensor, inputs: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """R1 on real inputs, R2 on generated ones, per lane (L,); reuses the D outputs of the loss, no extra forward
    pass."""
    return 0.5 * gamma * grad_sq_norm(outputs, inputs).mean(-1)


def wgan_gp_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                    weight: torch.Tensor, center: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """weight * E(||grad D(x_hat)|| - center)^2 at the interpolates x_hat = eps real + (1 - eps) fake, eps (L, B)
    uniform per sample (Gulrajani et al. 2017); per lane (L,)."""
    eps = _against(eps, real).to(real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    norms = grad_sq_norm(D(x_hat), x_hat).add(1e-12).sqrt()
    return weight * (norms - _against(center, norms)).pow(2).mean(-1)


def instance_noise_sigma(sigma: torch.Tensor, anneal: torch.Tensor, iteration: int) -> torch.Tensor:
    """Each lane's noise level at ``iteration``: linearly annealed to 0 over ``anneal`` iterations, constant where
    ``anneal`` is 0."""
    decay = (1.0 - iteration / anneal.clamp(min=1).to(sigma.dtype)).clamp(min=0.0)
    return sigma * torch.where(anneal > 0, decay, torch.ones_like(decay))


@torch.no_grad()
def clip_weights(flat: torch.Tensor, clip: torch.Tensor) -> None:
    """WGAN's Lipschitz constraint by weight clipping, every lane's D weights (L, P) to [-clip, clip] (L,)."""
    bound = clip.reshape(-1, 1).to(flat.dtype)
    flat.copy_(torch.maximum(torch.minimum(flat, bound), -bound))
