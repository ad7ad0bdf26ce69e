"""ganlab.track.sql writes MLflow's SQL store in bulk, beside MLflow's own API: what MLflow reads back must be
what ``log_batch`` would have stored, point for point (values, NaN and infinities, each metric's latest value by
step, then timestamp, then value) and tag for tag. On SQLite and on PostgreSQL (a throwaway cluster,
tests/track/pg.py; skipped, saying why, where it cannot start), whose rows go in by another path (multi-row
VALUES through psycopg2)."""

import math
import random
import uuid

import pytest

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from ganlab.track.sql import SqlWriter
from ganlab.track.store import open_store
from pg import Postgres, unavailable


@pytest.fixture(scope="module")
def _postgres():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with Postgres(fsync=False) as pg:
        yield pg.uri


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path):
    """One MLflow store per test on SQLite; one PostgreSQL database for the module (each test its own
    experiment)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlflow.db'}"
    return request.getfixturevalue("_postgres")


def _experiment(client) -> str:
    return client.create_experiment(f"x-{uuid.uuid4().hex}")


def _points(seed: int = 0):
    rng = random.Random(seed)
    points = []
    for step in range(0, 300, 10):
        for k in range(6):
            special = rng.choice([float("nan"), float("inf"), -float("inf"), rng.random()])
            points.append((f"k{k}", special if k == 3 else rng.random(), 1000 + step, step))
    points.append(("k0", 5.0, 999_999, 0))  # a later timestamp at an early step: not the latest
    points.append(("k1", 7.0, 1290, 290))  # same step and timestamp as k1's last, larger value: the latest
    return points


def test_bulk_rows_read_back_as_log_batch_stores_them(store_uri):
    client = open_store(store_uri)
    experiment = _experiment(client)
    by_api, in_bulk = (client.create_run(experiment).info.run_id for _ in range(2))
    points = _points()
    client.log_batch(by_api, metrics=[Metric(k, v, ts, s) for k, v, ts, s in points[:100]])
    client.log_batch(by_api, metrics=[Metric(k, v, ts, s) for k, v, ts, s in points[100:]],
                     tags=[RunTag("a", "1"), RunTag("b", "2")])
    tie = [("k2", 9.0, 1290, 290)]  # a later write, same step and timestamp as k2's latest, a larger value
    client.log_batch(by_api, metrics=[Metric(*tie[0])])
    writer = SqlWriter(store_uri)
    writer.write([(in_bulk, k, v, ts, s) for k, v, ts, s in points[:100]], tags={in_bulk: {"a": "0"}})
    writer.write([(in_bulk, k, v, ts, s) for k, v, ts, s in points[100:]], tags={in_bulk: {"a": "1", "b": "2"}})
    writer.write([(in_bulk, *tie[0])])
    api, bulk = client.get_run(by_api), client.get_run(in_bulk)
    assert api.data.metrics.keys() == bulk.data.metrics.keys()
    for key, value in api.data.metrics.items():
        assert (math.isnan(value) and math.isnan(bulk.data.metrics[key])) or value == bulk.data.metrics[key], key
    assert bulk.data.metrics["k1"] == 7.0 and bulk.data.metrics["k2"] == 9.0
    for key in api.data.metrics:
        want = sorted((m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(by_api, key))
        got = sorted((m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(in_bulk, key))
        assert got == want, key
    assert {k: v for k, v in bulk.data.tags.items() if len(k) == 1} == {"a": "1", "b": "2"}


def test_one_write_covers_many_runs_and_ends_them(store_uri):
    client = open_store(store_uri)
    experiment = _experiment(client)
    runs = [client.create_run(experiment).info.run_id for _ in range(5)]
    writer = SqlWriter(store_uri)
    writer.write([(r, "m", float(i), 1, s) for i, r in enumerate(runs) for s in range(3)],
                 params={r: {"seed": str(i)} for i, r in enumerate(runs)})
    writer.terminate(runs[:3], "FINISHED")
    for i, r in enumerate(runs):
        run = client.get_run(r)
        assert run.data.params == {"seed": str(i)} and run.data.metrics == {"m": float(i)}
        assert [m.step for m in client.get_metric_history(r, "m")] == [0, 1, 2]
        assert run.info.status == ("FINISHED" if i < 3 else "RUNNING")
        assert (run.info.end_time is not None) == (i < 3)


def test_a_write_that_fails_stores_nothing(store_uri):
    """One transaction: a flush that fails half-way (here a run that does not exist) leaves no point behind,
    so a pack that retries it, or restarts, never stores a point twice."""
    client = open_store(store_uri)
    run = client.create_run(_experiment(client)).info.run_id
    with pytest.raises(Exception):
        SqlWriter(store_uri).write([(run, "m", 1.0, 1, 1), ("0" * 32, "m", 1.0, 1, 1)])
    assert MlflowClient(store_uri).get_metric_history(run, "m") == []


def test_runs_created_in_bulk_read_back_as_create_run_makes_them(store_uri):
    client = open_store(store_uri)
    experiment = _experiment(client)
    tags = {"a": "1", "mlflow.user": "someone"}
    by_api = client.get_run(client.create_run(experiment, tags=tags, run_name="trial 1").info.run_id)
    (run_id, artifact_uri), = SqlWriter(store_uri).create_runs(experiment, [("trial 1", tags)])
    bulk = client.get_run(run_id)
    assert bulk.info.artifact_uri == artifact_uri == by_api.info.artifact_uri.replace(by_api.info.run_id, run_id)
    same = ("experiment_id", "user_id", "status", "run_name", "lifecycle_stage", "end_time")
    assert {k: getattr(bulk.info, k) for k in same} == {k: getattr(by_api.info, k) for k in same}
    assert bulk.data.tags == by_api.data.tags
    assert abs(bulk.info.start_time - by_api.info.start_time) < 60_000
    found = client.search_runs([experiment], "tags.a = '1' and attributes.status = 'RUNNING'")
    assert {r.info.run_id for r in found} == {run_id, by_api.info.run_id}
