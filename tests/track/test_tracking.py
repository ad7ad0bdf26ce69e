"""Real MLflow SQLite stores in temporary folders; no mocks."""

import json

import pytest
from mlflow.tracking import MlflowClient

from ganlab.track.store import (
    TAG_KIND,
    StudyRun,
    default_artifact_location,
    resolve_tracking_uri,
    start_study_run,
)


def test_relative_sqlite_uri_made_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, cwd=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///sub/x.db", cwd=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'sub/x.db'}"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.1:5000")
    assert resolve_tracking_uri(None) == "http://10.0.0.1:5000"
    with pytest.raises(ValueError, match="plain folder"):
        resolve_tracking_uri("./mlruns")


def test_artifacts_beside_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert default_artifact_location(uri) == (tmp_path / "mlartifacts").resolve().as_uri()
    assert default_artifact_location("http://127.0.0.1:5000") is None


@pytest.fixture
def study_run(tmp_path, sqlite_uri) -> StudyRun:
    study_file = tmp_path / "s.yaml"
    study_file.write_text("name: s\n")
    return start_study_run(sqlite_uri, "s", study_file, {"sweep.optim.lr_ratio": {"grid": [1, 2]}}, {"x": "y"})


def test_parent_run_holds_study_file_and_space(study_run, sqlite_uri, tmp_path):
    client = MlflowClient(sqlite_uri)
    run = client.get_run(study_run.parent_run_id)
    assert run.data.tags[TAG_KIND] == "study" and run.data.tags["x"] == "y"
    assert json.loads(run.data.params["sweep.optim.lr_ratio"]) == {"grid": [1, 2]}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["s.yaml"]
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the store, not in some cwd
