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


def test_a_trial_that_can_never_fit_is_an_error_before_anything_is_written(tmp_path, ray_cluster):
    """A GPU study tried on a cluster without one (the session's Ray head, 1 CPU, no GPU): one paragraph naming
    the file and the key, what was asked, what there is and what to change; exit 2, no store, no study folder
    (Ray used to wait forever)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the study below would fit")
    address, cluster_env = ray_cluster
    study = tmp_path / "gpu.yaml"
    study.write_text(GOOD.replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: 0.5}"))
    proc = subprocess.run([sys.executable, "-m", "ganlab.cli", "run", str(study), "--address", address],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=cluster_env)
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


def test_ctrl_c_outside_the_trials_exits_130_with_the_command_that_continues(monkeypatch, capsys):
    """A Ctrl-C while a study starts up or between its phases (where no Tune handler takes it): exit 130 and how
    to continue, not a traceback."""
    import ganlab.cli

    def cmd_run(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ganlab.cli, "cmd_run", cmd_run)
    assert ganlab.cli.main(["run", "studies/quickstart.yaml"]) == 130
    err = capsys.readouterr().err
    assert "interrupted. Continue with: ganlab run studies/quickstart.yaml" in err and "Traceback" not in err


def test_a_library_error_is_one_line_on_the_console_naming_the_log_with_its_traceback(tmp_path):
    """What Tune logged when its experiment-state upload raced its own temporary file (seen in a study's output):
    the console gets the message and the exception, the traceback stays in the study's log file; warnings stay
    there too, but for Tune's answer to a Ctrl-C."""
    import logging
    from types import SimpleNamespace

    from ganlab.cli.common import _for_the_console, _OneLine

    try:
        raise FileNotFoundError("[Errno 2] Failed to open local file 'state.json'")
    except FileNotFoundError:
        record = logging.LogRecord("ray.tune.execution.experiment_state", logging.ERROR, __file__, 1,
                                   "Saving experiment state to storage failed with exception: ", None, sys.exc_info())
    line = _OneLine(SimpleNamespace(path=tmp_path / "ganlab.log")).format(record)
    assert line == ("ray.tune.execution.experiment_state: ERROR: Saving experiment state to storage failed with "
                    "exception: FileNotFoundError: [Errno 2] Failed to open local file 'state.json' "
                    f"(traceback in {tmp_path / 'ganlab.log'})")
    plain = logging.LogRecord("mlflow", logging.ERROR, __file__, 1, "no %s", ("server",), None)
    assert _OneLine(SimpleNamespace(path=None)).format(plain) == "mlflow: ERROR: no server"
    stop = logging.LogRecord("ray.tune.tune", logging.WARNING, __file__, 1, "Stop signal received (e.g. via SIGINT/"
                             "Ctrl+C), ending Ray Tune run.", None, None)
    chatter = logging.LogRecord("ray.tune.tune", logging.WARNING, __file__, 1, "Trials did not complete", None, None)
    assert _for_the_console(record) and _for_the_console(stop) and not _for_the_console(chatter)


def test_two_first_runs_on_a_new_store_started_together_both_work(tmp_path, ray_cluster):
    """Two terminals, two studies, one new SQLite store: both `ganlab run` open it at once. MLflow's schema
    set-up raced ("Cannot open the MLflow store ...: duplicate column name: step", exit 2); the store is now
    created under a file lock, and both studies land in it."""
    address, env = ray_cluster
    procs = []
    for name in ("first", "second"):
        study = tmp_path / f"{name}.yaml"
        study.write_text(GOOD.replace("name: quickstart", f"name: {name}").replace("steps: 1000", "steps: 20")
                         .replace("eval_every: 250", "eval_every: 10").replace("grid: [1, 4]", "grid: [1]")
                         .replace("seeds: [0, 1]", "seeds: [0]"))
        procs.append(subprocess.Popen([sys.executable, "-m", "ganlab.cli", "run", str(study), "--address", address],
                                      cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(o[-1500:] for o in outputs)
    from ganlab.analysis import load_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("first", "second"):
        assert len(load_study(name, tracking_uri=uri)) == 1
