"""What MLflow logging adds to a trial's wall time: the same trial with ganlab's logging on and off.

    .venv/bin/python bench/logging_overhead.py [--steps 1500] [--repeats 3] [--threads 1]

The trial is studies/lr_ratio.yaml's (ring8, MLP 128x3, batch 256, diagnostics every 10 steps, eval every
250). "on" logs as a study trial does (its ``PackWriter`` to a fresh SQLite store: every logged
point to Parquet, the headline ones to MLflow at ``chart_points`` resolution or every logged step, a flush
every ``flush_interval_s``, diagnostics.parquet and curves at the end); "off" iterates the same ``Trainer.run()`` and drops the reports. Runs alternate on/off so drift
cancels; the table shows the median wall time of each and the overhead. Target (issue 6): <= 3 %.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ganlab.diagnose import plots
from ganlab.config import StudyConfig, apply_overrides, load_study
import numpy as np

from ganlab.diagnose import metrics as M
from ganlab.track import PackWriter, RunSpec, start_study_run
from ganlab.train.trainer import Trainer

TARGET = 0.03
STUDY = Path(__file__).resolve().parents[1] / "studies" / "lr_ratio.yaml"


def run(cfg, writer: PackWriter | None, flush_s: float, chart_every: int = 1) -> tuple[float, int]:
    """One trial; the headline metrics to MLflow every ``chart_every``-th logged step, all at eval steps."""
    started = last_flush = time.perf_counter()
    trainer, points = Trainer(cfg, "cpu"), 0
    for report in trainer.run_pack():
        points += len(report.names)
        if writer is not None:
            if report.evaluated or report.step == cfg.train.steps:
                columns = None
            elif (report.step // cfg.train.log_every) % chart_every == 0:
                columns = [k for k, n in enumerate(report.names) if n in M.CHART]
            else:
                columns = []
            writer.record(report.step, report.names, report.values.numpy(), [0], columns)
            if time.perf_counter() - last_flush >= flush_s:
                writer.flush()
                last_flush = time.perf_counter()
    if writer is not None:
        histories = writer.histories([0])
        plots.curves(histories[0], writer.stage(0) / "curves.png", ["acc/real", "acc/fake"])
        writer.end([0], "FINISHED", None, histories)
        writer.close()
    return time.perf_counter() - started, points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    study: StudyConfig = load_study(STUDY)
    cfg = apply_overrides(study.trial, {"train.steps": args.steps})
    logged = args.steps // cfg.train.log_every
    default = max(1, math.ceil(logged / study.chart_points))
    modes = {"off": None, "on, every log step to MLflow": 1,
             f"on, chart_points {study.chart_points} (default)": default}
    times: dict[str, list[float]] = {m: [] for m in modes}
    points = 0
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        (Path(tmp) / "bench.yaml").write_text("name: bench\n")
        study_run = start_study_run(uri, "bench", Path(tmp) / "bench.yaml", {}, {})
        run(apply_overrides(cfg, {"train.steps": 100}), None, study.flush_interval_s)  # warm-up
        for i in range(args.repeats):
            order = list(modes) if i % 2 == 0 else list(reversed(modes))
            for mode in order:
                k = modes[mode]
                writer = None
                if k is not None:
                    writer = PackWriter(study_run, f"t{i}{k}")
                    writer.open([RunSpec(f"t{i}{k}", mode, cfg.flat(), {}, {})])
                wall, points = run(cfg, writer, study.flush_interval_s, k or 1)
                times[mode].append(wall)
                print(f"  {mode}: {wall:.2f} s", flush=True)
    off = statistics.median(times["off"])
    print(f"\n{args.steps} iterations, {points} metric points per trial (all in diagnostics.parquet when on), "
          f"{args.threads} thread(s), median of {args.repeats}")
    print(f"{'logging':<34} {'wall s':>8} {'ms/iteration':>13} {'overhead':>9}")
    for mode in modes:
        value = statistics.median(times[mode])
        print(f"{mode:<34} {value:>8.2f} {1000 * value / args.steps:>13.3f} {100 * (value / off - 1):>8.1f}%")
    default = statistics.median(times[list(modes)[-1]]) / off - 1
    print(f"target <= {100 * TARGET:.0f} % at the default: {'met' if default <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
