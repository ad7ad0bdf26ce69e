"""``ganlab validate``, ``ganlab run`` and ``ganlab confirm``: a study's plan, its phases on Ray Tune, and the
summary of what ran."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ganlab.cli.common import (
    EXIT_BAD_INPUT,
    LOG_FILE,
    LibraryLogs,
    EXIT_TRIALS_FAILED,
    _check_store,
    _fail,
    _load_checked,
    _print_table,
    _study_error,
    _tracking,
    _uri_flag,
    terminal_width,
)
from ganlab.config import ConfigError, StudyConfig

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



def _packs(study: StudyConfig) -> str:
    """How ``ganlab run`` would pack the study on this machine (a cluster packs to its own trial slots)."""
    from ganlab.study.packs import packing_allowed, plan_packs, trial_slots

    if not packing_allowed(study, False):
        why = "Optuna proposes trials one at a time" if study.search.algorithm == "optuna" else (
            f"{study.scheduler.name} stops or clones trials one at a time")
        return f"  packs: none, one trial per Ray trial ({why})"
    slots = trial_slots(study, {"CPU": float(os.cpu_count() or 1)})
    packs = plan_packs(study, study.points(), slots)
    sizes = sorted({len(p.trials) for p in packs})
    if sizes == [1]:
        return f"  packs: none, one trial per Ray trial (pack: {study.pack})"
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    return (f"  packs (pack: {study.pack}): {len(packs)} pack(s) of {size} trials, each trained as one vectorised "
            f"model, sized for {slots} trial slot(s) on this machine ({os.cpu_count()} CPU; a cluster packs "
            "to its own)")


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        study = _load_checked(args.study)
    except ConfigError as e:
        return _study_error(e)
    print(_plan(study))
    print(_packs(study))
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
    from ganlab.config.study import short_names

    swept = [c for c in df.attrs.get("swept", []) if c in df.columns]
    table = df[["trial", *swept, "seed", "trial_status", "verdict"] + [m for m in SUMMARY_METRICS if m in df.columns]]
    table = table.assign(trial=table["trial"].astype(str).str.split(" ").str[0])  # its number: the rest repeats the keys
    return table.rename(columns={**short_names(swept), **SUMMARY_METRICS, "trial_status": "status"})



def _report_phase(study: StudyConfig, uri: str, result, tracking_flag: str | None) -> int:
    """Summary table, summary.csv on the parent run, and a check that every Tune trial reached MLflow."""
    from ganlab.analysis import load_study as load_frame

    df = load_frame(study.name, uri, run=result.parent_run_id)
    _print_table(summary_table(df), terminal_width(), keep=1, rest="summary.csv on the parent run has them all")
    stopped = df[df["trial_status"] == "stopped"]
    for _, row in stopped.iterrows():
        print(f"  {row['trial']}: {row['stop_reason']}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.csv"
        df.to_csv(path, index=False)
        from ganlab.track.store import log_artifact

        log_artifact(uri, result.parent_run_id, path)
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



def _prepare(args: argparse.Namespace, plan: bool = False, phase: str = "search") -> tuple[StudyConfig, str] | int:
    """The checked study, Ray able to run its trials and a reachable store; or the exit code of the
    one-paragraph error (nothing written: Ray is checked before the store is created)."""
    try:
        study = _load_checked(args.study)
    except ConfigError as e:
        return _study_error(e)
    if args.resume and args.fresh:
        return _fail("--resume and --fresh contradict each other; pass one.")
    uri = _tracking(args)
    if uri is None:
        return EXIT_BAD_INPUT
    from ganlab.study.runner import ResumeRefused, check_resumable

    try:  # an interrupted run that may not be continued: said before anything starts
        check_resumable(study, uri, args.storage, phase, True if args.resume else (False if args.fresh else None))
    except ResumeRefused as e:
        if phase == "search" and args.resume and _search_finished(study, args):
            pass  # `ganlab run --resume` of a study whose confirmation was interrupted
        else:
            return _fail(str(e))
    if plan:
        print(_plan(study), flush=True)
    logs = LibraryLogs()  # from here on Ray and MLflow start: their own messages go to the study's log file
    code = _start_ray(study, args, logs)
    if code is not None:
        return code
    problem = _check_store(uri)
    if problem:
        return _fail(problem)
    logs.to_file(Path(args.storage) / study.name / LOG_FILE)
    return study, uri


def _search_finished(study: StudyConfig, args: argparse.Namespace) -> bool:
    from ganlab.study.runner import PhaseState, phase_folder

    state = PhaseState.read(phase_folder(args.storage, study, "search"))
    return state is not None and state.finished


def _start_ray(study: StudyConfig, args: argparse.Namespace, logs: LibraryLogs) -> int | None:
    """Ray started (or joined) and able to run a trial of ``study``; or the exit code of the error that says
    why not (Ray shut down)."""
    from ganlab.study.tuner import connect, probe_address, resources_problem

    address = _address(args)
    if address and (problem := probe_address(address)):
        return _fail(problem)
    try:
        with logs.around_ray_init():
            connect(args.num_cpus, address)
    except ConnectionError as e:  # something answers at the address but Ray would not let this client join
        return _fail(f"Could not join the Ray cluster at {address}: {e}. A cluster started by `ray start` uses "
                     "token authentication (Ray's default): give this shell its token (RAY_AUTH_TOKEN, or the "
                     "file RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token; `ray get-auth-token` on the head prints it), "
                     "and check that the address is the head's GCS port; nothing was run.")
    error, warning = resources_problem(study, address)
    if error:
        import ray

        ray.shutdown()
        return _fail(f"Study file '{args.study}': {error}")
    if warning:
        print(f"ganlab: WARNING: {warning}", file=sys.stderr, flush=True)
    return None


def _address(args: argparse.Namespace) -> str | None:
    return args.address or os.environ.get("RAY_ADDRESS") or None


def cmd_run(args: argparse.Namespace) -> int:
    prepared = _prepare(args, plan=True)
    if isinstance(prepared, int):
        return prepared
    study, uri = prepared
    print(f"MLflow store: {uri}; Ray's and MLflow's own messages: {Path(args.storage) / study.name / LOG_FILE}",
          flush=True)
    from ganlab.study.runner import PhaseState, ResumeRefused, phase_folder, run_phase

    search_state = PhaseState.read(phase_folder(args.storage, study, "search"))
    confirm_state = PhaseState.read(phase_folder(args.storage, study, "confirm"))
    if study.confirm is not None and not args.fresh and search_state is not None and search_state.finished:
        search_run = search_state.parent_run_id
        confirming = confirm_state is not None and confirm_state.confirms == search_run
        if confirming and not confirm_state.finished or not confirming and search_state.errors == 0:
            print(f"The search finished (parent run {search_run}); its confirmation phase "
                  + ("was interrupted: continuing it." if confirming else "never started: starting it."), flush=True)
            metric, mode = study.confirm_objective()  # type: ignore[misc]
            return _confirm(study, Path(args.study), uri, args, search_run, study.confirm.top, study.confirm.seeds,
                            metric, mode)
    try:
        result = run_phase(study, Path(args.study), uri, args.storage,
                           resume=True if args.resume else (False if args.fresh else None),
                           num_cpus=args.num_cpus, address=_address(args))
    except ResumeRefused as e:
        return _fail(str(e))
    if result.exit_code == 130:
        return result.exit_code
    try:
        code = _report_phase(study, uri, result, args.tracking_uri)
    except Exception as e:  # noqa: BLE001
        from ganlab.track.spool import _unreachable

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
    from ganlab.study.confirm import confirmation_points
    from ganlab.study.runner import PhaseState, ResumeRefused, phase_folder, run_phase
    from ganlab.track.store import TAG_CONFIRMS

    state = PhaseState.read(phase_folder(args.storage, study, "confirm"))
    continuing = state is not None and not state.finished and not args.fresh and state.confirms == search_run
    if continuing:
        points = state.points  # the interrupted confirmation of this search: its trials, not a new choice
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
        result = run_phase(study, study_file, uri, args.storage, phase="confirm", points=points, resume=continuing,
                           num_cpus=args.num_cpus, address=_address(args),
                           parent_tags={TAG_CONFIRMS: search_run})
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
    prepared = _prepare(args, phase="confirm")
    if isinstance(prepared, int):
        return prepared
    study, uri = prepared
    objective = study.confirm_objective(args.metric, args.mode)
    if objective is None:
        return _fail(f"study '{study.name}' names no metric to rank configurations by; pass --metric and --mode.")
    from ganlab.analysis import study_runs
    from ganlab.track.store import TAG_PHASE

    try:
        searches = [r for r in study_runs(study.name, uri) if r.data.tags.get(TAG_PHASE, "search") == "search"
                    and r.info.status == "FINISHED"]
    except LookupError as e:
        return _fail(f"{e}. Run the search first: ganlab run {args.study}")
    if not searches:
        return _fail(f"study '{study.name}' has no finished search run in {uri}; run it first: ganlab run {args.study}")
    top = args.top or (study.confirm.top if study.confirm else 5)
    seeds = args.seeds or (study.confirm.seeds if study.confirm else 10)
    return _confirm(study, Path(args.study), uri, args, searches[0].info.run_id, top, seeds, *objective)
