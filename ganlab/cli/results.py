"""``ganlab analyze``, ``ganlab report`` and ``ganlab sample``: reading what a study stored. Reading never
creates or changes a store."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ganlab.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_TRIALS_FAILED,
    _fail,
    _keys,
    _print_table,
    _read_store,
    _study_name,
    _tracking,
    _unreadable_store,
    terminal_width,
)

def _load_for_reading(args: argparse.Namespace, name: str, uri: str):
    from ganlab.analysis import load_study as load_frame

    try:
        return load_frame(name, uri, run=args.run, phase=args.phase)
    except LookupError as e:
        return _fail(f"{e}. `ganlab run STUDY.yaml` creates a study; pass --tracking-uri for "
                     "another store.")


VERDICT_SHORT = {"oscillating": "osc", "drifting": "drift", "unbalanced": "unbal", "mode_collapse": "collapse",
                 "d_dominates": "D wins", "g_dominates": "G wins",
                 "diverged": "diverged", "failed": "failed", "none": "no eval"}


def compact_table(table, keys: list[str]):
    """The stability table in few, short columns: the configuration, seeds, the converged rate with its
    Wilson interval, the other verdicts' rates, then each metric as mean ± ci."""
    import pandas as pd

    from ganlab.config.study import short_names

    out = table[keys].rename(columns=short_names(keys))
    out["seeds"] = table["seeds"]
    out["converged [95% CI]"] = [f"{r:.2f} [{lo:.2f}, {hi:.2f}]" for r, lo, hi in
                                 zip(table["rate converged"], table["converged lo"], table["converged hi"])]
    for verdict, short in VERDICT_SHORT.items():
        if f"rate {verdict}" in table.columns:
            out[short] = table[f"rate {verdict}"].map("{:.2f}".format)
    for column in [c for c in table.columns if c.endswith(" mean")]:
        metric = column[: -len(" mean")]
        ci = table[f"{metric} ci"]
        out[metric] = [("" if pd.isna(m) else f"{m:.3g}" + ("" if pd.isna(c) else f"±{c:.2g}"))
                       for m, c in zip(table[column], ci)]
    return out


