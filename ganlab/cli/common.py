"""What every command shares: the one-paragraph input error (exit 2), the study and store checks made before
anything starts, and printing tables."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ganlab.config import ConfigError, StudyConfig, load_study

EXIT_BAD_INPUT = 2
EXIT_TRIALS_FAILED = 1
STORE_PROBE_TIMEOUT_S = 10  # seconds to wait for a tracking server's /health before giving up


def _fail(message: str) -> int:
    print(f"ganlab: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _study_error(e: ConfigError) -> int:
    return _fail(f"{e} `ganlab validate FILE` checks a study without starting anything.")


def _load_checked(path: str) -> StudyConfig:
    from ganlab.study.runner import check_objectives

    study = load_study(path)
    check_objectives(study, path)
    return study


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS when set); 80 when the output is not a terminal."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def _render(table) -> str:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.width", 10**6, "display.max_columns", None,
                           "display.float_format", "{:.3f}".format):
        return table.to_string(index=False)


def _print_table(table, width: int | None = None, keep: int = 1, rest: str = "") -> None:
    """Print ``table``; with ``width``, only as many columns (after the first ``keep``) as fit it, and a line
    saying how many were left out and where they are (``rest``)."""
    text = _render(table)
    dropped = 0
    while width is not None and max(map(len, text.splitlines())) > width and table.shape[1] > keep + 1:
        table = table.iloc[:, :-1]
        dropped += 1
        text = _render(table)
    print("\n" + text)
    if dropped:
        print(f"({dropped} more column{'s' if dropped > 1 else ''}{': ' + rest if rest else ''})")


def _tracking(args: argparse.Namespace) -> str | None:
    from ganlab.track.store import resolve_tracking_uri

    try:
        return resolve_tracking_uri(args.tracking_uri)
    except ValueError as e:
        _fail(f"Invalid --tracking-uri: {e}.")
        return None


def _check_store(uri: str) -> str | None:
    """Reach the store before anything starts: an unreachable server is the user's to fix, exit 2."""
    if uri.startswith(("http://", "https://")):
        # MLflow's client retries an unreachable server for minutes; a health probe answers in seconds.
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=STORE_PROBE_TIMEOUT_S) as r:
                r.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            return (f"Cannot reach the MLflow tracking server {uri}: {reason}. Start it (e.g. `mlflow server "
                    "--host 127.0.0.1 --port 5000`) or fix --tracking-uri / MLFLOW_TRACKING_URI; nothing was run.")
    from ganlab.track.store import open_store

    try:
        open_store(uri)  # a new SQLite store: created under a lock, so concurrent first commands all work
    except Exception as e:  # noqa: BLE001
        return (f"Cannot open the MLflow store {uri}: {type(e).__name__}: {str(e).splitlines()[0][:300]}. Check "
                "--tracking-uri / MLFLOW_TRACKING_URI (a server must be running; a sqlite path's folder must be "
                "writable).")
    return None



def _uri_flag(uri: str | None) -> str:
    return f" --tracking-uri {uri}" if uri else ""



def _read_store(args: argparse.Namespace) -> tuple[str, str] | int:
    """The study name (a name, or a study file's) and a store that exists: reading never creates one."""
    name = _study_name(args.study)
    if isinstance(name, int):
        return name
    uri = _tracking(args)
    if uri is None:
        return EXIT_BAD_INPUT
    problem = _unreadable_store(uri)
    return _fail(problem) if problem else (name, uri)


def _study_name(text: str) -> str | int:
    """A study given by name, or by its file (whose errors are the usual one paragraph, exit 2)."""
    if not text.endswith((".yaml", ".yml")):
        return text
    try:
        return load_study(text).name
    except ConfigError as e:
        return _study_error(e)


