"""What every command shares: the one-paragraph input error (exit 2), the study and store checks made before
anything starts, and printing tables."""

from __future__ import annotations

import argparse
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


def _print_table(table) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.width", 200, "display.float_format", "{:.3f}".format):
        if "trial" in table.columns:
            width = int(table["trial"].astype(str).str.len().max())
            print("\n" + table.to_string(index=False, formatters={"trial": lambda t: str(t).ljust(width)}))
        else:
            print("\n" + table.to_string(index=False))



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
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
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
    from urllib.parse import urlparse

    if uri.startswith("sqlite:"):
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else Path(urlparse(uri).path)
        if not path.is_file():
            return (f"No MLflow store at {path} (tracking URI {uri}). Run this in the folder where `ganlab run` ran, "
                    "or pass --tracking-uri / set MLFLOW_TRACKING_URI.")
    return _check_store(uri)


def _keys(text: str | None) -> list[str] | None:
    return [k.strip() for k in text.split(",") if k.strip()] if text else None
