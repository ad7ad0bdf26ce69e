"""Real MLflow SQLite stores in temporary folders; no mocks."""

import json

import pytest
from mlflow.tracking import MlflowClient

from ganlab.track.logger import TrialLogger
from ganlab.track.store import (
    TAG_KIND,
    TAG_LOGGED_THROUGH,
    TAG_NODE_ID,
    TAG_PARENT,
    TAG_RESTARTS,
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


def test_trial_logger_loses_no_metric_point(study_run, sqlite_uri):
    logger = TrialLogger.open(study_run, "trial-0", "t0", {"optim.lr_ratio": 2.0, "data.name": "ring8"}, {"k": "v"}, {"a": 1})
    for step in range(1, 701):  # 2100 points: crosses the 1000-per-batch limit twice
        logger.log_metrics(step, {"acc/real": step / 1000, "acc/fake": 0.5, "loss/d": float("nan") if step == 5 else 1.0})
    logger.end("FINISHED")
    client = MlflowClient(sqlite_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_PARENT] == study_run.parent_run_id
    assert run.data.params == {"optim.lr_ratio": "2.0", "data.name": "ring8"}
    history = client.get_metric_history(logger.run_id, "acc/real")
    assert sorted(m.step for m in history) == list(range(1, 701))
    assert len(client.get_metric_history(logger.run_id, "loss/d")) == 700
    assert "trial_config.json" in [a.path for a in client.list_artifacts(logger.run_id)]


def test_logger_end_marks_failed_and_flushes(study_run, sqlite_uri):
    logger = TrialLogger.open(study_run, "trial-1", "t1", {}, {}, {})
    logger.log_metrics(1, {"m": 1.0})
    logger.end("FAILED")
    client = MlflowClient(sqlite_uri)
    assert client.get_run(logger.run_id).info.status == "FAILED"
    assert len(client.get_metric_history(logger.run_id, "m")) == 1


def test_a_restarted_trial_continues_its_own_run_and_skips_stored_steps(study_run, sqlite_uri):
    """What a trial does after a resume or a worker crash: same run, every step exactly once."""
    first = TrialLogger.open(study_run, "trial-2", "t2", {"seed": 0}, {}, {})
    for step in (10, 20, 30):
        first.log_metrics(step, {"m": float(step)})
    first.flush()  # committed through step 30 ...
    first.log_metrics(40, {"m": 40.0})  # ... step 40 computed but never flushed: the worker died here
    again = TrialLogger.open(study_run, "trial-2", "t2", {"seed": 0}, {TAG_NODE_ID: "n2"}, {})
    assert again.run_id == first.run_id and again.logged_through == 30
    client = MlflowClient(sqlite_uri)
    assert client.get_run(again.run_id).info.status == "RUNNING"
    for step in (20, 30, 40, 50):  # recomputed from the step-20 checkpoint
        again.log_metrics(step, {"m": float(step)})
    again.end("FINISHED")
    assert sorted(m.step for m in client.get_metric_history(again.run_id, "m")) == [10, 20, 30, 40, 50]
    run = client.get_run(again.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[TAG_NODE_ID] == "n2"  # the new tags replace the old
    assert run.data.tags[TAG_LOGGED_THROUGH] == "50" and run.data.tags[TAG_RESTARTS] == "1"
    other = TrialLogger.open(study_run, "trial-3", "t3", {}, {}, {})
    assert other.run_id != first.run_id


def test_a_trial_killed_mid_flush_stores_no_point_twice(study_run, sqlite_uri):
    """MLflow's SQL store commits a batch's metrics, then its tags: a worker killed in between leaves points
    stored past the step the logged_through tag says. Here the first of a flush's batches arrived with
    half the points of step 40 (key "a" but not "b"); the restarted trial recomputes steps 30 to 50 and the
    store ends with each point exactly once."""
    from mlflow.entities import Metric

    first = TrialLogger.open(study_run, "trial-4", "t4", {}, {}, {})
    for step in (10, 20, 30):
        first.log_metrics(step, {"a": float(step), "b": -float(step)})
    first.flush()  # committed through step 30
    client = MlflowClient(sqlite_uri)
    # the batch that reached the store before the worker died: step 40's "a", no tag
    client.log_batch(first.run_id, metrics=[Metric("a", 40.0, 1, 40)])
    again = TrialLogger.open(study_run, "trial-4", "t4", {}, {}, {})
    assert again.run_id == first.run_id and again.logged_through == 30
    for step in (30, 40, 50):  # recomputed from a checkpoint at step 20
        again.log_metrics(step, {"a": float(step), "b": -float(step)})
    again.end("FINISHED")
    for key, sign in (("a", 1), ("b", -1)):
        points = sorted((m.step, m.value) for m in client.get_metric_history(again.run_id, key))
        assert points == [(s, sign * float(s)) for s in (10, 20, 30, 40, 50)], key
