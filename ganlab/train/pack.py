"""What a pack *is*: its lanes' generators and discriminators stacked into packed modules, their flat
parameters and packed optimisers, the per-lane hyper-parameters, and the random streams every input is
drawn from. The training loop (``trainer``) asks it for inputs, objectives and updates; it keeps no
diagnostics and makes no decisions.

Every random number a lane uses comes from its own seed alone, through counter-based streams addressed by
iteration and purpose (``ganlab.data.streams``), so a lane's numbers do not depend on which other trials
share its pack, evaluating more or less often never changes training, and a checkpoint (the state dict:
weights, optimiser state) resumes to exactly the uninterrupted run.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch

from ganlab.config import TrialConfig
from ganlab.data import make_dataset
from ganlab.data.streams import Streams, lane_keys
from ganlab.train.lanes import Hyper, check_packable
from ganlab.train.losses import generator_terms
from ganlab.train.models import build_models, pack_models
from ganlab.train.objective import DObjective, Penalties, discriminator_objective
from ganlab.train.optim import FlatPlayer, PackedOptimizer
from ganlab.train.packed import lane_state
from ganlab.train.regularizers import clip_weights, instance_noise_sigma

# A lane's slice of a flat parameter buffer is not dense, so autograd calls its gradient layout suboptimal; the
# gradients still accumulate in place into the buffer (FlatPlayer.gathered checks), and one optimiser update
# over the whole buffer beats any layout.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

# Random streams of a lane (ids mixed into its keys); each draw's address is (iteration, step, purpose).
DATA, LATENT, NOISE = 1, 2, 3
SLOTS = 256  # addresses per iteration: D steps take 0..127, G steps 128..255
G_SLOT = 128
# Seeds spawned from a lane's seed, by position (SeedSequence spawn keys are positional).
INIT_SEED, EXPORT_SEED = 0, 5
SPAWNED_SEEDS = 6


def _stream_seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for n torch-generated streams (SeedSequence avoids correlated neighbouring seeds)."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] >> 1) for s in np.random.SeedSequence(seed).spawn(n)]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is visible to this process")
    return torch.device(requested)


def d_address(iteration: int, k: int) -> int:
    """The address of D step k of the iteration that ends at ``iteration + 1``."""
    return (iteration + 1) * SLOTS + k


def g_address(iteration: int, j: int) -> int:
    return (iteration + 1) * SLOTS + G_SLOT + j


class PackModel:
    """Nets, flat parameters, optimisers and streams of L lanes of one shape (``cfgs[0]`` is the shape)."""

    def __init__(self, cfgs: list[TrialConfig], device: torch.device):
        check_packable(cfgs)
        self.cfgs, self.cfg, self.n_lanes, self.device = list(cfgs), cfgs[0], len(cfgs), device
        self.data = make_dataset(self.cfg.data).to(device)
        self.seeds = [_stream_seeds(c.seed, SPAWNED_SEEDS) for c in cfgs]
        singles = [self.initial_models(lane) for lane in range(self.n_lanes)]
        self.G = pack_models([g for g, _ in singles]).to(device)
        self.D = pack_models([d for _, d in singles]).to(device)
        self.latent_dim = singles[0][0].latent_dim
        self.hyper = h = Hyper.of(cfgs, device)
        self.g_player, self.d_player = FlatPlayer(self.G, self.n_lanes), FlatPlayer(self.D, self.n_lanes)
        self.G_ema = self.ema_player = None
        if bool((h.g_ema > 0).any()):
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            self.ema_player = FlatPlayer(self.G_ema, self.n_lanes)
        kind = self.cfg.optim.name
        self.opt_g = PackedOptimizer(self.g_player, kind, h.lr_g, h.betas_g, h.momentum, h.alpha)
        self.opt_d = PackedOptimizer(self.d_player, kind, h.lr_d, h.betas_d, h.momentum, h.alpha)
        seeds = [c.seed for c in cfgs]
        self.streams = {name: Streams(lane_keys(seeds, name), device) for name in (DATA, LATENT, NOISE)}
        self.loss = self.cfg.loss.name
        # a penalty is computed where any lane has it; a lane without it has strength 0 there
        self.penalties = Penalties(
            r1=h.r1 if bool((h.r1 > 0).any()) else None, r2=h.r2 if bool((h.r2 > 0).any()) else None,
            gp_weight=h.gp_weight if self.loss == "wgan_gp" else None, gp_center=h.gp_center)
        self.noise = bool((h.noise > 0).any())

    def initial_models(self, lane: int):
        """G and D exactly as this lane's trial alone initialises them (init draws only from the seeded global
        RNG, forked): single models, which the pack stacks and a lane's export becomes again."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[lane][INIT_SEED])
            return build_models(self.cfgs[lane].model, tuple(self.data.shape), self.cfg.regularizer.spectral_norm)

    def single_models(self, lane: int, ema: bool = False):
        """(G, D) of one lane as the single models ``build_models`` makes, with the lane's current weights."""
        G, D = self.initial_models(lane)
        G.load_state_dict(lane_state(self.G_ema if ema and self.G_ema is not None else self.G, lane))
        D.load_state_dict(lane_state(self.D, lane))
        return G.to(self.device), D.to(self.device)

    @property
    def eval_generator(self) -> torch.nn.Module:
        return self.G_ema if self.G_ema is not None else self.G  # a lane without EMA has its G there (decay 0)

    # --- inputs --------------------------------------------------------------------------------

    def latents(self, address: int) -> torch.Tensor:
        return self.streams[LATENT].normal(address, self.cfg.data.batch_size, self.latent_dim)

    def real(self, address: int) -> torch.Tensor:
        return self.data.draw(self.streams[DATA], 2 * address, self.cfg.data.batch_size)

    def noisy(self, x: torch.Tensor, address: int, iteration: int) -> torch.Tensor:
        """Instance noise on D's inputs, each lane at its own (annealed) level."""
        if not self.noise:
            return x
        sigma = instance_noise_sigma(self.hyper.noise, self.hyper.noise_anneal, iteration)
        noise = self.streams[NOISE].normal(address, *x.shape[1:])
        return x + sigma.reshape(-1, *([1] * (x.dim() - 1))) * noise

    # --- objectives and updates -------------------------------------------------------------------

    def d_objective(self, iteration: int, k: int) -> DObjective:
        """D's objective for D step k at the current (G, D), on this step's real and generated batches."""
        address = d_address(iteration, k)
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(self.latents(address))
        real_in = self.noisy(self.real(address), 4 * address, iteration)
        fake_in = self.noisy(fake, 4 * address + 1, iteration)
        if self.penalties.r1 is not None:  # R1/R2 differentiate D with respect to its inputs
            real_in = real_in.detach().requires_grad_(True)
        if self.penalties.r2 is not None:
            fake_in = fake_in.detach().requires_grad_(True)
        eps = self.streams[NOISE].uniform(4 * address + 2, self.cfg.data.batch_size) if self.loss == "wgan_gp" else None
        return discriminator_objective(self.D, self.loss, real_in, fake_in, self.penalties, eps)

    def generator_terms(self, iteration: int, j: int) -> torch.Tensor:
        """Per-sample terms (L, B) of G's loss for G step j at the current (G, D), differentiable in G only (D
        is frozen meanwhile); the loss is their mean."""
        address = g_address(iteration, j)
        self.D.requires_grad_(False)
        return generator_terms(self.loss, self.D(self.noisy(self.G(self.latents(address)), 4 * address + 1, iteration)))

    def update_d(self, active: torch.Tensor) -> None:
        self.opt_d.step(active)
        if self.loss == "wgan":
            clip_weights(self.d_player.flat, self.hyper.clip)

    def update_g(self, active: torch.Tensor) -> None:
        self.opt_g.step(active)
        if self.ema_player is not None:
            with torch.no_grad():
                decay = self.hyper.g_ema.reshape(-1, 1).to(self.ema_player.flat.dtype)
                ema = torch.lerp(self.ema_player.flat, self.g_player.flat, 1 - decay)
                self.ema_player.flat.copy_(torch.where(active.reshape(-1, 1), ema, self.ema_player.flat))
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)

    def learning_rates(self, lane: int) -> tuple[float, float]:
        """(lr_g, lr_d) a lane's optimisers step with, read back from them."""
        return float(self.opt_g.lr[lane]), float(self.opt_d.lr[lane])

    # --- state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
