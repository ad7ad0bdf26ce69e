"""What may differ between the trials of one pack, and what makes two trials packable.

A pack trains trials of one *shape* as one vectorised model: the same data, architecture, loss, schedule,
batch size, steps and cadences, diagnostics and verdict settings. Inside a pack each trial (lane) has its own
seed, starting point (the Dirac-GAN's theta0, psi0) and continuous hyper-parameters, held as (L,) tensors
the step broadcasts: learning rates, betas, momentum, alpha, G's EMA decay, R1/R2 strengths, instance noise
and its annealing, the GP weight and center, the WGAN clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from ganlab.config import TrialConfig

PER_LANE_KEYS = (
    "seed", "model.theta0", "model.psi0",
    "optim.lr_g", "optim.lr_ratio", "optim.betas", "optim.betas_d", "optim.momentum", "optim.alpha", "optim.g_ema",
    "regularizer.r1", "regularizer.r2", "regularizer.instance_noise", "regularizer.instance_noise_anneal",
    "loss.gp_weight", "loss.gp_center", "loss.clip",
)


def pack_shape(cfg: TrialConfig) -> str:
    """Trials with equal shapes can share a pack: a digest of everything but the per-lane keys."""
    flat = {k: v for k, v in cfg.flat().items() if k not in PER_LANE_KEYS}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def check_packable(cfgs: list[TrialConfig]) -> None:
    shapes = {pack_shape(c) for c in cfgs}
    if len(shapes) > 1:
        first = cfgs[0].flat()
        for other in cfgs[1:]:
            diff = sorted(k for k, v in other.flat().items() if k not in PER_LANE_KEYS and first.get(k) != v)
            if diff:
                raise ValueError(f"trials of different shapes cannot share a pack (they differ in {', '.join(diff)})")


@dataclass
class Hyper:
    """Every lane's continuous hyper-parameters as (L,) tensors on the pack's device."""

    lr_g: torch.Tensor
    lr_d: torch.Tensor
    betas_g: torch.Tensor  # (L, 2); zeros for optimisers without betas
    betas_d: torch.Tensor
    momentum: torch.Tensor
    alpha: torch.Tensor
    g_ema: torch.Tensor
    r1: torch.Tensor
    r2: torch.Tensor
    noise: torch.Tensor
    noise_anneal: torch.Tensor  # long
    gp_weight: torch.Tensor
    gp_center: torch.Tensor
    clip: torch.Tensor

    @classmethod
    def of(cls, cfgs: list[TrialConfig], device: torch.device) -> "Hyper":
        def col(get, dtype=torch.float32) -> torch.Tensor:
            return torch.tensor([get(c) for c in cfgs], dtype=dtype, device=device)

        def betas(c: TrialConfig, player: str) -> list[float]:
            own = getattr(c.optim, "betas_d", None) if player == "d" else None
            return list(own or getattr(c.optim, "betas", (0.0, 0.0)))

        return cls(
            lr_g=col(lambda c: c.optim.lr_g), lr_d=col(lambda c: c.optim.lr_d),
            betas_g=col(lambda c: betas(c, "g")), betas_d=col(lambda c: betas(c, "d")),
            momentum=col(lambda c: getattr(c.optim, "momentum", 0.0)), alpha=col(lambda c: getattr(c.optim, "alpha", 0.0)),
            g_ema=col(lambda c: c.optim.g_ema), r1=col(lambda c: c.regularizer.r1), r2=col(lambda c: c.regularizer.r2),
            noise=col(lambda c: c.regularizer.instance_noise),
            noise_anneal=col(lambda c: c.regularizer.instance_noise_anneal, torch.long),
            gp_weight=col(lambda c: getattr(c.loss, "gp_weight", 0.0)),
            gp_center=col(lambda c: getattr(c.loss, "gp_center", 0.0)),
            clip=col(lambda c: getattr(c.loss, "clip", 0.0)),
        )
