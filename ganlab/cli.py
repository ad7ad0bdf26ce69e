"""``ganlab`` command line: run, confirm, validate, train, sync, ui, analyze, report, sample.

Input errors exit with code 2 and one paragraph naming the file and key, before Ray starts and before
anything is written to MLflow.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ganlab.config import ConfigError, StudyConfig, load_study

EXIT_BAD_INPUT = 2
EXIT_TRIALS_FAILED = 1
STORE_PROBE_TIMEOUT_S = 10  # seconds to wait for a tracking server's /health before giving up

SUMMARY_METRICS = {
    "acc/real": "D acc real",
    "acc/fake": "D acc fake",
    "acc_sign/real": "D sign-acc real",
    "acc_sign/fake": "D sign-acc fake",
    "osc/loss_d_std": "D loss std",
    "osc/loss_d_ptp": "D loss p2p",
    "eval/modes": "modes",
    "eval/hq_fraction": "HQ",
    "eval/reverse_kl": "rev KL",
    "eval/dirac_distance": "|(theta, psi)|",
}


def _fail(message: str) -> int:
    print(f"ganlab: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _plan(study: StudyConfig) -> str:
    axes = ", ".join(f"{k} ({a.kind}{', conditional' if a.when else ''})" for k, a in study.sweep.items())
    seeds = len(study.seeds) if study.seeds else 1
    conc = f"at most {study.max_concurrent} at a time" if study.max_concurrent else "as many at a time as resources allow"
    search = study.search
    objective = ", ".join(f"{mo} {m}" for m, mo in zip(search.metrics, search.modes))
    sched = study.scheduler.name + (f" on {' '.join(study.scheduler_objective() or ())}" if study.scheduler_objective() else "")
    lines = [
        f"study '{study.name}': {study.trial_count()} trials, {study.trial.train.steps} iterations each",
        f"  search: {search.algorithm}" + (f" ({objective})" if objective else "") + f"; scheduler: {sched}",
        f"  axes: {axes or 'none'}" + (f"; derived: {', '.join(study.derived)}" if study.derived else "")
        + f"; {seeds} seed(s)" + (f"; num_samples {study.num_samples}" if study.num_samples > 1 else ""),
        f"  resources: {study.resources.cpu:g} CPU / {study.resources.gpu:g} GPU per trial, {conc}; "
        f"up to {study.max_failures} restarts of a failed trial",
    ]
    if study.confirm is not None:
        m = study.confirm_objective()
        lines.append(f"  confirm: top {study.confirm.top} by {m[1]} {m[0]}, {study.confirm.seeds} new seeds each")  # type: ignore[index]
    return "\n".join(lines)


def _study_error(e: ConfigError) -> int:
    return _fail(f"{e} `ganlab validate FILE` checks a study without starting anything.")


def _load_checked(path: str) -> StudyConfig:
    from ganlab.runner import check_objectives

    study = load_study(path)
    check_objectives(study, path)
    return study


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        study = _load_checked(args.study)
    except ConfigError as e:
        return _study_error(e)
    print(_plan(study))
    print(json.dumps(study.search_space(), indent=2))
    if study.search.algorithm != "optuna":
        points = study.points()
        shown = points if args.list else points[:10]
        print(f"trials ({len(points)}):")
        for i, p in enumerate(shown):
            print(f"  {i:>5}  " + " ".join(f"{k}={v}" for k, v in p.items()))
        if len(shown) < len(points):
            print(f"  ... {len(points) - len(shown)} more (--list shows all)")
    return 0


def summary_table(df):
    """The end-of-run table: one row per trial, swept values, seed and the headline diagnostics."""
    from ganlab.analysis import ID_COLUMNS
    from ganlab.tuning import short_names

    swept = [c for c in df.columns if c not in ID_COLUMNS and c != "seed" and "/" not in c]
    table = df[["trial", *swept, "seed", "trial_status", "verdict"] + [m for m in SUMMARY_METRICS if m in df.columns]]
    return table.rename(columns={**short_names(swept), **SUMMARY_METRICS, "trial_status": "status"})


def _print_table(table) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.width", 200, "display.float_format", "{:.3f}".format):
        if "trial" in table.columns:
            width = int(table["trial"].astype(str).str.len().max())
            print("\n" + table.to_string(index=False, formatters={"trial": lambda t: str(t).ljust(width)}))
        else:
            print("\n" + table.to_string(index=False))


def _report_phase(study: StudyConfig, uri: str, result, tracking_flag: str | None) -> int:
    """Summary table, summary.csv on the parent run, and a check that every Tune trial reached MLflow."""
    from ganlab.analysis import load_study as load_frame

    df = load_frame(study.name, uri, run=result.parent_run_id)
    _print_table(summary_table(df))
    stopped = df[df["trial_status"] == "stopped"]
    for _, row in stopped.iterrows():
        print(f"  {row['trial']}: {row['stop_reason']}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.csv"
        df.to_csv(path, index=False)
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).log_artifact(result.parent_run_id, str(path))
    print(
        f"\n{len(df)} trial run(s) in MLflow experiment '{study.name}' (parent run {result.parent_run_id}); "
        f"Ray results in {result.ray_path}.\nBrowse: ganlab ui{_uri_flag(tracking_flag)}   "
        f"Analyse: python -c \"from ganlab.analysis import load_study; print(load_study('{study.name}'))\""
    )
    if len(df) != result.n_trials:
        print(f"ganlab: WARNING: Ray ran {result.n_trials} trials but MLflow holds {len(df)} trial runs.", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    failed = int((df["trial_status"] == "failed").sum()) or (result.exit_code == EXIT_TRIALS_FAILED)
    if failed:
        print(f"ganlab: {int(failed)} trial(s) failed; their logs are under {result.ray_path}.", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return result.exit_code


def _tracking(args: argparse.Namespace) -> str | None:
    from ganlab.tracking import resolve_tracking_uri

    try:
        return resolve_tracking_uri(args.tracking_uri)
    except ValueError as e:
        _fail(f"Invalid --tracking-uri: {e}.")
        return None


def _check_store(uri: str) -> str | None:
    """Reach the store before anything starts: an unreachable server is the user's to fix, exit 2."""
    if uri.startswith(("http://", "https://")):
        # MLflow's client retries an unreachable server for minutes; a health probe answers in seconds.
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=STORE_PROBE_TIMEOUT_S) as r:
                r.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            return (f"Cannot reach the MLflow tracking server {uri}: {reason}. Start it (e.g. `mlflow server "
                    "--host 127.0.0.1 --port 5000`) or fix --tracking-uri / MLFLOW_TRACKING_URI; nothing was run.")
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001
        return (f"Cannot open the MLflow store {uri}: {type(e).__name__}: {str(e).splitlines()[0][:300]}. Check "
                "--tracking-uri / MLFLOW_TRACKING_URI (a server must be running; a sqlite path's folder must be "
                "writable).")
    return None


