"""MLflow: one experiment per study, one parent run per ``ganlab run``, one child run per trial.

The driver creates the store, the experiment and the parent run before any trial starts: concurrent
first writers can corrupt a fresh SQLite database (MLflow creates its tables without a lock). Trials
only ever write to their own child run, through ``TrialLogger``, which batches metrics: one MLflow call
costs milliseconds, so a call per metric per step would cost more than the training it records.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import ganlab

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per history read, in trial logs

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100  # params + tags per log_batch
MAX_PARAM_CHARS = 6000

TAG_STUDY = "ganlab.study"
TAG_KIND = "ganlab.kind"  # "study" for parent runs, "trial" for child runs
TAG_TRIAL_ID = "ganlab.trial_id"
TAG_SEED = "ganlab.seed"
TAG_VERDICT = "ganlab.verdict"  # the stability verdict, kept up to date while the trial runs
TAG_SWEPT = "ganlab.swept"  # JSON list of swept dotted keys, on the parent run
TAG_PARENT = "mlflow.parentRunId"
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
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        experiment_id = client.create_experiment(
            study_name, artifact_location=default_artifact_location(tracking_uri),
            tags={TAG_STUDY: study_name, **EXPERIMENT_KIND},
        )
    else:
        experiment_id = experiment.experiment_id
    run_tags = {TAG_STUDY: study_name, TAG_KIND: "study", "ganlab.version": ganlab.__version__,
                "ganlab.host": socket.gethostname(), **tags}
    commit = _git_commit(study_file.resolve().parent)
    if commit:
        run_tags["ganlab.git_commit"] = commit
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


HISTORY_FILE = "diagnostics.parquet"
HISTORY_PARTS = "diagnostics/parts"  # Parquet parts of a running trial's history, merged at its end
TAG_LOGGED_THROUGH = "ganlab.logged_through"  # every metric up to this step is in the store
TAG_STATUS = "ganlab.status"  # finished | diverged | stopped (by a scheduler) | failed
TAG_STOP_REASON = "ganlab.stop_reason"
TAG_RESTARTS = "ganlab.restarts"  # times the trial continued its run: resumed, retried after a crash, PBT


def find_trial_run(client: MlflowClient, study: StudyRun, trial_id: str):
    """The child run a trial already has under this study run (after a resume, retry or PBT restart)."""
    runs = client.search_runs(
        [study.experiment_id],
        f"tags.`{TAG_PARENT}` = '{study.parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
        max_results=2,
    )
    return runs[0] if runs else None


SEND_ATTEMPTS = 3  # tries of one request before its content is spooled to disk
SEND_BACKOFF_S = 1.0  # wait before the second try; doubles for each further try
OPEN_WAIT_S = 120.0  # how long a starting trial waits for an unreachable tracking server before failing


def _unreachable(error: Exception) -> bool:
    """A transport failure (server down, refused, timed out, 5xx): retry or spool, never lose the data."""
    import requests

    if isinstance(error, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
        return True
    text = str(error)
    return any(s in text for s in ("failed with exception", "Max retries exceeded", "Connection refused",
                                   "Bad Gateway", "Service Unavailable", "status code 50"))


class Spool:
    """What a trial could not send to an unreachable tracking server, kept on local disk in order, one JSON
    line per request, replayed by the trial when the server answers again or later by ``ganlab sync``."""

    def __init__(self, folder: str | Path, tracking_uri: str):
        self.folder = Path(folder)
        self.tracking_uri = tracking_uri
        self.warned = False

    def _file(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.jsonl"

    def pending(self, run_id: str) -> bool:
        return self._file(run_id).is_file()

    def append(self, run_id: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if record.get("method") == "log_artifact":  # keep a copy: the original is a temporary file
            copy = self.folder / "files" / run_id / f"{time.time_ns()}_{Path(record['path']).name}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(Path(record["path"]).read_bytes())
            record = {**record, "path": str(copy)}
        with self._file(run_id).open("a") as f:
            f.write(json.dumps({"tracking_uri": self.tracking_uri, "run_id": run_id, **record}) + "\n")
        if not self.warned:
            self.warned = True
            print(f"ganlab: WARNING: the tracking server {self.tracking_uri} is unreachable; run {run_id} keeps "
                  f"training and its logging is kept in {self.folder} (sent when the server answers again, or "
                  "with `ganlab sync`).", file=sys.stderr, flush=True)

    def drain(self, run_id: str) -> bool:
        """Send this run's spooled requests, in order; True when none is left."""
        path = self._file(run_id)
        if not path.is_file():
            return True
        lines = path.read_text().splitlines()
        client = MlflowClient(self.tracking_uri)
        for i, line in enumerate(lines):
            try:
                replay(client, json.loads(line))
            except Exception as e:  # noqa: BLE001
                if not _unreachable(e):
                    raise
                path.write_text("".join(l + "\n" for l in lines[i:]))  # keep what is left, in order
                return False
        path.unlink()
        return True


