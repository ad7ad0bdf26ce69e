"""The one writer of a trial's child run: metrics buffered and sent in batches (one MLflow call costs
milliseconds, so a call per metric per step would cost more than the training it records), every point
also in the Parquet history, and nothing lost or stored twice across restarts."""

from __future__ import annotations

import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from ganlab.track.history import HISTORY_PARTS, merge_history
from ganlab.track.spool import OPEN_WAIT_S, SEND_ATTEMPTS, SEND_BACKOFF_S, Spool, _unreachable, replay
from ganlab.track.store import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    TAG_HOST,
    TAG_KIND,
    TAG_LOGGED_THROUGH,
    TAG_PARENT,
    TAG_PLATFORM,
    TAG_RESTARTS,
    TAG_STUDY,
    TAG_TRIAL_ID,
    StudyRun,
    _param_text,
    find_trial_run,
)


class TrialLogger:
    """The one writer of a trial's child run. Metrics are buffered and sent in batches.

    A trial that restarts (driver resumed, worker died, PBT restarted its actor) continues its own run:
    ``open`` finds it by trial id. Each flush records the last step it completed, and a restarted trial,
    which recomputes the same steps from its checkpoint, skips steps already stored, so the run's history
    has every step exactly once.

    "Already stored" is per metric: MLflow's SQL store commits a batch's metrics and its tags in two
    transactions, so a process killed between them leaves points stored beyond the step the tag says. A
    flush's points go out step by step, so each metric's latest stored step tells exactly which of its points
    arrived; a restarted trial skips those too, instead of storing them a second time under a new timestamp.
    """

    def __init__(self, study: StudyRun, run_id: str, logged_through: int = -1, spool: Spool | None = None,
                 stored_through: dict[str, int] | None = None):
        """``stored_through``: metric -> latest step the store holds, where that is past ``logged_through``
        (an interrupted flush)."""
        self.study = study
        self.run_id = run_id
        self.client = MlflowClient(study.tracking_uri)
        self.spool = spool
        self.logged_through = logged_through
        self._stored_through = {k: v for k, v in (stored_through or {}).items() if v > logged_through}
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
            logger = cls(study, existing.info.run_id, int(existing.data.tags.get(TAG_LOGGED_THROUGH, -1)), spool,
                         _latest_steps(client, existing))
            restarts = int(existing.data.tags.get(TAG_RESTARTS, 0)) + 1
            logger.set_tags({**tags, TAG_RESTARTS: str(restarts)})
            return logger
        all_tags = {TAG_PARENT: study.parent_run_id, TAG_STUDY: study.study_name, TAG_KIND: "trial",
                    TAG_TRIAL_ID: trial_id, TAG_HOST: socket.gethostname(),
                    TAG_PLATFORM: platform.platform(), **tags}
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
            stored = self._stored_through
            self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items()
                                if not stored or step > stored.get(k, -1))
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
        self._stored_through = {k: v for k, v in self._stored_through.items() if v > self.logged_through}

    def continue_from(self, iteration: int) -> None:
        """A new trajectory from ``iteration`` on (population-based training cloned another trial's state): its
        steps are logged again, whatever this run stored for them before."""
        self.flush()
        self.logged_through = iteration - 1
        self._stored_through = {}

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


def _latest_steps(client: MlflowClient, run) -> dict[str, int]:
    """Each metric's latest stored step (MLflow keeps the latest point of every metric by step, with the run)."""
    latest = getattr(run.data, "_metric_objs", None)
    if latest is not None:
        return {m.key: int(m.step) for m in latest}
    return {k: max((m.step for m in client.get_metric_history(run.info.run_id, k)), default=-1)
            for k in run.data.metrics}
