"""Logging that survives an unreachable tracking server: requests retried with backoff, then kept on disk
in order and replayed when the server answers again (or by ``ganlab sync``)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

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
    """What a pack could not send to an unreachable tracking server, kept on local disk in order, one JSON
    line per request, replayed when the server answers again or later by ``ganlab sync``. A key names one
    ordered queue: a trial's run id, or its pack's parts (``<parent run>_<pack>``)."""

    def __init__(self, folder: str | Path, tracking_uri: str):
        self.folder = Path(folder)
        self.tracking_uri = tracking_uri
        self.warned = False

    def _file(self, key: str) -> Path:
        return self.folder / f"{key}.jsonl"

    def _files(self, key: str) -> Path:
        return self.folder / "files" / key

    def pending(self, key: str) -> bool:
        return self._file(key).is_file()

    def append(self, key: str, record: dict[str, Any]) -> None:
        """``record`` names its run (``run_id``; the key when it does not)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"run_id": key, **record}
        if record.get("method") == "log_artifact":  # keep a copy: the original is a temporary file
            # under its own name: the store names the artifact after the file (diagnostics.parquet)
            copy = self._files(key) / str(time.time_ns()) / Path(record["path"]).name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(Path(record["path"]).read_bytes())
            record = {**record, "path": str(copy)}
        with self._file(key).open("a") as f:
            f.write(json.dumps({"tracking_uri": self.tracking_uri, **record}) + "\n")
        if not self.warned:
            self.warned = True
            print(f"ganlab: WARNING: the tracking server {self.tracking_uri} is unreachable; run {record['run_id']} keeps "
                  f"training and its logging is kept in {self.folder} (sent when the server answers again, or "
                  "with `ganlab sync`).", file=sys.stderr, flush=True)

    def drain(self, key: str) -> bool:
        """Send the requests spooled under ``key``, in order; True when none is left."""
        path = self._file(key)
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
        shutil.rmtree(self._files(key), ignore_errors=True)
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
    else:
        raise ValueError(f"unknown spooled request {method!r}")



def sync_folder(folder: str | Path) -> tuple[int, int]:
    """Replay every spool under ``folder`` (``ganlab sync``): (runs sent completely, runs still pending)."""
    done = left = 0
    for path in sorted(Path(folder).rglob("spool/*.jsonl")):
        first = json.loads(path.read_text().splitlines()[0])
        if Spool(path.parent, first["tracking_uri"]).drain(path.stem):
            done += 1
        else:
            left += 1
    return done, left
