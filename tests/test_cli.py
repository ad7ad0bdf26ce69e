"""Bad input: exit 2, one paragraph naming file and key, Ray not started, nothing written."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import STUDIES

CHECK = textwrap.dedent(
    """
    import sys
    from ganlab.cli import main
    rc = main(sys.argv[1:])
    assert "ray" not in sys.modules, "Ray was imported for a bad study file"
    assert "mlflow" not in sys.modules, "MLflow was imported for a bad study file"
    sys.exit(rc)
    """
)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


GOOD = (STUDIES / "quickstart.yaml").read_text()


@pytest.mark.parametrize(
    "case, text, key",
    [
        ("missing", None, None),
        ("not_yaml", "name: quickstart\ntrial: {data: [\n", None),
        ("unknown_key", GOOD.replace("latent_dim: 2", "latent_dims: 2"), "trial.model.latent_dims"),
        ("unknown_sweep_key", GOOD.replace("optim.lr_ratio: {grid", "optim.lr_ration: {grid"), "sweep.optim.lr_ration"),
        ("bad_value", GOOD.replace("steps: 1000", "steps: -5"), "trial.train.steps"),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_study_exits_2_and_writes_nothing(tmp_path, clean_env, case, text, key, command):
    study = tmp_path / "study.yaml"
    if text is not None:
        study.write_text(text)
    before = set(tmp_path.iterdir())
    proc = run_cli(tmp_path, command, str(study))
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert str(study) in err
    if key:
        assert f"key '{key}'" in err
    assert err.count("\n") == 0, "the error must be one paragraph"
    assert "Traceback" not in proc.stderr
    assert set(tmp_path.iterdir()) == before  # no mlflow.db, no mlartifacts, no ganlab_studies


def test_validate_prints_plan(tmp_path, clean_env):
    proc = run_cli(tmp_path, "validate", str(STUDIES / "lr_ratio.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "18 trials" in proc.stdout and "optim.lr_ratio" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_tracking_uri_exits_2(tmp_path, clean_env):
    proc = subprocess.run(
        [sys.executable, "-m", "ganlab.cli", "run", str(STUDIES / "quickstart.yaml"), "--tracking-uri", "./mlruns"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "--tracking-uri" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_readme_test_command_is_what_ci_runs():
    repo = STUDIES.parent
    readme = (repo / "README.md").read_text()
    ci = (repo / ".ci" / "run").read_text()
    test_lines = [l.strip() for l in readme.splitlines() if "pytest" in l and l.strip().startswith("bash")]
    assert len(test_lines) == 1, "README's Quickstart must hold exactly one test command"
    assert test_lines[0] in ci


# --- ganlab train ---------------------------------------------------------------------------------

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

TINY = """
data: {name: ring8, batch_size: 32}
model: {name: mlp, width: 16, depth: 1}
optim: {lr_g: 1.0e-3}
train: {steps: 40, log_every: 10, eval_every: 20, eval_samples: 200}
"""


def train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganlab.cli", "train", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_train_writes_metrics_plots_and_checkpoint(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    proc = train(tmp_path, "tiny.yaml", "--set", "optim.lr_ratio=2", "--set", "model.activation=tanh")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "tiny"
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.csv", "checkpoint.pt", "curves.png", "samples"}
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000020.png", "step_000040.png"]
    df = pd.read_csv(out / "metrics.csv")
    assert df["step"].tolist() == [10, 20, 30, 40] and df["eval/modes"].notna().sum() == 2
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["optim"]["lr_ratio"] == 2.0 and cfg["model"]["activation"] == "tanh" and cfg["optim"]["lr_g"] == 1e-3
    assert "Output: runs/tiny" in proc.stdout and "acc/real" in proc.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "optim.lr_rato=2"], "optim.lr_rato"),
        (["--set", "optim.lr_ratio=-1"], "optim.lr_ratio"),
        (["--set", "optim.lr_ratio"], "--set optim.lr_ratio"),
    ],
)
def test_train_bad_overrides_exit_2(tmp_path, args, words):
    (tmp_path / "tiny.yaml").write_text(TINY)
    proc = train(tmp_path, "tiny.yaml", *args)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_train_refuses_to_overwrite_and_resumes_exactly(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert train(tmp_path, "tiny.yaml").returncode == 0
    again = train(tmp_path, "tiny.yaml")
    assert again.returncode == 2 and "--resume" in again.stderr
    # Resume to 80 iterations == one uninterrupted 80-iteration run.
    resumed = train(tmp_path, "tiny.yaml", "--set", "train.steps=80", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = train(tmp_path, "tiny.yaml", "--set", "train.steps=80", "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    a = pd.read_csv(tmp_path / "runs" / "tiny" / "metrics.csv")
    b = pd.read_csv(tmp_path / "whole" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    changed = train(tmp_path, "tiny.yaml", "--set", "train.steps=90", "--set", "optim.lr_g=0.01", "--resume")
    assert changed.returncode == 2 and "different trial config" in changed.stderr


def test_train_takes_a_study_files_trial_block(tmp_path):
    study = (STUDIES / "dirac.yaml").read_text()
    (tmp_path / "d.yaml").write_text(study)
    proc = train(tmp_path, "d.yaml", "--set", "train.steps=500")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "runs" / "d" / "metrics.csv")
    assert df["eval/dirac_distance"].dropna().iloc[-1] == pytest.approx(3.0969, rel=1e-3)  # O1 of science.md
