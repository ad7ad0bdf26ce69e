"""Generator and discriminator architectures.

Contract the trainer relies on: ``G.latent_dim``; ``G(z)`` maps (n, latent_dim) to (n, *data_shape);
``D(x)`` maps (n, *data_shape) to (n,) raw outputs (logits or critic values; losses apply any sigmoid),
so critics without a probability fit the same code. Initialisation draws only from torch's global RNG,
which the trainer seeds inside ``fork_rng``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from ganlab.config import DcganConfig, DiracModelConfig, MlpConfig

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


def _norm(kind: str, width: int) -> list[nn.Module]:
    return {"none": [], "batch": [nn.BatchNorm1d(width)], "layer": [nn.LayerNorm(width)]}[kind]


def mlp(n_in: int, n_out: int, width: int, depth: int, activation: str, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), *_norm(norm, width), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """Maps latents to samples through ``net``; reshapes flat outputs to the data's shape."""

    def __init__(self, net: nn.Module, latent_dim: int, data_shape: tuple[int, ...]):
        super().__init__()
        self.net, self.latent_dim, self.data_shape = net, latent_dim, tuple(data_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[0], *self.data_shape)


class Discriminator(nn.Module):
    def __init__(self, net: nn.Module, flatten: bool):
        super().__init__()
        self.net, self.flatten = net, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1) if self.flatten else x).reshape(x.shape[0])


# --- DCGAN -------------------------------------------------------------------------------------------


def _dcgan_blocks(data_shape: tuple[int, ...]) -> int:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ValueError(f"dcgan needs square (C, H, W) images, got sample shape {data_shape}")
    side = data_shape[1]
    if side < 4 or side & (side - 1):
        raise ValueError(f"dcgan needs an image side that is a power of two >= 4, got {side}")
    return int(math.log2(side // 4))


def dcgan(cfg: DcganConfig, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """Radford et al. 2016 in miniature: 4x4 seed maps, one stride-2 block per doubling of the side."""
    n = _dcgan_blocks(data_shape)
    c_img, c = data_shape[0], cfg.channels
    c0 = c * 2**n
    g: list[nn.Module] = [nn.Linear(cfg.latent_dim, c0 * 16), nn.BatchNorm1d(c0 * 16), nn.ReLU(),
                          nn.Unflatten(1, (c0, 4, 4))]
    ch = c0
    for _ in range(n):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU()]
        ch //= 2
    g += [nn.Conv2d(ch, c_img, 3, padding=1), nn.Tanh()]
    d: list[nn.Module] = [nn.Conv2d(c_img, c, 3, padding=1), nn.LeakyReLU(0.2)]
    ch = c
    for _ in range(n):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch *= 2
    d += [nn.Flatten(), nn.Linear(ch * 16, 1)]
    return nn.Sequential(*g), nn.Sequential(*d)


# --- Dirac-GAN -----------------------------------------------------------------------------------------


class DiracGenerator(nn.Module):
    """A point mass at theta: every latent maps to theta."""

    def __init__(self, theta0: float, latent_dim: int):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta0)))
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(z.shape[0], 1)


class DiracDiscriminator(nn.Module):
    """D(x) = psi * x: a bias-free linear layer on the real line."""

    def __init__(self, psi0: float):
        super().__init__()
        self.linear = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.fill_(psi0)

    @property
    def psi(self) -> torch.Tensor:
        return self.linear.weight.reshape(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).reshape(x.shape[0])


# --- assembly --------------------------------------------------------------------------------------------


def apply_spectral_norm(model: nn.Module) -> None:
    """Wrap every linear and convolutional layer (Miyato et al. 2018); power iteration runs in training mode."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            setattr(model, name, _sn(child))
        else:
            apply_spectral_norm(child)


def build_models(
    cfg: MlpConfig | DcganConfig | DiracModelConfig, data_shape: tuple[int, ...], spectral_norm: str = "none"
) -> tuple[nn.Module, nn.Module]:
    data_shape = tuple(data_shape)
    if isinstance(cfg, MlpConfig):
        dim = math.prod(data_shape)
        G = Generator(mlp(cfg.latent_dim, dim, cfg.width, cfg.depth, cfg.activation, cfg.norm), cfg.latent_dim, data_shape)
        D = Discriminator(mlp(dim, 1, cfg.width, cfg.depth, cfg.activation, cfg.norm_d), flatten=True)
    elif isinstance(cfg, DcganConfig):
        g_net, d_net = dcgan(cfg, data_shape)
        G, D = Generator(g_net, cfg.latent_dim, data_shape), Discriminator(d_net, flatten=False)
    elif isinstance(cfg, DiracModelConfig):
        if data_shape != (1,):
            raise ValueError(f"the Dirac-GAN lives on the real line, got sample shape {data_shape}")
        G, D = DiracGenerator(cfg.theta0, cfg.latent_dim), DiracDiscriminator(cfg.psi0)
    else:
        raise TypeError(f"no model for {type(cfg).__name__}")
    if spectral_norm in ("d", "both"):
        apply_spectral_norm(D)
    if spectral_norm == "both":
        apply_spectral_norm(G)
    return G, D
