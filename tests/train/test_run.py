"""``ganlab train``: one run without Ray, driven through the real CLI in a subprocess (real torch, no mocks).

Every run is tiny (a 16-unit MLP, tens of iterations) so the whole file stays fast on a CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import torch
import yaml

from conftest import STUDIES
from forkserver import run_ganlab, start_ganlab
from ganlab.diagnose import plots
from ganlab.config import parse_trial

TINY = """\
seed: 3
device: cpu
data: {name: ring8, batch_size: 32}
model: {name: mlp, width: 16, depth: 1}
optim: {lr_g: 1.0e-3}
train: {steps: 40, log_every: 10, eval_every: 20, eval_samples: 200}
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_ganlab(["train", *args], cwd=cwd, env=env, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def bad_input(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one paragraph on stderr naming what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    err = proc.stderr.strip()
    assert err.startswith("ganlab: ") and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def metrics(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "metrics.csv")


# --- a whole run ------------------------------------------------------------------------------------


def test_ring8_run_writes_config_metrics_samples_curves_checkpoint(tiny):
    proc = ok(train(tiny, "tiny.yaml"))
    out = tiny / "runs" / "tiny"  # the default: runs/<config file stem>
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "curves.png", "metrics.csv",
                                                     "model", "samples"]
    # config.yaml is the resolved trial config: every default filled in, and it parses back to the same trial.
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert set(written) >= {"seed", "data", "model", "loss", "optim", "schedule", "train", "diagnostics"}
    assert parse_trial(written) == parse_trial(yaml.safe_load(TINY))
    # One row per logged step (log_every 10 of 40), the step column plus every metric the trainer logs.
    df = metrics(out)
    assert df["step"].tolist() == [10, 20, 30, 40]
    assert df.columns[0] == "step" and all("/" in c for c in df.columns[1:]) and df.columns.is_unique
    logged = [c for c in df.columns if not c.startswith("eval/")]
    assert {"acc/real", "acc/fake", "loss/d", "loss/g", "grad/d", "grad/g", "osc/loss_d_std"} <= set(logged)
    # A period is reported only where one is significant (NaN means "no cycle beyond noise"), and its p-value
    # only once the window holds enough cycles to test; every other figure is a number at every step.
    periodic = [c for c in logged if c.endswith(("_period", "_period_p"))]
    assert periodic and df[[c for c in logged if c not in periodic]].notna().all().all()
    for c in (c for c in periodic if c.endswith("_period")):
        p_value = df[f"{c}_p"]
        assert (df[c].isna() | (p_value < 0.01)).all() and (df[c].notna() | ~(p_value < 0.01)).all(), df[[c, f"{c}_p"]]
    assert {"eval/modes", "eval/hq_fraction", "eval/sliced_w"} <= set(df.columns)
    assert df.set_index("step")["eval/modes"].notna().to_dict() == {10: False, 20: True, 30: False, 40: True}
    # A sample plot at every eval step, and nothing else there.
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000020.png", "step_000040.png"]
    assert all(is_png(p) for p in (out / "samples").iterdir()) and is_png(out / "curves.png")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["counters"]["iteration"] == 40
    # Summary on stdout, progress bar on stderr.
    assert f"Output: {Path('runs') / 'tiny'}" in proc.stdout and "s/iteration" in proc.stdout
    assert "acc/real" in proc.stdout and "eval/modes" in proc.stdout and "40 ->" not in proc.stdout
    assert "40/40" in proc.stderr


def test_metrics_csv_holds_exactly_what_the_trainer_reports(tiny):
    """Every metric of every report, unrounded: the CSV equals an in-process run of the same config."""
    from ganlab.train.trainer import Trainer

    ok(train(tiny, "tiny.yaml", "--out", "cli", env={**os.environ, "OMP_NUM_THREADS": "1"}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [{"step": r.step, **r.metrics} for r in Trainer(parse_trial(yaml.safe_load(TINY))).run()]
    finally:
        torch.set_num_threads(threads)
    pd.testing.assert_frame_equal(metrics(tiny / "cli"), pd.DataFrame(rows))


def test_set_overrides_land_in_config_yaml(tiny):
    proc = ok(train(tiny, "tiny.yaml", "--out", "o", "--set", "optim.lr_g=3e-3", "--set", "optim.betas=[0.0, 0.9]",
                    "--set", "model.activation=tanh", "--set", "train.steps=20", "--set", "data.sigma=0.02",
                    "--set", "loss.name=hinge"))
    cfg = yaml.safe_load((tiny / "o" / "config.yaml").read_text())
    assert cfg["loss"] == {"name": "hinge"}
    # A critic's accuracies are sign accuracies (acc_sign/*): the progress bar and summary show those.
    assert "D acc real" in proc.stderr and "acc_sign/real" in proc.stdout
    assert cfg["optim"]["lr_g"] == 3e-3 and isinstance(cfg["optim"]["lr_g"], float)
    assert cfg["optim"]["betas"] == [0.0, 0.9]
    assert cfg["model"]["activation"] == "tanh" and cfg["model"]["width"] == 16  # untouched keys stay
    assert cfg["data"] == {"name": "ring8", "batch_size": 32, "radius": 1.0, "sigma": 0.02}
    assert metrics(tiny / "o")["step"].tolist() == [10, 20]


# --- bad input: exit 2, the key named, nothing written ---------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["tiny.yaml", "--set", "optim.lr_rato=2"], ["tiny.yaml", "optim.lr_rato", "unknown key"]),
        (["tiny.yaml", "--set", "optim.lr_g=-1"], ["optim.lr_g", "greater than 0"]),
        (["tiny.yaml", "--set", "train.steps=many"], ["train.steps", "many"]),
        (["tiny.yaml", "--set", "optim.betas=[0.5"], ["optim.betas", "not valid YAML"]),
        (["tiny.yaml", "--set", "optim.lr_g"], ["--set optim.lr_g", "KEY=VALUE"]),
        (["tiny.yaml", "--set", "data.name=dirac"], ["model.name", "Dirac"]),
        (["missing.yaml"], ["No such file: 'missing.yaml'"]),
        (["tiny.yaml", "--resume"], ["--resume", "no checkpoint"]),
    ],
    ids=["unknown_key", "bad_value", "bad_type", "not_yaml", "no_equals", "cross_field", "missing_file", "no_run"],
)
def test_bad_input_exits_2_naming_the_key_and_writes_nothing(tiny, args, words):
    bad_input(train(tiny, *args), *words)
    assert sorted(p.name for p in tiny.iterdir()) == ["tiny.yaml"]


def test_a_bad_value_in_a_study_files_trial_block_is_named_with_its_path(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\ntrial:\n  optim: {lr_g: -1.0}\nsweep: {}\n")
    bad_input(train(tmp_path, "s.yaml"), "s.yaml", "trial.optim.lr_g")
    assert not (tmp_path / "runs").exists()


def test_an_existing_run_is_not_overwritten_without_resume(tiny):
    ok(train(tiny, "tiny.yaml"))
    out = tiny / "runs" / "tiny"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    bad_input(train(tiny, "tiny.yaml", "--set", "train.steps=60"), str(Path("runs") / "tiny"), "--resume", "--out")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # A folder that is not empty but has no checkpoint is refused too (and --resume cannot help there).
    (tiny / "junk").mkdir()
    (tiny / "junk" / "notes.txt").write_text("mine")
    bad_input(train(tiny, "tiny.yaml", "--out", "junk"), "junk", "no checkpoint")
    assert [p.name for p in (tiny / "junk").iterdir()] == ["notes.txt"]


# --- resume --------------------------------------------------------------------------------------------


def test_resume_continues_exactly_like_one_uninterrupted_run(tiny):
    ok(train(tiny, "tiny.yaml"))
    resumed = ok(train(tiny, "tiny.yaml", "--set", "train.steps=80", "--resume"))
    assert "40 -> 80" in resumed.stdout
    ok(train(tiny, "tiny.yaml", "--set", "train.steps=80", "--out", "whole"))
    a, b = metrics(tiny / "runs" / "tiny"), metrics(tiny / "whole")
    assert a["step"].tolist() == list(range(10, 81, 10))
    pd.testing.assert_frame_equal(a, b)  # bit for bit, old rows kept and new rows appended
    assert sorted(p.name for p in (tiny / "runs" / "tiny" / "samples").iterdir()) == [
        f"step_{s:06d}.png" for s in (20, 40, 60, 80)]
    assert yaml.safe_load((tiny / "runs" / "tiny" / "config.yaml").read_text())["train"]["steps"] == 80
    assert torch.load(tiny / "runs" / "tiny" / "checkpoint.pt", weights_only=False)["counters"]["iteration"] == 80


def test_resume_with_a_changed_trial_config_is_refused(tiny):
    ok(train(tiny, "tiny.yaml"))
    out = tiny / "runs" / "tiny"
    before = {p: p.read_bytes() for p in (out / "config.yaml", out / "metrics.csv", out / "checkpoint.pt")}
    bad_input(train(tiny, "tiny.yaml", "--set", "train.steps=80", "--set", "optim.lr_g=0.01", "--resume"),
              "Cannot resume", "different trial config")
    assert {p: p.read_bytes() for p in before} == before


def test_periodic_checkpoints_resume_exactly_after_a_kill(tiny):
    """checkpoint_every writes checkpoints mid-run, also between logged steps (log_every 1000 here); a run
    killed outright resumes from the last one to exactly the uninterrupted run."""
    args = ["tiny.yaml", "--set", "train.checkpoint_every=15", "--set", "train.log_every=1000",
            "--set", "train.eval_every=1000000"]
    proc = start_ganlab(["train", *args, "--set", "train.steps=1000000"], cwd=tiny)
    ckpt = tiny / "runs" / "tiny" / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 60
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert ckpt.exists(), "no checkpoint within a minute of a run with checkpoint_every=15"
    at = torch.load(ckpt, weights_only=False)["counters"]["iteration"]
    assert 0 < at < 900 and at % 15 == 0
    end = at + 20  # the last step is always logged: one row, whose window statistics span the checkpoint
    ok(train(tiny, *args, "--set", f"train.steps={end}", "--resume"))
    ok(train(tiny, *args, "--set", f"train.steps={end}", "--out", "whole"))
    a, b = metrics(tiny / "runs" / "tiny"), metrics(tiny / "whole")
    assert a["step"].tolist() == [end]
    pd.testing.assert_frame_equal(a, b)


def test_ctrl_c_checkpoints_at_the_next_logged_step_and_resumes_exactly(tiny):
    args = ["tiny.yaml", "--set", "train.eval_every=10"]
    proc = start_ganlab(["train", *args, "--set", "train.steps=1000000"], cwd=tiny)
    try:
        deadline = time.monotonic() + 120
        while not (tiny / "runs" / "tiny" / "metrics.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        err = proc.out.read_text()  # stdout and stderr together
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err, err[-2000:]
    out = tiny / "runs" / "tiny"
    at = torch.load(out / "checkpoint.pt", weights_only=False)["counters"]["iteration"]
    assert at > 0 and at % 10 == 0 and metrics(out)["step"].iloc[-1] == at
    ok(train(tiny, *args, "--set", f"train.steps={at + 20}", "--resume"))
    ok(train(tiny, *args, "--set", f"train.steps={at + 20}", "--out", "whole"))
    pd.testing.assert_frame_equal(metrics(out), metrics(tiny / "whole"))


# --- other data, and study files ----------------------------------------------------------------------


def test_a_finished_run_is_sampled_and_loaded_like_a_study_trial(tiny):
    """model/final.pt of a `ganlab train` folder: `ganlab sample FOLDER` and load_trial(FOLDER), no MLflow."""
    import numpy as np

    import ganlab

    ok(train(tiny, "tiny.yaml"))
    out = tiny / "runs" / "tiny"
    proc = run_ganlab(["sample", str(out), "-n", "500", "-o", "s.npz", "--seed", "7"], cwd=tiny, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trial = ganlab.load_trial(str(out))  # verified against the outputs recorded at the end of training
    assert trial.iteration == 40 and trial.config.seed == 3
    assert np.array_equal(np.load(tiny / "s.npz")["samples"], trial.sample(500, seed=7).numpy())
    assert not (tiny / "mlflow.db").exists()


def test_digits_dcgan_run_draws_image_grids(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "device: cpu\ndata: {name: digits, batch_size: 32}\nmodel: {name: dcgan, latent_dim: 8, channels: 4}\n"
        "train: {steps: 40, log_every: 10, eval_every: 40, eval_samples: 128}\n")
    ok(train(tmp_path, "d.yaml"))
    png = tmp_path / "runs" / "d" / "samples" / "step_000040.png"
    assert is_png(png)
    # Same picture size as an 8 x 8 grid of 64 images (a scatter plot is square and smaller).
    reference = plots.image_grid(torch.zeros(64, 1, 8, 8), tmp_path / "ref.png")
    assert matplotlib.image.imread(png).shape == matplotlib.image.imread(reference).shape
    assert "eval/modes" in metrics(tmp_path / "runs" / "d").columns


def test_a_study_file_trains_its_trial_block(tmp_path):
    """studies/dirac.yaml: a 1-D point mass, so the samples are a scatter on a line."""
    (tmp_path / "dirac.yaml").write_text((STUDIES / "dirac.yaml").read_text())
    ok(train(tmp_path, "dirac.yaml", "--set", "train.steps=100", "--set", "device=cpu"))
    out = tmp_path / "runs" / "dirac"
    trial = yaml.safe_load((STUDIES / "dirac.yaml").read_text())["trial"]
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["model"] == {"name": "dirac", "latent_dim": 1, **trial["model"]}
    assert written["optim"]["name"] == "sgd" and written["optim"]["lr_g"] == trial["optim"]["lr_g"]
    assert written["schedule"]["mode"] == "simultaneous" and written["train"]["steps"] == 100
    df = metrics(out)
    assert df["step"].tolist() == list(range(10, 101, 10)) and df["eval/dirac_distance"].notna().sum() == 2
    assert [p.name for p in sorted((out / "samples").iterdir())] == ["step_000050.png", "step_000100.png"]
