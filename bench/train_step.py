"""ganlab's training step vs a minimal hand-written PyTorch loop doing the same math.

    .venv/bin/python bench/train_step.py [--steps 200] [--repeats 5] [--threads 1]

Both loops start from the same weights and random-stream states, use the same modules, batch, loss
(non-saturating, softplus form), Adam settings and alternating schedule (1 D step, then 1 G step, D frozen
during G's step). ganlab runs through ``Trainer.run()`` with its per-step diagnostics on (log every 10
iterations, as in the shipped studies; no evaluation inside the timed span). Timings are interleaved
(plain, ganlab, plain, ganlab, ...) in one process and the median per-step time of each is reported.
Target: ganlab <= 1.10x the plain loop.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from ganlab.config import parse_trial
from ganlab.trainer import Trainer

WORKLOADS = {
    "ring8 + MLP 128x3, batch 256": {
        "data": {"name": "ring8", "batch_size": 256},
        "model": {"name": "mlp", "width": 128, "depth": 3, "latent_dim": 2},
    },
    "digits + DCGAN c32, batch 64": {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "dcgan", "latent_dim": 32, "channels": 32},
    },
}


class PlainLoop:
    """What a researcher would write by hand: no diagnostics, no abstractions."""

    def __init__(self, trainer: Trainer):
        self.G, self.D = copy.deepcopy(trainer.G), copy.deepcopy(trainer.D)
        self.data, self.bs, self.latent = trainer.data, trainer.cfg.data.batch_size, trainer.G.latent_dim
        o = trainer.cfg.optim
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas)
        self.data_rng = torch.Generator().set_state(trainer.rngs["data"].get_state())
        self.z_rng = torch.Generator().set_state(trainer.rngs["z"].get_state())

    def step(self) -> tuple[float, float]:
        for p in self.D.parameters():
            p.requires_grad_(True)
        real = self.data.sample(self.bs, self.data_rng)
        with torch.no_grad():
            fake = self.G(torch.randn(self.bs, self.latent, generator=self.z_rng))
        d_loss = F.softplus(-self.D(real)).mean() + F.softplus(self.D(fake)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        for p in self.D.parameters():
            p.requires_grad_(False)
        g_loss = F.softplus(-self.D(self.G(torch.randn(self.bs, self.latent, generator=self.z_rng)))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return d_loss.item(), g_loss.item()


def check_same_math(cfg) -> None:
    """Both loops, from the same state, must produce identical losses: else the timing compares apples and pears."""
    trainer = Trainer(cfg)
    plain = PlainLoop(trainer)
    for _ in range(5):
        d_ref, g_ref = trainer.discriminator_step().item(), trainer.generator_step().item()
        assert (d_ref, g_ref) == plain.step(), "the plain loop does not do the same math as ganlab"


def time_workload(overrides: dict, steps: int, repeats: int) -> tuple[float, float]:
    cfg = parse_trial({**overrides, "loss": {"name": "non_saturating"},
                       "optim": {"name": "adam", "lr_g": 2e-4, "betas": [0.5, 0.999]},
                       "train": {"steps": 10**9, "log_every": 10, "eval_every": 10**9}, "device": "cpu"})
    check_same_math(cfg)
    trainer = Trainer(cfg)
    plain = PlainLoop(trainer)
    for _ in range(20):  # warm-up: allocator, autograd graph caches
        plain.step()
    for _ in trainer.run(stop_at=20):
        pass
    plain_t, ganlab_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            plain.step()
        plain_t.append((time.perf_counter() - t0) / steps)
        t0 = time.perf_counter()
        for _ in trainer.run(stop_at=trainer.iteration + steps):
            pass
        ganlab_t.append((time.perf_counter() - t0) / steps)
    return statistics.median(plain_t), statistics.median(ganlab_t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPU share; default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} iterations x {args.repeats} "
          "interleaved repeats, medians")
    print(f"{'workload':<32} {'plain ms/it':>12} {'ganlab ms/it':>13} {'ratio':>7} {'target':>8}")
    for name, overrides in WORKLOADS.items():
        plain, ganlab = time_workload(overrides, args.steps, args.repeats)
        ratio = ganlab / plain
        print(f"{name:<32} {1000 * plain:>12.3f} {1000 * ganlab:>13.3f} {ratio:>7.3f} "
              f"{'<= 1.10 ' + ('ok' if ratio <= 1.10 else 'MISS'):>8}")


if __name__ == "__main__":
    main()