def _prepare(args: argparse.Namespace) -> tuple[StudyConfig, str] | int:
    """The checked study and a reachable store, or the exit code of the one-paragraph error."""
    try:
        study = _load_checked(args.study)
    except ConfigError as e:
        return _study_error(e)
    if args.resume and args.fresh:
        return _fail("--resume and --fresh contradict each other; pass one.")
    uri = _tracking(args)
    if uri is None:
        return EXIT_BAD_INPUT
    problem = _check_store(uri)
    return _fail(problem) if problem else (study, uri)


def cmd_run(args: argparse.Namespace) -> int:
    prepared = _prepare(args)
    if isinstance(prepared, int):
        return prepared
    study, uri = prepared
    print(_plan(study), flush=True)
    print(f"MLflow store: {uri}", flush=True)
    from ganlab.runner import PhaseState, ResumeRefused, phase_folder, run_phase

    search_state = PhaseState.read(phase_folder(args.storage, study, "search"))
    confirm_state = PhaseState.read(phase_folder(args.storage, study, "confirm"))
    if (study.confirm is not None and not args.fresh and search_state is not None and search_state.finished
            and confirm_state is not None and not confirm_state.finished):
        print(f"The search finished (parent run {search_state.parent_run_id}); its confirmation phase was "
              "interrupted: continuing it.", flush=True)
        metric, mode = study.confirm_objective()  # type: ignore[misc]
        return _confirm(study, Path(args.study), uri, args, search_state.parent_run_id, study.confirm.top,
                        study.confirm.seeds, metric, mode)
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    try:
        result = run_phase(study, Path(args.study), uri, args.storage,
                           resume=True if args.resume else (False if args.fresh else None),
                           num_cpus=args.num_cpus, address=address)
    except ResumeRefused as e:
        return _fail(str(e))
    if result.exit_code == 130:
        return result.exit_code
    try:
        code = _report_phase(study, uri, result, args.tracking_uri)
    except Exception as e:  # noqa: BLE001
        from ganlab.tracking import _unreachable

        if not _unreachable(e):
            raise
        print(f"ganlab: the study ran, but the tracking server {uri} is unreachable, so there is no summary; "
              f"its logging waits on disk: run `ganlab sync --storage {args.storage}` once the server is back.",
              file=sys.stderr)
        return result.exit_code
    if study.confirm is not None and code == 0:
        c = study.confirm
        metric, mode = study.confirm_objective()  # type: ignore[misc]
        return _confirm(study, Path(args.study), uri, args, result.parent_run_id, c.top, c.seeds, metric, mode)
    return code


