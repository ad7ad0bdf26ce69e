"""A shipped study is a promise: every file in studies/ runs end to end. Each one's first configuration (its
first value on every listed axis, its first seed; a PBT population of two; two Optuna trials) runs for a few
iterations through the real `ganlab run`, on a real Ray cluster with a real MLflow store. Validation alone
did not catch studies/pbt.yaml crashing mid-run."""


import pytest
import yaml

from ganlab.analysis import load_study
from ganlab.config import load_study as load_study_file
from conftest import STUDIES, seed_store
from forkserver import run_ganlab

pytestmark = pytest.mark.integration

STEPS, EVAL_EVERY = 60, 20  # PBT perturbs at 20 and 40: a population of two exploits at least once
SHIPPED = sorted(STUDIES.glob("*.yaml"))


def first_configuration(raw: dict) -> dict:
    """The study cut to its first configuration and a few iterations, its search, scheduler and every
    trial key otherwise as shipped."""
    out = dict(raw)
    trial = dict(out.get("trial", {}))
    train = dict(trial.get("train", {}))
    eval_samples = 300 if trial.get("data", {}).get("name") in ("digits", "stacked_digits") else 200
    train.update(steps=STEPS, eval_every=EVAL_EVERY, log_every=10, checkpoint_every=0, eval_samples=eval_samples)
    trial["train"] = train
    out["trial"] = trial
    pbt = out.get("scheduler", {}).get("name") == "pbt"
    sweep = {}
    for key, axis in out.get("sweep", {}).items():
        axis = dict(axis)
        for kind in ("grid", "choice"):
            if kind in axis:
                axis[kind] = axis[kind][: 2 if pbt and not sweep else 1]  # a PBT population needs two members
        sweep[key] = axis
    out["sweep"] = sweep
    if out.get("seeds"):
        out["seeds"] = out["seeds"][:1]
    search = out.get("search", {}).get("algorithm", "grid")
    out["num_samples"] = 2 if search == "optuna" else 1
    if search == "optuna":
        out["search"] = {**out["search"], "startup_trials": 1}
    if "scheduler" in out:
        scheduler = dict(out["scheduler"])
        if scheduler.get("name") == "asha":
            scheduler["grace_steps"] = EVAL_EVERY
        if scheduler.get("name") == "pbt":
            scheduler["interval"] = EVAL_EVERY
        out["scheduler"] = scheduler
    if "confirm" in out:
        out["confirm"] = {**out["confirm"], "top": 1, "seeds": 1}
    out["artifacts"] = {**out.get("artifacts", {}), "sample_plots": 1}
    out["max_concurrent"] = 2 if pbt else 1  # a PBT population trains together; else one worker takes each trial
    out["resources"] = {**out.get("resources", {}), "cpu": 1}
    return out


def test_every_shipped_study_is_covered():
    assert len(SHIPPED) >= 11 and all(p.suffix == ".yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_shipped_study_runs_its_first_configuration(path, tmp_path, ray_cluster):
    address, env = ray_cluster
    shipped = load_study_file(path)  # the file as shipped validates
    study = tmp_path / path.name
    study.write_text(yaml.safe_dump(first_configuration(yaml.safe_load(path.read_text())), sort_keys=False))
    proc = run_ganlab(["run", str(study), "--address", address], cwd=seed_store(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    df = load_study(shipped.name, f"sqlite:///{tmp_path / 'mlflow.db'}", run="all")
    assert len(df) >= 1 and set(df["trial_status"]) <= {"finished", "stopped", "diverged"}, df[["trial", "trial_status"]]
    assert (df["status"] != "RUNNING").all()
