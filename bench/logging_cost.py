"""What batching buys: MLflow logging cost per metric point, one call per metric vs ganlab's TrialLogger.

    .venv/bin/python bench/logging_cost.py [--steps 100] [--metrics 15]

Both methods write the same points to the same fresh SQLite store, side by side in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from ganlab.track import TrialLogger, start_study_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--metrics", type=int, default=15, help="metrics per logged step (ganlab logs ~15)")
    args = ap.parse_args()
    names = [f"m{i}" for i in range(args.metrics)]
    points = args.steps * args.metrics
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        study_file = Path(tmp) / "bench.yaml"
        study_file.write_text("name: bench\n")
        study = start_study_run(uri, "bench", study_file, {}, {})
        client = MlflowClient(uri)

        run = client.create_run(study.experiment_id, run_name="per-metric")
        t0 = time.perf_counter()
        for step in range(args.steps):
            for name in names:
                client.log_metric(run.info.run_id, name, step * 0.1, step=step)
        per_metric = time.perf_counter() - t0

        t0 = time.perf_counter()
        logger = TrialLogger.open(study, "batched", "batched", {}, {}, {})
        start_cost = time.perf_counter() - t0
        t0 = time.perf_counter()
        for step in range(args.steps):
            logger.log_metrics(step, {name: step * 0.1 for name in names})
        logger.end("FINISHED")
        batched = time.perf_counter() - t0
        for run_id in (run.info.run_id, logger.run_id):
            assert all(len(client.get_metric_history(run_id, n)) == args.steps for n in names), "points lost"

    rows = [
        ("one log_metric call per point", per_metric),
        ("TrialLogger (log_batch, <=1000/call)", batched),
    ]
    print(f"{points} metric points ({args.steps} steps x {args.metrics} metrics), fresh SQLite store")
    print(f"{'method':<40} {'total s':>9} {'ms/point':>9} {'vs per-call':>12}")
    for label, secs in rows:
        print(f"{label:<40} {secs:>9.3f} {1000 * secs / points:>9.4f} {per_metric / secs:>11.1f}x")
    print(f"(TrialLogger.open: child run + params + trial_config.json: {start_cost:.3f} s, once per trial)")


if __name__ == "__main__":
    main()
