"""Generator and discriminator architectures.

Contract the trainer relies on: ``G.latent_dim``; ``G(z)`` maps (n, latent_dim) to (n, *data_shape);
``D(x)`` maps (n, *data_shape) to (n,) raw outputs. D applies no sigmoid so that the losses own it and
critics (WGAN) and probabilistic discriminators share one code path. Initialisation draws only from
torch's global RNG, which the trainer seeds inside ``fork_rng``: one seed, one set of weights.
State-dict keys (``net.*``, ``theta``, ``linear.weight``) are part of the checkpoint format.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ganlab.config import DcganConfig, DiracModelConfig, MlpConfig
from ganlab.diagnose import metrics as M
from ganlab.train.packed import PackedLinear, PackedNet, has_spectral_norm, stack_states

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # 0.2: the DCGAN slope, so MLP and DCGAN runs compare
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}
_NORMS = {"none": lambda width: [], "batch": lambda width: [nn.BatchNorm1d(width)],
          "layer": lambda width: [nn.LayerNorm(width)]}


class Generator(nn.Module):
    """Flat or convolutional ``net`` outputs are reshaped here so the trainer never needs the data's shape."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], net: nn.Module | None = None):
        super().__init__()
        self.latent_dim, self.data_shape = latent_dim, tuple(data_shape)
        if net is not None:
            self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[0], *self.data_shape)


