"""What ganlab's per-step diagnostics cost: the same Trainer with `diagnostics.per_step` on and off.

    .venv/bin/python bench/diagnostics_cost.py [--steps 200] [--repeats 8] [--threads 1]

Same config, seed and workload on both sides; only the per-step diagnostics (accuracies, D output means
and probabilities, gradient norms) differ. Logging every 10 iterations (losses, windows, parameter norms
and update ratios happen on both sides), no evaluation in the timed span. Interleaved repeats in one
process (alternating which side goes first), medians. Target: per-step diagnostics cost <= 5%.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ganlab.config import parse_trial
from ganlab.train.trainer import Trainer
from train_step import WORKLOADS  # one definition of the benchmarked workloads (bench/ is on sys.path)

def trainer(overrides: dict, per_step: bool) -> Trainer:
    return Trainer(parse_trial({**overrides, "device": "cpu", "diagnostics": {"per_step": per_step},
                                "train": {"steps": 10**9, "log_every": 10, "eval_every": 10**9}}))


def time_workload(overrides: dict, steps: int, repeats: int) -> tuple[float, float]:
    on, off = trainer(overrides, True), trainer(overrides, False)
    for t in (on, off):  # warm-up
        for _ in t.run(stop_at=20):
            pass
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(repeats):
        pairs = ((False, off), (True, on)) if r % 2 == 0 else ((True, on), (False, off))  # cancel order effects
        for flag, t in pairs:
            t0 = time.perf_counter()
            for _ in t.run(stop_at=t.iteration + steps):
                pass
            times[flag].append((time.perf_counter() - t0) / steps)
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} iterations x {args.repeats} "
          "interleaved repeats, medians")
    print(f"{'workload':<32} {'off ms/it':>10} {'on ms/it':>10} {'cost':>7} {'target':>10}")
    for name, overrides in WORKLOADS.items():
        off, on = time_workload(overrides, args.steps, args.repeats)
        cost = on / off - 1
        print(f"{name:<32} {1000 * off:>10.3f} {1000 * on:>10.3f} {100 * cost:>6.1f}% "
              f"{'<= 5% ' + ('ok' if cost <= 0.05 else 'MISS'):>10}")


if __name__ == "__main__":
    main()
