"""MLflow: one experiment per study, one parent run per ``ganlab run``, one child run per trial.

The driver creates the store, the experiment and the parent run before any trial starts, and creates a new
SQLite store under a file lock (``open_store``): MLflow creates and migrates its tables without one, so two
first commands on a new store raced ("duplicate column name: step") and could leave it broken for good.
Trials only ever write through ``ganlab.track`` (a pack's runs through ``ganlab.track.writer.PackWriter``).
This module holds the store's layout: where it is, the tags every run carries, and the study's parent run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

import ganlab

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per history read, in trial logs

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100  # params + tags per log_batch
MAX_PARAM_CHARS = 6000

# The store's tag names: every MLflow tag ganlab writes or reads is named here, and only here
# (tests/track/test_store.py fails on a "ganlab.*" tag literal anywhere else in the package).
TAG_PARENT = "mlflow.parentRunId"
TAG_STUDY = "ganlab.study"  # the study's name, on its experiment and on every run
TAG_KIND = "ganlab.kind"  # "study" for parent runs, "trial" for child runs
# on a parent run (one `ganlab run` of one phase)
TAG_PHASE = "ganlab.phase"  # "search" (when absent: older stores) or "confirm"; on the phase's trial runs too
TAG_CONFIRMS = "ganlab.confirms"  # on a confirmation run: the search run it confirms
TAG_SWEPT = "ganlab.swept"  # JSON list of swept dotted keys
TAG_VERSION = "ganlab.version"  # the ganlab that ran the study
TAG_GIT_COMMIT = "ganlab.git_commit"  # the commit of the study file's repository, when it is in one
# on a parent run and on a child run
TAG_HOST = "ganlab.host"  # the machine that created the run
# on a child run (one study trial)
TAG_TRIAL_ID = "ganlab.trial_id"  # the trial's id, as Tune's (<prefix>_<number>): a restart finds its run by it
TAG_TRIAL_NAME = "ganlab.trial_name"  # the trial's short id and its swept values, as its run's name
TAG_SEED = "ganlab.seed"
TAG_PLATFORM = "ganlab.platform"  # the worker's OS and Python build
TAG_DEVICE = "ganlab.device"  # the torch device it trained on
TAG_GPU_NAME = "ganlab.gpu_name"  # on CUDA only
TAG_NODE_ID = "ganlab.node_id"  # the Ray node it trained on
TAG_NODE_IP = "ganlab.node_ip"
TAG_PID = "ganlab.pid"  # the worker process
TAG_CONFIG_DIGEST = "ganlab.config_digest"  # a digest of the trial's full config
TAG_PACK = "ganlab.pack"  # the Tune trial that trains this trial in a pack, beside others (TAG_PACK_LANES)
TAG_PACK_LANES = "ganlab.pack_lanes"  # how many trials that pack trains
TAG_LOGGED_THROUGH = "ganlab.logged_through"  # every metric up to this step is in the store
TAG_HISTORY = "ganlab.history"  # <parent run id>/<folder>: where the trial's pack keeps its Parquet parts
TAG_VERDICT = "ganlab.verdict"  # the stability verdict, kept up to date while the trial runs
TAG_VERDICT_REASON = "ganlab.verdict_reason"  # why the verdict is what it is
TAG_STATUS = "ganlab.status"  # finished | diverged | stopped (by a scheduler) | failed
TAG_STOP_REASON = "ganlab.stop_reason"  # what ended the trial, in words
TAG_BEST = "ganlab.best"  # the metric, value and iteration of the best eval step's models (artifacts.save_best)
TAG_RESTARTS = "ganlab.restarts"  # times the trial continued its run: resumed, retried after a crash, PBT
TAG_RESUMED_AT = "ganlab.resumed_at"  # the iteration the trial last continued from its own checkpoint
TAG_PBT_EXPLOITS = "ganlab.pbt_exploits"  # one line per PBT exploit: the iteration, the source, what changed
# MLflow 3's UI opens an experiment on its GenAI overview unless told it holds training runs
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def resolve_tracking_uri(uri: str | None = None, cwd: str | Path | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``, made absolute.

    Trials run in Ray's per-trial working directories, so a relative SQLite path would silently give
    every trial its own database: relative paths are resolved here, once, against the driver's cwd.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DB_FILE}"
    base = Path(cwd or os.getcwd())
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    elif "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r} is neither sqlite:///PATH nor http(s)://HOST:PORT; "
            "MLflow 3 no longer accepts a plain folder"
        )
    return uri


def missing_store(uri: str) -> Path | None:
    """The SQLite file a ``sqlite:`` URI names, when it does not exist: opening it would create an empty store,
    so readers check first (a server's store is the server's)."""
    from urllib.parse import urlparse

    if not uri.startswith("sqlite:"):
        return None
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else Path(urlparse(uri).path)
    return None if path.is_file() else path


STORE_LOCK_SUFFIX = ".lock"  # beside a SQLite store: held while MLflow creates or migrates its tables
STORE_LOCK_WAIT_S = 300.0  # how long a command waits for another one creating the same store
_opened: set[str] = set()  # stores this process has opened (MLflow keeps their engines)


def open_store(uri: str) -> MlflowClient:
    """A client on a store that exists with MLflow's current schema. A SQLite store is created (or checked
    and migrated) by one process at a time, under an exclusive lock on ``<db>.lock``; every ``ganlab`` command
    that may be the first on a store (``run``, ``ui``) opens it here before anything else touches it."""
    if uri in _opened or not uri.startswith("sqlite:///"):
        _opened.add(uri)
        return MlflowClient(uri)
    import fcntl

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + STORE_LOCK_SUFFIX), "a+") as lock:
        deadline = time.monotonic() + STORE_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another command has held {lock.name} for {STORE_LOCK_WAIT_S:.0f} s while "
                                       "creating this store; if none is running, delete that file") from None
                time.sleep(0.05)
        try:  # MLflow creates the tables, or verifies their schema, when the client opens the store
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _opened.add(uri)
    return client


def default_artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store; a tracking server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / ARTIFACT_DIR).resolve().as_uri()
    return None


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass(frozen=True)
class StudyRun:
    """Where a study's trials log: picklable, handed to every trial."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    study_name: str


