"""What ganlab's training step costs over a minimal hand-written PyTorch loop doing the same math.

    .venv/bin/python bench/train_step.py [--steps 100] [--repeats 10] [--threads 1] [--warmup 30] [--control]

Two workloads: ring8 + MLP (width 128, depth 3, batch 256) and digits + DCGAN (batch 64, default
channels). ganlab runs through ``Trainer.run()`` (a pack of one lane: the same vectorised code that trains
a pack) with its diagnostics on (log_every=10, as in the studies; no evaluation inside the timed steps).
The plain loop is what a researcher would write: the trial's own single G and D (``nn.Linear`` /
``nn.Conv2d``), ``torch.optim.Adam`` with the same learning rates, the same non-saturating loss (BCE via
softplus), the same alternating schedule (1 D step, then 1 G step with D frozen), drawing the same data and
latents from the trial's counter-based streams. The two follow the same trajectory up to float rounding
(batched kernels and a flat-buffer Adam round differently from per-module ones): the script checks the D/G
losses agree to 1e-4 over the first iterations. Both run side by side in one process: warm-up, then rounds
of [plain N steps, ganlab N steps] (order alternating between rounds to cancel drift); the table shows the
median ms/step of each. ``--control`` also times a second, identical plain loop: its ratio to the first is
the noise floor of the ganlab/plain ratio on this machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import torch
import torch.nn.functional as F

from ganlab.config import TrialConfig, parse_trial
from ganlab.train.pack import DATA, G_SLOT, LATENT, SLOTS
from ganlab.train.trainer import Trainer

TARGET = 1.10  # ganlab / plain, per step
NEVER = 10**9  # train.steps and eval_every beyond any timed step: no evaluation, no "last step" report
OPTIM = {"name": "adam", "lr_g": 2.0e-4, "lr_ratio": 1.0, "betas": [0.5, 0.999]}
TRAIN = {"steps": NEVER, "log_every": 10, "eval_every": NEVER}
WORKLOADS = {
    "ring8 + mlp (b256)": {
        "data": {"name": "ring8", "batch_size": 256},
        "model": {"name": "mlp", "width": 128, "depth": 3, "latent_dim": 2},
    },
    "digits + dcgan (b64)": {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "dcgan"},
    },
}


def trial_config(workload: dict, seed: int) -> TrialConfig:
    return parse_trial({"seed": seed, "device": "cpu", "loss": {"name": "non_saturating"}, "optim": OPTIM,
                        "train": TRAIN, **workload})


class PlainLoop:
    """The Trainer's math with nothing else: single models, no diagnostics, no lanes, no schedule dispatch."""

    def __init__(self, trainer: Trainer):
        """Starts from ``trainer``'s initial weights and streams (call before it trains)."""
        cfg = trainer.cfg
        self.G, self.D = trainer.model.initial_models(0)
        self.pack, self.n, self.latent_dim = trainer.model, cfg.data.batch_size, trainer.model.latent_dim
        betas = tuple(cfg.optim.betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.optim.lr_d, betas=betas)
        self.d_params = list(self.D.parameters())
        self.iteration = 0

    def _latents(self, address: int) -> torch.Tensor:
        return self.pack.streams[LATENT].normal(address, self.n, self.latent_dim)[0]

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        G, D, n = self.G, self.D, self.n
        address = (self.iteration + 1) * SLOTS
        # D step: fakes without a graph through G, non-saturating BCE on raw logits.
        for p in self.d_params:
            p.requires_grad_(True)
        with torch.no_grad():
            fake = G(self._latents(address))
        real = self.pack.data.draw(self.pack.streams[DATA], 2 * address, n)[0]
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # G step: D frozen so its parameter gradients are never computed (as any tuned loop does).
        for p in self.d_params:
            p.requires_grad_(False)
        g_loss = F.softplus(-D(G(self._latents(address + G_SLOT)))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.iteration += 1
        return d_loss.detach(), g_loss.detach()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()


def run_ganlab(trainer: Trainer, steps: int) -> int:
    reports = 0
    for _ in trainer.run(stop_at=trainer.iteration + steps):
        reports += 1
    return reports


def check_same_math(cfg: TrialConfig, steps: int, tolerance: float = 1e-4) -> float:
    """Both loops follow one trajectory: their per-iteration D and G losses agree to ``tolerance`` (relative).
    Returns the largest relative difference."""
    trainer = Trainer(cfg)
    plain = PlainLoop(trainer)
    plain_losses = torch.tensor([[float(d), float(g)] for d, g in (plain.step() for _ in range(steps))],
                                dtype=torch.float64)
    run_ganlab(trainer, steps)
    # The Trainer's recorder keeps each iteration's losses in its series window (n, lanes, series, value/noise).
    series = trainer.recorder.series_window.values()[:, 0, :, 0]  # (iterations, series) of the one lane
    names = trainer.recorder.series_names
    ganlab_losses = series[-steps:, [names.index("loss_d"), names.index("loss_g")]].double()
    worst = float(((ganlab_losses - plain_losses).abs() / plain_losses.abs().clamp(min=1e-6)).max())
    assert worst <= tolerance, f"losses differ by {worst:.2e} (relative):\n{ganlab_losses}\n{plain_losses}"
    return worst


def bench(cfg: TrialConfig, steps: int, repeats: int, warmup: int, control: bool) -> dict:
    """Per-step seconds of each block, by wall clock and by this process's CPU time. With ``control``, a
    second, identical plain loop is timed too: plain2 / plain is the noise floor of the ratio."""
    trainer = Trainer(cfg)
    loops = {"plain": PlainLoop(trainer)}
    if control:
        loops["plain2"] = PlainLoop(trainer)
    run = {name: loop.run for name, loop in loops.items()}
    run["ganlab"] = lambda n: run_ganlab(trainer, n)
    for fn in run.values():
        fn(warmup)
    times = {who: {"wall": [], "cpu": []} for who in run}
    for r in range(repeats):
        order = list(run) if r % 2 == 0 else list(run)[::-1]
        for who in order:
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            run[who](steps)
            times[who]["wall"].append((time.perf_counter() - t0) / steps)
            times[who]["cpu"].append((time.process_time() - c0) / steps)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="training iterations per timed block")
    ap.add_argument("--repeats", type=int, default=10, help="rounds of [plain block, ganlab block]")
    ap.add_argument("--warmup", type=int, default=30, help="untimed iterations of each before the rounds")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a trial's CPU share: 1)")
    ap.add_argument("--check-steps", type=int, default=20, help="iterations compared for exact equality (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", action="store_true",
                    help="also time a second identical plain loop: its ratio to the first is the noise floor")
    ap.add_argument("--only", choices=sorted(WORKLOADS), action="append", help="run only this workload")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    rows = []
    for name, workload in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        cfg = trial_config(workload, args.seed)
        worst = check_same_math(cfg, args.check_steps) if args.check_steps else float("nan")
        times = bench(cfg, args.steps, args.repeats, args.warmup, args.control)
        rows.append((name, times, worst))

    med = statistics.median
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.steps} steps x {args.repeats} "
          f"rounds after {args.warmup} warm-up steps; ganlab via Trainer.run(), log_every=10, no evaluation")
    print(f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs "
          "(other busy processes inflate and scatter the timings)")
    if args.check_steps:
        print(f"same math: D/G losses agree to 1e-4 (relative) over the first {args.check_steps} iterations")
    print(f"{'workload':<22} {'plain ms/step':>14} {'ganlab ms/step':>15} {'ratio':>7} {'target':>7} "
          f"{'cpu ratio':>10} {'max loss diff':>13}" + (f" {'plain2/plain':>13}" if args.control else ""))
    for name, times, worst in rows:
        plain, ganlab = times["plain"], times["ganlab"]
        p, g = med(plain["wall"]), med(ganlab["wall"])
        ratio, cpu_ratio = g / p, med(ganlab["cpu"]) / med(plain["cpu"])
        control = f" {med(times['plain2']['wall']) / p:>13.3f}" if "plain2" in times else ""
        print(f"{name:<22} {1000 * p:>14.3f} {1000 * g:>15.3f} {ratio:>7.3f} {f'<={TARGET:.2f}':>7} "
              f"{cpu_ratio:>10.3f} {worst:>13.1e}{control}  {'ok' if ratio <= TARGET else 'OVER'}")
    print("ms/step: wall-clock medians; cpu ratio: the same from process CPU time (robust to preemption by other")
    print("processes; with --threads > 1 it sums all threads). Per-round wall ms/step (plain | ganlab):")
    for name, times, _ in rows:
        fmt = lambda xs: " ".join(f"{1000 * x:.2f}" for x in xs)  # noqa: E731
        print(f"  {name:<22} {fmt(times['plain']['wall'])} | {fmt(times['ganlab']['wall'])}")


if __name__ == "__main__":
    main()
