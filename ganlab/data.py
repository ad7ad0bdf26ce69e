"""Data sets a GAN is trained on. Samples are drawn fresh each step from a seeded ``torch.Generator``,
so a trial's data stream depends only on its seed, never on global RNG state or on other trials."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ganlab.config import Grid25Config, Ring8Config


@dataclass(frozen=True)
class GaussianMixture:
    """Equal-weight isotropic Gaussian mixture: the mode structure is known, so coverage is measurable."""

    means: torch.Tensor  # (K, d)
    sigma: float

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, self.dim, generator=generator)
        return self.means[idx] + self.sigma * noise


def ring(n_modes: int, radius: float, sigma: float) -> GaussianMixture:
    # arange, not linspace(0, 2*pi, K): linspace includes 2*pi and silently merges two modes.
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means.float(), sigma)


def grid(per_side: int, spacing: float, sigma: float) -> GaussianMixture:
    ticks = (torch.arange(per_side, dtype=torch.float32) - (per_side - 1) / 2) * spacing
    xs, ys = torch.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(torch.stack([xs.flatten(), ys.flatten()], dim=1), sigma)


def make_dataset(cfg: Ring8Config | Grid25Config) -> GaussianMixture:
    if isinstance(cfg, Ring8Config):
        return ring(8, cfg.radius, cfg.sigma)
    if isinstance(cfg, Grid25Config):
        return grid(5, cfg.spacing, cfg.sigma)
    raise TypeError(f"no data set for {type(cfg).__name__}")
