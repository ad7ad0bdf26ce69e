"""Where the seconds before a study's first training step go, read from what the store recorded.

    .venv/bin/python bench/startup.py [--repeats 3] [--lanes 32]

Runs a small packed study (ring8, MLP 32 x 2, ``--lanes`` trials in one pack, 100 iterations) through the real
``ganlab run`` in a fresh folder (a new SQLite store each time) and reads back, from MLflow's own timestamps:
the parent run's creation (the CLI, its imports, the new store's schema, Ray started), the first trial run's
creation (a Ray worker started, its imports, the pack's model built), its first metric point (the first logged
step trained) and the end. Prints the median of each phase over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GANLAB = str(Path(sys.executable).parent / "ganlab")


def study(lanes: int) -> dict:
    return {"name": "startup",
            "trial": {"data": {"name": "ring8", "batch_size": 64}, "model": {"name": "mlp", "width": 32, "depth": 2},
                      "train": {"steps": 100, "eval_every": 50, "log_every": 10}},
            "seeds": list(range(lanes)), "resources": {"cpu": 1}, "pack": "auto", "pack_max": lanes}


def once(folder: Path, lanes: int) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    folder.mkdir(parents=True)
    (folder / "s.yaml").write_text(yaml.safe_dump(study(lanes)))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    started = time.time()
    proc = subprocess.run([GANLAB, "run", "s.yaml", "--num-cpus", "1"], cwd=folder, env=env, capture_output=True,
                          text=True)
    ended = time.time()
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("startup").experiment_id])
    parent = min(r.info.start_time for r in runs if r.data.tags.get("ganlab.kind") == "study") / 1000
    trials = [r for r in runs if r.data.tags.get("ganlab.kind") == "trial"]
    child = min(r.info.start_time for r in trials) / 1000
    first_point = min(m.timestamp for m in client.get_metric_history(trials[0].info.run_id, "loss/d")) / 1000
    return {"CLI, imports, new store, Ray up (parent run created)": parent - started,
            "worker up, imports, model built (trial runs created)": child - parent,
            "first logged step trained": first_point - child,
            "rest of training and booking, driver exit": ended - first_point,
            "total": ended - started}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lanes", type=int, default=32)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ganlab-startup-"))
    phases: dict[str, list[float]] = {}
    for i in range(args.repeats):
        for phase, seconds in once(root / str(i), args.lanes).items():
            phases.setdefault(phase, []).append(seconds)
        print(f"  run {i + 1}/{args.repeats}: {phases['total'][-1]:.1f} s", file=sys.stderr, flush=True)
    print(f"`ganlab run`, {args.lanes} ring8 trials in one pack, 100 iterations, 1 CPU; median of {args.repeats}")
    print(f"{'phase':<56} {'seconds':>8}")
    for phase, values in phases.items():
        print(f"{phase:<56} {statistics.median(values):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
