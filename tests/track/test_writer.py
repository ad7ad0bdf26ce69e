"""ganlab.track.writer: a pack's one writer, against a real MLflow SQLite store (a tracking server:
tests/track/test_tracking_server.py). Every point exactly once per lane, across restarts and a flush cut short;
the Parquet parts and each trial's diagnostics.parquet hold every recorded row."""

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from ganlab.track.history import HISTORY_FILE, read_history
from ganlab.track.writer import CONFIG_FILE, PackWriter, RunSpec
from ganlab.track.store import (
    TAG_HISTORY,
    TAG_LOGGED_THROUGH,
    TAG_NODE_ID,
    TAG_PACK,
    TAG_PARENT,
    TAG_RESTARTS,
    StudyRun,
    start_study_run,
)


@pytest.fixture
def study_run(tmp_path, sqlite_uri) -> StudyRun:
    study_file = tmp_path / "s.yaml"
    study_file.write_text("name: s\n")
    return start_study_run(sqlite_uri, "s", study_file, {}, {})


def specs(n: int, pack: str = "pack-0", **tags) -> list[RunSpec]:
    return [RunSpec(f"{pack}-trial-{i}", f"t{i}", {"seed": i, "optim.lr_ratio": 2.0}, {TAG_PACK: pack, **tags},
                    {"seed": i}) for i in range(n)]


def history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_pack_writes_every_lane_once_with_its_params_tags_history_and_config(study_run, sqlite_uri):
    writer = PackWriter(study_run, "pack-0")
    runs = writer.open(specs(3))
    names = ("a", "b")
    for step in range(10, 710, 10):  # 70 steps x 3 lanes x 2 metrics
        values = np.array([[step + lane, -step] for lane in range(3)], dtype=float)
        writer.record(step, names, values, [0, 1, 2], [0] if step % 100 else None)  # b in MLflow every 100th only
    writer.log(1, 700, {"cost/io_s": 0.5})
    writer.end([0, 1, 2], "FINISHED", {1: {"x": "y"}}, writer.histories([0, 1, 2]))
    writer.close()
    client = MlflowClient(sqlite_uri)
    for lane, run_id in enumerate(runs):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags[TAG_PARENT] == study_run.parent_run_id
        assert run.data.params == {"seed": str(lane), "optim.lr_ratio": "2.0"}
        assert run.data.tags[TAG_LOGGED_THROUGH] == "700"
        assert history(client, run_id, "a") == [(s, float(s + lane)) for s in range(10, 710, 10)]
        assert history(client, run_id, "b") == [(s, float(-s)) for s in range(100, 701, 100)]
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {HISTORY_FILE, CONFIG_FILE} <= artifacts
        frame = pd.read_parquet(client.download_artifacts(run_id, HISTORY_FILE))
        assert frame["step"].tolist() == list(range(10, 710, 10))  # every step, b too, at full resolution
        assert frame["a"].tolist() == [float(s + lane) for s in range(10, 710, 10)]
        assert frame["b"].tolist() == [float(-s) for s in range(10, 710, 10)]
    assert client.get_run(runs[1]).data.tags["x"] == "y"
    assert client.get_run(runs[1]).data.metrics["cost/io_s"] == 0.5
    # one Parquet part per flush for the whole pack, under the parent run
    parts = client.list_artifacts(study_run.parent_run_id, "history/pack-0")
    assert len(parts) == 1


def test_a_running_trials_history_is_read_from_its_packs_parts(study_run, sqlite_uri):
    writer = PackWriter(study_run, "pack-0")
    runs = writer.open(specs(2))
    for step in (10, 20):
        writer.record(step, ("a",), np.array([[step], [-step]], dtype=float), [0, 1], None)
        writer.flush()  # two parts
    client = MlflowClient(sqlite_uri)
    assert client.get_run(runs[1]).data.tags[TAG_HISTORY] == f"{study_run.parent_run_id}/history/pack-0"
    assert read_history(client, runs[1])[["step", "a"]].values.tolist() == [[10, -10.0], [20, -20.0]]
    writer.end([0, 1], "FINISHED", None, writer.histories([0, 1]))


