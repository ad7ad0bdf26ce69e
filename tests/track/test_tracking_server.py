"""ganlab against a real `mlflow server` process (started here on 127.0.0.1, free port): the shared-server
setup of a cluster. Nothing is mocked."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import ganlab
from ganlab.analysis import load_study
from ganlab.track.store import TAG_LOGGED_THROUGH
from conftest import free_port, seed_store
from forkserver import run_ganlab, start_ganlab

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
STEPS, LOG_EVERY = 60, 10
STUDY = textwrap.dedent(
    f"""
    name: served
    trial:
      data: {{name: ring8, batch_size: 32}}
      model: {{width: 16, depth: 1}}
      train: {{steps: {STEPS}, eval_every: 30, log_every: {LOG_EVERY}, eval_samples: 200}}
    sweep:
      optim.lr_ratio: {{grid: [1.0, 4.0]}}
    seeds: [0, 1]
    resources: {{cpu: 1}}
    chart_points: 3
    """
)


def env() -> dict:
    return {**{k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")},
            "GANLAB_PROGRESS_EVERY": "60"}


def _start_server(root: Path, port: int) -> subprocess.Popen:
    """One uvicorn worker, as `ganlab ui` starts it: it still serves requests concurrently (MLflow runs its Flask
    handlers in a thread pool), and a second worker process costs ~3 CPU-s per start, imports only."""
    proc = subprocess.Popen(  # its backend: a copy of an empty store, not MLflow's migrations in the server again
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{seed_store(root) / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=(root / "server.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # GenAI job runner: ~30 CPU-s per start
    )
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (root / "server.log").read_text()[-3000:]
            time.sleep(0.5)


def _stop_server(proc: subprocess.Popen) -> None:
    """The whole process group: uvicorn and its job runners with it."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    proc = _start_server(root, port)
    yield f"http://127.0.0.1:{port}", root
    _stop_server(proc)


