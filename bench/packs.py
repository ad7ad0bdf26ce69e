"""Trial-steps per second and memory per lane of a pack, from 1 to 1024 lanes of the lr_ratio trial.

    .venv/bin/python bench/packs.py [--lanes 1 8 64 256 1024] [--seconds 5] [--device auto] [--threads 1]
    .venv/bin/python bench/packs.py --estimate studies/stability_map.yaml [--steps 30] [--slots N]

Each pack size runs in its own process (so its peak memory is its own): a ``Trainer`` of L lanes of the
``studies/lr_ratio.yaml`` trial (ring8, MLP 3 x 128, batch 256, Adam, diagnostics logged every 10 steps as in
a study; lanes differ in seed and lr_ratio, as in the study) trains warm-up steps, then timed steps for at
least ``--seconds``. Printed: ms per pack step, trial-steps/s (lanes x steps / s), the speed-up over one
lane, and memory: the process's peak RSS on CPU, CUDA's max allocated on a GPU (what ``pack: auto`` is
sized by), each also per lane above the 1-lane figure. The trainer imports without Ray, MLflow or Optuna,
so this runs on a bare GPU machine with torch, numpy and pydantic. ``--estimate`` times a fraction of a
study's packs instead and extrapolates its training time on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP = 3  # untimed pack steps (allocation, kernel choice)
RATIOS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # the lr_ratio study's grid, cycled over the lanes


def measure(lanes: int, seconds: float, device: str, threads: int) -> dict:
    import torch

    from ganlab.config import load_study
    from ganlab.train.trainer import Trainer

    torch.set_num_threads(threads)
    trial = load_study(REPO / "studies" / "lr_ratio.yaml").trial
    train = trial.train.model_copy(update={"steps": 10**9, "eval_every": 10**9})
    cfgs = [trial.model_copy(update={"seed": i, "train": train,
                                     "optim": trial.optim.model_copy(update={"lr_ratio": RATIOS[i % len(RATIOS)]})})
            for i in range(lanes)]
    trainer = Trainer(cfgs, device)
    dev = trainer.device

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in trainer.run_pack(stop_at=WARMUP):
        pass
    sync()
    steps, started = 0, time.perf_counter()
    while True:
        chunk = 10  # one logged step per chunk, as in a study
        for _ in trainer.run_pack(stop_at=trainer.iteration + chunk):
            pass
        steps += chunk
        sync()
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    out = {"lanes": lanes, "device": str(dev), "ms_per_step": 1000 * elapsed / steps,
           "trial_steps_per_s": lanes * steps / elapsed,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def estimate(study_file: str, steps: int, slots: int | None, threads: int, device: str) -> int:
    """A study's training time on this machine from a measured fraction: each pack shape's largest pack
    trains ``steps`` iterations and one evaluation, timed; every pack's time is extrapolated to its
    ``train.steps`` and evaluations, and the packs are spread over the trial slots (longest first).
    Ray, MLflow and the checkpoints are left out: bench/pack_studies.py measures them on whole studies."""
    import torch

    from ganlab.config import apply_overrides, load_study
    from ganlab.study.packs import plan_packs, trial_slots
    from ganlab.train.lanes import pack_shape
    from ganlab.train.trainer import Trainer

    torch.set_num_threads(threads)
    study = load_study(study_file)
    slots = slots or trial_slots(study, {"CPU": float(os.cpu_count() or 1)})
    packs = plan_packs(study, study.points(), slots)
    cfgs = [[apply_overrides(study.trial, study.resolve(trial.point)) for trial in pack.trials] for pack in packs]
    measured: dict[str, tuple[float, float]] = {}  # shape -> (s per step, s per evaluation) of its largest pack
    booked: tuple[int, float] | None = None  # (lanes, seconds) of the largest pack's whole bookkeeping
    for pack in sorted(cfgs, key=len, reverse=True):
        shape = pack_shape(pack[0])
        if shape in measured:
            continue
        t = pack[0].train
        short = t.model_copy(update={"steps": 10**9, "eval_every": 10**9})
        trainer = Trainer([c.model_copy(update={"train": short}) for c in pack], device)
        for _ in trainer.run_pack(stop_at=WARMUP):
            pass
        started = time.perf_counter()
        for _ in trainer.run_pack(stop_at=WARMUP + steps):
            pass
        per_step = (time.perf_counter() - started) / steps
        started = time.perf_counter()
        trainer.evaluate()
        measured[shape] = (per_step, time.perf_counter() - started)
        if booked is None:
            booked = (len(pack), bookkeeping(study, pack, trainer))
            print(f"  bookkeeping of that pack, whole (runs, points, Parquet, pictures, ends): {booked[1]:.1f} s",
                  file=sys.stderr, flush=True)
        print(f"  {len(pack)} lanes, {', '.join(f'{k}={v}' for k, v in packs[cfgs.index(pack)].trials[0].point.items())}: "
              f"{1000 * per_step:.1f} ms/step, {measured[shape][1]:.2f} s/evaluation", file=sys.stderr, flush=True)
    times = []
    for pack in cfgs:
        per_step, per_eval = measured[pack_shape(pack[0])]
        t = pack[0].train
        times.append(t.steps * per_step * len(pack) / max(len(p) for p in cfgs if pack_shape(p[0]) == pack_shape(pack[0]))
                     + (t.steps // t.eval_every + 1) * per_eval)
    loads = [0.0] * slots
    for seconds in sorted(times, reverse=True):  # longest first onto the least loaded slot
        loads[loads.index(min(loads))] += seconds
    book = sum(booked[1] * len(pack) / booked[0] for pack in cfgs)  # bookkeeping scales with the lanes
    print(f"{study.name}: {study.trial_count()} trials in {len(packs)} packs on {slots} slot(s) of {threads} thread(s), "
          f"measured over {steps} steps of each shape's largest pack: training ~{max(loads) / 60:.0f} min "
          f"(sum over packs {sum(times) / 3600:.1f} CPU-h); bookkeeping ~{book / 60:.1f} min in all "
          f"({1000 * booked[1] / booked[0]:.0f} ms a trial, measured on a {booked[0]}-trial pack against a fresh "
          "SQLite store); Ray start-up and checkpoints not included")
    return 0


def bookkeeping(study, pack, trainer) -> float:
    """Seconds the study's own writer takes to book one pack's whole run, as ``ganlab run`` books it, without
    the training: its runs opened, every logged step recorded (MLflow points as ``ChartPlan`` chooses, all to
    Parquet), a flush per eval step, the sample pictures, and at the end the curves, histories and runs ended.
    The figures are random; their names and count are the trainer's own."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from ganlab.diagnose import plots
    from ganlab.study.artifacts import PackArtifacts
    from ganlab.study.chart import ChartPlan
    from ganlab.track import PackWriter, RunSpec, start_study_run

    names = {}
    for report in trainer.run_pack(stop_at=trainer.iteration + pack[0].train.log_every):
        names[False] = report.names
    names[True] = tuple(trainer.evaluate())
    names[True] = names[False] + tuple(n for n in names[True] if n not in names[False])
    t, lanes = pack[0].train, list(range(len(pack)))
    plan = ChartPlan(t, study.chart_points)
    pictures = PackArtifacts(study.artifacts, t, trainer)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.yaml").write_text("name: bench\n")
        run = start_study_run(f"sqlite:///{tmp}/mlflow.db", "bench", Path(tmp) / "s.yaml", {}, {})
        started = time.perf_counter()
        writer = PackWriter(run, "pack")
        writer.open([RunSpec(f"t{i}", f"t{i}", cfg.flat(), {}, cfg.model_dump(mode="json")) for i, cfg in enumerate(pack)])
        for step in range(t.log_every, t.steps + 1, t.log_every):
            evaluated = step % t.eval_every == 0 or step == t.steps
            columns = names[evaluated]
            writer.record(step, columns, rng.random((len(lanes), len(columns))), lanes,
                          plan.columns(columns, step, evaluated))
            if pictures.plot_due(step) and evaluated:
                samples = torch.randn(len(lanes), t.eval_samples, 2)
                plots.scatters(samples, [writer.stage(i) / "samples" / f"step_{step:06d}.png" for i in lanes],
                               titles=[f"step {step}"] * len(lanes))
            if evaluated:
                writer.flush()
        histories = writer.histories(lanes)
        for i in lanes:
            plots.curves(histories[i], writer.stage(i) / "curves.png", ["acc/real", "acc/fake", "loss/d", "loss/g"])
        writer.end(lanes, "FINISHED", None, histories)
        writer.close()
        return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per pack size (at least 10 steps)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a trial slot's CPU share: 1)")
    ap.add_argument("--estimate", metavar="STUDY", help="instead: estimate this study's training time from a "
                    "measured fraction (--steps of each pack shape)")
    ap.add_argument("--steps", type=int, default=30, help="with --estimate: timed iterations per pack shape")
    ap.add_argument("--slots", type=int, help="with --estimate: trial slots (default: this machine's CPUs)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one pack size, print JSON
    args = ap.parse_args()
    if args.estimate:
        return estimate(args.estimate, args.steps, args.slots, args.threads, args.device)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.seconds, args.device, args.threads)))
        return 0
    rows = []
    for lanes in args.lanes:
        print(f"  {lanes} lane(s) ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--one", str(lanes), "--seconds", str(args.seconds),
                               "--device", args.device, "--threads", str(args.threads)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            print(f"{lanes} lanes failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            break
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not rows:
        return 1
    base = rows[0]
    cuda = "cuda_max_allocated_mb" in base
    mem = "cuda_max_allocated_mb" if cuda else "peak_rss_mb"
    print(f"lr_ratio trial (ring8, MLP 3 x 128, batch 256, Adam, log_every 10) on {base.get('gpu', base['device'])}, "
          f"{args.threads} thread(s); memory: {'CUDA max allocated' if cuda else 'peak RSS of the process'}")
    print(f"{'lanes':>6} {'ms/step':>9} {'trial-steps/s':>14} {'speed-up':>9} {'memory MB':>10} {'MB/lane':>8}")
    for r in rows:
        extra = r["lanes"] - base["lanes"]
        per_lane = (r[mem] - base[mem]) / extra if extra else r[mem]
        print(f"{r['lanes']:>6} {r['ms_per_step']:>9.2f} {r['trial_steps_per_s']:>14.0f} "
              f"{r['trial_steps_per_s'] / base['trial_steps_per_s']:>8.1f}x {r[mem]:>10.0f} {per_lane:>8.2f}")
    print("speed-up: trial-steps/s over the first row; MB/lane: above the first row, per added lane (first row: total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