def replay(client: MlflowClient, record: dict[str, Any]) -> None:
    method, run_id = record["method"], record["run_id"]
    if method == "log_batch":
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in record.get("metrics", [])],
                         tags=[RunTag(k, v) for k, v in record.get("tags", [])])
    elif method == "log_artifact":
        client.log_artifact(run_id, record["path"], record.get("artifact_path"))
    elif method == "set_terminated":
        client.set_terminated(run_id, status=record["status"])
    elif method == "merge_history":
        merge_history(client, run_id)
    else:
        raise ValueError(f"unknown spooled request {method!r}")


def read_history(client: MlflowClient, run_id: str):
    """Every logged point of a run from its Parquet parts, one row per step (a step stored twice after a
    crash mid-flush keeps its latest copy)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        parts = [a.path for a in client.list_artifacts(run_id, HISTORY_PARTS)]
        frames = [pd.read_parquet(client.download_artifacts(run_id, p, tmp)) for p in parts]
    if not frames:
        return pd.DataFrame({"step": []})
    return pd.concat(frames, ignore_index=True).groupby("step", sort=True).last().reset_index()


def merge_history(client: MlflowClient, run_id: str):
    """The run's parts merged into one ``diagnostics.parquet`` artifact; returns the history."""
    history = read_history(client, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / HISTORY_FILE
        history.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path))
    return history


def sync_folder(folder: str | Path) -> tuple[int, int]:
    """Replay every spool under ``folder`` (``ganlab sync``): (runs sent completely, runs still pending)."""
    done = left = 0
    for path in sorted(Path(folder).rglob("spool/*.jsonl")):
        first = json.loads(path.read_text().splitlines()[0])
        if Spool(path.parent, first["tracking_uri"]).drain(first["run_id"]):
            done += 1
        else:
            left += 1
    return done, left


