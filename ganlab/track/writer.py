"""The one writer of a pack's runs: every study trial keeps its own MLflow child run, and the pack books them
together (runs found in one search, points and tags of every lane in one transaction per flush, one Parquet
part per flush for all lanes, each trial's ``diagnostics.parquet`` written once from memory, runs ended
together), so a trial in a pack of hundreds costs milliseconds of bookkeeping rather than a second.

Guarantees, per lane, across restarts (resume, a killed worker, PBT): every point exactly once. Each flush
records on each run the last step it completed (``logged_through``); a restarted pack recomputes the same steps
from its checkpoint and skips those. A tracking server's store commits a batch's metrics and its tags
separately, so there "already stored" is also kept per metric (a run's latest stored step per key); a SQL store
written here commits both in one transaction. Requests to an unreachable tracking server wait in the spool;
a run is never left RUNNING by a writer that could end it.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganlab.track.history import HISTORY_FILE, PACK_PARTS, history_location, split_by_run, write_parquet
from ganlab.track.spool import OPEN_WAIT_S, SEND_ATTEMPTS, SEND_BACKOFF_S, Spool, _unreachable, replay
from ganlab.track.sql import SqlWriter, bulk_capable
from ganlab.track.store import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    TAG_HISTORY,
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
    search_all_runs,
)

CONFIG_FILE = "trial_config.json"


@dataclass
class RunSpec:
    """What a study trial's run is created with."""

    trial_id: str
    name: str
    params: dict[str, Any]
    tags: dict[str, str]
    config: dict[str, Any]


@dataclass
class _Lane:
    run_id: str
    artifact_uri: str
    logged_through: int = -1
    stored_through: dict[str, int] = field(default_factory=dict)  # metric -> latest stored step past logged_through
    buffered_through: int = -1
    points: list[tuple[str, float, int, int]] = field(default_factory=list)  # (key, value, timestamp, step)
    tags: dict[str, str] = field(default_factory=dict)
    open: bool = True
    last: tuple | None = None  # (step, names, row, columns sent to MLflow) of the latest ``record``


