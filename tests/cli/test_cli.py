"""Bad input: exit 2, one paragraph naming file and key, Ray not started, nothing written."""

import subprocess
import sys
import textwrap
import time
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


def test_version():
    import ganlab

    proc = subprocess.run([sys.executable, "-m", "ganlab.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ganlab {ganlab.__version__}"


def test_a_trial_that_can_never_fit_is_an_error_before_anything_is_written(tmp_path, clean_env):
    """A GPU study tried on a machine without one: one paragraph naming the file and the key, what was asked,
    what there is and what to change; exit 2, no store, no study folder (Ray used to wait forever)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the study below would fit")
    study = tmp_path / "gpu.yaml"
    study.write_text(GOOD.replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: 0.5}"))
    proc = subprocess.run([sys.executable, "-m", "ganlab.cli", "run", str(study), "--num-cpus", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=clean_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and str(study) in err[0] and "resources.gpu" in err[0], proc.stderr
    assert "0.5 GPU" in err[0] and "0 GPU" in err[0] and "Set resources.gpu: 0" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.yaml"]


def test_an_address_where_no_cluster_answers_is_an_error_in_seconds(tmp_path, clean_env):
    from conftest import free_port

    port = free_port()
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "ganlab.cli", "run", str(STUDIES / "quickstart.yaml"),
                           "--address", f"127.0.0.1:{port}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=clean_env)
    assert proc.returncode == 2 and time.time() - started < 60, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "ray start --head" in err[0], proc.stderr
    assert list(tmp_path.iterdir()) == []  # no parent run, no store
