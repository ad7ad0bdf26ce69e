"""Studies at scale, end to end with real components: `ganlab run` on a real Ray head (the session's, token
auth; `ganlab run` joins it with --address) and on a two-node Ray cluster on loopback, real Optuna, ASHA and
PBT, a real MLflow SQLite store; the driver killed
(SIGINT, SIGKILL) and a trial's worker killed mid-study. Nothing is mocked."""

import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from ganlab.analysis import compare, load_study
from ganlab.track.store import (
    TAG_BEST,
    TAG_CONFIRMS,
    TAG_KIND,
    TAG_LOGGED_THROUGH,
    TAG_NODE_ID,
    TAG_PACK,
    TAG_PBT_EXPLOITS,
    TAG_PID,
    TAG_RESTARTS,
    TAG_RESUMED_AT,
    TAG_STATUS,
    TAG_VERDICT,
)
from conftest import free_port, seed_store
from forkserver import Child, run_ganlab, start_ganlab

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
STEPS, EVAL_EVERY, LOG_EVERY = 1000, 100, 10
LONG = textwrap.dedent(
    f"""
    name: resumable
    trial:
      data: {{name: ring8, batch_size: 32}}
      model: {{width: 16, depth: 1}}
      optim: {{lr_g: 1.0e-3}}
      train: {{steps: {STEPS}, eval_every: {EVAL_EVERY}, log_every: {LOG_EVERY}, eval_samples: 200, checkpoint_every: 200}}
    sweep:
      optim.lr_ratio: {{grid: [1.0, 4.0]}}
    seeds: [0, 1]
    resources: {{cpu: 1}}
    max_concurrent: 2
    chart_points: 20
    artifacts: {{sample_plots: 0, save_best: {{metric: eq/acc_gap, mode: min}}}}
    """
)


def env(**extra: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**base, "GANLAB_PROGRESS_EVERY": "0", **extra}


