"""Parallel efficiency of a study: (sum of the trials' own compute time) / (wall time x cores).

    .venv/bin/python bench/study_efficiency.py [--trials 16] [--cores 2] [--seconds 4 12]

For each trial length, the same 16 trials (ring8 + MLP, one CPU and one torch thread each) run twice,
side by side in one invocation, on a fresh local Ray with ``--cores`` CPUs:

* ``plain Tune``: a function trainable, the textbook way: every trial is a new worker process that
  imports torch, builds its Trainer, trains, ``tune.report``s at eval steps; no MLflow.
* ``ganlab``: ``ganlab.study.tuner.run_study`` as ``ganlab run`` uses it: the class trainable in warm, reused
  workers (``reuse_actors``), a checkpoint at every eval step and every diagnostic sent to MLflow (a
  fresh SQLite store).

A trial's own compute time is measured inside it: building the Trainer plus training and evaluation
(no I/O, no Ray). The overhead per trial is (wall x cores - compute) / trials. The trial length is set
by calibrating iterations per second first, so "12 s" means 12 s of compute per trial on this machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from ganlab.config import StudyConfig, TrialConfig, apply_overrides
from ganlab.train.trainer import Trainer

TARGET = 0.85  # at 12 s trials on 2 cores (issue 5)
TRIAL = {
    "data": {"name": "ring8", "batch_size": 128},
    "model": {"name": "mlp", "width": 64, "depth": 2, "latent_dim": 2},
    "train": {"steps": 1000, "log_every": 10, "eval_every": 250, "eval_samples": 1000},
}


def calibrate(seconds: float) -> int:
    """Iterations for ``seconds`` of compute with one thread (eval cost included)."""
    import torch

    torch.set_num_threads(1)
    cfg = apply_overrides(TRIAL, {"train.steps": 500, "train.eval_every": 250})
    started = time.perf_counter()
    for _ in Trainer(cfg, "cpu").run():
        pass
    per_step = (time.perf_counter() - started) / 500
    return max(250, int(round(seconds / per_step / 250)) * 250)


def plain_trainable(config: dict) -> None:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    trainer = Trainer(TrialConfig.model_validate(config["trial"]), "cpu")
    for report in trainer.run():
        if report.evaluated:
            tune.report({"step": report.step, "compute_s": time.perf_counter() - started, **report.metrics})


def run_plain(trials: int, steps: int, cores: int, storage: str) -> tuple[float, float]:
    trial = apply_overrides(TRIAL, {"train.steps": steps}).model_dump(mode="json")
    started = time.perf_counter()  # like ganlab's, the study's wall time includes starting Ray
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(plain_trainable, {"cpu": 1}),
            param_space={"trial": {**trial, "seed": tune.grid_search(list(range(trials)))}},
            run_config=tune.RunConfig(name="plain", storage_path=storage, verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    wall = time.perf_counter() - started
    return wall, sum(r.metrics["compute_s"] for r in results)


def run_ganlab(trials: int, steps: int, cores: int, storage: str) -> tuple[float, float]:
    from ganlab.track import start_study_run
    from ganlab.study.tuner import run_study

    study = StudyConfig.model_validate({
        "name": "efficiency", "trial": apply_overrides(TRIAL, {"train.steps": steps}).model_dump(mode="json"),
        "seeds": list(range(trials)), "resources": {"cpu": 1},
    })
    uri = f"sqlite:///{Path(storage) / 'mlflow.db'}"
    study_file = Path(storage) / "efficiency.yaml"
    study_file.write_text("name: efficiency\n")
    study_run = start_study_run(uri, study.name, study_file, study.search_space(), {})
    started = time.perf_counter()
    outcome = run_study(study, study_run, Path(storage) / "ganlab", num_cpus=cores)
    wall = time.perf_counter() - started
    assert outcome.n_errors == 0 and outcome.n_unfinished == 0
    from ganlab.analysis import load_study

    df = load_study("efficiency", uri)
    print(f"  ganlab: trial-side I/O (MLflow + checkpoints) {df['cost/io_s'].mean():.2f} s per trial", flush=True)
    return wall, float(df["cost/compute_s"].sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seconds", type=float, nargs="+", default=[4.0, 12.0])
    args = p.parse_args()
    os.environ.setdefault("GANLAB_PROGRESS_EVERY", "3600")
    rows = []
    for seconds in args.seconds:
        steps = calibrate(seconds)
        for name, fn in (("plain Tune", run_plain), ("ganlab", run_ganlab)):
            with tempfile.TemporaryDirectory() as storage:
                wall, compute = fn(args.trials, steps, args.cores, storage)
            eff = compute / (wall * args.cores)
            overhead = (wall * args.cores - compute) / args.trials
            rows.append((seconds, steps, name, wall, compute / args.trials, eff, overhead))
            print(f"  {name:<11} {seconds:>4.0f} s trials: wall {wall:.1f} s, efficiency {eff:.2f}", flush=True)
    print(f"\n{args.trials} trials per row, {args.cores} cores, one CPU per trial; efficiency = sum(compute) / "
          f"(wall x cores); target >= {TARGET} at 12 s trials")
    print(f"{'trial':>7} {'iters':>6}  {'runner':<11} {'wall s':>7} {'compute/trial s':>15} {'efficiency':>10} "
          f"{'overhead/trial s':>16}")
    for seconds, steps, name, wall, per_trial, eff, overhead in rows:
        print(f"{seconds:>6.0f}s {steps:>6}  {name:<11} {wall:>7.1f} {per_trial:>15.2f} {eff:>10.2f} {overhead:>16.2f}")
    for seconds in args.seconds:
        plain = next(r for r in rows if r[0] == seconds and r[2] == "plain Tune")
        ours = next(r for r in rows if r[0] == seconds and r[2] == "ganlab")
        print(f"{seconds:.0f} s trials: ganlab / plain efficiency = {ours[5] / plain[5]:.2f}")


if __name__ == "__main__":
    main()
