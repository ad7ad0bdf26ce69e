"""Reading a study back: ``load_study`` and every trial's per-step history for a 200-trial study.

    .venv/bin/python bench/readback.py [--trials 200] [--steps 3000] [--metrics 30]

Builds a study in a fresh SQLite store through ganlab's own writer (``PackWriter``, packs of 50 trials: a
parent run, one child run per trial, diagnostics every 10 steps of which every 5th goes to MLflow and all to
the trial's ``diagnostics.parquet``), without training anything, then times, side by side:

* ``load_study``: one row per trial (MLflow ``search_runs``, paged);
* ``load_history``: every trial's full-resolution history in long format (one Parquet read per trial);
* the naive way: ``MlflowClient.get_metric_history`` per run per metric (timed on 10 runs, scaled up).

Target (issue 6): load_study and the histories of a 200-trial study in a few seconds.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from ganlab.analysis import load_history, load_study
import numpy as np

from ganlab.track import TAG_SWEPT, PackWriter, RunSpec, start_study_run

LOG_EVERY, MLFLOW_EVERY_LOGS = 10, 5


def build(uri: str, folder: Path, trials: int, steps: int, n_metrics: int) -> None:
    (folder / "readback.yaml").write_text("name: readback\n")
    study = start_study_run(uri, "readback", folder / "readback.yaml", {}, {TAG_SWEPT: '["optim.lr_ratio"]'})
    names = [f"diag/m{i:02d}" for i in range(n_metrics)]
    pack = 50
    for first in range(0, trials, pack):
        lanes = list(range(min(pack, trials - first)))
        writer = PackWriter(study, f"pack_{first:05d}")
        writer.open([RunSpec(f"trial_{t:05d}", f"{t:05d}", {"optim.lr_ratio": 2.0 ** (t % 6 - 2)}, {}, {})
                     for t in range(first, first + len(lanes))])
        for step in range(LOG_EVERY, steps + 1, LOG_EVERY):
            values = np.sin(step / 100 + np.arange(n_metrics)[None, :] + first + np.array(lanes)[:, None])
            writer.record(step, names, values, lanes, None if step % (LOG_EVERY * MLFLOW_EVERY_LOGS) == 0 else [])
        writer.end(lanes, "FINISHED", None, writer.histories(lanes))
        writer.close()
        print(f"  built {first + len(lanes)}/{trials} trials", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--metrics", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        started = time.perf_counter()
        build(uri, Path(tmp), args.trials, args.steps, args.metrics)
        print(f"  (built in {time.perf_counter() - started:.1f} s)")
        rows = []
        started = time.perf_counter()
        df = load_study("readback", uri, window=None)
        rows.append(("load_study, window=None (one row per trial, MLflow only)", time.perf_counter() - started, len(df)))
        started = time.perf_counter()
        df = load_study("readback", uri)
        rows.append(("load_study (+ windowed means: one Parquet read per trial)", time.perf_counter() - started, len(df)))
        started = time.perf_counter()
        history = load_history("readback", uri)
        rows.append(("load_history (every step, every metric)", time.perf_counter() - started, len(history)))
        expected = args.trials * (args.steps // LOG_EVERY) * args.metrics
        assert len(history) == expected, (len(history), expected)
        client, sample = MlflowClient(uri), df["run_id"].tolist()[:10]
        started = time.perf_counter()
        points = sum(len(client.get_metric_history(r, m)) for r in sample for m in
                     [f"diag/m{i:02d}" for i in range(args.metrics)])
        naive = (time.perf_counter() - started) * args.trials / len(sample)
        rows.append((f"naive get_metric_history per run per metric (x{args.trials // len(sample)} of 10 runs)",
                     naive, points * args.trials // len(sample)))
    print(f"\n{args.trials} trials x {args.steps // LOG_EVERY} logged steps x {args.metrics} metrics, SQLite store")
    print(f"{'read':<62} {'seconds':>8} {'rows/points':>12}")
    for name, seconds, n in rows:
        print(f"{name:<62} {seconds:>8.2f} {n:>12}")


if __name__ == "__main__":
    main()
