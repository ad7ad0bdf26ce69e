"""A packed study through the real `ganlab run` against a real `mlflow server` whose backend store is PostgreSQL
(a throwaway cluster started here: tests/track/pg.py), the store a cluster's many writers share. Nothing is
mocked; skipped, saying why, where PostgreSQL's binaries or psycopg2 are missing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ganlab.analysis import load_history, load_study
from ganlab.track.store import TAG_PACK_LANES, TAG_VERDICT
from conftest import free_port
from forkserver import run_ganlab
from pg import Postgres, unavailable

pytestmark = [pytest.mark.integration, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]

BIN = Path(sys.executable).parent
STEPS, EVAL_EVERY, LOG_EVERY = 60, 30, 10
RATIOS, SEEDS = [1.0, 2.0, 4.0], [0, 1]
STUDY = textwrap.dedent(
    f"""
    name: on_postgres
    trial:
      data: {{name: ring8, batch_size: 32}}
      model: {{width: 16, depth: 1}}
      train: {{steps: {STEPS}, eval_every: {EVAL_EVERY}, log_every: {LOG_EVERY}, eval_samples: 200}}
    sweep:
      optim.lr_ratio: {{grid: {RATIOS}}}
    seeds: {SEEDS}
    resources: {{cpu: 1}}
    pack: auto
    chart_points: 3
    artifacts: {{sample_plots: 0}}
    """
)


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    """PostgreSQL (fsync on, as a real one) and an `mlflow server` on it, one uvicorn worker as `ganlab ui`
    starts it; the server builds MLflow's schema in the empty database at its start (~9 s on 2 cores)."""
    root = tmp_path_factory.mktemp("pg-server")
    with Postgres() as pg:
        port = free_port()
        log = root / "server.log"
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", pg.uri, "--artifacts-destination",
             str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        try:
            deadline = time.time() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except OSError:
                    assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                    time.sleep(0.3)
            yield f"http://127.0.0.1:{port}", root, pg
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # uvicorn and whatever it started, before the database goes
            proc.wait(timeout=60)


def test_a_packed_study_logs_everything_through_a_server_on_postgres(pg_server, tmp_path, ray_cluster):
    url, root, pg = pg_server
    address, cluster_env = ray_cluster
    (tmp_path / "study.yaml").write_text(STUDY)
    proc = run_ganlab(["run", "study.yaml", "--address", address, "--tracking-uri", url], cwd=tmp_path,
                      env={**cluster_env, "GANLAB_PROGRESS_EVERY": "60"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pack of" in proc.stdout or "pack(s) of" in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()  # all went to the server

    df = load_study("on_postgres", tracking_uri=url)
    n = len(RATIOS) * len(SEEDS)
    assert len(df) == n and (df["status"] == "FINISHED").all() and (df["trial_status"] == "finished").all()
    assert sorted(zip(df["optim.lr_ratio"], df["seed"])) == sorted((r, s) for r in RATIOS for s in SEEDS)  # params
    assert df["verdict"].notna().all() and (df["verdict"] != "").all()
    assert (df["progress/g_steps"] == STEPS).all()
    client = MlflowClient(url)
    points = 0
    for run_id in df["run_id"]:
        run = client.get_run(run_id)
        assert run.data.tags[TAG_VERDICT] == df.set_index("run_id").loc[run_id, "verdict"]
        assert int(run.data.tags[TAG_PACK_LANES]) > 1  # trained in a pack, not alone
        assert {"optim.lr_ratio", "seed"} <= set(run.data.params)
        steps = sorted(m.step for m in client.get_metric_history(run_id, "acc/real"))
        assert steps == [20, EVAL_EVERY, 40, STEPS]  # chart_points 3: every 2nd logged step, the eval step and the last
        points += sum(len(client.get_metric_history(run_id, key)) for key in run.data.metrics)
        history = pd.read_parquet(client.download_artifacts(run_id, "diagnostics.parquet", str(tmp_path)))
        assert history["step"].tolist() == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert len(list((root / "artifacts").rglob("diagnostics.parquet"))) == n  # stored by the server

    long = load_history("on_postgres", tracking_uri=url, metrics=["loss/d", "acc/real"])
    assert set(long["run_id"]) == set(df["run_id"]) and set(long["metric"]) == {"loss/d", "acc/real"}
    assert long.groupby(["run_id", "metric"]).size().eq(STEPS // LOG_EVERY).all()

    # and it really is PostgreSQL that holds them: the study's runs (trials and the parent) and every point
    assert pg.query("select count(*) from runs where status = 'FINISHED'")[0][0] == n + 1
    assert pg.query("select count(*) from runs")[0][0] == n + 1
    assert pg.query("select count(*) from metrics where run_uuid in (select run_uuid from runs r join tags t "
                    "using (run_uuid) where t.key = 'ganlab.kind' and t.value = 'trial')")[0][0] == points


def test_the_throwaway_cluster_takes_writes_and_leaves_nothing_behind():
    with Postgres(fsync=False) as pg:
        root = pg.root
        assert pg.query("show fsync") == [("off",)] and pg.query("show listen_addresses") == [("127.0.0.1",)]
        pg.query("create table t (x int)")
        pg.query("insert into t values (1), (2)")
        assert pg.query("select sum(x) from t") == [(3,)]
        assert oct(os.stat(root / "data").st_mode & 0o777) == "0o700"
    assert not root.exists()
