"""What bulk booking buys: MLflow's cost per metric point, one call per point, one ``log_batch`` per run, and
a pack's writer (``PackWriter``: every lane's points in one SQL transaction per flush).

    .venv/bin/python bench/logging_cost.py [--runs 50] [--steps 30] [--metrics 15]

All three write the same points for the same number of runs to one fresh SQLite store, side by side in one
run; runs are created, given 60 params, and ended each way, so the table also shows the cost per run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from ganlab.track import PackWriter, RunSpec, start_study_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--metrics", type=int, default=15, help="metrics per logged step")
    args = ap.parse_args()
    names = [f"m{i}" for i in range(args.metrics)]
    params = {f"p{i}": i for i in range(60)}
    points = args.runs * args.steps * args.metrics
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        study_file = Path(tmp) / "bench.yaml"
        study_file.write_text("name: bench\n")
        study = start_study_run(uri, "bench", study_file, {}, {})
        client = MlflowClient(uri)
        rows = []

        def by_api(batched: bool) -> list[str]:
            ids = []
            for r in range(args.runs):
                run_id = client.create_run(study.experiment_id).info.run_id
                client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
                if batched:
                    now = int(time.time() * 1000)
                    metrics = [Metric(n, s * 0.1, now, s) for s in range(args.steps) for n in names]
                    for i in range(0, len(metrics), 1000):
                        client.log_batch(run_id, metrics=metrics[i : i + 1000])
                else:
                    for s in range(args.steps):
                        for n in names:
                            client.log_metric(run_id, n, s * 0.1, step=s)
                client.set_terminated(run_id)
                ids.append(run_id)
            return ids

        for label, batched in (("one log_metric call per point", False), ("one log_batch per run (<=1000/call)", True)):
            started = time.perf_counter()
            ids = by_api(batched)
            rows.append((label, time.perf_counter() - started, ids))
        started = time.perf_counter()
        writer = PackWriter(study, "bench-pack")
        lanes = list(range(args.runs))
        ids = writer.open([RunSpec(f"t{r}", f"t{r}", params, {}, {}) for r in lanes])
        for s in range(args.steps):
            writer.record(s, names, np.full((args.runs, args.metrics), s * 0.1), lanes, None)
        writer.end(lanes, "FINISHED", None, writer.histories(lanes))
        writer.close()
        rows.append(("PackWriter (one transaction per flush, + Parquet)", time.perf_counter() - started, ids))
        for _, _, ids in rows:
            assert all(len(client.get_metric_history(r, n)) == args.steps for r in ids[:3] for n in names), "lost"
    per_call = rows[0][1]
    print(f"{args.runs} runs x {args.steps} steps x {args.metrics} metrics = {points} points, fresh SQLite store")
    print(f"{'method':<52} {'total s':>8} {'ms/run':>8} {'us/point':>9} {'vs per-call':>12}")
    for label, secs, _ in rows:
        print(f"{label:<52} {secs:>8.2f} {1000 * secs / args.runs:>8.1f} {1e6 * secs / points:>9.1f} "
              f"{per_call / secs:>11.1f}x")


if __name__ == "__main__":
    main()