def test_a_restarted_pack_continues_its_runs_skips_stored_steps_and_keeps_the_whole_history(study_run, sqlite_uri):
    """After a resume or a worker crash: the same runs, every step exactly once in MLflow, and each trial's
    diagnostics.parquet still holds the steps before the checkpoint (read back from the pack's parts)."""
    first = PackWriter(study_run, "pack-0")
    runs = first.open(specs(2))
    for step in (10, 20, 30):
        first.record(step, ("m",), np.array([[step], [2 * step]], dtype=float), [0, 1], None)
    first.flush()  # committed through step 30 ...
    first.record(40, ("m",), np.array([[40], [80]], dtype=float), [0, 1], None)  # ... 40 never flushed: died here
    again = PackWriter(study_run, "pack-0")
    assert again.open(specs(2, **{TAG_NODE_ID: "n2"})) == runs
    client = MlflowClient(sqlite_uri)
    assert client.get_run(runs[0]).info.status == "RUNNING"
    for step in (20, 30, 40, 50):  # recomputed from the step-20 checkpoint
        again.record(step, ("m",), np.array([[step], [2 * step]], dtype=float), [0, 1], None)
    again.end([0, 1], "FINISHED", None, again.histories([0, 1]))
    for lane, run_id in enumerate(runs):
        assert history(client, run_id, "m") == [(s, float((lane + 1) * s)) for s in (10, 20, 30, 40, 50)]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags[TAG_NODE_ID] == "n2"
        assert run.data.tags[TAG_LOGGED_THROUGH] == "50" and run.data.tags[TAG_RESTARTS] == "1"
        frame = pd.read_parquet(client.download_artifacts(run_id, HISTORY_FILE))
        assert frame["step"].tolist() == [10, 20, 30, 40, 50]
        assert frame["m"].tolist() == [float((lane + 1) * s) for s in (10, 20, 30, 40, 50)]
    other = PackWriter(study_run, "pack-1")
    assert not set(other.open(specs(2, pack="pack-1"))) & set(runs)


def test_points_a_cut_flush_already_stored_are_not_stored_twice(study_run, sqlite_uri):
    """A tracking server's store commits a batch's metrics, then its tags: a worker killed in between leaves
    points stored past the step the logged_through tag says (here step 40's "a", not its "b"). The restarted
    pack recomputes steps 30 to 50 and each point is stored exactly once."""
    first = PackWriter(study_run, "pack-0")
    (run_id,) = first.open(specs(1))
    for step in (10, 20, 30):
        first.record(step, ("a", "b"), np.array([[step, -step]], dtype=float), [0], None)
    first.flush()
    MlflowClient(sqlite_uri).log_batch(run_id, metrics=[Metric("a", 40.0, 1, 40)])
    again = PackWriter(study_run, "pack-0")
    again.open(specs(1))
    for step in (30, 40, 50):
        again.record(step, ("a", "b"), np.array([[step, -step]], dtype=float), [0], None)
    again.end([0], "FINISHED")
    client = MlflowClient(sqlite_uri)
    for key, sign in (("a", 1), ("b", -1)):
        assert history(client, run_id, key) == [(s, sign * float(s)) for s in (10, 20, 30, 40, 50)], key


def test_lanes_end_apart_and_a_failed_lane_ends_failed(study_run, sqlite_uri):
    writer = PackWriter(study_run, "pack-0")
    runs = writer.open(specs(3))
    writer.record(10, ("m",), np.ones((3, 1)), [0, 1, 2], None)
    writer.end([1], "FAILED", {1: {"why": "diverged"}}, writer.histories([1]))
    writer.record(20, ("m",), np.ones((2, 1)), [0, 2], None)
    writer.end([0, 2], "FINISHED", None, writer.histories([0, 2]))
    writer.end([0], "KILLED")  # already ended: nothing changes
    client = MlflowClient(sqlite_uri)
    assert [client.get_run(r).info.status for r in runs] == ["FINISHED", "FAILED", "FINISHED"]
    assert history(client, runs[1], "m") == [(10, 1.0)]
    assert history(client, runs[2], "m") == [(10, 1.0), (20, 1.0)]


