"""Calibration of the stability verdict against dynamics whose answer is known.

    .venv/bin/python bench/calibration.py [--windows 200] [--quick]

Three sets, each with its ground truth:
1. Synthetic windows of a per-step D loss: batch means of B per-sample values (white noise, B = 32 to 1024,
   never oscillating), sines under that noise (amplitude, period known: oscillating), a linear drift
   (drifting). Each window goes through the same statistics (excess beyond noise, Fisher's period test,
   trend) and verdict rules as a trial's, with D's AUC held at 1/2, so the motion rules alone decide.
2. The Dirac-GAN through the real trainer: simultaneous plain SGD spirals out (diverged), alternating plain
   SGD cycles (oscillating, the D loss at half the linearised rotation period pi / phi, cos phi = 1 - a^2/2,
   a = h f'(0), at small amplitude), R1 and instance noise converge (Mescheder et al. 2018).
3. Ring8 trials whose balance is clear: a D four times slower than G collapses G; a nearly frozen G loses to D;
   R1 on a ring of wide modes (sigma 0.2) settles at 50/50, at three batch sizes (only the noise changes).

Prints the confusion matrix (truth x verdict) and the period errors; the tests assert the same on a subset.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganlab.config import VerdictConfig, parse_trial  # noqa: E402
from ganlab.diagnose.oscillation import beyond_noise, periodicity  # noqa: E402
from ganlab.diagnose.verdict import judge  # noqa: E402

WINDOW = 200
ALPHA = 0.01
PER_SAMPLE_STD = 0.6  # per-sample spread of a BCE D-loss term near the equilibrium, roughly


def series_metrics(values: torch.Tensor, noise_var: torch.Tensor) -> list[dict[str, float]]:
    """The trainer's osc/loss_d_* figures for each of a batch of windows (n_windows, n)."""
    stats = beyond_noise(values, noise_var)
    period, p = periodicity(values, 3, ALPHA)
    out = []
    for i in range(values.shape[0]):
        out.append({"osc/loss_d_excess": float(stats["excess"][i]), "osc/loss_d_noise": float(stats["noise"][i]),
                    "osc/loss_d_trend": float(stats["trend"][i]), "osc/loss_d_period": float(period[i]),
                    "osc/loss_d_period_p": float(p[i]), "d/auc_mean": 0.5, "loss/d": 1.386, "loss/g": 0.693})
    return out


def noisy_windows(n_windows: int, batch: int, signal: torch.Tensor, generator: torch.Generator):
    """Per-step batch means of `batch` per-sample values around `signal` (n,), and each step's own noise
    variance estimated from its samples, as the trainer does."""
    samples = signal[:, None] + PER_SAMPLE_STD * torch.randn(n_windows, signal.shape[0], batch, generator=generator,
                                                    dtype=torch.float64)
    return samples.mean(-1), samples.var(-1) / batch


