"""The suite's `ganlab` processes, forked from one warm interpreter instead of started cold.

Every `ganlab` command the tests run is a real process of its own: its own pid, working folder, environment,
standard streams (files, at the file-descriptor level), exit code and signals (SIGINT, SIGKILL). What it
shares with the others is the import of torch, MLflow, Optuna, pandas, matplotlib and Ray Tune, done once in
the server and inherited through ``fork`` (a `ganlab run` started cold pays ~8 CPU-s of imports, half its
driver's CPU, and ~2 s more tearing those modules down at exit; the suite runs ~100 such commands on 2 cores).

ganlab itself is imported fresh in each child, after its environment is set (``ganlab.study.progress`` reads
GANLAB_PROGRESS_EVERY at import), and from ``main()`` on a child runs exactly what the console script runs.
The server imports libraries only: it starts no thread (checked) and joins no Ray cluster, so nothing is held
across the fork; Ray's configuration, read from the environment at import, is read again in each child. The
console script itself, cold, stays covered by tests/cli (they start `python -m ganlab.cli`).

    proc = run_ganlab(["run", "study.yaml"], cwd=tmp_path, env=env)        # like subprocess.run(capture_output)
    child = start_ganlab(["run", "study.yaml"], cwd=..., output=log)   # like Popen: poll, wait, send_signal
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

# Ray reads its configuration (its authentication mode among it) from the environment when imported, and the
# tests' clusters differ in theirs: a child reads it again under its own environment (`_child`), as Ray's own
# token set-up does.
WARM = ("torch", "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store", "optuna", "pandas",
        "pyarrow.parquet", "matplotlib", "matplotlib.pyplot", "pydantic", "yaml", "sklearn.datasets", "ray",
        "ray.tune")


# --- the server (its own process) -------------------------------------------------------------------------


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def serve() -> None:
    """Reads one request per line on stdin, forks a child per request; writes {"pid"} for each request and
    {"exit", "code"} for each child that ended, one JSON line each, on the control descriptor."""
    import importlib
    import select

    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in WARM:
        importlib.import_module(name)
    sys.path[0] = str(Path(sys.executable).parent)  # as the console script has it, not this folder
    control = os.fdopen(int(os.environ.pop("GANLAB_FORKSERVER_FD")), "w", buffering=1)
    threads = _thread_count()
    if threads != 1:  # a thread (a lock it holds) would not survive the fork: cold starts are the safe fallback
        control.write(json.dumps({"error": f"the fork server has {threads} threads after its imports"}) + "\n")
        return
    control.write(json.dumps({"ready": True}) + "\n")
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.05)
        if readable:
            line = sys.stdin.readline()
            if not line:
                return
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(request)  # never returns
            control.write(json.dumps({"pid": pid}) + "\n")
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            control.write(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n")


def _child(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    from ray._raylet import Config

    Config.initialize("")  # Ray's configuration from this child's environment, not the server's
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    err = out if request["err"] == request["out"] else os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in {null, out, err}:
        os.close(fd)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = ["ganlab", *request["args"]]
    code: object = 1
    try:
        from ganlab.cli import main

        code = main(request["args"])
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:  # uncaught, as Python ends: a traceback, then dead by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - uncaught, as Python ends: a traceback, exit code 1
        traceback.print_exc()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    # What an exiting interpreter does that matters (exit handlers: Ray's shutdown, logging's flush, temporary
    # folders), then out; tearing down the torch, MLflow and Ray modules takes ~2 s per child.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


# --- the client (in the test process) ---------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        # Arrow's jemalloc and OpenMP start threads at import unless told otherwise; a thread does not survive a
        # fork. The suite runs one torch thread per xdist worker anyway (conftest).
        env = {"OMP_NUM_THREADS": "1", **os.environ, "GANLAB_FORKSERVER_FD": str(write_fd),
               "JE_ARROW_MALLOC_CONF": "background_thread:false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("RAY_ADDRESS", None)
        self.log = tempfile.NamedTemporaryFile("w", prefix="ganlab-forkserver-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-c", "import forkserver; forkserver.serve()"],
                                     cwd=Path(__file__).parent, env=env, stdin=subprocess.PIPE, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True, pass_fds=(write_fd,))
        os.close(write_fd)
        self.control = os.fdopen(read_fd)
        self.lock = threading.Lock()  # one request at a time: the next "pid" line answers it
        self.changed = threading.Condition()
        self.pids: list[int] = []
        self.codes: dict[int, int] = {}
        first = json.loads(self.control.readline() or '{"error": "the fork server exited"}')
        if "error" in first:
            raise RuntimeError(f"{first['error']} (log: {self.log.name})")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.control:
            message = json.loads(line)
            with self.changed:
                if "pid" in message:
                    self.pids.append(message["pid"])
                else:
                    self.codes[message["exit"]] = message["code"]
                self.changed.notify_all()

    def fork(self, request: dict) -> int:
        with self.lock, self.changed:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            if not self.changed.wait_for(lambda: self.pids, timeout=60):
                raise RuntimeError(f"the fork server did not answer (log: {self.log.name})")
            return self.pids.pop(0)

    def code(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit code, or None if it is still running after ``timeout`` seconds (0: just look)."""
        deadline = None if timeout is None else time.time() + timeout
        with self.changed:
            while pid not in self.codes:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the fork server died (log: {self.log.name})")
                left = 1.0 if deadline is None else min(1.0, deadline - time.time())
                if left <= 0:
                    break
                self.changed.wait(left)
            return self.codes.get(pid)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


_server: _Server | None = None
_server_lock = threading.Lock()


def server() -> _Server:
    global _server
    with _server_lock:
        if _server is None or _server.proc.poll() is not None:
            _server = _Server()
        return _server


def stop() -> None:
    if _server is not None and _server.proc.poll() is None:
        _server.close()


atexit.register(stop)


class Child:
    """A forked `ganlab` process, with the part of ``subprocess.Popen`` the tests use."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], out: Path, err: Path) -> None:
        self.args = ["ganlab", *args]
        self.out, self.err = out, err
        self.returncode: int | None = None
        self.pid = server().fork({"args": list(args), "cwd": str(cwd), "env": dict(env), "out": str(out),
                                  "err": str(err)})
        self._server = _server

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._server.code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_ganlab(args: list[str], cwd: Path, env: dict[str, str] | None = None, output: Path | None = None) -> Child:
    """`ganlab ARGS` in the background; stdout and stderr together in ``output`` (like ``stderr=STDOUT``)."""
    output = output or Path(tempfile.mkstemp(prefix="ganlab-", suffix=".log")[1])
    Path(output).write_text("")  # a fresh log, as Popen(stdout=open(path, "w")) gives
    return Child(args, cwd, dict(os.environ if env is None else env), output, output)


def run_ganlab(args: list[str], cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess:
    """`ganlab ARGS` to its end, like ``subprocess.run(..., capture_output=True, text=True)``."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        child = Child(args, cwd, dict(os.environ if env is None else env), out, err)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(30)
            raise
        deadline = time.time() + 5
        while not out.exists() and time.time() < deadline:  # created by the child right after the fork
            time.sleep(0.01)
        return subprocess.CompletedProcess(child.args, code, out.read_text() if out.exists() else "",
                                           err.read_text() if err.exists() else "")