def start_study_run(
    tracking_uri: str,
    study_name: str,
    study_file: Path,
    search_space: dict[str, Any],
    tags: dict[str, str],
) -> StudyRun:
    client = open_store(tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        experiment_id = client.create_experiment(
            study_name, artifact_location=default_artifact_location(tracking_uri),
            tags={TAG_STUDY: study_name, **EXPERIMENT_KIND},
        )
    else:
        experiment_id = experiment.experiment_id
    run_tags = {TAG_STUDY: study_name, TAG_KIND: "study", TAG_VERSION: ganlab.__version__,
                TAG_HOST: socket.gethostname(), **tags}
    commit = _git_commit(study_file.resolve().parent)
    if commit:
        run_tags[TAG_GIT_COMMIT] = commit
    run = client.create_run(
        experiment_id, tags=run_tags, run_name=f"{study_name}@{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run_id = run.info.run_id
    params = [Param(k, _param_text(v)) for k, v in search_space.items()]
    for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
    client.log_artifact(run_id, str(study_file))
    return StudyRun(tracking_uri, experiment_id, run_id, study_name)


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    MlflowClient(tracking_uri).set_terminated(run_id, status=status)


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """A resumed study continues its parent run (RUNNING again until it ends)."""
    MlflowClient(tracking_uri).update_run(run_id, status="RUNNING")


def study_run_of(tracking_uri: str, parent_run_id: str, study_name: str) -> StudyRun:
    run = MlflowClient(tracking_uri).get_run(parent_run_id)
    return StudyRun(tracking_uri, run.info.experiment_id, parent_run_id, study_name)


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_CHARS]


def find_pack_runs(client: MlflowClient, study: StudyRun, pack_id: str, status: str = "RUNNING"):
    """The child runs of a pack's trials (its Tune trial ``pack_id``) that are still ``status``."""
    return client.search_runs(
        [study.experiment_id],
        f"tags.`{TAG_PARENT}` = '{study.parent_run_id}' and tags.`{TAG_PACK}` = '{pack_id}' "
        f"and attributes.status = '{status}'",
    )


SEARCH_PAGE = 1000  # runs per search request (MLflow's SQL store caps a page at 50,000)


def search_all_runs(client: MlflowClient, study: StudyRun, filter_string: str) -> list:
    """Every run of the study's experiment that ``filter_string`` matches, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs([study.experiment_id], filter_string, max_results=SEARCH_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_trial_run(client: MlflowClient, study: StudyRun, trial_id: str):
    """The child run a trial already has under this study run (after a resume, retry or PBT restart)."""
    runs = client.search_runs(
        [study.experiment_id],
        f"tags.`{TAG_PARENT}` = '{study.parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
        max_results=2,
    )
    return runs[0] if runs else None


# --- the study's other writes: the driver's, the CLI's and the schedulers' (the trials' go through PackWriter) ---


def tag_run(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Tags on one run, in one request."""
    from mlflow.entities import RunTag

    MlflowClient(tracking_uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_artifact(tracking_uri: str, run_id: str, path: str | Path, folder: str | None = None) -> None:
    MlflowClient(tracking_uri).log_artifact(run_id, str(path), folder)


def fail_trial_runs(study: StudyRun, tune_trial_id: str, packed: bool, reason: str) -> int:
    """The runs a dead worker left open (every lane of its pack, or its one trial): FAILED, with ``reason``.
    Returns how many."""
    client = MlflowClient(study.tracking_uri)
    if packed:
        runs = find_pack_runs(client, study, tune_trial_id)
    else:
        runs = [run for run in [find_trial_run(client, study, tune_trial_id)] if run is not None]
    for run in runs:
        tag_run(study.tracking_uri, run.info.run_id, {TAG_STATUS: "failed", TAG_STOP_REASON: reason[:5000]})
        client.set_terminated(run.info.run_id, status="FAILED")
    return len(runs)


def close_orphans(study: StudyRun, status: str) -> None:
    """No child run is left RUNNING when the driver exits: a killed worker may not have closed its own."""
    client = MlflowClient(study.tracking_uri)
    stuck = search_all_runs(client, study, f"tags.`{TAG_PARENT}` = '{study.parent_run_id}' and "
                                           "attributes.status = 'RUNNING'")
    for run in stuck:
        client.set_terminated(run.info.run_id, status=status)
