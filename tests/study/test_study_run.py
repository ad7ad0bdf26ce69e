"""End to end through the real `ganlab run` command: a real Ray head (1 CPU, shared by the session), real
torch training, a fresh MLflow SQLite store in a temporary folder, then pandas. Nothing here is mocked."""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ganlab.analysis import load_study
from ganlab.track.store import TAG_KIND, TAG_SEED, TAG_STOP_REASON
from conftest import ARTIFACTS, chromium, free_port
from forkserver import run_ganlab, start_ganlab

pytestmark = pytest.mark.integration

GANLAB = str(Path(sys.executable).parent / "ganlab")
RATIOS, SEEDS, STEPS, LOG_EVERY, EVAL_EVERY, CHART_POINTS = [1.0, 4.0], [0, 1], 60, 10, 30, 3
STUDY = textwrap.dedent(
    f"""
    name: tiny
    description: integration test
    trial:
      data: {{name: ring8, batch_size: 32}}
      model: {{width: 16, depth: 1}}
      optim: {{lr_g: 1.0e-3}}
      train: {{steps: {STEPS}, eval_every: {EVAL_EVERY}, log_every: {LOG_EVERY}, eval_samples: 200}}
    sweep:
      optim.lr_ratio: {{grid: {RATIOS}}}
    seeds: {SEEDS}
    resources: {{cpu: 1}}
    artifacts: {{save_models: true}}
    max_concurrent: 2
    chart_points: {CHART_POINTS}
    """
)
N = len(RATIOS) * len(SEEDS)
# MLflow gets a headline diagnostic (acc/real) at chart_points logged steps spread over training (every 2nd of 6)
# and at every eval step; any other metric at eval steps only (the last among them); diagnostics.parquet gets all
MLFLOW_STEPS = sorted(s for s in range(LOG_EVERY, STEPS + 1, LOG_EVERY)
                      if (s // LOG_EVERY) % math.ceil(STEPS // LOG_EVERY / CHART_POINTS) == 0 or s % EVAL_EVERY == 0)
assert MLFLOW_STEPS == [20, 30, 40, 60]
EVAL_STEPS = list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))