def synthetic_cases(n_windows: int, seed: int = 0) -> list[tuple[str, str, float | None, dict]]:
    """(label, truth, true period or None, metrics) for every synthetic window."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(WINDOW, dtype=torch.float64)
    base = torch.full((WINDOW,), 1.386, dtype=torch.float64)
    cases = []
    for batch in (32, 128, 512, 1024):
        values, noise = noisy_windows(n_windows, batch, base, g)
        cases += [(f"noise B={batch}", "converged", None, m) for m in series_metrics(values, noise)]
    for amplitude in (0.1, 0.3):
        for period in (8, 25, 60):
            signal = base + amplitude * torch.sin(2 * math.pi * t / period + 1.0)
            values, noise = noisy_windows(n_windows, 256, signal, g)
            cases += [(f"sine A={amplitude} P={period}", "oscillating", float(period), m)
                      for m in series_metrics(values, noise)]
    # a small oscillation (excess below the threshold) that is clearly periodic: found by the period test
    signal = base + 0.05 * torch.sin(2 * math.pi * t / 40)
    values, noise = noisy_windows(n_windows, 1024, signal, g)
    cases += [("sine A=0.05 P=40 B=1024", "oscillating", 40.0, m) for m in series_metrics(values, noise)]
    for change in (0.3, -0.5):
        signal = base + change * t / (WINDOW - 1)
        values, noise = noisy_windows(n_windows, 256, signal, g)
        cases += [(f"drift {change:+g}", "drifting", None, m) for m in series_metrics(values, noise)]
    return cases


def dirac_config(**overrides):
    trial = {"seed": 0, "device": "cpu", "data": {"name": "dirac", "batch_size": 1}, "loss": {"name": "minimax"},
             "model": {"name": "dirac", "theta0": 1.0, "psi0": 1.0}, "optim": {"name": "sgd", "lr_g": 0.2},
             "train": {"steps": 1500, "log_every": 10, "eval_every": 100}}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        trial[section] = {**trial.get(section, {}), name: value}
    return parse_trial(trial)


def dirac_cases() -> list[tuple[str, str, float | None, dict]]:
    """The Dirac-GAN's known dynamics, each a whole run of the real trainer: (label, truth, period, last metrics).
    Runs of one shape (schedule, steps, batch) train as one pack, each lane as it would alone."""
    from ganlab.train.lanes import pack_shape
    from ganlab.train.trainer import Trainer

    h, fprime = 0.2, 0.5
    phi = math.acos(1 - (h * fprime) ** 2 / 2)  # altGD's rotation angle per iteration, linearised
    runs = [
        ("simultaneous SGD", "diverged", None, {"schedule.mode": "simultaneous"}),
        ("alternating SGD, small amplitude", "oscillating", math.pi / phi,
         {"model.theta0": 0.05, "model.psi0": 0.05, "train.steps": 600}),
        ("alternating SGD", "oscillating", None, {}),
        ("simultaneous SGD + R1 0.3", "converged", None, {"schedule.mode": "simultaneous", "regularizer.r1": 0.3}),
        ("alternating SGD + R1 1.0", "converged", None, {"regularizer.r1": 1.0}),
        ("alternating SGD + R2 1.0", "converged", None, {"regularizer.r2": 1.0}),
        ("alternating SGD + instance noise 0.7", "converged", None,
         {"regularizer.instance_noise": 0.7, "data.batch_size": 512, "train.steps": 2500}),
    ]
    packs: dict[str, list[int]] = {}
    configs = [dirac_config(**overrides) for *_, overrides in runs]
    for i, cfg in enumerate(configs):
        packs.setdefault(pack_shape(cfg), []).append(i)
    out: dict[int, tuple] = {}
    for members in packs.values():
        trainer = Trainer([configs[i] for i in members])
        last = [None] * len(members)
        for report in trainer.run_pack():
            last = [lane if lane is not None else before for lane, before in zip(report.lanes, last)]
        for lane, i in enumerate(members):
            label, truth, period, _ = runs[i]
            out[i] = (label, truth, period, {**trainer.judge.figures(lane), "_verdict": last[lane].verdict})
    return [out[i] for i in range(len(runs))]


def ring_run(seed: int = 0, batch: int = 128, steps: int = 1500, sigma: float = 0.01, lr_g: float = 1e-3,
             lr_ratio: float = 1.0, r1: float = 0.0) -> dict:
    """One ring8 trial through the real trainer (MLP 64 x 2): its last figures and verdict."""
    from ganlab.train.trainer import Trainer

    trial = {"seed": seed, "device": "cpu", "data": {"name": "ring8", "batch_size": batch, "sigma": sigma},
             "model": {"width": 64, "depth": 2}, "optim": {"lr_g": lr_g, "lr_ratio": lr_ratio},
             "regularizer": {"r1": r1}, "train": {"steps": steps, "eval_every": 500, "log_every": 10}}
    trainer = Trainer(parse_trial(trial))
    last = None
    for last in trainer.run():
        pass
    return {**trainer.judge.figures(0), "_verdict": last.verdict}


RING_CASES = (  # label, truth, ring_run arguments
    ("ring8, D 4x slower than G", "mode_collapse", {"lr_ratio": 0.25}),
    ("ring8, G nearly frozen (lr_g 1e-5, D 100x faster)", "d_dominates", {"lr_g": 1e-5, "lr_ratio": 100.0, "steps": 800}),
    ("ring8 sigma 0.2 + R1 1.0, B=64", "converged", {"sigma": 0.2, "r1": 1.0, "batch": 64, "steps": 1000}),
    ("ring8 sigma 0.2 + R1 1.0, B=256", "converged", {"sigma": 0.2, "r1": 1.0, "batch": 256, "steps": 1000}),
    ("ring8 sigma 0.2 + R1 1.0, B=1024", "converged", {"sigma": 0.2, "r1": 1.0, "batch": 1024, "steps": 1000}),
)


def ring_cases(seeds=range(2)) -> list[tuple[str, str, float | None, dict]]:
    """Ring8 trials whose outcome is clear, and a settled one at three batch sizes (only the noise changes)."""
    return [(f"{label}, seed {seed}", truth, None, ring_run(seed, **kwargs))
            for seed in seeds for label, truth, kwargs in RING_CASES]


def verdict_of(metrics: dict) -> str:
    return metrics.get("_verdict") or judge(metrics, VerdictConfig(), n_modes=8, alpha=ALPHA)[0]


def confusion(cases) -> tuple[dict[str, Counter], list[float]]:
    table: dict[str, Counter] = {}
    errors = []
    for _, truth, period, metrics in cases:
        verdict = verdict_of(metrics)
        table.setdefault(truth, Counter())[verdict] += 1
        found = metrics.get("osc/loss_d_period", math.nan)
        if period is not None and verdict == "oscillating" and math.isfinite(found):
            errors.append(abs(found - period) / period)
    return table, errors


def print_table(title: str, cases) -> None:
    by_label: dict[str, Counter] = {}
    for label, truth, _, metrics in cases:
        by_label.setdefault(f"{label} [{truth}]", Counter())[verdict_of(metrics)] += 1
    print(f"\n{title}")
    for label, counts in by_label.items():
        total = sum(counts.values())
        print(f"  {label:<46} " + ", ".join(f"{v} {n / total:.1%}" for v, n in counts.most_common()))
    table, errors = confusion(cases)
    verdicts = sorted({v for c in table.values() for v in c})
    header = "truth / verdict"
    print(f"  {header:<16}" + "".join(f"{v:>13}" for v in verdicts))
    for truth, counts in table.items():
        total = sum(counts.values())
        print(f"  {truth:<16}" + "".join(f"{counts[v] / total:>13.1%}" for v in verdicts))
    if errors:
        errors.sort()
        print(f"  period error: median {errors[len(errors) // 2]:.1%}, max {errors[-1]:.1%} ({len(errors)} windows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=200, help="synthetic windows per case")
    ap.add_argument("--quick", action="store_true", help="synthetic and Dirac sets only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print_table(f"Synthetic D-loss windows ({args.windows} per case, {WINDOW} steps)", synthetic_cases(args.windows))
    print_table("Dirac-GAN (real trainer)", dirac_cases())
    if not args.quick:
        print_table("Ring8 trials (real trainer)", ring_cases())


if __name__ == "__main__":
    main()