def _confirm(study, study_file: Path, uri: str, args, search_run: str, top: int, seeds: int, metric: str, mode: str) -> int:
    from ganlab.analysis import load_study as load_frame
    from ganlab.analysis import stability_table
    from ganlab.runner import CONFIRMS_TAG, PhaseState, ResumeRefused, confirmation_points, phase_folder, run_phase

    state = PhaseState.read(phase_folder(args.storage, study, "confirm"))
    if state is not None and not state.finished and not args.fresh:
        points, search_run = state.points, state.confirms or search_run  # continue the interrupted confirmation
    else:
        frame = load_frame(study.name, uri, run=search_run)
        try:
            points, ranking = confirmation_points(study, frame, top, seeds, metric, mode)
        except ConfigError as e:
            return _fail(f"Cannot confirm study '{study.name}': {e.message} (key {e.key}).")
        print(f"\nConfirmation phase: the top {len(ranking)} configuration(s) of search run {search_run} by {mode} "
              f"{metric}, each with {seeds} new seeds ({len(points)} trials):")
        _print_table(ranking)
    try:
        result = run_phase(study, study_file, uri, args.storage, phase="confirm", points=points,
                           resume=True if args.resume else (False if args.fresh else None),
                           num_cpus=args.num_cpus, address=args.address or os.environ.get("RAY_ADDRESS") or None,
                           parent_tags={CONFIRMS_TAG: search_run})
    except ResumeRefused as e:
        return _fail(str(e))
    if result.exit_code == 130:
        return result.exit_code
    code = _report_phase(study, uri, result, args.tracking_uri)
    df = load_frame(study.name, uri, run=result.parent_run_id)
    keys = [k for k in study.swept_keys if k != "seed" and k not in study.derived and k in df.columns]
    print("\nStability across seeds (confirmation phase):")
    _print_table(stability_table(df, keys, [metric]))
    return code


def cmd_confirm(args: argparse.Namespace) -> int:
    prepared = _prepare(args)
    if isinstance(prepared, int):
        return prepared
    study, uri = prepared
    objective = study.confirm_objective(args.metric, args.mode)
    if objective is None:
        return _fail(f"study '{study.name}' names no metric to rank configurations by; pass --metric and --mode.")
    from ganlab.analysis import study_runs

    try:
        searches = [r for r in study_runs(study.name, uri) if r.data.tags.get("ganlab.phase", "search") == "search"
                    and r.info.status == "FINISHED"]
    except LookupError as e:
        return _fail(f"{e}. Run the search first: ganlab run {args.study}")
    if not searches:
        return _fail(f"study '{study.name}' has no finished search run in {uri}; run it first: ganlab run {args.study}")
    top = args.top or (study.confirm.top if study.confirm else 5)
    seeds = args.seeds or (study.confirm.seeds if study.confirm else 10)
    return _confirm(study, Path(args.study), uri, args, searches[0].info.run_id, top, seeds, *objective)


def _uri_flag(uri: str | None) -> str:
    return f" --tracking-uri {uri}" if uri else ""


def cmd_sync(args: argparse.Namespace) -> int:
    """Send what trials kept on disk while the tracking server was unreachable."""
    from ganlab.tracking import sync_folder

    storage = Path(args.storage)
    if not storage.is_dir():
        return _fail(f"No study folder {storage}; pass --storage DIR (the --storage of `ganlab run`).")
    pending = sorted(storage.rglob("spool/*.jsonl"))
    if not pending:
        print(f"Nothing to send: no spooled logging under {storage}.")
        return 0
    print(f"Sending spooled logging of {len(pending)} run(s) under {storage} ...", flush=True)
    done, left = sync_folder(storage)
    print(f"{done} run(s) sent completely" + (f", {left} still pending (server unreachable?)" if left else "") + ".")
    return 1 if left else 0


