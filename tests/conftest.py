import os
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ganlab_cmd(*args: str) -> list[str]:
    """The installed console script's entry point, run with this interpreter."""
    return [sys.executable, "-m", "ganlab.cli", *args]


@pytest.fixture
def clean_env(monkeypatch):
    """Tests choose their own store; a developer's MLFLOW_TRACKING_URI must not leak in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    env = dict(os.environ)
    return env
