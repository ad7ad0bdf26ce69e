"""Logging that survives an unreachable tracking server: requests retried with backoff, then kept on disk
in order and replayed when the server answers again (or by ``ganlab sync``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from ganlab.track.history import merge_history

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