class TrialLogger:
    """The one writer of a trial's child run. Metrics are buffered and sent in batches.

    A trial that restarts (driver resumed, worker died, PBT restarted its actor) continues its own run:
    ``open`` finds it by trial id. Each flush records the last step it completed, and a restarted trial,
    which recomputes the same steps from its checkpoint, skips steps already stored, so the run's history
    has every step exactly once.
    """

    def __init__(self, study: StudyRun, run_id: str, logged_through: int = -1, spool: Spool | None = None):
        self.study = study
        self.run_id = run_id
        self.client = MlflowClient(study.tracking_uri)
        self.spool = spool
        self.logged_through = logged_through
        self._buffer: list[Metric] = []
        self._rows: list[dict[str, float]] = []  # the same points, wide, for the Parquet history
        self._buffered_through = logged_through

    @classmethod
    def open(
        cls,
        study: StudyRun,
        trial_id: str,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        config: dict[str, Any],
        spool_folder: str | Path | None = None,
    ) -> "TrialLogger":
        """Find or create the trial's run; with ``spool_folder``, an unreachable server is waited for (up to
        OPEN_WAIT_S) here, and later requests that fail are spooled there instead of failing the trial."""
        spool = Spool(spool_folder, study.tracking_uri) if spool_folder is not None else None
        if spool is not None and study.tracking_uri.startswith("http"):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # ganlab retries, then spools
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        client = MlflowClient(study.tracking_uri)
        deadline, delay = time.time() + (OPEN_WAIT_S if spool is not None else 0), SEND_BACKOFF_S
        while True:
            try:
                return cls._open(client, study, trial_id, run_name, params, tags, config, spool)
            except Exception as e:  # noqa: BLE001
                if not _unreachable(e) or time.time() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 30.0)

    @classmethod
    def _open(cls, client, study, trial_id, run_name, params, tags, config, spool) -> "TrialLogger":
        existing = find_trial_run(client, study, trial_id)
        if existing is not None:
            client.update_run(existing.info.run_id, status="RUNNING")
            logger = cls(study, existing.info.run_id, int(existing.data.tags.get(TAG_LOGGED_THROUGH, -1)), spool)
            restarts = int(existing.data.tags.get(TAG_RESTARTS, 0)) + 1
            logger.set_tags({**tags, TAG_RESTARTS: str(restarts)})
            return logger
        all_tags = {TAG_PARENT: study.parent_run_id, TAG_STUDY: study.study_name, TAG_KIND: "trial",
                    TAG_TRIAL_ID: trial_id, "ganlab.host": socket.gethostname(),
                    "ganlab.platform": platform.platform(), **tags}
        run = client.create_run(study.experiment_id, tags=all_tags, run_name=run_name)
        logger = cls(study, run.info.run_id, spool=spool)
        logger.log_params(params)
        client.log_dict(logger.run_id, config, "trial_config.json")
        return logger

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, _param_text(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, step: int, metrics: dict[str, float], to_mlflow: bool = True) -> None:
        """Every point goes to the Parquet history; ``to_mlflow`` ones also become MLflow metrics."""
        if step <= self.logged_through:
            return  # already stored before a restart; recomputed identically from the checkpoint
        if to_mlflow:
            now = int(time.time() * 1000)
            self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        self._rows.append({"step": step, **metrics})
        self._buffered_through = max(self._buffered_through, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        items = [(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._send({"method": "log_batch", "tags": items[i : i + MAX_PARAMS_PER_BATCH]})

    def _send(self, record: dict[str, Any]) -> None:
        """One request, in order after anything spooled before; retried with backoff while the server is
        unreachable, then spooled to disk (with a spool) so training goes on and nothing is lost."""
        if self.spool is not None and self.spool.pending(self.run_id) and not self.spool.drain(self.run_id):
            self.spool.append(self.run_id, record)
            return
        delay = SEND_BACKOFF_S
        for attempt in range(SEND_ATTEMPTS):
            try:
                replay(self.client, {**record, "run_id": self.run_id})
                return
            except Exception as e:  # noqa: BLE001
                if self.spool is None or not _unreachable(e):
                    raise
                if attempt + 1 < SEND_ATTEMPTS:
                    time.sleep(delay)
                    delay *= 2
        self.spool.append(self.run_id, record)

    def flush(self, tags: dict[str, str] | None = None) -> None:
        """Send the buffer (and ``tags``, in the same request); the last batch carries the step it completes
        (a crash mid-flush can only repeat points, never lose them)."""
        extra = [(k, str(v)) for k, v in (tags or {}).items()][: MAX_PARAMS_PER_BATCH - 1]
        if not self._rows:
            if extra:
                self._send({"method": "log_batch", "tags": extra})
            return
        self._write_history_part()
        if not self._buffer:  # only Parquet points since the last flush: commit them with the tag alone
            self._commit_without_metrics(extra)
        while self._buffer:
            batch, self._buffer = self._buffer[:MAX_METRICS_PER_BATCH], self._buffer[MAX_METRICS_PER_BATCH:]
            last = [] if self._buffer else [(TAG_LOGGED_THROUGH, str(self._buffered_through)), *extra]
            self._send({"method": "log_batch", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in batch],
                        "tags": last})
        self.logged_through = self._buffered_through

    def _commit_without_metrics(self, extra: list) -> None:
        self._send({"method": "log_batch", "tags": [(TAG_LOGGED_THROUGH, str(self._buffered_through)), *extra]})
        self.logged_through = self._buffered_through

    def _write_history_part(self) -> None:
        """The flushed points as one Parquet part, stored before the metrics that commit them, so the
        full-resolution history survives restarts (``history`` merges the parts)."""
        import pandas as pd

        rows, self._rows = self._rows, []
        first, last = int(rows[0]["step"]), int(rows[-1]["step"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"steps_{first:09d}_{last:09d}.parquet"
            pd.DataFrame(rows).to_parquet(path, index=False)
            self.log_artifact(path, HISTORY_PARTS)

    def merge_history(self):
        """``diagnostics.parquet`` from the parts; None (and the merge spooled, done by `ganlab sync`) while
        the server is unreachable."""
        if self.spool is not None and self.spool.pending(self.run_id) and not self.spool.drain(self.run_id):
            self.spool.append(self.run_id, {"method": "merge_history"})
            return None
        try:
            return merge_history(self.client, self.run_id)
        except Exception as e:  # noqa: BLE001
            if self.spool is None or not _unreachable(e):
                raise
            self.spool.append(self.run_id, {"method": "merge_history"})
            return None

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._send({"method": "log_artifact", "path": str(path), "artifact_path": folder})

    def end(self, status: str, tags: dict[str, str] | None = None) -> None:
        """Flush, then close the run with ``status``; a run is never left RUNNING."""
        try:
            self.flush(tags)
        finally:
            self._send({"method": "set_terminated", "status": status})
            if self.spool is not None and self.spool.pending(self.run_id):
                print(f"ganlab: WARNING: run {self.run_id} ended with requests still in {self.spool.folder}; send "
                      "them with `ganlab sync` once the tracking server is back.", file=sys.stderr, flush=True)
