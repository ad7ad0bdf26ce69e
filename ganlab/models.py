"""Generator and discriminator architectures. D returns logits: losses and diagnostics apply the
sigmoid themselves, so that a critic without a probability (later: WGAN, hinge) fits the same code."""

from __future__ import annotations

import torch
from torch import nn

from ganlab.config import ModelConfig


def mlp(n_in: int, n_out: int, width: int, depth: int, activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), activation()]
    layers.append(nn.Linear(width if depth else n_in, n_out))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_dim: int):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.net = mlp(cfg.latent_dim, data_dim, cfg.width, cfg.depth, nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_dim: int):
        super().__init__()
        self.net = mlp(data_dim, 1, cfg.width, cfg.depth, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build_models(cfg: ModelConfig, data_dim: int) -> tuple[Generator, Discriminator]:
    return Generator(cfg, data_dim), Discriminator(cfg, data_dim)
