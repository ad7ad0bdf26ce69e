"""GAN losses on D's raw output (logit or critic value). Saturating forms are written with ``softplus``
so they stay finite where ``log(sigmoid(.))`` underflows: log D(x) = -softplus(-l), log(1 - D(x)) = -softplus(l).

All losses here follow one sign convention: a larger D output means "more real". Each pair (D loss,
G loss) is minimised by its player.
- ``minimax``, ``non_saturating`` (Goodfellow et al. 2014): same D loss (summed BCE); G minimises
  log(1 - D(G(z))) (saturates when D rejects fakes confidently) or -log D(G(z)) (same fixed points, strong
  early gradients).
- ``wgan``, ``wgan_gp`` (Arjovsky et al. 2017; Gulrajani et al. 2017): D maximises E D(x) - E D(G(z)).
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D: E relu(1 - D(x)) + E relu(1 + D(G(z))); G: -E D(G(z)).
- ``least_squares`` (LSGAN, Mao et al. 2017, a=0, b=c=1): D: (E(D(x) - 1)^2 + E D(G(z))^2) / 2;
  G: E(D(G(z)) - 1)^2 / 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Where D's output separates "real" from "fake": logit 0 (D = 1/2) for the BCE losses, the sign for
# critics, the midpoint of LSGAN's targets 0 and 1.
DECISION_THRESHOLD = {"least_squares": 0.5}

# Losses whose D is a critic (no probability): accuracy is sign-based and reported as ``acc_sign/*``.
CRITICS = ("wgan", "wgan_gp", "hinge")

# (D loss, G loss) at the equilibrium D = 1/2 everywhere (Goodfellow et al. 2014), where they apply.
EQUILIBRIUM_LOSS = {"minimax": (2 * math.log(2), -math.log(2)), "non_saturating": (2 * math.log(2), math.log(2))}


def decision_threshold(name: str) -> float:
    return DECISION_THRESHOLD.get(name, 0.0)


def discriminator_terms(name: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample terms of D's loss on its real and its generated samples: the loss is the mean of each
    summed, and their per-sample variances give the batch's noise floor."""
    if name in ("minimax", "non_saturating"):
        return F.softplus(-real), F.softplus(fake)  # -log D(x), -log(1 - D(G(z))): 2 ln 2 summed at D = 1/2
    if name in ("wgan", "wgan_gp"):
        return -real, fake
    if name == "hinge":
        return F.relu(1 - real), F.relu(1 + fake)
    if name == "least_squares":
        return 0.5 * (real - 1).pow(2), 0.5 * fake.pow(2)
    raise ValueError(f"unknown loss {name!r}")


def discriminator_loss(name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    on_real, on_fake = discriminator_terms(name, real, fake)
    return on_real.mean(-1) + on_fake.mean(-1)


def generator_terms(name: str, fake: torch.Tensor) -> torch.Tensor:
    """Per-sample terms of G's loss: the loss is their mean."""
    if name == "minimax":
        return -F.softplus(fake)  # log(1 - D(G(z))): -ln 2 at equilibrium
    if name == "non_saturating":
        return F.softplus(-fake)  # -log D(G(z)): ln 2 at equilibrium
    if name in ("wgan", "wgan_gp", "hinge"):
        return -fake
    if name == "least_squares":
        return 0.5 * (fake - 1).pow(2)
    raise ValueError(f"unknown loss {name!r}")


def generator_loss(name: str, fake: torch.Tensor) -> torch.Tensor:
    return generator_terms(name, fake).mean(-1)