class PackWriter:
    """Writes the runs of one pack (``pack_id``: the Tune trial that trains it; a trial alone is a pack of one)."""

    def __init__(self, study: StudyRun, pack_id: str, spool_folder: str | Path | None = None,
                 background: bool = False):
        """``background``: flushes may run in a writer thread beside training (``flush(wait=False)``)."""
        from mlflow.tracking import MlflowClient

        self.study, self.pack_id = study, pack_id
        self.client = MlflowClient(study.tracking_uri)
        self.sql = SqlWriter(study.tracking_uri) if bulk_capable(study.tracking_uri) else None
        self.spool = Spool(spool_folder, study.tracking_uri) if spool_folder is not None and self.sql is None else None
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a "View run" line per ended run
        if self.spool is not None:
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # ganlab retries, then spools
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.lanes: list[_Lane] = []
        self._parts: list[Any] = []  # this pack's flushed rows, one DataFrame per flush (run_id, step, metrics)
        self._rows: list[tuple[np.ndarray, int, Sequence[str], np.ndarray]] = []  # (lanes, step, names, values)
        self._extra: list[dict[str, Any]] = []  # rows of single-lane metrics (cost, hp): run_id, step, ...
        self._recorded: dict[tuple[str, ...], set[int]] = {}  # names -> the lanes that recorded them
        self._staging = Path(tempfile.mkdtemp(prefix="ganlab-pack-"))  # files waiting for the next flush
        self._staged: set[int] = set()
        self._pending = None  # the background flush in flight
        self._pool = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganlab-writer")
        self.restarted = False

    @property
    def parts_folder(self) -> str:
        return f"{PACK_PARTS}/{self.pack_id}"

    # --- opening ---

    def open(self, specs: Sequence[RunSpec]) -> list[str]:
        """Find or create every lane's run (waiting up to OPEN_WAIT_S for an unreachable server when spooling);
        returns the run ids, lane by lane."""
        deadline, delay = time.time() + (OPEN_WAIT_S if self.spool is not None else 0), SEND_BACKOFF_S
        while True:
            try:
                return self._open(specs)
            except Exception as e:  # noqa: BLE001
                if not _unreachable(e) or time.time() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 30.0)

    def _open(self, specs: Sequence[RunSpec]) -> list[str]:
        from mlflow.entities import Param

        existing = {run.data.tags.get(TAG_TRIAL_ID): run for run in self._existing([s.trial_id for s in specs])}
        host, plat = socket.gethostname(), platform.platform()
        history = history_location(self.study.parent_run_id, self.parts_folder)
        self.lanes, created, params, restarted = [], [], {}, {}
        new = []
        for spec in specs:
            run = existing.get(spec.trial_id)
            if run is not None:
                lane = _Lane(run.info.run_id, run.info.artifact_uri,
                             int(run.data.tags.get(TAG_LOGGED_THROUGH, -1)))
                lane.stored_through = {k: v for k, v in _latest_steps(self.client, run).items()
                                       if v > lane.logged_through}
                lane.buffered_through = lane.logged_through
                restarts = int(run.data.tags.get(TAG_RESTARTS, 0)) + 1
                restarted[lane.run_id] = {**spec.tags, TAG_RESTARTS: str(restarts), TAG_HISTORY: history}
                self.lanes.append(lane)
                continue
            tags = {TAG_PARENT: self.study.parent_run_id, TAG_STUDY: self.study.study_name, TAG_KIND: "trial",
                    TAG_TRIAL_ID: spec.trial_id, TAG_HOST: host, TAG_PLATFORM: plat, TAG_HISTORY: history,
                    **spec.tags}
            lane = _Lane("", "")
            self.lanes.append(lane)
            new.append((lane, spec, tags))
        if self.sql is not None:
            made = self.sql.create_runs(self.study.experiment_id, [(spec.name, tags) for _, spec, tags in new])
        else:
            made = [(r.info.run_id, r.info.artifact_uri) for r in
                    (self.client.create_run(self.study.experiment_id, tags=tags, run_name=spec.name)
                     for _, spec, tags in new)]
        for (lane, spec, _), (run_id, uri) in zip(new, made):
            lane.run_id, lane.artifact_uri = run_id, uri
            created.append((lane, spec))
            params[run_id] = {k: _param_text(v) for k, v in spec.params.items()}
        if restarted:
            self.restarted = True
            for run_id in restarted:
                self.client.update_run(run_id, status="RUNNING")
            self._restore_history()
        if self.sql is not None:
            self.sql.write(tags=restarted, params=params)
        else:
            for run_id, kv in params.items():
                items = [Param(k, v) for k, v in kv.items()]
                for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
                    self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
            for run_id, tags in restarted.items():
                self._send(run_id, {"method": "log_batch", "tags": list(tags.items())})
        with tempfile.TemporaryDirectory() as tmp:
            import json

            for lane, spec in created:
                folder = Path(tmp) / lane.run_id
                folder.mkdir()
                (folder / CONFIG_FILE).write_text(json.dumps(spec.config, indent=2))
                self._log_artifacts(lane, folder)
        return [lane.run_id for lane in self.lanes]

    def _existing(self, trial_ids: list[str]):
        """The runs these trials already have under this study run (after a resume, retry or PBT restart)."""
        if len(trial_ids) == 1:
            tag, value = TAG_TRIAL_ID, trial_ids[0]
        else:
            from ganlab.track.store import TAG_PACK

            tag, value = TAG_PACK, self.pack_id
        wanted = set(trial_ids)
        return [run for run in search_all_runs(
            self.client, self.study, f"tags.`{TAG_PARENT}` = '{self.study.parent_run_id}' and tags.`{tag}` = '{value}'")
            if run.data.tags.get(TAG_TRIAL_ID) in wanted]

    def _restore_history(self) -> None:
        """A restarted pack's rows before its checkpoint, from its Parquet parts: read once for all lanes, so
        each trial's ``diagnostics.parquet`` is still written whole, from memory, at its end."""
        from ganlab.track.history import read_parts

        frame = read_parts(self.client, self.study.parent_run_id, self.parts_folder)
        if frame is not None and len(frame):
            through = {lane.run_id: lane.logged_through for lane in self.lanes}
            keep = frame["step"].to_numpy() <= frame["run_id"].map(through).fillna(-1).to_numpy()
            self._parts.append(frame[keep])

    # --- points ---

    def record(self, step: int, names: Sequence[str], values: np.ndarray, lanes: Sequence[int],
               mlflow: Sequence[int] | None) -> None:
        """One logged step of several lanes: ``values`` (len(lanes), len(names)) go to the Parquet history; the
        columns ``mlflow`` (indices into ``names``; None: all) also become MLflow points."""
        keep = [i for i, lane in enumerate(lanes) if step > self.lanes[lane].logged_through]
        if not keep:
            return
        lanes = np.asarray(lanes)[keep]
        values = np.asarray(values, dtype=np.float64)[keep]
        names = tuple(names)
        self._rows.append((lanes, step, names, values))
        self._recorded.setdefault(names, set()).update(lanes.tolist())
        now = int(time.time() * 1000)
        columns = range(len(names)) if mlflow is None else mlflow
        for row, lane_index in zip(values.tolist(), lanes.tolist()):
            lane = self.lanes[lane_index]
            self._points(lane, step, names, row, columns, now)
            lane.last = (step, names, row, None if mlflow is None else columns)
            lane.buffered_through = max(lane.buffered_through, step)

    @staticmethod
    def _points(lane: _Lane, step: int, names: Sequence[str], row: list[float], columns, now: int) -> None:
        stored = lane.stored_through
        lane.points.extend((names[c], row[c], now, step) for c in columns
                           if not stored or step > stored.get(names[c], -1))

    def _complete_last(self, lane: _Lane) -> None:
        """Every figure of the lane's latest recorded step to MLflow (those ``record`` did not send): a run's
        latest values, which the run table and ``load_study`` read, are its final ones however it ended (a
        scheduler stops a trial between chart steps)."""
        if lane.last is None or lane.last[3] is None:
            return
        step, names, row, sent = lane.last
        sent = set(sent)
        self._points(lane, step, names, row, [c for c in range(len(names)) if c not in sent], int(time.time() * 1000))
        lane.last = None

    def log(self, lane_index: int, step: int, metrics: dict[str, float], mlflow: bool = True) -> None:
        """A few figures of one lane (cost, hyper-parameters): to the history and, with ``mlflow``, to MLflow."""
        lane = self.lanes[lane_index]
        if step <= lane.logged_through:
            return
        self._extra.append({"run_id": lane.run_id, "step": step, **metrics})
        self._recorded.setdefault(tuple(metrics), set()).add(lane_index)
        if mlflow:
            now = int(time.time() * 1000)
            lane.points.extend((k, float(v), now, step) for k, v in metrics.items())
        lane.buffered_through = max(lane.buffered_through, step)

    def set_tags(self, lane_index: int, tags: dict[str, str]) -> None:
        """Tags sent with the next flush (in its transaction on a SQL store)."""
        self.lanes[lane_index].tags.update({k: str(v) for k, v in tags.items()})

    def continue_from(self, lane_index: int, iteration: int) -> None:
        """A new trajectory from ``iteration`` on (PBT cloned another trial's state): its steps are logged
        again, whatever the run stored for them before."""
        self.flush()
        lane = self.lanes[lane_index]
        lane.logged_through = lane.buffered_through = iteration - 1
        lane.stored_through = {}

    # --- flushing ---

    def stage(self, lane_index: int) -> Path:
        """A folder whose files become the lane's artifacts (same relative paths) at the next flush: pictures
        rendered for a whole pack at once reach the store in one request per lane per flush."""
        self._staged.add(lane_index)
        folder = self._staging / str(lane_index)
        folder.mkdir(exist_ok=True)
        return folder

    def flush(self, wait: bool = True) -> None:
        """The buffered rows as one Parquet part of the pack (stored before the points that commit them), then
        every lane's points and tags (one transaction on a SQL store, a batch per run on a server), then the
        staged files. With a background writer and ``wait=False`` the store work runs in its thread beside
        training (an accelerator never waits for the database); flushes land in order either way, and
        ``sync`` (every checkpoint, every end) waits for the one in flight."""
        self.sync()
        job = self._take()
        if job is None:
            return
        if wait or self._pool is None:
            self._commit(job)
        else:
            self._pending = self._pool.submit(self._commit, job)

    def sync(self) -> None:
        """Wait for the background flush in flight (its error, if any, raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _take(self):
        """What the next flush stores, taken from the buffers (which start again empty)."""
        staged = []
        if self._staged:
            moved = Path(tempfile.mkdtemp(dir=self._staging, prefix="flush-"))
            for i in sorted(self._staged):
                folder = self._staging / str(i)
                if any(folder.iterdir()):
                    staged.append((self.lanes[i], folder.rename(moved / str(i))))
                else:
                    folder.rmdir()
            self._staged = set()
        frame = self._frame()
        if frame is not None:
            self._parts.append(frame)
        lanes = []
        for lane in self.lanes:
            if lane.points or lane.buffered_through > lane.logged_through or lane.tags:
                lanes.append((lane, lane.points, lane.tags, lane.buffered_through))
                lane.points, lane.tags = [], {}
        if not staged and frame is None and not lanes:
            return None
        return staged, frame, lanes

    def _commit(self, job) -> None:
        import shutil

        staged, frame, lanes = job
        for lane, folder in staged:
            self._log_artifacts(lane, folder)
        if staged:
            shutil.rmtree(staged[0][1].parent, ignore_errors=True)
        if frame is not None:
            self._write_part(frame)
        if self.sql is not None:
            points = [(lane.run_id, *p) for lane, lane_points, _, _ in lanes for p in lane_points]
            tags = {lane.run_id: {**lane_tags, TAG_LOGGED_THROUGH: str(through)}
                    for lane, _, lane_tags, through in lanes}
            if points or tags:
                self.sql.write(points, tags)
        else:
            for lane, lane_points, lane_tags, through in lanes:
                self._flush_rest(lane, lane_points, lane_tags, through)
        for lane, _, _, through in lanes:
            lane.logged_through = max(lane.logged_through, through)
            lane.stored_through = {k: v for k, v in lane.stored_through.items() if v > lane.logged_through}

    def _flush_rest(self, lane: _Lane, points: list, tags: dict[str, str], through: int) -> None:
        extra = list(tags.items())[: MAX_PARAMS_PER_BATCH - 1]
        commit = [(TAG_LOGGED_THROUGH, str(through))]
        if not points:
            self._send(lane.run_id, {"method": "log_batch", "tags": commit + extra})
        for i in range(0, len(points), MAX_METRICS_PER_BATCH):
            last = i + MAX_METRICS_PER_BATCH >= len(points)
            self._send(lane.run_id, {"method": "log_batch", "metrics": [list(p) for p in points[i : i + MAX_METRICS_PER_BATCH]],
                                     "tags": commit + extra if last else []})

    def _frame(self):
        """The rows since the last flush as one wide frame (run_id, step, metrics...), or None."""
        import pandas as pd

        rows, self._rows = self._rows, []
        extra, self._extra = self._extra, []
        if not rows and not extra:
            return None
        run_ids = np.array([lane.run_id for lane in self.lanes], dtype=object)
        frames = []
        by_names: dict[tuple[str, ...], list] = {}
        for lanes, step, names, values in rows:
            by_names.setdefault(names, []).append((lanes, step, values))
        for names, group in by_names.items():
            lanes = np.concatenate([g[0] for g in group])
            steps = np.concatenate([np.full(len(g[0]), g[1], dtype=np.int64) for g in group])
            values = np.concatenate([g[2] for g in group])
            frame = pd.DataFrame(values, columns=list(names))
            frame.insert(0, "step", steps)
            frame.insert(0, "run_id", run_ids[lanes])
            frames.append(frame)
        if extra:
            frames.append(pd.DataFrame(extra))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _write_part(self, frame) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"part_{time.time_ns():020d}_{os.getpid()}.parquet"
            write_parquet(frame, path)
            if self.sql is not None:
                self.client.log_artifact(self.study.parent_run_id, str(path), self.parts_folder)
            else:
                self._send(self.study.parent_run_id, {"method": "log_artifact", "path": str(path),
                                                      "artifact_path": self.parts_folder},
                           spool_key=f"{self.study.parent_run_id}_{self.pack_id}")

    # --- history ---

    def histories(self, lane_indices: Sequence[int]) -> dict[int, Any]:
        """Each lane's full history (one row per logged step), from memory: lane -> DataFrame. Flushes first,
        so the history holds every row recorded so far and the store holds it too."""
        self.flush()
        wanted = {self.lanes[i].run_id: i for i in lane_indices}
        recorded = {i: set() for i in lane_indices}
        for names, lanes in self._recorded.items():
            for i in lanes & recorded.keys():
                recorded[i].update(names)
        return {wanted[run_id]: frame for run_id, frame in
                split_by_run(self._parts, list(wanted), {self.lanes[i].run_id: r for i, r in recorded.items()}).items()}

    # --- artifacts and ending ---

    def log_artifacts(self, lane_index: int, folder: str | Path, artifact_path: str | None = None) -> None:
        """Every file under ``folder`` as artifacts of the lane's run, in one request."""
        self._log_artifacts(self.lanes[lane_index], folder, artifact_path)

    def _log_artifacts(self, lane: _Lane, folder: str | Path, artifact_path: str | None = None) -> None:
        if self.sql is not None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            get_artifact_repository(lane.artifact_uri).log_artifacts(str(folder), artifact_path)
            return
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                sub = path.parent.relative_to(folder).as_posix()
                target = "/".join(p for p in (artifact_path, "" if sub == "." else sub) if p) or None
                self._send(lane.run_id, {"method": "log_artifact", "path": str(path), "artifact_path": target})

    def end(self, lane_indices: Sequence[int], status: str, tags: dict[int, dict[str, str]] | None = None,
            histories: dict[int, Any] | None = None) -> None:
        """Flush (the tags, the staged files), store each lane's ``diagnostics.parquet`` (``histories``, from
        ``histories()``; None: none, as for a trial that never trained), then end the runs with ``status``; a run
        is never left RUNNING, whatever failed before."""
        lane_indices = [i for i in lane_indices if self.lanes[i].open]
        if not lane_indices:
            return
        try:
            for i in lane_indices:
                self._complete_last(self.lanes[i])
            for i, t in (tags or {}).items():
                self.set_tags(i, t)
            for i, history in (histories or {}).items():
                write_parquet(history, self.stage(i) / HISTORY_FILE)
            self.flush()
        finally:
            self._terminate(lane_indices, status)

    def close(self) -> None:
        """The flush in flight lands, the writer thread and the staging folder go (after the last ``end``)."""
        import shutil

        try:
            self.sync()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            shutil.rmtree(self._staging, ignore_errors=True)

    def _terminate(self, lane_indices: Sequence[int], status: str) -> None:
        runs = [self.lanes[i].run_id for i in lane_indices]
        for i in lane_indices:
            self.lanes[i].open = False
        if self.sql is not None:
            self.sql.terminate(runs, status)
            return
        for run_id in runs:
            self._send(run_id, {"method": "set_terminated", "status": status})
            if self.spool is not None and self.spool.pending(run_id):
                print(f"ganlab: WARNING: run {run_id} ended with requests still in {self.spool.folder}; send "
                      "them with `ganlab sync` once the tracking server is back.", file=sys.stderr, flush=True)

    # --- a tracking server: requests retried, then spooled ---

    def _send(self, run_id: str, record: dict[str, Any], spool_key: str | None = None) -> None:
        """One request, in order after anything spooled before under the same key; retried with backoff while
        the server is unreachable, then spooled to disk (with a spool) so training goes on and nothing is lost."""
        key = spool_key or run_id
        spool = self.spool
        if spool is not None and spool.pending(key) and not spool.drain(key):
            spool.append(key, {**record, "run_id": run_id})
            return
        delay = SEND_BACKOFF_S
        for attempt in range(SEND_ATTEMPTS):
            try:
                replay(self.client, {**record, "run_id": run_id})
                return
            except Exception as e:  # noqa: BLE001
                if spool is None or not _unreachable(e):
                    raise
                if attempt + 1 < SEND_ATTEMPTS:
                    time.sleep(delay)
                    delay *= 2
        spool.append(key, {**record, "run_id": run_id})


def _latest_steps(client, run) -> dict[str, int]:
    """Each metric's latest stored step (MLflow keeps the latest point of every metric by step, with the run)."""
    latest = getattr(run.data, "_metric_objs", None)
    if latest is not None:
        return {m.key: int(m.step) for m in latest}
    return {k: max((m.step for m in client.get_metric_history(run.info.run_id, k)), default=-1)
            for k in run.data.metrics}