def _unreadable_store(uri: str) -> str | None:
    """Why a store cannot be read, or None. A missing SQLite file is an error: reading never creates a store."""
    from ganlab.track.store import missing_store

    path = missing_store(uri)
    if path is not None:
        return (f"No MLflow store at {path} (tracking URI {uri}). Run this in the folder where `ganlab run` ran, "
                "or pass --tracking-uri / set MLFLOW_TRACKING_URI.")
    return _check_store(uri)


def _keys(text: str | None) -> list[str] | None:
    return [k.strip() for k in text.split(",") if k.strip()] if text else None


# each library's logger, and the least level worth keeping in the log file (SQLAlchemy and Alembic narrate every
# table mapping at INFO)
LIBRARY_LOGGERS = {"ray": "INFO", "mlflow": "INFO", "optuna": "INFO", "alembic": "WARNING", "urllib3": "WARNING",
                   "filelock": "WARNING", "sqlalchemy": "WARNING", "py.warnings": "INFO"}
LOG_FILE = "ganlab.log"  # in the study's folder under --storage


def _for_the_console(record) -> bool:
    """Errors, and Tune's answer to a Ctrl-C (it then saves its state and stops its trials, which takes seconds:
    without it the console says nothing meanwhile)."""
    import logging

    return record.levelno >= logging.ERROR or record.getMessage().startswith("Stop signal received")


class _OneLine:
    """A library's error on the console as one line: its message and its exception's last line. The traceback,
    which is about the library's insides (Tune's experiment-state upload racing its own temporary file, say),
    goes to the log file, which the line names."""

    def __init__(self, logs: "LibraryLogs") -> None:
        self.logs = logs

    def format(self, record) -> str:
        line = f"{record.name}: {record.levelname}: {record.getMessage().rstrip()}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line += f" {type(error).__name__}: {error}"
        if record.exc_info or record.stack_info:
            line += f" (traceback in {self.logs.path or 'the study log'})"
        return line


class LibraryLogs:
    """Ray's, MLflow's and Optuna's own messages (configuration boxes, start-up warnings, database creation),
    kept off the console, where ganlab prints its progress, and in a file a user can read. Errors still show.

    Held in memory until the study is known to go ahead (``to_file``), so an input error leaves no file."""

    def __init__(self) -> None:
        import logging
        import logging.handlers

        import mlflow  # noqa: F401 - importing them sets their console handlers up: replace those afterwards
        import optuna
        import ray  # noqa: F401

        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's legacy output, silent at verbose=0
        optuna.logging.disable_default_handler()
        self.memory = logging.handlers.MemoryHandler(capacity=10**6, flushLevel=logging.CRITICAL + 1)
        self.memory.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.errors = logging.StreamHandler(sys.stderr)
        self.errors.setLevel(logging.WARNING)
        self.errors.addFilter(_for_the_console)
        self.errors.setFormatter(_OneLine(self))
        self.attach()
        logging.captureWarnings(True)  # library deprecation warnings: to the file too
        self.path: Path | None = None

    def attach(self) -> None:
        """(Again:) ``ray.init`` clears the handlers of Ray's logger."""
        import logging

        for name, level in LIBRARY_LOGGERS.items():
            log = logging.getLogger(name)
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.addHandler(self.memory)
            log.addHandler(self.errors)
            log.setLevel(level)
            log.propagate = False

    def around_ray_init(self):
        """A context for ``ray.init``: it empties Ray's logger and then logs its start-up warnings; meanwhile
        records with no handler (Python's last resort prints them) go to the file, then the handlers return."""
        import contextlib
        import logging

        @contextlib.contextmanager
        def route():
            previous, logging.lastResort = logging.lastResort, self.memory
            try:
                yield
            finally:
                logging.lastResort = previous
                self.attach()

        return route()

    def to_file(self, path: Path) -> None:
        import logging

        path.parent.mkdir(parents=True, exist_ok=True)
        target = logging.FileHandler(path)
        target.setFormatter(self.memory.formatter)
        self.memory.setTarget(target)
        self.memory.flush()
        self.memory.flushLevel = logging.DEBUG  # from now on every record goes straight through
        self.path = path
