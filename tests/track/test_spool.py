"""ganlab.track.spool: what an unreachable tracking server could not take, kept in order and replayed later
(against a real MLflow store; the outage itself, with a real server: tests/track/test_tracking_server.py)."""

from mlflow.tracking import MlflowClient

from ganlab.track.spool import Spool, sync_folder


def test_spooled_requests_replay_in_order_with_files_under_their_own_names(tmp_path, sqlite_uri):
    client = MlflowClient(sqlite_uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    spool = Spool(tmp_path / "search" / "spool", sqlite_uri)
    source = tmp_path / "tmp" / "diagnostics.parquet"
    source.parent.mkdir()
    source.write_bytes(b"PAR1 data")
    spool.append(run_id, {"method": "log_batch", "metrics": [["a", 1.0, 0, 10]], "tags": [["t", "x"]]})
    spool.append(run_id, {"method": "log_artifact", "path": str(source), "artifact_path": None})
    source.unlink()  # the writer's temporary file is gone by the time the server answers
    spool.append(run_id, {"method": "log_batch", "metrics": [["a", 2.0, 0, 20]]})
    spool.append(run_id, {"method": "set_terminated", "status": "FINISHED"})
    assert spool.pending(run_id)
    assert sync_folder(tmp_path) == (1, 0)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["t"] == "x"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "a")] == [(10, 1.0), (20, 2.0)]
    assert [a.path for a in client.list_artifacts(run_id)] == ["diagnostics.parquet"]
    assert not spool.pending(run_id) and not list((tmp_path / "search" / "spool").rglob("*.parquet"))