def test_a_study_logs_everything_through_a_real_tracking_server(server, tmp_path, ray_cluster):
    url, root = server
    address, cluster_env = ray_cluster
    (tmp_path / "study.yaml").write_text(STUDY)
    proc = run_ganlab(["run", "study.yaml", "--address", address, "--tracking-uri", url], cwd=tmp_path,
                  env={**cluster_env, "GANLAB_PROGRESS_EVERY": "60"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()  # all went to the server
    df = load_study("served", tracking_uri=url)
    assert len(df) == 4 and (df["status"] == "FINISHED").all()
    client = MlflowClient(url)
    for run_id in df["run_id"]:
        steps = sorted(m.step for m in client.get_metric_history(run_id, "acc/real"))
        assert steps == [20, 30, 40, 60]  # chart_points 3: every 2nd logged step, the eval step and the last
        history = pd.read_parquet(client.download_artifacts(run_id, "diagnostics.parquet", str(tmp_path)))
        assert len(history) == STEPS // LOG_EVERY
    assert any((root / "artifacts").rglob("diagnostics.parquet"))  # stored by the server, not the client
    # a fresh machine that reaches only the server: the weights come through it, verified, and sample
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    proc = run_ganlab(["sample", "served", "--trial", "00001", "-n", "100", "-o", "s.npz", "--tracking-uri", url],
                  cwd=fresh, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert np.load(fresh / "s.npz")["samples"].shape == (100, 2) and sorted(p.name for p in fresh.iterdir()) == ["s.npz"]
    trial = ganlab.load_trial(str(np.load(fresh / "s.npz")["run_id"]), url)
    assert trial.iteration == STEPS and trial.config.model.width == 16


def test_an_unreachable_server_is_a_clear_error_before_anything_runs(tmp_path):
    (tmp_path / "study.yaml").write_text(STUDY)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.time()
    proc = run_ganlab(["run", "study.yaml", "--tracking-uri", url], cwd=tmp_path, env=env(), timeout=120)
    assert proc.returncode == 2 and time.time() - started < 60
    err = proc.stderr.strip()
    assert f"Cannot reach the MLflow tracking server {url}" in err and err.count("\n") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # no Ray results, no local store


def _mlflow_points(history) -> int:
    """The points a trial's history says MLflow holds: the headline diagnostics and the study's cost figures at
    every logged step (chart_points above the steps logged), eval figures at eval steps, everything else at the
    last step (NaN points are not counted: the store marks them)."""
    from ganlab.diagnose import metrics as M

    n = 0
    for key in history.columns.drop("step"):
        column = history[key]
        if key in M.CHART or key.startswith("cost/") or (M.registered(key) and M.metric(key).cadence == "eval"):
            n += int(column.notna().sum())
        else:
            n += int(pd.notna(column.iloc[-1]))
    return n


def test_eight_trials_writing_at_once_to_the_default_store_lose_nothing(tmp_path, ray_cluster):
    """8 concurrent writers on the default SQLite store, each flushing at every eval step: every metric point
    arrives (counted against each trial's own Parquet record of what it logged) and no trial fails. That the
    writers overlapped is read from what the store recorded (each point's timestamp), not from start order."""
    address, cluster_env = ray_cluster
    (tmp_path / "study.yaml").write_text(textwrap.dedent(
        """
        name: crowd
        trial:
          data: {name: ring8, batch_size: 32}
          model: {width: 16, depth: 1}
          train: {steps: 200, eval_every: 20, log_every: 2, eval_samples: 200}
        seeds: [0, 1, 2, 3, 4, 5, 6, 7]
        resources: {cpu: 0.125}  # all 8 at once on the session's one CPU
        flush_interval_s: 0
        chart_points: 1000  # every logged step of the headline diagnostics
        artifacts: {sample_plots: 0}
        """))
    proc = run_ganlab(["run", "study.yaml", "--address", address], cwd=seed_store(tmp_path), env=cluster_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "database is locked" not in proc.stdout + proc.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    df = load_study("crowd", tracking_uri=uri)
    assert len(df) == 8 and (df["status"] == "FINISHED").all()
    client = MlflowClient(uri)
    total = 0
    for run_id in df["run_id"]:
        history = pd.read_parquet(client.download_artifacts(run_id, "diagnostics.parquet", str(tmp_path / run_id)))
        assert history["step"].tolist() == list(range(2, 201, 2))
        for key in ("acc/real", "loss/g", "eval/modes", "cost/s_per_step"):
            points = client.get_metric_history(run_id, key)
            assert len(points) == history[key].notna().sum(), key
        total += _mlflow_points(history)
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # every (non-NaN) point of every trial, counted exactly
        stored = db.execute("select count(*) from metrics where is_nan = 0").fetchone()[0]
        spans = db.execute("select run_uuid, min(timestamp), max(timestamp) from metrics group by run_uuid").fetchall()
    assert stored == total
    # the most runs writing at one moment, from the store's own timestamps: they wrote concurrently
    events = sorted([(first, 1) for _, first, _ in spans] + [(last, -1) for _, _, last in spans])
    writing = most = 0
    for _, change in events:
        writing += change
        most = max(most, writing)
    assert most >= 3, f"at most {most} trials were writing at once"


def test_a_server_outage_mid_study_loses_nothing(tmp_path, ray_cluster):
    """The real server is killed while trials run and restarted later: trials keep training, spool what
    cannot be sent and deliver it when the server is back or via `ganlab sync`; every point arrives."""
    root = tmp_path / "server"
    root.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(root, port)
    (tmp_path / "study.yaml").write_text(textwrap.dedent(
        """
        name: outage
        trial:
          data: {name: ring8, batch_size: 32}
          model: {width: 16, depth: 1}
          train: {steps: 500, eval_every: 50, log_every: 10, eval_samples: 200}
        seeds: [0, 1]
        resources: {cpu: 1}
        flush_interval_s: 0
        artifacts: {sample_plots: 0}
        """))
    address, cluster_env = ray_cluster
    proc = start_ganlab(["run", "study.yaml", "--address", address, "--tracking-uri", url], cwd=tmp_path,
                        env={**cluster_env, "GANLAB_PROGRESS_EVERY": "60"}, output=tmp_path / "driver.log")
    client = MlflowClient(url)
    deadline = time.time() + 240
    while True:  # both trials are logging
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
        exp = client.get_experiment_by_name("outage")
        runs = client.search_runs([exp.experiment_id], "tags.`ganlab.kind` = 'trial'") if exp else []
        if len(runs) == 2 and all(int(r.data.tags.get(TAG_LOGGED_THROUGH, -1)) >= 100 for r in runs):
            break
        time.sleep(0.3)
    _stop_server(server)
    spool = tmp_path / "ganlab_studies" / "outage" / "search" / "spool"
    while not any(p.stat().st_size for p in spool.glob("*.jsonl")):  # trials go on without it, and keep what
        assert proc.poll() is None and time.time() < deadline + 240, (tmp_path / "driver.log").read_text()[-3000:]
        time.sleep(0.2)  # they cannot send on disk
    server = _start_server(root, port)  # back during the study: spooled requests drain on the next flush
    try:
        assert proc.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
        out = (tmp_path / "driver.log").read_text()
        assert "is unreachable" in out  # the trials said so
        sync = run_ganlab(["sync"], cwd=tmp_path, env=env(), timeout=300)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        assert not list((tmp_path / "ganlab_studies").rglob("spool/*.jsonl"))
        df = load_study("outage", tracking_uri=url)
        assert len(df) == 2 and (df["status"] == "FINISHED").all()
        for run_id in df["run_id"]:
            steps = sorted(m.step for m in client.get_metric_history(run_id, "acc/real"))
            assert steps == list(range(10, 501, 10)), "a metric point was lost or stored twice"
            history = pd.read_parquet(client.download_artifacts(run_id, "diagnostics.parquet", str(tmp_path)))
            assert history["step"].tolist() == list(range(10, 501, 10))
    finally:
        _stop_server(server)