def run(workdir: Path, *args: str, expect: int = 0, **extra_env: str) -> subprocess.CompletedProcess:
    proc = run_ganlab(list(args), cwd=seed_store(workdir), env=env(**extra_env))
    assert proc.returncode == expect, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def uri_of(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def snapshot(workdir: Path, name: str, parent: str | None = None) -> dict:
    """Everything a researcher reads back: every run's status, final metrics and full histories (of one parent
    run and its trials, with ``parent``)."""
    client = MlflowClient(uri_of(workdir))
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    if parent is not None:
        runs = [r for r in runs if parent in (r.info.run_id, r.data.tags.get("mlflow.parentRunId"))]
    out = {"statuses": sorted((r.data.tags[TAG_KIND], r.info.status) for r in runs)}
    for r in runs:
        if r.data.tags[TAG_KIND] != "trial":
            continue
        key = (r.data.params["optim.lr_ratio"], r.data.params["seed"])
        histories = {k: sorted((m.step, _clean(m.value)) for m in client.get_metric_history(r.info.run_id, k))
                     for k in ("acc/real", "loss/d", "eval/sliced_w", "osc/loss_d_std")}
        finals = {k: _clean(v) for k, v in r.data.metrics.items() if not k.startswith("cost/")}
        with tempfile.TemporaryDirectory() as tmp:  # the Parquet history survives restarts as well
            parquet = pd.read_parquet(client.download_artifacts(r.info.run_id, "diagnostics.parquet", tmp))
            weights = {name: _digest(torch.load(client.download_artifacts(r.info.run_id, f"model/{name}.pt", tmp),
                                                weights_only=True)) for name in ("final", "best")}
        parquet = parquet[[c for c in parquet.columns if not c.startswith("cost/")]]
        histories["parquet"] = [{k: _clean(v) for k, v in row.items()} for row in parquet.to_dict("records")]
        out[key] = {"weights": weights, "best": r.data.tags.get(TAG_BEST),  # best step survives restarts
                    "status": r.info.status, "verdict": r.data.tags.get(TAG_VERDICT),
                    "trial_status": r.data.tags.get(TAG_STATUS), "final": finals, "histories": histories}
    return out


def differences(got, want, path: str = "") -> list[str]:
    """Where two snapshots differ, as paths with both values (a bare ``==`` on two large snapshots prints
    only the tail of one of them, which rarely shows the differing value)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = [f"{path}/{k!r}: only in {'the run' if k in got else 'the reference'}" for k in got.keys() ^ want.keys()]
        for k in got.keys() & want.keys():
            out += differences(got[k], want[k], f"{path}/{k!r}")
        return out
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            extra = [x for x in got if x not in want][:3], [x for x in want if x not in got][:3]
            return [f"{path}: {len(got)} entries, reference {len(want)}; only in the run {extra[0]}, "
                    f"only in the reference {extra[1]}"]
        return [d for i, (a, b) in enumerate(zip(got, want)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: {got!r}, reference {want!r}"]


def interruption_points(got: dict, want: dict) -> dict:
    """``got`` without the MLflow points a graceful stop added at the step it stopped: a run ended between
    chart steps gets every figure of its last step (so its latest values are its final ones, as for a trial a
    scheduler stops), and when it resumes those points stay. They must be true values: each equals the
    uninterrupted study's full-resolution (Parquet) history at that step, and they sit at one step per trial."""
    out = {k: v for k, v in got.items()}
    for key, trial in got.items():
        if key == "statuses" or key not in want:
            continue
        reference = {row["step"]: row for row in want[key]["histories"]["parquet"]}
        histories = dict(trial["histories"])
        steps = set()
        for metric, points in trial["histories"].items():
            if metric == "parquet":
                continue
            expected = set(want[key]["histories"].get(metric, []))
            extra = [p for p in points if p not in expected]
            for step, value in extra:
                assert step in reference and reference[step].get(metric) == value, (key, metric, step, value)
                steps.add(step)
            histories[metric] = [p for p in points if p in expected]
        assert len(steps) <= 1, (key, sorted(steps))
        out[key] = {**trial, "histories": histories}
    return out


def assert_same(got: dict, want: dict) -> None:
    diff = differences(got, want)
    assert not diff, f"{len(diff)} differences from the uninterrupted study:\n" + "\n".join(sorted(diff)[:40])


def _digest(state) -> str:
    """Every tensor of a saved models file, bit for bit."""
    import hashlib

    h = hashlib.sha256()
    for name in ("G", "D"):
        for key, tensor in sorted(state[name].items()):
            h.update(key.encode() + tensor.numpy().tobytes())
    h.update(str(state.get("best")).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_cluster):
    """The study every interrupted one must reproduce exactly, trained from scratch without a break by
    `ganlab run --fresh` beside an interrupted run of it (interrupted at step 200 by SIGINT): --fresh's own
    test reads what that did. Returns the snapshot, the study's folder and the two runs' state files."""
    workdir = tmp_path_factory.mktemp("reference")
    proc = start(workdir, ray_cluster)
    wait_for_step(workdir, proc, 200)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (workdir / "driver.log").read_text()[-3000:]
    state_file = search_folder(workdir) / "state.json"
    interrupted = json.loads(state_file.read_text())
    address, auth = cluster(ray_cluster)
    fresh = run(workdir, "run", "study.yaml", "--address", address, "--fresh", **auth)
    new = json.loads(state_file.read_text())
    snap = snapshot(workdir, "resumable", parent=new["parent_run_id"])
    assert snap["statuses"] == [("study", "FINISHED")] + [("trial", "FINISHED")] * 4
    for key, trial in snap.items():
        if key != "statuses":
            assert [s for s, _ in trial["histories"]["acc/real"]] == list(range(5 * LOG_EVERY, STEPS + 1, 5 * LOG_EVERY))  # chart_points 20
            assert [row["step"] for row in trial["histories"]["parquet"]] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    return {"snapshot": snap, "workdir": workdir, "interrupted": interrupted, "fresh": new, "stdout": fresh.stdout}


def start(workdir: Path, ray_cluster, study: str = LONG, **extra_env: str) -> Child:
    """`ganlab run` of ``study`` on the session's Ray head, in the background, its output in driver.log."""
    (workdir / "study.yaml").write_text(study)
    address, auth = cluster(ray_cluster)
    return start_ganlab(["run", "study.yaml", "--address", address], cwd=seed_store(workdir),
                        env=env(**auth, **extra_env), output=workdir / "driver.log")


def search_folder(workdir: Path) -> Path:
    """Where `ganlab run` keeps the LONG study's search phase: its state.json and Tune's experiment."""
    return workdir / "ganlab_studies" / "resumable" / "search"


def wait_for_recorded_step(workdir: Path, proc: subprocess.Popen, step: int, timeout: float = 240) -> None:
    """Until Tune's saved experiment state holds a trial past ``step``: what a driver killed outright leaves
    to resume from (Tune saves it every TUNE_GLOBAL_CHECKPOINT_S seconds; by default every 10 s or more)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, (workdir / "driver.log").read_text()[-3000:]
        for path in sorted(search_folder(workdir).glob("*/experiment_state-*.json")):
            try:
                trials = json.loads(path.read_text())["trial_data"]
                steps = [json.loads(runtime).get("last_result", {}).get("step", 0) for _, runtime in trials]
            except (OSError, ValueError, KeyError):  # being written
                continue
            if steps and max(steps) >= step:
                return
        time.sleep(0.2)
    raise AssertionError("Tune recorded no progress")


def kill_between_state_copies(workdir: Path, proc: subprocess.Popen, attempts: int = 50) -> None:
    """SIGKILL the driver at a moment its Tune state in the study folder is whole. Tune copies that state there
    from a staging folder without an atomic rename (every second here), so a kill mid-copy leaves a file cut
    short, which `ganlab run` refuses to resume from (the SIGINT case tests that refusal). Stopped, the driver
    writes nothing: the files are checked while it is stopped, and it is killed only if they are whole."""
    from ganlab.study.runner import unreadable_tune_state

    for _ in range(attempts):
        proc.send_signal(signal.SIGSTOP)
        experiments = [p for p in search_folder(workdir).iterdir() if p.is_dir()]
        if experiments and all(unreadable_tune_state(p) is None for p in experiments):
            proc.send_signal(signal.SIGKILL)
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("Tune's saved state was never whole")


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import socket

    deadline = time.time() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None and time.time() < deadline, "the Ray head did not start"
        time.sleep(0.3)


def wait_for_step(workdir: Path, proc: subprocess.Popen, step: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, (workdir / "driver.log").read_text()[-3000:]
        steps = [int(s) for s in re.findall(rf"step +(\d+)/{STEPS}", (workdir / "driver.log").read_text())]
        if steps and max(steps) >= step:
            return
        time.sleep(0.2)
    raise AssertionError("the study made no progress")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_driver_then_resume_equals_an_uninterrupted_study(reference, tmp_path, sig, ray_cluster):
    address, auth = cluster(ray_cluster)
    if sig == signal.SIGINT:
        proc = start(tmp_path, ray_cluster)
        wait_for_step(tmp_path, proc, 300)
        proc.send_signal(sig)
    else:  # killed outright once Tune's saved state holds the checkpoints at 200 (a result at 300 came after)
        proc = start(tmp_path, ray_cluster, TUNE_GLOBAL_CHECKPOINT_S="1")
        wait_for_recorded_step(tmp_path, proc, 300)
        kill_between_state_copies(tmp_path, proc)
    rc = proc.wait(timeout=120)
    state = json.loads((search_folder(tmp_path) / "state.json").read_text())
    assert state["finished"] is False
    if sig == signal.SIGINT:
        assert rc == 130
        assert "ganlab run study.yaml --resume" in (tmp_path / "driver.log").read_text()
        # a graceful stop leaves nothing RUNNING
        assert "RUNNING" not in {s for _, s in snapshot(tmp_path, "resumable")["statuses"]}
        # the interrupted run logs to this store: resuming into another is refused, naming both, and runs nothing
        other = f"sqlite:///{tmp_path / 'other.db'}"
        refused = run(tmp_path, "run", "study.yaml", "--address", address, "--tracking-uri", other, expect=2, **auth)
        assert f"logs to {uri_of(tmp_path)}, not {other}" in refused.stderr and "--fresh" in refused.stderr
        assert refused.stderr.strip().count("\n") == 0
        # Tune's search state cut short (a driver killed while Tune copied it): refused, naming the file, and
        # nothing runs, where Tune itself would log an error and start the search over from a partial state
        before = snapshot(tmp_path, "resumable")
        cut = sorted(search_folder(tmp_path).glob("*/basic-variant-state-*.json"))[-1]
        whole = cut.read_bytes()
        cut.write_bytes(whole[: len(whole) // 2])
        refused = run(tmp_path, "run", "study.yaml", "--address", address, expect=2, **auth)
        assert f"cut short: {cut}" in refused.stderr and "--fresh" in refused.stderr, refused.stderr
        assert refused.stderr.strip().count("\n") == 0 and "Resuming" not in refused.stdout
        assert cut.read_bytes() == whole[: len(whole) // 2] and snapshot(tmp_path, "resumable") == before
        cut.write_bytes(whole)
    else:  # resuming refuses a changed study file, naming the key, and runs nothing
        (tmp_path / "study.yaml").write_text(LONG.replace("lr_g: 1.0e-3", "lr_g: 2.0e-3"))
        refused = run(tmp_path, "run", "study.yaml", "--address", address, expect=2, **auth)
        assert "study file changed" in refused.stderr and "trial.optim.lr_g" in refused.stderr
        assert "--fresh" in refused.stderr and refused.stderr.strip().count("\n") == 0
        (tmp_path / "study.yaml").write_text(LONG)
    resumed = run(tmp_path, "run", "study.yaml", "--address", address,
                  *(["--resume"] if sig == signal.SIGKILL else []), **auth)
    assert "Resuming the interrupted search" in resumed.stdout
    # same runs, same values, every step exactly once (with, after a graceful stop, its step's figures)
    assert_same(interruption_points(snapshot(tmp_path, "resumable"), reference["snapshot"]), reference["snapshot"])
    trials = load_study("resumable", uri_of(tmp_path), run="all")
    assert len(trials) == 4  # no duplicate trial runs
    client = MlflowClient(uri_of(tmp_path))  # the trials in flight continued from checkpoints, and say so
    assert any(int(client.get_run(r).data.tags.get(TAG_RESUMED_AT, 0)) >= 200 for r in trials["run_id"])


def test_fresh_starts_over_instead_of_resuming_an_interrupted_study(reference):
    """--fresh beside an interrupted run (the reference study's own making): that run is closed (KILLED, kept
    in MLflow) and a new parent run trains every trial from the start: no trial restored a checkpoint, and
    every interrupted study below, resumed, must reach the same numbers to the bit."""
    interrupted, new = reference["interrupted"], reference["fresh"]
    assert interrupted["finished"] is False and "Resuming" not in reference["stdout"]
    client = MlflowClient(uri_of(reference["workdir"]))
    assert client.get_run(interrupted["parent_run_id"]).info.status == "KILLED"
    assert new["parent_run_id"] != interrupted["parent_run_id"] and new["finished"] is True
    experiment = client.get_experiment_by_name("resumable")
    trials = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{new['parent_run_id']}'")
    assert len(trials) == 4
    for trial in trials:  # a restored trial is tagged with the iteration it continued from
        assert TAG_RESUMED_AT not in trial.data.tags and trial.data.tags.get(TAG_RESTARTS, "0") == "0"
    old = client.search_runs([experiment.experiment_id],
                             f"tags.`mlflow.parentRunId` = '{interrupted['parent_run_id']}'")
    assert old and {r.info.status for r in old} == {"KILLED"}  # kept, closed, not continued


def test_killed_worker_resumes_its_trial_from_the_checkpoint(reference, tmp_path, ray_cluster):
    proc = start(tmp_path, ray_cluster)
    client = store_client(tmp_path, proc)
    victim = _running_trial_run(client, proc, tmp_path, 400)
    os.kill(int(victim.data.tags[TAG_PID]), signal.SIGKILL)
    assert proc.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    assert "ActorDiedError" in (tmp_path / "driver.log").read_text()  # it really died
    run_after = client.get_run(victim.info.run_id)
    assert run_after.data.tags[TAG_RESTARTS] == "1" and run_after.info.status == "FINISHED"
    assert int(run_after.data.tags[TAG_RESUMED_AT]) >= 200  # from a checkpoint, not from scratch
    assert_same(snapshot(tmp_path, "resumable"), reference["snapshot"])


def store_client(workdir: Path, proc) -> MlflowClient:
    """A client of the store the running study writes, once the study has created it (a trial reported):
    ``MlflowClient`` on a missing SQLite file creates the store itself, racing the driver's own migrations
    ("table ... already exists")."""
    wait_for_step(workdir, proc, EVAL_EVERY)
    return MlflowClient(uri_of(workdir))


def _running_trial_run(client, proc, workdir: Path, min_step: int, max_step: int | None = None):
    """A trial that is running and has logged through ``min_step`` but not past ``max_step`` (by default
    min_step + 200 of its 1000 steps): hundreds of iterations before it ends, so a kill lands mid-trial."""
    max_step = min_step + 200 if max_step is None else max_step
    deadline = time.time() + 240
    while time.time() < deadline:
        assert proc.poll() is None, (workdir / "driver.log").read_text()[-3000:]
        try:
            runs = client.search_runs(client.get_experiment_by_name("resumable").experiment_id,
                                      "attributes.status = 'RUNNING' and tags.`ganlab.kind` = 'trial'")
        except Exception:  # noqa: BLE001 - the store is busy with the trials' writes
            runs = []
        victim = next((r for r in runs if min_step <= int(r.data.tags.get(TAG_LOGGED_THROUGH, -1)) <= max_step),
                      None)
        if victim is not None:
            return victim
        time.sleep(0.2)
    raise AssertionError("no trial made progress")


@pytest.mark.parametrize("pack", ["1", "auto"])
def test_a_trial_out_of_retries_fails_alone_and_nothing_is_left_running(tmp_path, pack, ray_cluster):
    """Alone (pack: 1) the dead worker's trial fails and no other; in packs (2 of 2 trials on 2 trial slots) the
    dead worker's pack fails, every lane of it with the reason, and the other pack runs to the end."""
    study = LONG.replace("resources: {cpu: 1}", "resources: {cpu: 0.5}")  # two slots on the session's one CPU
    proc = start(tmp_path, ray_cluster, study + f"max_failures: 0\nflush_interval_s: 0\npack: {pack}\n")
    client = store_client(tmp_path, proc)
    victim = _running_trial_run(client, proc, tmp_path, 200)
    os.kill(int(victim.data.tags[TAG_PID]), signal.SIGKILL)
    assert proc.wait(timeout=600) == 1  # a failed trial fails the study's exit code ...
    out = (tmp_path / "driver.log").read_text()
    df = load_study("resumable", uri_of(tmp_path))
    assert len(df) == 4  # ... but every other trial ran to the end
    pack_of = {r: client.get_run(r).data.tags.get(TAG_PACK) for r in df["run_id"]}
    lost = [r for r in df["run_id"] if r == victim.info.run_id
            or (pack == "auto" and pack_of[r] == pack_of[victim.info.run_id])]
    assert len(lost) == (1 if pack == "1" else 2)
    assert f"{len(lost)} trial(s) failed" in out and "FAILED" in out
    failed = df[df["run_id"].isin(lost)]
    assert (failed["status"] == "FAILED").all() and (failed["trial_status"] == "failed").all()
    assert failed["stop_reason"].str.startswith("failed:").all()
    others = df[~df["run_id"].isin(lost)]
    assert (others["status"] == "FINISHED").all() and (others["progress/g_steps"] == STEPS).all()


def test_resume_with_nothing_to_resume_is_refused(tmp_path):
    (tmp_path / "other.yaml").write_text(LONG.replace("name: resumable", "name: other"))
    nothing = run(tmp_path, "run", "other.yaml", "--resume", expect=2)
    assert "no interrupted 'search' run" in nothing.stderr


def test_a_cluster_that_refuses_the_token_is_a_clear_error_and_nothing_is_written(tmp_path, ray_cluster):
    """Joining the session's head (token authentication, Ray's default) with a wrong token: exit 2, one paragraph
    that names the address and where the token goes, and no file written (no store, no Ray results). Ray retries
    joining for ~20 s by default; RAY_gcs_server_port_wait_time_s makes that two tries here."""
    address, _ = cluster(ray_cluster)
    (tmp_path / "study.yaml").write_text(LONG)
    proc = run_ganlab(["run", "study.yaml", "--address", address], cwd=tmp_path,
                      env=env(RAY_AUTH_TOKEN="0" * 64, RAY_gcs_server_port_wait_time_s="2"), timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    said = proc.stderr.strip().splitlines()[-1]  # after Ray's own lines about the refused token
    assert said.startswith(f"ganlab: Could not join the Ray cluster at {address}: "), proc.stderr[-3000:]
    assert "RAY_AUTH_TOKEN" in said and "nothing was run" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


# --- a real two-node cluster -------------------------------------------------------------------------


def test_two_node_cluster_on_loopback_with_token_auth(tmp_path):
    """A head and a worker node, each `ray start --block` in its own process group so that stopping them
    touches no other Ray on the machine (not the shared test cluster: `ray stop` would)."""
    ray = str(BIN / "ray")
    cluster_env = env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", "--block"]
    nodes = []
    try:
        nodes.append(subprocess.Popen([ray, "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cluster_env,
                                      start_new_session=True))
        _wait_for_port(port, nodes[0])
        nodes.append(subprocess.Popen([ray, "start", "--address", f"127.0.0.1:{port}", *common],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cluster_env,
                                      start_new_session=True))
        deadline = time.time() + 120
        while True:  # the worker node has joined: two nodes alive
            status = subprocess.run([ray, "status", "--address", f"127.0.0.1:{port}"], capture_output=True, text=True,
                                    timeout=60, env=cluster_env).stdout
            active = status.split("Active:")[-1].split("Pending:")[0]
            if active.count("node_") >= 2:
                break
            assert time.time() < deadline and nodes[1].poll() is None, status
            time.sleep(1)
        (tmp_path / "study.yaml").write_text(LONG.replace(f"steps: {STEPS}", "steps: 300"))
        proc = run_ganlab(["run", "study.yaml", "--address", f"127.0.0.1:{port}"], cwd=seed_store(tmp_path),
                          env=cluster_env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finally:
        for node in nodes:
            try:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(timeout=30)
            except ProcessLookupError:
                pass
    client = MlflowClient(uri_of(tmp_path))
    df = load_study("resumable", uri_of(tmp_path))
    assert len(df) == 4 and (df["status"] == "FINISHED").all()
    nodes = {client.get_run(r).data.tags[TAG_NODE_ID] for r in df["run_id"]}
    assert len(nodes) == 2, "the trials did not use both nodes"
    for run_id in df["run_id"]:  # every trial's metrics arrived, from either node
        assert [m.step for m in sorted(client.get_metric_history(run_id, "acc/real"), key=lambda m: m.step)] == \
            list(range(2 * LOG_EVERY, 301, 2 * LOG_EVERY))  # chart_points 20 of 30 logged steps: every 2nd


# --- Optuna, ASHA, PBT -----------------------------------------------------------------------------

SHORT = """
trial:
  data: {name: ring8, batch_size: 32}
  model: {width: 16, depth: 1}
  optim: {lr_g: 1.0e-3}
  train: {steps: 400, eval_every: 50, log_every: 10, eval_samples: 200}
resources: {cpu: 1}
artifacts: {sample_plots: 0}
"""


def test_optuna_multi_objective_conditional_search_with_confirmation(tmp_path, ray_cluster):
    (tmp_path / "opt.yaml").write_text("name: opt\n" + SHORT.replace("steps: 400", "steps: 200") + textwrap.dedent("""
        sweep:
          optim.lr_ratio: {loguniform: [0.25, 8.0]}
          loss.name: {choice: [non_saturating, wgan_gp]}
          loss.gp_weight: {uniform: [1.0, 10.0], when: {loss.name: wgan_gp}}
        search: {algorithm: optuna, metric: [eq/acc_gap, eval/modes], mode: [min, max], seed: 3, startup_trials: 3}
        num_samples: 6
        confirm: {top: 2, seeds: 2}
        max_concurrent: 1
        """))
    address, auth = cluster(ray_cluster)
    proc = run(tmp_path, "run", "opt.yaml", "--address", address, **auth)
    assert "Stability across seeds (confirmation phase)" in proc.stdout
    storage = f"sqlite:///{tmp_path / 'ganlab_studies' / 'opt' / 'search' / 'optuna.db'}"  # optuna-dashboard opens it
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert len(study.directions) == 2 and len(study.trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert ("loss.gp_weight" in t.params) == (t.params["loss.name"] == "wgan_gp")
    search = load_study("opt", uri_of(tmp_path), phase="search")
    assert len(search) == 6 and (search["status"] == "FINISHED").all()
    assert (search["loss.gp_weight"].notna() == (search["loss.name"] == "wgan_gp")).all()
    confirm = load_study("opt", uri_of(tmp_path), phase="confirm")
    assert len(confirm) == 2 * 2 and set(confirm["seed"]) == {1, 2}  # new seeds: the search used seed 0
    parent = MlflowClient(uri_of(tmp_path)).get_run(confirm["parent_run_id"][0])
    assert parent.data.tags[TAG_CONFIRMS] == search["parent_run_id"][0]
    best = search.groupby(["optim.lr_ratio", "loss.name"], dropna=False)["eq/acc_gap"].mean().nsmallest(2)
    assert set(confirm["optim.lr_ratio"]) == {r for r, _ in best.index}
    # the search next to its confirmation, per configuration
    both = compare(search, confirm, by=["optim.lr_ratio"], labels=("search", "confirm"))
    assert both[("search", "seeds")].sum() == 6 and both[("confirm", "seeds")].dropna().tolist() == [2, 2]
    _optuna_dashboard_lists(storage, summary.study_name, n_trials=6)


def _optuna_dashboard_lists(storage: str, study_name: str, n_trials: int) -> None:
    """optuna-dashboard, started as dashboards/README.md says, serves the search's trials."""
    port = free_port()
    dashboard = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), storage, "--host", "127.0.0.1",
                                  "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and dashboard.poll() is None, "optuna-dashboard did not answer"
                time.sleep(0.5)
        (study,) = [s for s in studies if s["study_name"] == study_name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0", timeout=30) as r:
            detail = json.load(r)
        assert len(detail["trials"]) == n_trials and len(detail["directions"]) == 2
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def cluster(ray_cluster) -> tuple[str, dict]:
    """(--address, env) of the shared test cluster, for `run`."""
    address, cluster_env = ray_cluster
    return address, {k: cluster_env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}


def test_asha_stops_trials_early_and_says_why(tmp_path, ray_cluster):
    """ASHA's arithmetic, from what it recorded: a trial stops at a rung grace_steps x reduction_factor^k, at the
    iteration of that rung, because the value it reported there (its history's) is worse than the rung's
    cutoff; stopped and finished trials add up to the study. One trial at a time: which trials ASHA stops depends
    on the order they reach a rung (two at once stopped none in a CI run); in grid order it is the same every
    run."""
    address, auth = cluster(ray_cluster)
    (tmp_path / "asha.yaml").write_text("name: asha\n" + SHORT + textwrap.dedent("""
        sweep:
          optim.lr_ratio: {grid: [0.25, 1.0, 4.0, 16.0]}
        scheduler: {name: asha, metric: eq/acc_gap, mode: min, grace_steps: 100, reduction_factor: 2}
        max_concurrent: 1
        """))
    proc = run(tmp_path, "run", "asha.yaml", "--address", address, **auth)
    df = load_study("asha", uri_of(tmp_path))
    stopped = df[df["trial_status"] == "stopped"]
    finished = df[df["trial_status"] == "finished"]
    assert 1 <= len(stopped) < len(df) and len(stopped) + len(finished) == len(df) == 4
    assert (stopped["status"] == "KILLED").all() and (stopped["progress/g_steps"] < 400).all()
    client = MlflowClient(uri_of(tmp_path))
    gaps = {row.run_id: pd.read_parquet(client.download_artifacts(row.run_id, "diagnostics.parquet",
                                                                  str(tmp_path / row.run_id))).set_index("step")
            ["eq/acc_gap"] for row in df.itertuples()}
    for _, row in stopped.iterrows():
        reason = re.match(r"asha: stopped at iteration (\d+) of 400 \(rung (\d+)\): eq/acc_gap = ([\d.e-]+), not "
                          r"below the rung's cutoff ([\d.e-]+) \(the best 1/2 continue\)", row["stop_reason"])
        assert reason, row["stop_reason"]
        at, rung, value, cutoff = int(reason.group(1)), int(reason.group(2)), float(reason.group(3)), float(reason.group(4))
        assert rung in (100, 200) and at == rung == gaps[row["run_id"]].index.max()  # grace x 2^k; it went no further
        assert value == pytest.approx(gaps[row["run_id"]][rung], rel=1e-3)  # the value it reported at the rung
        assert value > cutoff  # minimising: worse than the cutoff
        others = [g[rung] for r, g in gaps.items() if r != row["run_id"] and rung in g.index]
        # a cutoff among the values the rung saw (the reason prints 4 significant digits)
        assert others and min(others) * (1 - 1e-3) <= cutoff <= max(others + [value]) * (1 + 1e-3)
        assert row["stop_reason"] in proc.stdout  # the summary says it too
    assert (finished["progress/g_steps"] == 400).all() and (finished["status"] == "FINISHED").all()
    # `ganlab confirm` on the finished search: the best configuration by mean gap, with one new seed
    confirm = run(tmp_path, "confirm", "asha.yaml", "--top", "1", "--seeds", "1", "--metric", "eq/acc_gap",
                  "--mode", "min", "--address", address, **auth)
    assert "Stability across seeds (confirmation phase)" in confirm.stdout
    confirmed = load_study("asha", uri_of(tmp_path), phase="confirm")
    best = df.sort_values("eq/acc_gap").iloc[0]["optim.lr_ratio"]
    assert confirmed["optim.lr_ratio"].tolist() == [best] and confirmed["seed"].tolist() == [1]


def test_pbt_exploits_at_aligned_checkpoints_and_applies_its_perturbations(tmp_path, ray_cluster):
    """Exploits happen at perturbation steps; each applies a perturbation (x0.8 or x1.2 of the source's value,
    kept in range: resampling is off so that is the only move), the optimisers step with the mutated learning
    rates (read back from them as hp/lr_d), and a mutated d_steps changes how many D updates an iteration
    makes (progress/d_steps)."""
    address, cluster_env = ray_cluster
    # d_steps starts mid-grid: Ray shifts a grid value one place left or right, so the first exploit (its
    # source still at 2) moves it for sure; from an end of the grid half the shifts are no-ops (a flaky test)
    short = SHORT.replace("  optim: {lr_g: 1.0e-3}\n", "  optim: {lr_g: 1.0e-3}\n  schedule: {d_steps: 2}\n")
    assert short != SHORT
    (tmp_path / "pbt.yaml").write_text("name: pbt\n" + short + textwrap.dedent("""
        sweep:
          optim.lr_ratio: {grid: [0.25, 1.0, 4.0, 16.0]}
        scheduler:
          name: pbt
          metric: eq/acc_gap
          mode: min
          interval: 100
          resample_probability: 0.0
          mutations:
            optim.lr_ratio: {loguniform: [0.25, 16.0]}
            schedule.d_steps: {grid: [1, 2, 3]}
        max_concurrent: 4
        """))
    proc = run_ganlab(["run", "pbt.yaml", "--address", address], cwd=seed_store(tmp_path), env=cluster_env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "no checkpoint for trial" not in proc.stdout + proc.stderr  # checkpoints aligned with the interval
    client = MlflowClient(uri_of(tmp_path))
    df = load_study("pbt", uri_of(tmp_path))
    assert len(df) == 4 and (df["status"] == "FINISHED").all()
    exploits, moved, d_changed = 0, 0, 0
    for run_id in df["run_id"]:
        tags = client.get_run(run_id).data.tags
        for event in [e for e in tags.get(TAG_PBT_EXPLOITS, "").splitlines() if e]:
            exploits += 1
            step = int(re.match(r"iteration (\d+): cloned", event).group(1))
            assert step % 100 == 0  # exploits happen at perturbation steps, in training iterations
            ratio = re.search(r"optim.lr_ratio ([\d.e-]+) -> ([\d.e-]+)", event)
            if ratio:
                before, after = float(ratio.group(1)), float(ratio.group(2))
                assert after in [pytest.approx(min(max(before * f, 0.25), 16.0)) for f in (0.8, 1.2)], event
                moved += 1
            d_changed += "schedule.d_steps" in event
        hp = {key: {m.step: m.value for m in client.get_metric_history(run_id, f"hp/{key}")}
              for key in ("optim.lr_ratio", "schedule.d_steps", "lr_g", "lr_d")}
        assert sorted(hp["lr_d"]) == list(range(50, 401, 50))
        for step, lr_d in hp["lr_d"].items():  # the optimisers hold the mutated rates
            assert hp["lr_g"][step] == pytest.approx(1e-3)
            assert lr_d == pytest.approx(1e-3 * hp["optim.lr_ratio"][step])
        history = pd.read_parquet(client.download_artifacts(run_id, "diagnostics.parquet", str(tmp_path / run_id)))
        d_steps = history.set_index("step")["progress/d_steps"]
        for s in range(10, 400, 10):
            if s % 50:  # both ends inside one report interval: no clone in between
                report = (s // 50 + 1) * 50
                assert (d_steps[s + 10] - d_steps[s]) / 10 == hp["schedule.d_steps"][report], (run_id, s)
        steps = [m.step for m in client.get_metric_history(run_id, "eval/modes")]
        assert sorted(steps) == list(range(50, 401, 50))  # every eval step exactly once
    assert exploits >= 2 and moved >= 1 and d_changed >= 1


def test_pbt_with_integer_grid_values_keeps_float_keys_float_and_in_range(tmp_path, ray_cluster):
    """studies/pbt.yaml crashed: its grid [.., 1, 2, 4, ..] held YAML integers, so Ray's PBT took lr_ratio for an
    integer hyper-parameter and rounded every resample (0.31 -> 0, an invalid ratio). Integer grid values and
    a resample at every exploit: the study finishes, every lr_ratio a trial trains with is a float inside the
    mutation's range, and d_steps (integers in the study) stays an integer."""
    address, cluster_env = ray_cluster
    (tmp_path / "pbt.yaml").write_text("name: pbtint\n" + SHORT.replace("steps: 400", "steps: 200") + textwrap.dedent("""
        sweep:
          optim.lr_ratio: {grid: [1, 4, 16]}
        scheduler:
          name: pbt
          metric: eq/acc_gap
          mode: min
          interval: 50
          quantile: 0.5
          resample_probability: 1.0
          mutations:
            optim.lr_ratio: {loguniform: [0.25, 32.0]}
            schedule.d_steps: {grid: [1, 2, 3]}
        max_concurrent: 3
        """))
    proc = run_ganlab(["run", "pbt.yaml", "--address", address], cwd=seed_store(tmp_path), env=cluster_env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    client = MlflowClient(uri_of(tmp_path))
    df = load_study("pbtint", uri_of(tmp_path))
    assert len(df) == 3 and (df["trial_status"] == "finished").all()
    ratios, d_steps, exploits = set(), set(), 0
    for run_id in df["run_id"]:
        ratios |= {m.value for m in client.get_metric_history(run_id, "hp/optim.lr_ratio")}
        d_steps |= {m.value for m in client.get_metric_history(run_id, "hp/schedule.d_steps")}
        exploits += len([e for e in client.get_run(run_id).data.tags.get(TAG_PBT_EXPLOITS, "").splitlines() if e])
    assert exploits >= 1
    assert all(0.25 <= r <= 32.0 for r in ratios) and any(r != int(r) for r in ratios), ratios  # resampled floats
    assert d_steps <= {1.0, 2.0, 3.0}


def test_a_resumed_synchronous_pbt_study_finishes(tmp_path, ray_cluster):
    """Synchronous PBT (the default), interrupted and resumed: Tune 2.60's scheduler restarts with its first
    perturbation time behind the restored members; after their first synchronised perturbation it set the next one
    to the members' own time, so none was behind it and every member stayed paused forever (seen on every resume
    of a real study). ganlab.study.search.SyncedPBT keeps that time ahead. A one-member population makes the
    case exact: resumed from its checkpoint at 50 or later, its first result is at 100 or later, past the fresh
    scheduler's first perturbation time 50.
    The resume must finish without the stall watchdog, whose short timeout and no restarts make a stall fail."""
    steps = 200
    study = "name: pbtresume\n" + SHORT.replace("steps: 400", f"steps: {steps}, checkpoint_every: 50") + textwrap.dedent("""
        scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 50,
                    mutations: {optim.lr_ratio: {loguniform: [0.25, 32.0]}}}
        stall_timeout_s: 15
        stall_restarts: 0
        """)
    proc = start(tmp_path, ray_cluster, study)
    deadline = time.time() + 240
    while not re.search(rf"step +1[05]0/{steps}", (tmp_path / "driver.log").read_text()):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (tmp_path / "driver.log").read_text()[-3000:]
    address, auth = cluster(ray_cluster)
    resumed = run(tmp_path, "run", "study.yaml", "--address", address, **auth)
    assert "Resuming the interrupted search" in resumed.stdout and "stalled" not in resumed.stdout
    (row,) = load_study("pbtresume", uri_of(tmp_path)).itertuples()
    assert row.trial_status == "finished"
    resumed_at = int(MlflowClient(uri_of(tmp_path)).get_run(row.run_id).data.tags[TAG_RESUMED_AT])
    assert 50 <= resumed_at < steps
    history = MlflowClient(uri_of(tmp_path)).get_metric_history(row.run_id, "loss/d")
    assert [m.step for m in history] == list(range(10, steps + 1, 10))  # each logged step once, none lost


def test_optuna_gets_the_penalty_for_a_diverged_trial_and_complete_for_an_asha_stop(tmp_path, ray_cluster):
    """What Optuna records: a trial that diverged (its objective undefined) reports the search's penalty with
    diverged = 1, never NaN (a NaN would leave the Optuna trial RUNNING forever); a trial ASHA stopped is
    COMPLETE with the value it had; every Optuna trial ends COMPLETE. One trial at a time, so what ASHA stops is
    the same every run (Optuna's first 8 trials are its seeded random start-up).
    The cluster's token is given alone, without RAY_AUTH_MODE: `ganlab run --address` turns token mode on itself
    (that once had no effect: Ray had read its mode when imported, and joining failed after ~20 s of retries)."""
    address, auth = cluster(ray_cluster)
    auth = {"RAY_AUTH_TOKEN": auth["RAY_AUTH_TOKEN"]}
    (tmp_path / "opt.yaml").write_text("name: optasha\n" + SHORT.replace("steps: 400", "steps: 200") + textwrap.dedent("""
        sweep:
          optim.lr_g: {choice: [1.0e-3, 80.0]}
          optim.lr_ratio: {loguniform: [0.25, 4.0]}
        search: {algorithm: optuna, metric: eq/acc_gap, mode: min, seed: 0, startup_trials: 8, penalty: 12345.0}
        scheduler: {name: asha, grace_steps: 50, reduction_factor: 2}
        num_samples: 8
        max_concurrent: 1
        """).replace("optim: {lr_g: 1.0e-3}", "optim: {name: sgd, lr_g: 1.0e-3}").replace(
        "model: {width: 16, depth: 1}", "model: {width: 16, depth: 1}\n  loss: {name: wgan, clip: 1.0e6}"))
    run(tmp_path, "run", "opt.yaml", "--address", address, **auth)
    storage = f"sqlite:///{tmp_path / 'ganlab_studies' / 'optasha' / 'search' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    df = load_study("optasha", uri_of(tmp_path))
    assert len(trials) == len(df) == 8 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_config = {(t.params["optim.lr_g"], t.params["optim.lr_ratio"]): t.values[0] for t in trials}
    diverged = df[df["trial_status"] == "diverged"]
    assert len(diverged) >= 1 and (diverged["optim.lr_g"] == 80.0).all()
    for i in diverged.index:
        assert by_config[(80.0, df.loc[i, "optim.lr_ratio"])] == 12345.0  # the penalty, not NaN
    results = [json.loads(line) for p in (tmp_path / "ganlab_studies" / "optasha" / "search").rglob("result.json")
               for line in p.read_text().splitlines() if line.strip()]
    assert any(r.get("diverged") == 1 and r.get("eq/acc_gap") == 12345.0 for r in results)
    stopped = df[df["trial_status"] == "stopped"]
    assert len(stopped) >= 1
    for i in stopped.index:  # COMPLETE with the truncated trial's own last value
        config = (df.loc[i, "optim.lr_g"], df.loc[i, "optim.lr_ratio"])
        assert by_config[config] == pytest.approx(df.loc[i, "eq/acc_gap"], rel=1e-6)


def test_an_interrupted_confirmation_phase_continues_where_it_stopped(tmp_path, ray_cluster):
    """SIGINT as the confirmation starts (before Tune ran any of its trials: that crashed once; and while the
    search's Tune handler was still installed, which swallowed it and ran the confirmation to its end), then again
    while its trials run; `ganlab run` again continues the confirmation (not the finished search, not a new
    confirmation): the same configurations and seeds, every trial finished once. Between the two, the
    confirmation's folder is removed: what a Ctrl-C leaves before the confirmation wrote its state; the next
    `ganlab run` starts the confirmation rather than a new search. One trial slot: the search's two trials, then
    the confirmation's two seeds, each train as one pack of two lanes in one worker."""
    address, auth = cluster(ray_cluster)
    (tmp_path / "conf.yaml").write_text("name: conf\n" + SHORT + textwrap.dedent("""
        sweep:
          optim.lr_ratio: {grid: [1.0, 4.0]}
        search: {metric: eq/acc_gap, mode: min}
        confirm: {top: 1, seeds: 2}
        max_concurrent: 1
        checkpoint_interval_s: 1
        """))
    state_file = tmp_path / "ganlab_studies" / "conf" / "confirm" / "state.json"

    def confirming(log: Path) -> bool:  # the run that continues the confirmation trains nothing else
        return bool(re.search(r"step +[1-9]\d\d/400", log.read_text()))

    for attempt, ready in (("at_start", lambda log: True), ("mid_trial", confirming)):
        log = tmp_path / f"driver_{attempt}.log"
        proc = start_ganlab(["run", "conf.yaml", "--address", address], cwd=seed_store(tmp_path), env=env(**auth),
                            output=log)
        deadline = time.time() + 300
        while not (state_file.is_file() and ready(log)):
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
        if attempt == "at_start":
            shutil.rmtree(state_file.parent)
        else:
            assert "its confirmation phase never started: starting it" in log.read_text()
    first = json.loads(state_file.read_text())
    assert first["finished"] is False
    again = run(tmp_path, "run", "conf.yaml", "--address", address, **auth)
    assert "its confirmation phase was interrupted: continuing it" in again.stdout
    assert "Stability across seeds (confirmation phase)" in again.stdout
    done = json.loads(state_file.read_text())
    assert done["finished"] is True and done["parent_run_id"] == first["parent_run_id"]
    assert done["points"] == first["points"] and len(done["points"]) == 2
    confirm = load_study("conf", uri_of(tmp_path), phase="confirm")
    assert len(confirm) == 2 and (confirm["trial_status"] == "finished").all()
    assert sorted(confirm["seed"]) == [1, 2] and (confirm["progress/g_steps"] == 400).all()
    search = load_study("conf", uri_of(tmp_path), phase="search")
    assert len(search) == 2 and search["parent_run_id"].nunique() == 1  # the search was not run again
