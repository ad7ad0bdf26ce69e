"""One invocation of a study phase (the search, or its confirmation), from a validated study to MLflow runs.

A study phase lives in a folder, ``<storage>/<study name>/<phase>/``: ``state.json`` (which MLflow parent
run it writes to, under which study digest, finished or not), Tune's experiment and, for Optuna, its SQLite
storage. The folder is what makes a study resumable: an unfinished state means the next ``ganlab run``
continues that parent run and every trial's own child run, instead of starting over.
"""

from __future__ import annotations

import json
import os
import pickletools
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ganlab.config import ConfigError, PbtSchedulerConfig, StudyConfig, flatten

STATE_FILE = "state.json"
EXIT_INTERRUPTED = 130
RESULT_KEYS = {"step", "diverged", "verdict", "mlflow_run_id"}  # reported to Tune beside the diagnostics


class ResumeRefused(Exception):
    """The study folder holds an interrupted run that this invocation may not continue."""


@dataclass
class PhaseState:
    parent_run_id: str
    tracking_uri: str
    study_digest: str
    study_file: str
    started: str
    finished: bool = False
    points: list[dict[str, Any]] | None = None  # a confirmation phase's fixed trials
    confirms: str | None = None  # a confirmation phase's search parent run
    errors: int | None = None  # trials that failed, once the phase finished (None: unknown, an older state)

    @classmethod
    def read(cls, folder: Path) -> "PhaseState | None":
        path = folder / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, folder / STATE_FILE)


def phase_folder(storage: str | Path, study: StudyConfig, phase: str) -> Path:
    return Path(storage).resolve() / study.name / phase


def check_objectives(study: StudyConfig, source: str | Path) -> None:
    """Every metric the study optimises, schedules or ranks by must be a diagnostic its trials log."""
    named: list[tuple[str, str]] = [("search.metric", m) for m in study.search.metrics]
    if getattr(study.scheduler, "metric", None):
        named.append(("scheduler.metric", study.scheduler.metric))  # type: ignore[union-attr]
    if study.confirm is not None and study.confirm.metric:
        named.append(("confirm.metric", study.confirm.metric))
    if study.artifacts.save_best is not None:
        named.append(("artifacts.save_best.metric", study.artifacts.save_best.metric))
    if not named:
        return
    from ganlab.train.trainer import metric_names  # torch: only when there is a metric to check

    known = metric_names(study.trial) | RESULT_KEYS
    if isinstance(study.scheduler, PbtSchedulerConfig):
        known |= {f"hp/{k}" for k in study.scheduler.mutations} | {"hp/lr_g", "hp/lr_d"}
    for key, metric in named:
        if metric not in known:
            close = sorted(k for k in known if metric.split("/")[-1] in k) or sorted(known)
            raise ConfigError(source, key, f"'{metric}' is not a diagnostic these trials log; they log: "
                                           f"{', '.join(close)}.")


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    fa, fb = flatten(a), flatten(b)
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return key
    return "?"


@dataclass(frozen=True)
class PhaseResult:
    parent_run_id: str
    exit_code: int
    n_trials: int
    ray_path: str


def check_resumable(study: StudyConfig, tracking_uri: str, storage: str | Path, phase: str = "search",
                    resume: bool | None = None) -> PhaseState | None:
    """The interrupted run this invocation continues (None: it starts a new one); ``ResumeRefused`` when it may
    not continue it. Reads only the study folder, so ``ganlab run`` checks this before starting anything."""
    folder = phase_folder(storage, study, phase)
    state = PhaseState.read(folder)
    unfinished = state is not None and not state.finished
    if resume is True and not unfinished:
        raise ResumeRefused(f"there is no interrupted '{phase}' run of study '{study.name}' in {folder} to resume; "
                            "run without --resume to start one.")
    if not unfinished or resume is False:
        return None
    assert state is not None
    if state.study_digest != study.digest():
        old = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else {}
        key = _first_difference(old, study.model_dump(mode="json")) if old else "?"
        raise ResumeRefused(
            f"the study file changed since its interrupted run started (first difference: '{key}'), so "
            f"resuming would mix two studies. Restore the file, or pass --fresh to start a new run "
            f"(the interrupted one stays in MLflow as {state.parent_run_id})."
        )
    if state.tracking_uri != tracking_uri:
        raise ResumeRefused(f"the interrupted run logs to {state.tracking_uri}, not {tracking_uri}; pass "
                            f"--tracking-uri {state.tracking_uri} to resume it, or --fresh.")
    broken = unreadable_tune_state(folder / state.parent_run_id)
    if broken is not None:
        raise ResumeRefused(
            f"Tune's saved state of the interrupted run is cut short: {broken} ({broken.stat().st_size} bytes). "
            "Tune copies its state into the study folder without an atomic rename, so a driver killed outright "
            "during a copy leaves it half-written, and Tune would quietly start the search over from a partial "
            "state. Pass --fresh to start a new run (the interrupted one stays in MLflow as "
            f"{state.parent_run_id}, with every trial it finished)."
        )
    return state


TUNE_TIMESTAMP = re.compile(r"-\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")  # Tune's session suffix on its state files


