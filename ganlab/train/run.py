"""``ganlab train``'s driver: one trial without Ray, into a folder, with a progress bar, checkpoints and an
exact resume. The folder: ``config.yaml``, ``metrics.csv`` (every logged step), ``samples/step_NNNNNN.png``
at each eval step, ``curves.png``, ``checkpoint.pt`` and, when the run completes, ``model/final.pt``."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from tqdm import tqdm

from ganlab.config import TrialConfig
from ganlab.diagnose import metrics as M
from ganlab.diagnose import plots
from ganlab.train.checkpoint import CheckpointMismatch
from ganlab.train.trainer import Trainer

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHECKPOINT_FILE = "checkpoint.pt"


class RunRefused(Exception):
    """The folder or its checkpoint cannot be used as asked; the message says what to do instead."""


def check_folder(out: Path, resume: bool) -> None:
    """A new run needs an empty (or absent) folder; a resumed one needs a checkpoint in it."""
    checkpoint = out / CHECKPOINT_FILE
    if resume and not checkpoint.is_file():
        raise RunRefused(f"--resume: there is no checkpoint at {checkpoint}; run without --resume to start a run there.")
    if not resume and out.exists() and (not out.is_dir() or any(out.iterdir())):
        if checkpoint.is_file():
            raise RunRefused(f"{out} already holds a run. Pass --resume to continue it, or --out DIR to start a new "
                             "run in another folder.")
        raise RunRefused(f"{out} is not empty but holds no checkpoint to resume from (a run that stopped before its "
                         "first checkpoint?). Delete it, or pass --out DIR to start the run in another folder.")


def _use_all_cpus() -> None:
    """This run is the machine's only job: one torch thread per CPU we may use, unless the user limited
    threads through the environment (then torch's default, which honours it, stays)."""
    if any(os.environ.get(v) for v in THREAD_ENV):
        return
    import torch

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, n))


