"""Whole studies, packed (``pack: auto``) against one trial per Ray trial (``pack: 1``), side by side.

    .venv/bin/python bench/pack_studies.py [--only ring64 dirac400 lr_ratio scaling] [--num-cpus 2]
                                           [--lr-ratio-steps N]

Each study runs twice through the real ``ganlab run`` (local Ray, a fresh MLflow SQLite store, every metric
and artifact logged, default artifacts), once per setting, in a fresh folder; the table shows wall seconds of
each, the ratio, the issue's target, and bookkeeping's share of the packed trials' time: one minus the packs'
training time (``cost/compute_s``, which includes evaluation) over the packs' time from their runs' creation to
their last run's end (so everything a pack's worker does once its runs exist: points, Parquet, pictures,
weights, ending). Studies:

- ring64: 64 trials (8 lr_ratio x 8 seeds) of ring8 with an MLP of width 32, depth 2, batch 64, 1000 iterations;
- dirac400: 400 Dirac-GAN trials, lr_g (20 values) x r1 (0, 0.3) x theta0 (10 values), 500 iterations;
- lr_ratio: ``studies/lr_ratio.yaml`` as shipped (``--lr-ratio-steps`` shortens it, and the table says so).
- scaling: 200 and 2,000 Dirac-GAN trials of 300 iterations (theta0 5 and 50 values), ``pack: auto`` only:
  each end to end, and the wall time per added trial (their difference over 1,800).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GANLAB = str(Path(sys.executable).parent / "ganlab")

RING64 = {
    "name": "ring64",
    "trial": {"data": {"name": "ring8", "batch_size": 64}, "model": {"name": "mlp", "width": 32, "depth": 2},
              "train": {"steps": 1000, "eval_every": 250, "log_every": 10}},
    "sweep": {"optim.lr_ratio": {"grid": [0.25, 0.5, 1, 2, 4, 8, 16, 32]}},
    "seeds": list(range(8)),
    "resources": {"cpu": 1},
}
DIRAC400 = {
    "name": "dirac400",
    "trial": {"data": {"name": "dirac"}, "model": {"name": "dirac", "theta0": 1.0, "psi0": -1.0},
              "loss": {"name": "minimax"}, "optim": {"name": "sgd", "lr_g": 0.1},
              "schedule": {"mode": "simultaneous"}, "train": {"steps": 500, "eval_every": 50, "log_every": 10}},
    "sweep": {"optim.lr_g": {"grid": [round(0.01 * (i + 1), 3) for i in range(20)]},
              "regularizer.r1": {"grid": [0.0, 0.3]},
              "model.theta0": {"grid": [round(0.2 * (i + 1), 2) for i in range(10)]}},
    "resources": {"cpu": 1},
}
TARGETS = {"ring64": 5.0, "dirac400": 10.0, "lr_ratio": 1.1}
SHARE_TARGET = {"ring64": 0.10}
SCALING = (200, 2000)  # Dirac-GAN trials; targets: <= 50 ms per added trial, the larger <= 180 s
PER_TRIAL_TARGET_S, LARGE_TARGET_S = 0.05, 180.0


def dirac(trials: int, steps: int) -> dict:
    """``trials`` Dirac-GAN trials: lr_g (20 values) x r1 (0, 0.3) x theta0 (trials / 40 values)."""
    study = {**DIRAC400, "name": f"dirac{trials}"}
    study["trial"] = {**DIRAC400["trial"], "train": {**DIRAC400["trial"]["train"], "steps": steps}}
    study["sweep"] = {**DIRAC400["sweep"],
                      "model.theta0": {"grid": [round(0.04 * (i + 1), 2) for i in range(trials // 40)]}}
    return study


def study_text(name: str, pack: str, lr_ratio_steps: int | None) -> dict:
    if name == "ring64":
        study = dict(RING64)
    elif name == "dirac400":
        study = dict(DIRAC400)
    else:
        study = yaml.safe_load((REPO / "studies" / "lr_ratio.yaml").read_text())
        if lr_ratio_steps:
            study["trial"]["train"]["steps"] = lr_ratio_steps
    return {**study, "pack": pack if pack == "auto" else int(pack)}


def run(study: dict, folder: Path, num_cpus: int) -> tuple[float, float]:
    """(wall seconds of `ganlab run`, bookkeeping's share of the packs' time)."""
    folder.mkdir(parents=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = time.perf_counter()
    proc = subprocess.run([GANLAB, "run", str(path), "--num-cpus", str(num_cpus)], cwd=folder, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{study['name']} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, bookkeeping_share(study["name"], f"sqlite:///{folder / 'mlflow.db'}")


def bookkeeping_share(name: str, uri: str) -> float:
    """1 - the packs' training time over their time from their runs' creation to their last run's end."""
    from mlflow.tracking import MlflowClient

    from ganlab.analysis import load_study
    from ganlab.track.store import TAG_PACK

    client = MlflowClient(uri)
    spans: dict[str, list[int]] = {}
    compute = 0.0
    for run_id in load_study(name, tracking_uri=uri)["run_id"]:
        run = client.get_run(run_id)
        pack = run.data.tags.get(TAG_PACK, run_id)
        span = spans.setdefault(pack, [run.info.start_time, run.info.end_time])
        span[0], span[1] = min(span[0], run.info.start_time), max(span[1], run.info.end_time)
        compute += run.data.metrics["cost/compute_s"]  # the pack's over its lanes: the sum is the pack's
    total = sum(end - start for start, end in spans.values()) / 1000
    return 1 - compute / total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=[*TARGETS, "scaling"], default=[*TARGETS, "scaling"])
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--lr-ratio-steps", type=int, help="shorten studies/lr_ratio.yaml to this many iterations")
    ap.add_argument("--keep", action="store_true", help="keep the study folders (printed)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ganlab-pack-studies-"))
    rows, scaling = [], {}
    for name in args.only:
        if name == "scaling":
            for n in SCALING:
                print(f"  dirac{n} (300 it), pack auto ...", file=sys.stderr, flush=True)
                scaling[n] = run({**dirac(n, 300), "pack": "auto"}, root / f"scaling-{n}", args.num_cpus)
            continue
        times = {}
        for pack in ("auto", "1"):
            print(f"  {name}, pack {pack} ...", file=sys.stderr, flush=True)
            times[pack] = run(study_text(name, pack, args.lr_ratio_steps), root / f"{name}-pack-{pack}", args.num_cpus)
        rows.append((name, times))
    print(f"whole `ganlab run` wall seconds on {args.num_cpus} CPU(s) (local Ray, MLflow SQLite), one after the other")
    print(f"{'study':<10} {'pack 1 s':>9} {'pack auto s':>12} {'speed-up':>9} {'target':>7} "
          f"{'bookkeeping share (auto)':>25}")
    for name, times in rows:
        (auto, share), (one, _) = times["auto"], times["1"]
        label = name + (f" ({args.lr_ratio_steps} it)" if name == "lr_ratio" and args.lr_ratio_steps else "")
        speed = one / auto
        ok = speed >= TARGETS[name] and share <= SHARE_TARGET.get(name, 1.0)
        share_text = f"{share:.1%}" + (f" (<= {SHARE_TARGET[name]:.0%})" if name in SHARE_TARGET else "")
        print(f"{label:<10} {one:>9.0f} {auto:>12.0f} {speed:>8.1f}x {f'>={TARGETS[name]:g}x':>7} {share_text:>25}"
              f"  {'ok' if ok else 'MISS'}")
    if scaling:
        (small, (t_small, s_small)), (large, (t_large, s_large)) = sorted(scaling.items())
        per = (t_large - t_small) / (large - small)
        print(f"\nDirac-GAN trials of 300 iterations, pack auto: {small} in {t_small:.0f} s (bookkeeping "
              f"{s_small:.0%}), {large} in {t_large:.0f} s (bookkeeping {s_large:.0%}, target <= {LARGE_TARGET_S:.0f} s: "
              f"{'ok' if t_large <= LARGE_TARGET_S else 'MISS'}); per added trial {1000 * per:.0f} ms "
              f"(target <= {1000 * PER_TRIAL_TARGET_S:.0f} ms: {'ok' if per <= PER_TRIAL_TARGET_S else 'MISS'})")
    if args.keep:
        print(f"folders: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