def ganlab_run(workdir: Path, study: Path, cluster: tuple[str, dict]) -> subprocess.CompletedProcess:
    """`ganlab run` on the session's Ray head (1 CPU, token auth), with its default progress reports."""
    address, env = cluster
    proc = run_ganlab(["run", str(study), "--address", address], cwd=workdir,
                  env={k: v for k, v in env.items() if k != "GANLAB_PROGRESS_EVERY"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, ray_cluster):
    workdir = tmp_path_factory.mktemp("study")
    study = workdir / "tiny.yaml"
    study.write_text(STUDY)
    proc = ganlab_run(workdir, study, ray_cluster)
    return workdir, study, proc


@pytest.fixture(scope="module")
def uri(study_dir):
    return f"sqlite:///{study_dir[0] / 'mlflow.db'}"


def test_progress_and_summary_printed(study_dir):
    out = study_dir[2].stdout
    assert "study 'tiny': 4 trials" in out
    done = [l for l in out.splitlines() if "] done " in l]
    assert len(done) == N and all("step     60/60" in l for l in done)  # one line per finished trial
    summary = out[out.index("D acc real  D acc fake"):].splitlines()
    assert len([l for l in summary[1:] if " finished " in l]) == N


def parent_of(proc: subprocess.CompletedProcess) -> str:
    """The parent run a `ganlab run` wrote to, from its closing lines."""
    import re

    return re.search(r"parent run ([0-9a-f]{32})", proc.stdout).group(1)


def test_one_parent_and_n_children(uri, study_dir):
    """The fixture's invocation: one parent run and one child per trial (another test of this module adds a
    second invocation, so runs are selected by the parent this one printed)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    mine = parent_of(study_dir[2])
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "study" and r.info.run_id == mine]
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"
                and r.data.tags.get("mlflow.parentRunId") == mine]
    assert len(parents) == 1 and len(children) == N
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"tiny.yaml", "summary.csv", "history"}
    assert json.loads(parent.data.params["sweep.optim.lr_ratio"]) == {"grid": RATIOS}
    combos = set()
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        p = child.data.params
        assert p["train.steps"] == str(STEPS) and p["data.name"] == "ring8" and p["model.width"] == "16"
        combos.add((float(p["optim.lr_ratio"]), int(p["seed"])))
        assert child.data.tags[TAG_SEED] == p["seed"]
        history = client.get_metric_history(child.info.run_id, "acc/real")
        assert sorted(m.step for m in history) == MLFLOW_STEPS
        evals = client.get_metric_history(child.info.run_id, "eval/modes")
        assert sorted(m.step for m in evals) == EVAL_STEPS
        other = client.get_metric_history(child.info.run_id, "param/d")  # not a headline: the last step only
        assert sorted(m.step for m in other) == [STEPS]
    assert combos == {(r, s) for r in RATIOS for s in SEEDS}


def test_store_and_results_live_in_the_working_directory(study_dir):
    workdir = study_dir[0]
    assert (workdir / "mlflow.db").is_file() and (workdir / "mlartifacts").is_dir()
    assert (workdir / "ganlab_studies").is_dir()
    assert not (workdir / "mlruns").exists()


def test_load_study_one_row_per_trial(uri, study_dir, tmp_path):
    """One row per trial, and each diagnostic its final value: the last row of the trial's own full-resolution
    history (what the trainer reported at its last logged or eval step), not merely a plausible number."""
    df = load_study("tiny", tracking_uri=uri, run=parent_of(study_dir[2]))
    assert len(df) == N
    assert sorted(df["optim.lr_ratio"].unique()) == RATIOS
    assert sorted(df["seed"].unique()) == SEEDS
    assert (df["status"] == "FINISHED").all()
    client = MlflowClient(uri)
    for row in df.itertuples():
        history = pd.read_parquet(client.download_artifacts(row.run_id, "diagnostics.parquet", str(tmp_path)))
        final = history.set_index("step").loc[STEPS]
        for col in ("acc/real", "acc/fake", "osc/loss_d_std", "eval/modes", "eval/hq_fraction", "loss/d"):
            assert df.loc[row.Index, col] == pytest.approx(final[col], rel=1e-12), col
    assert df["acc/real"].between(0, 1).all() and df["eval/hq_fraction"].between(0, 1).all()
    assert df["eval/modes"].isin(range(9)).all()  # modes of the 8-Gaussian ring: whole numbers 0..8
    assert df["progress/g_steps"].eq(STEPS).all()


def test_second_run_is_a_second_parent(uri, study_dir, ray_cluster):
    workdir, study, _ = study_dir
    ganlab_run(workdir, study, ray_cluster)
    latest = load_study("tiny", tracking_uri=uri)
    everything = load_study("tiny", tracking_uri=uri, run="all")
    assert len(latest) == N and len(everything) == 2 * N
    assert latest["parent_run_id"].nunique() == 1 and everything["parent_run_id"].nunique() == 2
    with pytest.raises(LookupError, match="no study named 'nope'"):
        load_study("nope", tracking_uri=uri)


def test_ui_serves_the_store_on_loopback(uri, study_dir):
    port = free_port()
    log = study_dir[0] / "ui.log"
    proc = start_ganlab(["ui", "--tracking-uri", uri, "--port", str(port)], cwd=Path.cwd(), output=log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        body = None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny", timeout=5) as r:
                    body = json.load(r)
            except OSError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.5)
        assert body is not None, "UI did not come up within 90 s"
        assert body["experiment"]["name"] == "tiny"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200 and "<html" in r.read(2000).decode().lower()
        experiment_id = body["experiment"]["experiment_id"]
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", method="POST",
                                         data=json.dumps({"experiment_ids": [experiment_id], "max_results": 1000}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            runs = json.load(r)["runs"]
        kinds = [next(t["value"] for t in run["data"]["tags"] if t["key"] == "ganlab.kind") for run in runs]
        assert kinds.count("trial") == N * kinds.count("study") and kinds.count("study") >= 1
        _browser_check(f"{url}/#/experiments/{experiment_id}/runs", study_dir[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"MLflow UI for {uri} at http://127.0.0.1:{port}" in log.read_text()
    # The server's whole process group went down with `ganlab ui`: the port is free again.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the MLflow server outlived `ganlab ui`"


def _browser_check(page: str, workdir: Path) -> None:
    """The experiment page in a real browser: rendered (the React app ran and listed the study's runs),
    and a screenshot kept as a test artifact."""
    dom = chromium(workdir, "--dump-dom", page).stdout
    assert "Training runs" in dom and "tiny@" in dom, dom[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / "mlflow_ui_experiment.png"
    png.unlink(missing_ok=True)
    chromium(workdir, f"--screenshot={png}", page)
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (1000, 1600) and pixels[..., :3].std() > 0.05  # not a blank page


def test_a_diverging_trial_ends_as_diverged_and_the_study_goes_on(tmp_path, ray_cluster):
    study = tmp_path / "blowup.yaml"
    study.write_text(textwrap.dedent(
        """
        name: blowup
        trial:
          data: {name: ring8, batch_size: 32}
          model: {width: 16, depth: 2}
          loss: {name: least_squares}
          optim: {name: sgd, lr_g: 1.0e-3}
          train: {steps: 200, eval_every: 100, log_every: 10, eval_samples: 200}
        sweep:
          optim.lr_g: {grid: [1.0e-3, 1.0e+6]}
        resources: {cpu: 1}
        pack: 1
        max_concurrent: 1
        """
    ))  # each trial alone (packs: tests/study/test_packs.py), one after the other in one worker
    proc = ganlab_run(tmp_path, study, ray_cluster)  # exit 0: a diverged trial is a result, not a failure
    assert "Traceback" not in proc.stdout
    df = load_study("blowup", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("optim.lr_g")
    assert (df["status"] == "FINISHED").all()
    assert df.loc[1e6, "verdict"] == "diverged" and df.loc[1e-3, "verdict"] != "diverged"
    assert df.loc[1e6, "progress/g_steps"] < 200 and df.loc[1e-3, "progress/g_steps"] == 200
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(df.loc[1e6, "run_id"])
    assert run.data.tags[TAG_STOP_REASON].startswith("diverged at iteration")


def test_each_trial_stores_samples_history_curves_and_weights(uri, study_dir, tmp_path):
    import pandas as pd
    import torch

    client = MlflowClient(uri)
    for row in load_study("tiny", tracking_uri=uri).itertuples():
        listed = {a.path for a in client.list_artifacts(row.run_id)}
        assert {"trial_config.json", "diagnostics.parquet", "curves.png", "samples", "model"} <= listed
        # sample_plots=5 spread over 60 iterations with evals at 30 and 60: both eval steps are plotted
        assert [a.path for a in client.list_artifacts(row.run_id, "samples")] == [
            "samples/step_000030.png", "samples/step_000060.png"]
        history = pd.read_parquet(client.download_artifacts(row.run_id, "diagnostics.parquet", str(tmp_path)))
        assert history["step"].tolist() == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))  # full resolution
        mlflow_points = {m.step: m.value for m in client.get_metric_history(row.run_id, "acc/real")}
        assert sorted(mlflow_points) == MLFLOW_STEPS
        assert {s: v for s, v in history.set_index("step")["acc/real"].items() if s in mlflow_points} == mlflow_points
        assert history["eval/modes"].notna().sum() == STEPS // EVAL_EVERY
        for cost in ("cost/s_per_step", "cost/samples_per_s", "cost/peak_rss_mb"):
            assert history[cost].dropna().gt(0).all(), cost
        weights = torch.load(client.download_artifacts(row.run_id, "model/final.pt", str(tmp_path)),
                             weights_only=True)  # plain tensors and dicts: loadable without pickle
        assert weights["iteration"] == STEPS and set(weights["G"]) and set(weights["D"])


def test_load_history_reads_every_step_in_bulk(uri):
    from ganlab.analysis import load_history

    h = load_history("tiny", tracking_uri=uri, metrics=["acc/real", "eval/modes"])
    assert list(h.columns) == ["run_id", "trial", "step", "metric", "value"]
    assert set(h["metric"]) == {"acc/real", "eval/modes"}
    acc = h[h["metric"] == "acc/real"]
    assert acc["run_id"].nunique() == N
    for run_id, steps in acc.groupby("run_id")["step"]:
        assert steps.tolist() == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))  # full resolution
        mlflow_points = {m.step: m.value for m in MlflowClient(uri).get_metric_history(run_id, "acc/real")}
        values = acc[acc["run_id"] == run_id].set_index("step")["value"]
        assert {s: values[s] for s in mlflow_points} == mlflow_points  # the numbers MLflow holds
    assert (h[h["metric"] == "eval/modes"].groupby("run_id").size() == STEPS // EVAL_EVERY).all()


def _serving(uri: str) -> list[str]:
    """Command lines of the processes still running with ``uri`` in them (an MLflow server and its workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if uri in cmd and int(pid) != os.getpid():
            found.append(cmd)
    return found


def test_ui_on_a_non_loopback_host_warns_that_mlflow_has_no_authentication(uri, study_dir):
    """Also: `ganlab ui` stopped at once (SIGTERM while its server starts) takes the server with it; before the
    handler was installed ahead of the server, this left an orphaned `mlflow server` running."""
    proc = subprocess.Popen([GANLAB, "ui", "--tracking-uri", uri, "--host", "0.0.0.0", "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = proc.stderr.readline()  # printed before the server starts
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "WARNING: binding 0.0.0.0" in warning and "no authentication" in warning
    assert _serving(uri) == [], "ganlab ui exited and left its MLflow server running"
