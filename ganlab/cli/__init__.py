"""``ganlab`` command line: run, confirm, validate, train, sync, ui, analyze, report, sample.

One module per command group (``study``: validate/run/confirm, ``train``, ``results``: analyze/report/sample,
``serve``: ui/sync), on top of every other layer. Input errors exit with code 2 and one paragraph naming the
file and key, before Ray starts and before anything is written to MLflow. Public: ``main``.
"""

from __future__ import annotations

import argparse
import sys

from ganlab import __version__
from ganlab.cli.results import DEFAULT_BEST, cmd_analyze, cmd_report, cmd_sample
from ganlab.cli.serve import cmd_sync, cmd_ui
from ganlab.cli.study import cmd_confirm, cmd_run, cmd_validate
from ganlab.cli.train import cmd_train

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganlab", description="GAN training-stability studies on Ray Tune and MLflow.")
    p.add_argument("--version", action="version", version=f"ganlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every trial of a study")
    run.add_argument("study", help="study YAML file, e.g. studies/lr_ratio.yaml")
    run.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)")
    run.add_argument("--storage", default="ganlab_studies", help="folder for Ray Tune's results (default: ./ganlab_studies)")
    run.add_argument("--num-cpus", type=int, help="CPUs for the embedded local Ray (default: all)")
    run.add_argument("--address", help="join an existing Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run of this study (the default "
                     "when one exists); an error if there is none")
    run.add_argument("--fresh", action="store_true", help="start a new run even if an interrupted one exists")
    run.set_defaults(func=cmd_run)

    conf = sub.add_parser("confirm", help="re-run a finished search's top configurations with new seeds")
    conf.add_argument("study", help="the study YAML file whose latest finished search is confirmed")
    conf.add_argument("--top", type=int, help="configurations to confirm (default: the study's confirm.top, else 5)")
    conf.add_argument("--seeds", type=int, help="new seeds per configuration (default: confirm.seeds, else 10)")
    conf.add_argument("--metric", help="rank by this diagnostic (default: confirm.metric, else search.metric)")
    conf.add_argument("--mode", choices=["min", "max"])
    conf.add_argument("--tracking-uri")
    conf.add_argument("--storage", default="ganlab_studies")
    conf.add_argument("--num-cpus", type=int)
    conf.add_argument("--address")
    conf.add_argument("--resume", action="store_true")
    conf.add_argument("--fresh", action="store_true")
    conf.set_defaults(func=cmd_confirm)

    val = sub.add_parser("validate", help="check a study file and print its trial count, search space and trials")
    val.add_argument("study")
    val.add_argument("--list", action="store_true", help="print every trial, not only the first ten")
    val.set_defaults(func=cmd_validate)

    train = sub.add_parser("train", help="train one GAN without Ray: metrics, sample plots and a checkpoint to a folder")
    train.add_argument("config", help="a trial config YAML (a study file's trial: block also works)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a dotted trial key, e.g. --set optim.lr_ratio=4 (repeatable)")
    train.add_argument("--out", help="output folder (default: runs/<config name>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.set_defaults(func=cmd_train)

    sync = sub.add_parser("sync", help="send logging kept on disk while the tracking server was unreachable")
    sync.add_argument("--storage", default="ganlab_studies", help="the --storage of `ganlab run` (default: ./ganlab_studies)")
    sync.set_defaults(func=cmd_sync)

    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument("study", help="a study name (its MLflow experiment) or its YAML file")
    reading.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)")
    reading.add_argument("--run", default="latest", help="which `ganlab run` of the study: latest (default), all, or a "
                         "parent run id")
    reading.add_argument("--phase", choices=["search", "confirm"], help="the search or its confirmation (default: "
                         "the latest of either)")

    analyze = sub.add_parser("analyze", parents=[reading], help="print a study's stability table across seeds")
    analyze.add_argument("--by", help="comma-separated columns to group by (default: the swept keys)")
    analyze.add_argument("--metrics", help="comma-separated diagnostics to summarise (default: D accuracy, "
                         "equilibrium gap, oscillation, modes/FD)")
    analyze.add_argument("--out", help="also write the whole table to FILE.csv or FILE.parquet")
    analyze.add_argument("--wide", action="store_true", help="print every column (mean and ci apart, Wilson bounds, "
                         "every metric) instead of the few that fit the terminal")
    analyze.set_defaults(func=cmd_analyze)

    report = sub.add_parser("report", parents=[reading], help="write a self-contained HTML report of a study")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file (default: report.html); "
                        "figures go to <name>_figures/ next to it")
    report.add_argument("--axes", help="x,y swept keys of the stability map (default: the first two that vary)")
    report.add_argument("--attach", action="store_true", help="also store the report on the study's parent run in "
                        "MLflow (artifact report/<name>.html; the MLflow UI displays it)")
    report.set_defaults(func=cmd_report)

    sample = sub.add_parser("sample", help="draw samples from a trial's trained generator (.npz or .png)")
    sample.add_argument("target", help="a study (name or file), a trial's run id, STUDY/TRIAL, or a `ganlab train` "
                        "output folder")
    pick = sample.add_mutually_exclusive_group()
    pick.add_argument("--best", metavar="METRIC", help=f"a study's best finished trial by this diagnostic (default "
                      f"{DEFAULT_BEST}: the mean equilibrium gap over the last 20%% of training)")
    pick.add_argument("--trial", help="a study's trial: its run name, leading number (00003) or Ray trial id")
    sample.add_argument("--mode", choices=["min", "max"], help="for --best (default: max for modes, HQ fraction, "
                        "classifier and probe accuracy; min otherwise)")
    sample.add_argument("-n", type=int, default=1000, help="samples to draw (default 1000)")
    sample.add_argument("-o", "--output", default="samples.npz", help="out.npz (arrays) or out.png (scatter with the "
                        "mode centres, or an image grid); default samples.npz")
    sample.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0): same seed, same samples")
    sample.add_argument("--weights", choices=["final", "best"], default="final",
                        help="the final weights, or those of artifacts.save_best")
    sample.add_argument("--no-ema", action="store_true", help="the raw generator even when the trial kept an EMA one")
    sample.add_argument("--device", default="cpu", help="torch device to sample on (default cpu)")
    sample.add_argument("--tracking-uri")
    sample.set_defaults(func=cmd_sample)

    ui = sub.add_parser("ui", help="serve the MLflow UI for the study store")
    ui.add_argument("--tracking-uri")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C outside a study's trials (starting up, between phases): no traceback
        command = {"cmd_run": "run", "cmd_confirm": "confirm"}.get(args.func.__name__)
        hint = f" Continue with: ganlab {command} {args.study}" if command else ""
        print(f"\nganlab: interrupted.{hint}", file=sys.stderr, flush=True)
        return 130
