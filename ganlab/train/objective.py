"""The players' objectives, written once: the training step optimises them for a pack, and the equilibrium
analyses (Jacobian, duality gap) differentiate the same functions on one lane's single models, so both see
exactly the game that is trained. Shapes: a pack's inputs (L, B, ...) with per-lane strengths (L,), or a
single model's (B, ...) with scalar strengths ().
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ganlab.train.losses import discriminator_terms
from ganlab.train.regularizers import wgan_gp_penalty, zero_centered_penalty


@dataclass(frozen=True)
class Penalties:
    """D's regularizer strengths; None: off in every lane (its term is not computed at all)."""

    r1: torch.Tensor | None = None
    r2: torch.Tensor | None = None
    gp_weight: torch.Tensor | None = None  # WGAN-GP (with gp_center); None for every other loss
    gp_center: torch.Tensor | None = None


@dataclass(frozen=True)
class DObjective:
    """D's loss and regularizer per lane, with what the diagnostics read: the outputs, and the loss's
    per-sample terms (their spread is the batch's noise floor)."""

    loss: torch.Tensor
    reg: torch.Tensor
    real_out: torch.Tensor
    fake_out: torch.Tensor
    on_real: torch.Tensor
    on_fake: torch.Tensor


def discriminator_objective(D: Callable[[torch.Tensor], torch.Tensor], loss_name: str, real_in: torch.Tensor,
                            fake_in: torch.Tensor, penalties: Penalties, gp_eps: torch.Tensor | None) -> DObjective:
    """D's objective on given inputs (which require grad where R1/R2 differentiate through them); ``gp_eps``:
    WGAN-GP's interpolation weights, drawn by the caller from its own stream."""
    real_out, fake_out = D(real_in), D(fake_in)
    on_real, on_fake = discriminator_terms(loss_name, real_out, fake_out)
    loss = on_real.mean(-1) + on_fake.mean(-1)
    reg = torch.zeros_like(loss)
    if penalties.r1 is not None:
        reg = reg + zero_centered_penalty(real_out, real_in, penalties.r1)
    if penalties.r2 is not None:
        reg = reg + zero_centered_penalty(fake_out, fake_in, penalties.r2)
    if penalties.gp_weight is not None:
        reg = reg + wgan_gp_penalty(D, real_in, fake_in, penalties.gp_weight, penalties.gp_center, gp_eps)
    return DObjective(loss, reg, real_out, fake_out, on_real, on_fake)
