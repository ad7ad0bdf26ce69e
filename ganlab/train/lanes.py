"""What may differ between the trials of one pack, and what makes two trials packable.

A pack trains trials of one *shape* as one vectorised model: the same data, architecture, loss, schedule,
batch size, steps and cadences, diagnostics and verdict settings. Inside a pack each trial (lane) has its own
values of the per-lane keys (``ganlab.config.lanes``: its seed, starting point and continuous
hyper-parameters), which the step broadcasts as (L,) tensors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields

import torch

from ganlab.config import PER_LANE_KEYS, AdamConfig, RmspropConfig, SgdConfig, TrialConfig, WganConfig, WganGpConfig


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


# Each optimiser's own hyper-parameters, by type: a lane whose optimiser has no such value holds the
# neutral one (the pack shares its optimiser kind, so the value is never read there).
def _betas(c: TrialConfig, player: str) -> tuple[float, float]:
    if not isinstance(c.optim, AdamConfig):
        return (0.0, 0.0)
    return tuple(c.optim.betas_d or c.optim.betas) if player == "d" else tuple(c.optim.betas)


def _momentum(c: TrialConfig) -> float:
    return c.optim.momentum if isinstance(c.optim, (SgdConfig, RmspropConfig)) else 0.0


def _alpha(c: TrialConfig) -> float:
    return c.optim.alpha if isinstance(c.optim, RmspropConfig) else 0.0


def _gp(c: TrialConfig, name: str) -> float:
    return getattr(c.loss, name) if isinstance(c.loss, WganGpConfig) else 0.0


def _clip(c: TrialConfig) -> float:
    return c.loss.clip if isinstance(c.loss, WganConfig) else 0.0


@dataclass
class Hyper:
    """Every lane's continuous hyper-parameters as (L,) tensors on the pack's device: the per-lane keys of
    ``ganlab.config.lanes`` but the seed and starting point, which only the initial weights read."""

    lr_g: torch.Tensor
    lr_d: torch.Tensor  # lr_g * lr_ratio
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

    # field -> (how a lane's config gives it, dtype)
    READERS = {
        "lr_g": (lambda c: c.optim.lr_g, torch.float32), "lr_d": (lambda c: c.optim.lr_d, torch.float32),
        "betas_g": (lambda c: _betas(c, "g"), torch.float32), "betas_d": (lambda c: _betas(c, "d"), torch.float32),
        "momentum": (_momentum, torch.float32), "alpha": (_alpha, torch.float32),
        "g_ema": (lambda c: c.optim.g_ema, torch.float32),
        "r1": (lambda c: c.regularizer.r1, torch.float32), "r2": (lambda c: c.regularizer.r2, torch.float32),
        "noise": (lambda c: c.regularizer.instance_noise, torch.float32),
        "noise_anneal": (lambda c: c.regularizer.instance_noise_anneal, torch.long),
        "gp_weight": (lambda c: _gp(c, "gp_weight"), torch.float32),
        "gp_center": (lambda c: _gp(c, "gp_center"), torch.float32), "clip": (_clip, torch.float32),
    }

    @classmethod
    def of(cls, cfgs: list[TrialConfig], device: torch.device) -> "Hyper":
        return cls(**{f.name: torch.tensor([cls.READERS[f.name][0](c) for c in cfgs], dtype=cls.READERS[f.name][1],
                                           device=device) for f in fields(cls)})