class Discriminator(nn.Module):
    """An MLP sees images flattened; a conv net sees them whole. Either way one logit per sample."""

    def __init__(self, net: nn.Module | None = None, flatten: bool = False):
        super().__init__()
        self.flatten = flatten
        if net is not None:
            self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1) if self.flatten else x).reshape(x.shape[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations, (n, features): what D's last linear layer reads, and what a linear
        probe of D's representation fits (the DCGAN paper's use of D as a feature extractor)."""
        return self.net[:-1](x.flatten(1) if self.flatten else x).flatten(1)


# --- MLP ---------------------------------------------------------------------------------------------


def mlp(n_in: int, n_out: int, width: int, depth: int, activation: str, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        # No bias before batch norm, which removes it: a parameter without a true gradient only random-walks
        # on float rounding under Adam's normalised steps (and makes equal runs drift apart).
        linear = nn.Linear(n_in if i == 0 else width, width, bias=norm != "batch")
        layers += [linear, *_NORMS[norm](width), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _mlp_models(cfg: MlpConfig, data_shape: tuple[int, ...]) -> tuple[Generator, Discriminator]:
    dim = math.prod(data_shape)
    G = Generator(cfg.latent_dim, data_shape, mlp(cfg.latent_dim, dim, cfg.width, cfg.depth, cfg.activation, cfg.norm))
    D = Discriminator(mlp(dim, 1, cfg.width, cfg.depth, cfg.activation, cfg.norm_d), flatten=True)
    return G, D


# --- DCGAN -------------------------------------------------------------------------------------------


def _dcgan_blocks(data_shape: tuple[int, ...]) -> int:
    """Stride-2 blocks between the 4x4 seed maps and the image: only exact doublings reach the image size."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise ValueError(f"dcgan needs square (C, H, W) images, got sample shape {tuple(data_shape)}")
    side = data_shape[1]
    if side < 4 or side & (side - 1):
        raise ValueError(f"dcgan needs an image side that is a power of two >= 4, got {side} in {tuple(data_shape)}")
    return int(math.log2(side // 4))


def _dcgan_models(cfg: DcganConfig, data_shape: tuple[int, ...]) -> tuple[Generator, Discriminator]:
    """Radford et al. 2016 in miniature. D has no batch norm: it sees real and fake batches separately,
    and batch statistics would let it tell them apart (and break gradient penalties, which are per-sample)."""
    n = _dcgan_blocks(data_shape)
    c_img, c = data_shape[0], cfg.channels
    c0 = c * 2**n  # = channels * H / 4, halved by each block back to `channels`
    g: list[nn.Module] = [nn.Linear(cfg.latent_dim, c0 * 16, bias=False), nn.BatchNorm1d(c0 * 16), nn.ReLU(),
                          nn.Unflatten(1, (c0, 4, 4))]
    ch = c0
    for _ in range(n):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
        ch //= 2
    g += [nn.Conv2d(ch, c_img, 3, padding=1), nn.Tanh()]  # tanh: the image data are scaled to [-1, 1]
    d: list[nn.Module] = [nn.Conv2d(c_img, c, 3, padding=1), nn.LeakyReLU(0.2)]
    ch = c
    for _ in range(n):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch *= 2
    d += [nn.Flatten(), nn.Linear(ch * 16, 1)]
    return Generator(cfg.latent_dim, data_shape, nn.Sequential(*g)), Discriminator(nn.Sequential(*d))


# --- Dirac-GAN -----------------------------------------------------------------------------------------


class DiracGenerator(Generator):
    """A point mass at theta (Mescheder et al. 2018): the smallest GAN whose training dynamics are known in
    closed form, so the trainer's updates can be checked against theory. z's values are ignored."""

    def __init__(self, theta0: float, latent_dim: int):
        super().__init__(latent_dim, (1,))
        self.theta = nn.Parameter(torch.tensor(float(theta0)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(z.shape[0], 1)


class DiracDiscriminator(Discriminator):
    """D(x) = psi * x. A bias-free Linear rather than a bare parameter, so spectral norm and weight clipping
    treat it like any other discriminator."""

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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)  # D is one linear map: its input is all it has


class PackedDiracGenerator(nn.Module):
    """L point masses theta (L,): maps latents (L, B, latent) to (L, B, 1)."""

    def __init__(self, singles: list[DiracGenerator]):
        super().__init__()
        self.lanes, self.latent_dim, self.data_shape = len(singles), singles[0].latent_dim, (1,)
        self.theta = nn.Parameter(torch.empty(self.lanes))
        self.load_state_dict(stack_states(singles))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.theta.reshape(self.lanes, 1, 1).expand(self.lanes, z.shape[1], 1)

    def state_metrics(self, D: "PackedDiracDiscriminator") -> dict[str, torch.Tensor]:
        """The point the closed forms of Mescheder et al. (2018) describe, per lane: (theta, psi) and its
        distance to the equilibrium (0, 0)."""
        theta, psi = self.theta.detach().double(), D.psi()
        return {M.EVAL_DIRAC_THETA: theta, M.EVAL_DIRAC_PSI: psi, M.EVAL_DIRAC_DISTANCE: (theta**2 + psi**2).sqrt()}


class PackedDiracDiscriminator(nn.Module):
    """L slopes psi: D(x) = psi * x on (L, B, 1), through a packed bias-free linear layer (so spectral norm and
    clipping act as on any D)."""

    def __init__(self, singles: list[DiracDiscriminator]):
        super().__init__()
        self.lanes = len(singles)
        self.linear = PackedLinear(self.lanes, singles[0].linear, has_spectral_norm(singles[0].linear))
        self.load_state_dict(stack_states(singles))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.lanes, x.shape[1]) * self.linear.current_weight().reshape(self.lanes, 1)

    @torch.no_grad()
    def psi(self) -> torch.Tensor:
        """Each lane's slope as D applies it in evaluation (after spectral norm, if any, without advancing its
        power iteration), (L,) in float64."""
        was_training = self.training
        self.eval()
        try:
            return self.linear.current_weight().detach().reshape(-1).double()
        finally:
            self.train(was_training)


def dirac_state(G: PackedDiracGenerator, D: PackedDiracDiscriminator) -> torch.Tensor:
    """(theta, psi) of every lane, (L, 2) in float64, psi as D applies it in training mode (the tests follow
    the closed-form dynamics step by step)."""
    return torch.stack([G.theta.detach(), D.linear.current_weight().detach().reshape(-1)], 1).double()


def pack_models(singles: list[nn.Module]) -> nn.Module:
    """The lanes' single models (all of one architecture) as one packed module."""
    if isinstance(singles[0], DiracGenerator):
        return PackedDiracGenerator(singles)
    if isinstance(singles[0], DiracDiscriminator):
        return PackedDiracDiscriminator(singles)
    return PackedNet(singles)


# --- assembly --------------------------------------------------------------------------------------------


def apply_spectral_norm(model: nn.Module) -> None:
    """Miyato et al. 2018 on every weight layer; the power iteration advances on training-mode forward passes,
    so sigma is only accurate after a few of them."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            setattr(model, name, _spectral_norm(child))  # picks dim=1 for transposed convs itself
        else:
            apply_spectral_norm(child)


def build_models(
    cfg: MlpConfig | DcganConfig | DiracModelConfig, data_shape: tuple[int, ...], spectral_norm: str = "none"
) -> tuple[Generator, Discriminator]:
    """G and D for one data sample's shape; ``spectral_norm`` is ``none``, ``d`` or ``both`` (D and G)."""
    data_shape = tuple(data_shape)
    if spectral_norm not in ("none", "d", "both"):
        raise ValueError(f"spectral_norm must be 'none', 'd' or 'both', got {spectral_norm!r}")
    if isinstance(cfg, MlpConfig):
        G, D = _mlp_models(cfg, data_shape)
    elif isinstance(cfg, DcganConfig):
        G, D = _dcgan_models(cfg, data_shape)
    elif isinstance(cfg, DiracModelConfig):
        if data_shape != (1,):
            raise ValueError(f"the Dirac-GAN lives on the real line (sample shape (1,)), got {data_shape}")
        G, D = DiracGenerator(cfg.theta0, cfg.latent_dim), DiracDiscriminator(cfg.psi0)
    else:
        raise TypeError(f"no model for {type(cfg).__name__}")
    if spectral_norm in ("d", "both"):
        apply_spectral_norm(D)
    if spectral_norm == "both":
        apply_spectral_norm(G)
    return G, D