def unreadable_tune_state(experiment: Path) -> Path | None:
    """The first of the state files Tune restores from (the newest experiment, search and searcher state, and
    tuner.pkl) that does not parse to its end: JSON, else a pickle read opcode by opcode (``pickletools``
    checks the stream's structure without importing or building anything). None when all parse, or when there
    is no experiment yet."""
    newest: dict[str, Path] = {}
    for path in sorted(experiment.glob("*")) if experiment.is_dir() else []:  # the timestamps sort in time
        if path.is_file() and (path.name == "tuner.pkl" or TUNE_TIMESTAMP.search(path.name)):
            newest[TUNE_TIMESTAMP.sub("", path.name)] = path
    for path in newest.values():
        data = path.read_bytes()
        try:
            json.loads(data)
            continue
        except ValueError:
            pass
        try:
            for _ in pickletools.genops(data):
                pass
        except ValueError:  # an empty file too: no STOP opcode
            return path
    return None


def run_phase(
    study: StudyConfig,
    study_file: Path,
    tracking_uri: str,
    storage: str | Path,
    *,
    phase: str = "search",
    points: list[dict[str, Any]] | None = None,
    resume: bool | None = None,
    num_cpus: int | None = None,
    address: str | None = None,
    parent_tags: dict[str, str] | None = None,
) -> PhaseResult:
    """Start or continue one phase. ``resume``: True requires an interrupted run, False starts afresh,
    None (the default) continues an interrupted run when there is one."""
    from ganlab.study.tuner import run_study
    from ganlab.track.store import TAG_CONFIRMS, TAG_PHASE, TAG_SWEPT, end_run, reopen_run, start_study_run

    folder = phase_folder(storage, study, phase)
    state = check_resumable(study, tracking_uri, storage, phase, resume)
    continuing = state is not None
    if continuing:
        assert state is not None
        points = state.points
        parent_run_id = state.parent_run_id
        reopen_run(tracking_uri, parent_run_id)
        print(f"Resuming the interrupted {phase} of '{study.name}' (MLflow parent run {parent_run_id}); finished "
              "trials are kept, running ones continue from their last checkpoint. --fresh starts over.", flush=True)
        from ganlab.track.store import StudyRun, study_run_of

        study_run: StudyRun = study_run_of(tracking_uri, parent_run_id, study.name)
    else:
        superseded = PhaseState.read(folder)
        if superseded is not None and not superseded.finished:
            end_run(tracking_uri, superseded.parent_run_id, "KILLED")  # superseded by --fresh
        study_run = start_study_run(
            tracking_uri, study.name, study_file, study.search_space(),
            {TAG_SWEPT: json.dumps(study.swept_keys), TAG_PHASE: phase, **(parent_tags or {})},
        )
        parent_run_id = study_run.parent_run_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "study.json").write_text(json.dumps(study.model_dump(mode="json"), indent=2))
        PhaseState(parent_run_id, tracking_uri, study.digest(), str(study_file), time.strftime("%Y-%m-%dT%H:%M:%S"),
                   points=points, confirms=(parent_tags or {}).get(TAG_CONFIRMS)).write(folder)
    status = "FAILED"
    try:
        outcome = run_study(study, study_run, folder, points=points, resume=continuing, num_cpus=num_cpus,
                            address=address, extra_tags={TAG_PHASE: phase})
        if outcome.n_unfinished:
            status = "KILLED"
            print(f"ganlab: interrupted with {outcome.n_unfinished} trial(s) unfinished. Continue with: "
                  f"ganlab run {study_file} --resume" + (f" (phase {phase})" if phase != "search" else ""),
                  file=sys.stderr)
            return PhaseResult(parent_run_id, EXIT_INTERRUPTED, outcome.n_trials, outcome.ray_path)
        status = "FINISHED" if outcome.n_errors == 0 else "FAILED"
        state = PhaseState.read(folder)
        assert state is not None
        state.finished, state.errors = True, outcome.n_errors
        state.write(folder)
        if outcome.interrupted:  # Ctrl-C as the last trial ended: the phase is complete, the command stops here
            print(f"ganlab: interrupted after every trial of the {phase} ended (it is complete and recorded)."
                  + (f" Continue with: ganlab run {study_file}" if phase == "search" and study.confirm else ""),
                  file=sys.stderr)
            return PhaseResult(parent_run_id, EXIT_INTERRUPTED, outcome.n_trials, outcome.ray_path)
        return PhaseResult(parent_run_id, 1 if outcome.n_errors else 0, outcome.n_trials, outcome.ray_path)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            end_run(tracking_uri, parent_run_id, status)
            _close_orphans(tracking_uri, study_run, status)
        except Exception as e:  # noqa: BLE001
            from ganlab.track.spool import Spool, _unreachable

            if not _unreachable(e):
                raise
            Spool(folder / "spool", tracking_uri).append(parent_run_id, {"method": "set_terminated", "status": status})


def _close_orphans(tracking_uri: str, study_run, parent_status: str) -> None:
    """No child run is left RUNNING when the driver exits: a killed worker may not have closed its own."""
    from ganlab.track.store import close_orphans

    close_orphans(study_run, "KILLED" if parent_status == "KILLED" else "FAILED")