def test_a_pbt_clone_logs_its_new_trajectory_over_the_old_one(study_run, sqlite_uri):
    writer = PackWriter(study_run, "trial-x")
    (run_id,) = writer.open(specs(1, pack="trial-x")[:1])
    for step in (10, 20, 30):
        writer.record(step, ("m",), np.array([[1.0]]), [0], None)
    writer.continue_from(0, 20)  # cloned a state at iteration 20: steps 20 and later again
    for step in (20, 30):
        writer.record(step, ("m",), np.array([[2.0]]), [0], None)
    writer.end([0], "FINISHED", None, writer.histories([0]))
    frame = pd.read_parquet(MlflowClient(sqlite_uri).download_artifacts(run_id, HISTORY_FILE))
    assert frame["m"].tolist() == [1.0, 2.0, 2.0]  # the clone's values replace the old trajectory's


def test_flushes_in_a_writer_thread_land_in_order_and_whole(study_run, sqlite_uri):
    """On an accelerator the store work runs beside training: flushes handed to the writer thread (no wait)
    land in order, each once, and ``sync`` (at checkpoints and ends) waits for the one in flight."""
    writer = PackWriter(study_run, "pack-0", background=True)
    runs = writer.open(specs(2))
    for step in range(1, 41):
        writer.record(step, ("m",), np.array([[step], [-step]], dtype=float), [0, 1], None)
        (writer.stage(step % 2) / f"p{step}.txt").write_text(str(step))
        if step % 5 == 0:
            writer.flush(wait=False)
    writer.sync()
    client = MlflowClient(sqlite_uri)
    assert client.get_run(runs[0]).data.tags[TAG_LOGGED_THROUGH] == "40"
    writer.end([0, 1], "FINISHED", None, writer.histories([0, 1]))
    writer.close()
    for lane, run_id in enumerate(runs):
        assert history(client, run_id, "m") == [(s, float(s if lane == 0 else -s)) for s in range(1, 41)]
        files = {a.path for a in client.list_artifacts(run_id)}
        assert {f"p{s}.txt" for s in range(1, 41) if s % 2 == lane} <= files
    assert len(client.list_artifacts(study_run.parent_run_id, "history/pack-0")) == 8


def test_a_failed_background_flush_is_raised_at_the_next_sync(study_run, sqlite_uri):
    writer = PackWriter(study_run, "pack-0", background=True)
    writer.open(specs(1))
    writer.lanes[0].run_id = "0" * 32  # a run the store does not have: the flush's transaction fails
    writer.record(1, ("m",), np.ones((1, 1)), [0], None)
    writer.flush(wait=False)
    with pytest.raises(Exception):
        writer.sync()


def test_a_lane_ended_between_chart_steps_still_has_its_last_figures_as_latest(study_run, sqlite_uri):
    """A scheduler stops a trial at any logged step: the run table's (and load_study's) latest values are its
    last step's, every figure of it, each stored once."""
    writer = PackWriter(study_run, "pack-0")
    runs = writer.open(specs(2))
    names = ("a", "b")
    for step in (10, 20, 30):
        values = np.array([[step, 2 * step], [step + 1, 2 * step + 1]], dtype=float)
        writer.record(step, names, values, [0, 1], [0] if step == 10 else [])  # b never charted, a only at 10
    writer.end([0], "KILLED", None, writer.histories([0]))
    writer.end([1], "KILLED")
    writer.close()
    client = MlflowClient(sqlite_uri)
    for lane, run_id in enumerate(runs):
        run = client.get_run(run_id)
        assert run.data.metrics == {"a": 30.0 + lane, "b": 60.0 + lane}
        assert history(client, run_id, "a") == [(10, 10.0 + lane), (30, 30.0 + lane)]
        assert history(client, run_id, "b") == [(30, 60.0 + lane)]


def test_a_lane_whose_figures_are_all_nan_keeps_its_columns(study_run):
    """A trial that diverged at its first step has NaN losses in its history, as alone; a column only
    another lane recorded (here its eval figure) is not the lane's."""
    writer = PackWriter(study_run, "pack-0")
    writer.open(specs(2))
    writer.record(10, ("loss",), np.array([[np.nan], [1.0]]), [0, 1], None)
    writer.record(20, ("loss", "fid"), np.array([[2.0, 5.0]]), [1], None)
    histories = writer.histories([0, 1])
    writer.end([0, 1], "FINISHED", None, histories)
    writer.close()
    assert list(histories[0].columns) == ["step", "loss"] and histories[0]["loss"].isna().all()
    assert list(histories[1].columns) == ["step", "loss", "fid"] and histories[1]["step"].tolist() == [10, 20]