def cmd_ui(args: argparse.Namespace) -> int:
    from ganlab.tracking import resolve_tracking_uri

    try:
        uri = resolve_tracking_uri(args.tracking_uri)
    except ValueError as e:
        return _fail(f"Invalid --tracking-uri: {e}.")
    if uri.startswith("http"):
        print(f"The study store is a tracking server; its UI is at {uri}")
        return 0
    db = Path(uri[len("sqlite:///"):])
    if not db.exists():
        return _fail(f"No MLflow store at {db}. Run a study first (ganlab run STUDY.yaml) or pass --tracking-uri.")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"ganlab: WARNING: binding {args.host}: the MLflow UI has no authentication; anyone who can reach "
              "this port can read and delete runs.", file=sys.stderr)
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", "1"]
    return _serve(cmd)


def _serve(cmd: list[str]) -> int:
    """Run a server in its own process group and take the whole group down with us.

    ``mlflow server`` starts uvicorn and job-runner processes that outlive a plain SIGTERM to it.
    """
    proc = subprocess.Popen(cmd, start_new_session=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                time.sleep(0.5)  # let the group's other members exit too
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the group leader left behind
        except ProcessLookupError:
            pass


# --- ganlab train: one run without Ray --------------------------------------------------------------

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _trial_overrides(sets: list[str]) -> dict:
    """``--set optim.lr_g=1e-3`` pairs, values read as YAML (numbers, lists and strings all work)."""
    import yaml

    from ganlab.config import _StrictLoader

    out = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(None, f"--set {item}", "expected --set KEY=VALUE with a dotted trial key, "
                              "e.g. --set optim.lr_g=1e-3.")
        try:
            out[key.strip()] = yaml.load(text, Loader=_StrictLoader)
        except yaml.YAMLError:
            raise ConfigError(None, f"--set {key.strip()}", f"the value {text!r} is not valid YAML.") from None
    return out


def load_trial(path: Path, sets: list[str]):
    """The trial config in ``path`` (a study file: its ``trial:`` block) with the ``--set`` overrides applied.

    Errors name the key as the user wrote it: ``--set optim.lr_g`` for an override, ``trial.optim.lr_g``
    for a study file's own value."""
    from ganlab.config import apply_overrides, read_yaml

    raw = read_yaml(path)
    prefix = ""
    if "trial" in raw:  # a whole study file: train its trial block
        if not isinstance(raw["trial"], dict):
            raise ConfigError(path, "trial", "a study file's trial block must be a mapping of keys.")
        raw, prefix = raw["trial"], "trial."
    try:
        overrides = _trial_overrides(sets)
    except ConfigError as e:
        raise ConfigError(path, e.key, e.message) from None
    try:
        return apply_overrides(raw, overrides)
    except ConfigError as e:
        key = e.key or ""
        by_set = next((k for k in overrides if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
        raise ConfigError(path, f"--set {by_set}" if by_set else prefix + key if key else None, e.message) from None


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


def cmd_train(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    try:
        cfg = load_trial(config_path, args.set)
    except ConfigError as e:
        return _fail(str(e))
    out = Path(args.out) if args.out else Path("runs") / config_path.stem
    checkpoint = out / "checkpoint.pt"
    if args.resume and not checkpoint.is_file():
        return _fail(f"--resume: there is no checkpoint at {checkpoint}; run without --resume to start a run there.")
    if not args.resume and out.exists() and (not out.is_dir() or any(out.iterdir())):
        if checkpoint.is_file():
            return _fail(f"{out} already holds a run. Pass --resume to continue it, or --out DIR to start a new "
                         "run in another folder.")
        return _fail(f"{out} is not empty but holds no checkpoint to resume from (a run that stopped before its "
                     "first checkpoint?). Delete it, or pass --out DIR to start the run in another folder.")

    _use_all_cpus()
    import pandas as pd
    import yaml
    from tqdm import tqdm

    import torch

    from ganlab import plots
    from ganlab.trainer import CheckpointMismatch, Trainer

    try:
        trainer = Trainer(cfg)
    except (ValueError, RuntimeError) as e:  # e.g. images a DCGAN cannot take, CUDA asked for but absent
        return _fail(f"Cannot train the config in '{config_path}': {e}.")
    rows: list[dict] = []
    if args.resume:
        try:
            trainer.load(checkpoint)
        except CheckpointMismatch as e:
            return _fail(f"Cannot resume {out}: {e}.")
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: the user's to replace
            return _fail(f"Cannot read the checkpoint {checkpoint}: {type(e).__name__}: {e}.")
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
        sets = [a for s in args.set for a in ("--set", s)]
        again = shlex.join(["ganlab", "train", args.config, *sets, "--out", str(out)])
        print(f"ganlab: interrupted at iteration {trainer.iteration}; continue with: {again} --resume",
              file=sys.stderr)
        return 130

    done = trainer.iteration - start
    print(f"Trained {done} iterations ({start} -> {trainer.iteration}) on {trainer.device} in {elapsed:.1f} s wall "
          f"time: {elapsed / max(done, 1):.4f} s/iteration.")
    if last is not None and last.stopped:
        print(f"Stopped early at iteration {last.step}: {last.verdict} ({last.reason}).")
    latest = _latest(rows)
    headline = [f"{acc}/real", f"{acc}/fake", "loss/d", "loss/g", "eq/acc_gap", "osc/loss_d_std",
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


def _read_store(args: argparse.Namespace) -> tuple[str, str] | int:
    """The study name (a name, or a study file's) and a store that exists: reading never creates one."""
    name = _study_name(args.study)
    if isinstance(name, int):
        return name
    uri = _tracking(args)
    if uri is None:
        return EXIT_BAD_INPUT
    problem = _unreadable_store(uri)
    return _fail(problem) if problem else (name, uri)


def _study_name(text: str) -> str | int:
    """A study given by name, or by its file (whose errors are the usual one paragraph, exit 2)."""
    if not text.endswith((".yaml", ".yml")):
        return text
    try:
        return load_study(text).name
    except ConfigError as e:
        return _study_error(e)


def _unreadable_store(uri: str) -> str | None:
    """Why a store cannot be read, or None. A missing SQLite file is an error: reading never creates a store."""
    from urllib.parse import urlparse

    if uri.startswith("sqlite:"):
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else Path(urlparse(uri).path)
        if not path.is_file():
            return (f"No MLflow store at {path} (tracking URI {uri}). Run this in the folder where `ganlab run` ran, "
                    "or pass --tracking-uri / set MLFLOW_TRACKING_URI.")
    return _check_store(uri)


def _keys(text: str | None) -> list[str] | None:
    return [k.strip() for k in text.split(",") if k.strip()] if text else None


def _load_for_reading(args: argparse.Namespace, name: str, uri: str):
    from ganlab.analysis import load_study as load_frame

    try:
        return load_frame(name, uri, run=args.run, phase=args.phase)
    except LookupError as e:
        return _fail(f"{e}. `ganlab run STUDY.yaml` creates a study; pass --tracking-uri for "
                     "another store.")


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
    print(f"Study '{name}': {len(df)} trials in run {df['parent_run_id'].iloc[0] if len(df) else '-'}, "
          f"by {', '.join(by or df.attrs.get('swept', []))}; rates are fractions of seeds, `ci` the half-width of "
          "a 95% Student-t interval over seeds.")
    _print_table(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False) if out.suffix == ".csv" else table.to_parquet(out, index=False)
        print(f"\nWrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML report of a study, with its figures as PNG next to it."""
    from ganlab.report import write_report

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
        from mlflow.tracking import MlflowClient

        parent = df["parent_run_id"].iloc[0]
        MlflowClient(uri).log_artifact(parent, str(report.html), "report")
        print(f"Stored as artifact report/{report.html.name} of parent run {parent} (the MLflow UI shows it).")
    print(f"Open it in a browser: file://{report.html.resolve()}")
    return 0


DEFAULT_BEST = "window/eq/acc_gap"  # `ganlab sample STUDY`: the trial closest to the equilibrium late in training
MAX_GRID_IMAGES = 256  # a PNG of image samples shows at most this many


def cmd_sample(args: argparse.Namespace) -> int:
    """Samples from a trial's trained generator, as arrays (.npz) or a picture (.png)."""
    import numpy as np

    from ganlab.trials import RUN_ID, TrialNotFound, best_trial, load_trial

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
        from ganlab import plots

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganlab", description="GAN training-stability studies on Ray Tune and MLflow.")
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
    analyze.add_argument("--out", help="also write the table to FILE.csv or FILE.parquet")
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


if __name__ == "__main__":
    sys.exit(main())
