"""``ganlab ui`` (the MLflow UI on the study store) and ``ganlab sync`` (logging kept on disk while a tracking
server was unreachable)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ganlab.cli.common import _check_store, _fail

def cmd_sync(args: argparse.Namespace) -> int:
    """Send what trials kept on disk while the tracking server was unreachable."""
    from ganlab.track.spool import sync_folder

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
    from ganlab.track.store import resolve_tracking_uri

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
    problem = _check_store(uri)  # waits for a `ganlab run` creating this store: the server finds it complete
    if problem:
        return _fail(problem)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"ganlab: WARNING: binding {args.host}: the MLflow UI has no authentication; anyone who can reach "
              "this port can read and delete runs.", file=sys.stderr)
    url = f"http://{args.host}:{args.port}"
    log = db.parent / UI_LOG
    print(f"MLflow UI for {uri} at {url}  (Ctrl-C stops it; the server's own messages: {log})", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", "1"]
    return _serve(cmd, log, url)


UI_LOG = "mlflow-ui.log"  # beside the store: uvicorn's start-up and request lines, deprecation warnings
SERVE_WAIT_S = 120.0  # how long the server may take to answer /health before `ganlab ui` gives up


def _serve(cmd: list[str], log: Path, url: str) -> int:
    """Run a server in its own process group, its output to ``log``, and take the whole group down with us.
    Says when it answers; if it dies first (a port in use, say), prints the end of its log and exits 1.

    ``mlflow server`` starts uvicorn (and, if enabled, job-runner) processes that outlive a plain SIGTERM to it.
    """
    import urllib.request

    # MLflow's GenAI job runner (huey consumer processes) serves no ganlab view and cost ~30 CPU-s of its ~40 at
    # every start (measured, 2 cores); the user's environment may still turn it on.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C or SIGTERM only set a flag, never raise: an exception raised while the server starts (after its fork,
    # before `proc` holds it) left it running, orphaned (measured: `ganlab ui` sent SIGTERM right after its first
    # line left an `mlflow server` behind in 7 tries of 8).
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    health = url.replace("://0.0.0.0:", "://127.0.0.1:") + "/health"
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, answered = time.time() + SERVE_WAIT_S, False
        while proc.poll() is None and not stopping:
            if not answered and time.time() < deadline:
                try:
                    with urllib.request.urlopen(health, timeout=2):
                        print(f"Serving {url}", flush=True)
                        answered = True
                except OSError:
                    pass
            time.sleep(0.5)
        if stopping:
            return 0
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        print(f"ganlab: the MLflow server stopped (exit code {proc.returncode}); the end of {log}:\n{tail}",
              file=sys.stderr)
        return 1
    finally:
        _stop_group(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_group(proc: subprocess.Popen) -> None:
    """The server's whole process group: politely, then not."""
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