def cmd_analyze(args: argparse.Namespace) -> int:
    """The stability table of a study: per configuration across seeds."""
    from ganlab.analysis import stability_table

    found = _read_store(args)
    if isinstance(found, int):
        return found
    name, uri = found
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".csv", ".parquet"):
        return _fail(f"--out {out}: the table is written as .csv or .parquet; pick one of those suffixes.")
    df = _load_for_reading(args, name, uri)
    if isinstance(df, int):
        return df
    by = _keys(args.by)
    try:
        table = stability_table(df, by, _keys(args.metrics))
    except KeyError as e:
        return _fail(f"Cannot group study '{name}': {e.args[0]} (key --by/--metrics).")
    keys = by or [k for k in df.attrs.get("swept", []) if k in table.columns]
    print(f"Study '{name}': {len(df)} trials in run {df['parent_run_id'].iloc[0] if len(df) else '-'}, by "
          f"{', '.join(keys)}.\nRates are fractions of seeds; " + ("`ci` is the half-width of a 95% Student-t "
          "interval over seeds." if args.wide else "metrics: mean ± half-width of a 95% t-interval over seeds."))
    if args.wide:
        _print_table(table)
    else:
        _print_table(compact_table(table, keys), terminal_width(), keep=len(keys) + 2,
                     rest="--wide shows every column, --out FILE.csv writes them")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False) if out.suffix == ".csv" else table.to_parquet(out, index=False)
        print(f"\nWrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML report of a study, with its figures as PNG next to it."""
    from ganlab.analysis.report import write_report

    found = _read_store(args)
    if isinstance(found, int):
        return found
    name, uri = found
    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm"):
        return _fail(f"-o {out}: the report is an HTML file; name it with .html.")
    df = _load_for_reading(args, name, uri)  # the study's errors as one paragraph before drawing anything
    if isinstance(df, int):
        return df
    try:
        report = write_report(name, out, uri, axes=_keys(args.axes), trials=df)
    except (KeyError, LookupError) as e:
        return _fail(f"Cannot report study '{name}': {e.args[0]} (key --axes/--run).")
    if args.attach:
        from ganlab.track.store import log_artifact

        parent = df["parent_run_id"].iloc[0]
        log_artifact(uri, parent, report.html, "report")
        print(f"Stored as artifact report/{report.html.name} of parent run {parent} (the MLflow UI shows it).")
    print(f"Open it in a browser: file://{report.html.resolve()}")
    return 0


DEFAULT_BEST = "window/eq/acc_gap"  # `ganlab sample STUDY`: the trial closest to the equilibrium late in training
MAX_GRID_IMAGES = 256  # a PNG of image samples shows at most this many


def cmd_sample(args: argparse.Namespace) -> int:
    """Samples from a trial's trained generator, as arrays (.npz) or a picture (.png)."""
    import numpy as np

    from ganlab.analysis.trials import RUN_ID, TrialNotFound, best_trial, load_trial

    out = Path(args.output)
    if out.suffix not in (".npz", ".png"):
        return _fail(f"-o {out}: samples are written as .npz (arrays) or .png (a picture); pick one of those suffixes.")
    if args.n < 1:
        return _fail(f"-n {args.n}: ask for at least one sample.")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return _fail(f"--device {args.device}: no CUDA device is visible here; sample on --device cpu.")
    target = _study_name(args.target)
    if isinstance(target, int):
        return target
    local = Path(target).is_dir()  # a `ganlab train` folder: no store involved
    uri = _tracking(args)
    if uri is None:
        return EXIT_BAD_INPUT
    problem = None if local else _unreadable_store(uri)
    if problem:
        return _fail(problem)
    chosen = ""
    try:
        if local or RUN_ID.match(target) or "/" in target:
            if args.trial or args.best:
                return _fail(f"{target} names one trial already; --trial and --best pick a trial of a study name.")
            spec = target
        elif args.trial:
            spec = f"{target}/{args.trial}"
        else:
            metric = args.best or DEFAULT_BEST
            run_id, value, mode = best_trial(target, metric, args.mode, uri)
            spec, chosen = run_id, f"best by {mode} {metric} = {value:.4g}"
        trial = load_trial(spec, uri, device=args.device, weights=args.weights)
    except (TrialNotFound, LookupError, KeyError) as e:
        return _fail(f"{e.args[0]}. (key TARGET/--trial/--best/--weights)")
    except RuntimeError as e:  # the weights do not reproduce their recorded outputs
        print(f"ganlab: {e}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    ema = trial.G_ema is not None and not args.no_ema
    samples = trial.sample(args.n, seed=args.seed, ema=ema)
    print(f"Trial '{trial.trial}' (run {trial.run_id}){': ' + chosen if chosen else ''}; {args.weights} weights at "
          f"iteration {trial.iteration}" + (f" (best {trial.best['metric']} {trial.best['value']:.4g})" if trial.best else "")
          + f"; {'EMA ' if ema else ''}generator, seed {args.seed}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    if out.suffix == ".npz":
        np.savez(tmp, samples=samples.numpy(), run_id=np.str_(trial.run_id), trial=np.str_(trial.trial),
                 seed=np.int64(args.seed), iteration=np.int64(trial.iteration), weights=np.str_(args.weights),
                 generator=np.str_("G_ema" if ema else "G"))
    else:
        from ganlab.diagnose import plots

        title = f"{trial.trial}, iteration {trial.iteration}"
        if samples.dim() == 4:
            shown = samples[:MAX_GRID_IMAGES]
            plots.image_grid(shown, tmp, nrow=math.ceil(len(shown) ** 0.5), title=title)
        else:
            means = None
            if trial.config.data.name in ("ring8", "grid25"):
                from ganlab.data import make_dataset

                means = make_dataset(trial.config.data).means
            plots.scatter(samples, tmp, means, title=title)
    os.replace(tmp, out)
    print(f"Wrote {len(samples)} samples of shape {tuple(samples.shape[1:])} to {out}")
    return 0