def _checkpoint_stops(start: int, steps: int, every: int) -> list[int]:
    """Iterations at which to pause and checkpoint (every ``every``), ending with ``steps``."""
    if not every:
        return [steps]
    return [*range((start // every + 1) * every, steps, every), steps]


def _latest(rows: list[dict]) -> dict:
    """Each metric's latest value (eval/* metrics are only in the rows of eval steps; NaN marks a gap)."""
    out: dict = {}
    for row in rows:
        out.update({k: v for k, v in row.items() if k != "step" and v == v})
    return out


def train_in_folder(cfg: TrialConfig, out: Path, resume: bool, source: str | Path, again: str) -> int:
    """Train ``cfg`` into ``out`` (continuing its checkpoint with ``resume``); the exit code: 0 done, 130
    interrupted. ``source`` names the config in errors; ``again`` is the command that continues the run."""
    check_folder(out, resume)
    checkpoint = out / CHECKPOINT_FILE
    _use_all_cpus()
    try:
        trainer = Trainer(cfg)
    except (ValueError, RuntimeError) as e:  # e.g. images a DCGAN cannot take, CUDA asked for but absent
        raise RunRefused(f"Cannot train the config in '{source}': {e}.") from None
    rows: list[dict] = []
    if resume:
        try:
            trainer.load(checkpoint)
        except CheckpointMismatch as e:
            raise RunRefused(f"Cannot resume {out}: {e}.") from None
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: the user's to replace
            raise RunRefused(f"Cannot read the checkpoint {checkpoint}: {type(e).__name__}: {e}.") from None
        try:  # rows after the checkpoint (an interrupted run) are redone
            old = pd.read_csv(out / "metrics.csv")
            rows = old[old["step"] <= trainer.iteration].to_dict("records")
        except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
            pass  # the run was stopped before its first logged step
        if trainer.iteration >= cfg.train.steps:
            print(f"{out} is already at iteration {trainer.iteration} (train.steps = {cfg.train.steps}): nothing to "
                  f"train. Raise it to continue, e.g. --set train.steps={2 * trainer.iteration} --resume.")
            return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    t, acc = cfg.train, trainer.acc  # critics log sign accuracies as acc_sign/*

    def save_samples(step: int) -> None:
        plots.samples(trainer, out / "samples" / f"step_{step:06d}.png", step)

    def save_metrics() -> None:
        if rows:  # a checkpoint may come before the first logged step
            pd.DataFrame(rows).to_csv(out / "metrics.csv", index=False)

    # Ctrl-C: finish the iteration, checkpoint at the next logged step (a state mid-iteration would not
    # resume exactly); a second Ctrl-C aborts at once and keeps the last checkpoint.
    stop_requested: list[bool] = []

    def on_sigint(*_: object) -> None:
        stop_requested.append(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nganlab: stopping at the next logged step to save a checkpoint (Ctrl-C again: stop now, "
              "keep the last checkpoint).", file=sys.stderr)

    handle_sigint = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, on_sigint) if handle_sigint else None
    start, t0, last = trainer.iteration, time.perf_counter(), None
    bar = tqdm(total=t.steps, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)
    try:
        for stop in _checkpoint_stops(start, t.steps, t.checkpoint_every):
            for report in trainer.run(stop_at=stop):
                last = report
                bar.update(report.step - bar.n)
                rows.append({"step": report.step, **report.metrics})
                m = report.metrics
                if f"{acc}/real" in m:
                    bar.set_postfix_str(f"D acc real {m[f'{acc}/real']:.2f} fake {m[f'{acc}/fake']:.2f} "
                                        f"loss D {m['loss/d']:.3f} G {m['loss/g']:.3f}")
                if report.evaluated:
                    save_samples(report.step)
                    save_metrics()
                if stop_requested:
                    break
            bar.update(trainer.iteration - bar.n)
            if stop_requested or (last is not None and last.stopped):
                break
            if stop < t.steps:
                save_metrics()
                trainer.save(checkpoint)
    except KeyboardInterrupt:
        bar.close()
        save_metrics()
        print(f"ganlab: aborted at iteration {trainer.iteration}; {checkpoint} "
              f"{'holds the last checkpoint' if checkpoint.is_file() else 'was never written'}.", file=sys.stderr)
        return 130
    finally:
        if handle_sigint:
            signal.signal(signal.SIGINT, previous_handler)
    bar.close()
    save_metrics()
    trainer.save(checkpoint)
    (out / "model").mkdir(exist_ok=True)
    torch.save(trainer.export_models(), out / "model" / "final.pt")  # what load_trial and `ganlab sample` read
    plots.curves(rows, out / "curves.png", [c.format(acc=acc) for c in plots.CURVES])
    elapsed = time.perf_counter() - t0
    if stop_requested:
        print(f"ganlab: interrupted at iteration {trainer.iteration}; continue with: {again} --resume",
              file=sys.stderr)
        return 130

    done = trainer.iteration - start
    print(f"Trained {done} iterations ({start} -> {trainer.iteration}) on {trainer.device} in {elapsed:.1f} s wall "
          f"time: {elapsed / max(done, 1):.4f} s/iteration.")
    if last is not None and last.stopped:
        print(f"Stopped early at iteration {last.step}: {last.verdict} ({last.reason}).")
    latest = _latest(rows)
    headline = [M.acc_name(acc, "real"), M.acc_name(acc, "fake"), M.LOSS_D, M.LOSS_G, M.EQ_ACC_GAP, M.OSC_LOSS_D_STD,
                *sorted(k for k in latest if k.startswith("eval/"))]
    print(f"Final metrics (iteration {trainer.iteration}):")
    for k in headline:
        if k in latest:
            print(f"  {k:<22} {latest[k]:.4g}")
    if last is not None:
        print(f"Verdict: {last.verdict}" + (f" ({last.reason})" if last.reason else ""))
    print(f"Output: {out}  (config.yaml, metrics.csv with all {len(latest)} metrics, samples/, curves.png, "
          f"checkpoint.pt, model/final.pt: `ganlab sample {out}`)")
    return 0
