"""GAN losses on D's logits (Goodfellow et al. 2014). Written with ``softplus`` so they stay finite
where ``log(sigmoid(.))`` would underflow: log D(x) = -softplus(-l), log(1 - D(x)) = -softplus(l).

Both losses share D's objective (maximise log D(x) + log(1 - D(G(z)))) and differ only in G's:
``minimax`` minimises log(1 - D(G(z))), which saturates when D rejects fakes confidently;
``non_saturating`` minimises -log D(G(z)), with the same fixed points but strong early gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Summed BCE, -E log D(x) - E log(1 - D(G(z))): 2 ln 2 at the equilibrium D = 1/2."""
    if name in ("minimax", "non_saturating"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    raise ValueError(f"unknown loss {name!r}")


def generator_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if name == "minimax":
        return -F.softplus(fake_logits).mean()  # E log(1 - D(G(z))): -ln 2 at equilibrium
    if name == "non_saturating":
        return F.softplus(-fake_logits).mean()  # -E log D(G(z)): ln 2 at equilibrium
    raise ValueError(f"unknown loss {name!r}")
