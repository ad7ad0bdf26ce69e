import textwrap

import optuna
import pandas as pd
import pytest

from ganlab.config import ConfigError, load_study
from ganlab.study.confirm import confirmation_points
from ganlab.config.study import short_names
from ganlab.study.progress import describe
from ganlab.study.search import OptunaSpace, make_scheduler, param_space

from conftest import STUDIES


def test_short_names_disambiguate():
    assert short_names(["optim.lr_ratio", "seed"]) == {"optim.lr_ratio": "lr_ratio", "seed": "seed"}
    assert short_names(["regularizer.r1", "model.width", "data.width"]) == {
        "regularizer.r1": "r1", "model.width": "model.width", "data.width": "data.width"}


def test_describe_formats_values():
    assert describe({"optim.lr_ratio": 0.25, "seed": 2, "loss.name": "hinge"}) == "lr_ratio=0.25 seed=2 name=hinge"
    assert describe({"optim.lr_g": 1.23456e-4}) == "lr_g=0.0001235"


def test_param_space_is_one_grid_over_whole_trials():
    study = load_study(STUDIES / "lr_ratio.yaml")
    space = param_space(study)
    points = space["point"]["grid_search"]
    assert len(points) == study.trial_count() == 18
    assert points[0] == {"optim.lr_ratio": 0.25, "seed": 0} and points[-1] == {"optim.lr_ratio": 8, "seed": 2}


def _study(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(text))
    return load_study(p)


CONDITIONAL = """
name: s
trial: {train: {steps: 100, eval_every: 50}}
sweep:
  optim.lr_ratio: {loguniform: [0.25, 8.0]}
  loss.name: {choice: [hinge, wgan_gp]}
  loss.gp_weight: {uniform: [1.0, 10.0], when: {loss.name: wgan_gp}}
search: {algorithm: optuna, metric: [eq/acc_gap, eval/modes], mode: [min, max], seed: 1}
num_samples: 30
"""


def test_optuna_space_suggests_a_conditional_key_only_under_its_condition(tmp_path):
    """The define-by-run space against a real Optuna study: the GP weight exists exactly with the GP loss."""
    space = OptunaSpace(_study(tmp_path, CONDITIONAL))
    ot = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.TPESampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = ot.ask()
        assert space(trial) is None
        seen.add(trial.params["loss.name"])
        assert ("loss.gp_weight" in trial.params) == (trial.params["loss.name"] == "wgan_gp")
        assert 0.25 <= trial.params["optim.lr_ratio"] <= 8.0
        ot.tell(trial, [0.1, 1.0])
    assert seen == {"hinge", "wgan_gp"}


def test_schedulers_count_training_iterations(tmp_path):
    study = _study(tmp_path, """
        name: s
        trial: {train: {steps: 400, eval_every: 50}}
        sweep: {optim.lr_ratio: {grid: [1, 2]}}
        scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 100,
                    mutations: {optim.lr_ratio: {grid: [1, 2, 4]}}}
        """)
    pbt = make_scheduler(study, "sqlite:///unused.db")
    assert pbt._time_attr == "step" and pbt._perturbation_interval == 100  # not wall-clock seconds
    assert pbt._hyperparam_mutations == {"point": {"optim.lr_ratio": [1, 2, 4]}}
    study = _study(tmp_path, """
        name: s
        trial: {train: {steps: 400, eval_every: 50}}
        sweep: {optim.lr_ratio: {grid: [1, 2]}}
        scheduler: {name: asha, metric: eq/acc_gap, mode: min, grace_steps: 100}
        """)
    asha = make_scheduler(study, "sqlite:///unused.db")
    assert asha._time_attr == "step" and asha._max_t == 400
    assert [milestone for milestone, _ in asha._brackets[0]._rungs][-1] == 100  # the first rung: grace_steps


def test_pbt_explores_inside_each_mutations_range(tmp_path):
    """Ray's explore step multiplies by 0.8 or 1.2 with no bound: from the bound itself, half its moves leave the
    range. Tune's copy of the config must stay inside (the trainable clamps what it trains with, but a drifting
    copy makes the next moves start from a value no trial used). Ray's own explore function, ganlab's scheduler."""
    from ray.tune.schedulers.pbt import _explore

    study = _study(tmp_path, """
        name: s
        trial: {train: {steps: 400, eval_every: 50}}
        sweep: {optim.lr_ratio: {grid: [0.25, 16.0]}}
        scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 100, resample_probability: 0.0,
                    mutations: {optim.lr_ratio: {loguniform: [0.25, 16.0]}, schedule.d_steps: {grid: [1, 2, 3]}}}
        """)
    pbt = make_scheduler(study, "sqlite:///unused.db")
    seen = set()
    for start in (0.25, 16.0, 0.26, 15.9):
        for _ in range(40):
            config = {"point": {"optim.lr_ratio": start, "schedule.d_steps": 2, "seed": 0}}
            new, _ = _explore(config, pbt._hyperparam_mutations, pbt._resample_probability,
                              pbt._perturbation_factors, pbt._custom_explore_fn)
            ratio = new["point"]["optim.lr_ratio"]
            assert 0.25 <= ratio <= 16.0, (start, ratio)
            assert new["point"]["schedule.d_steps"] in (1, 2, 3) and new["point"]["seed"] == 0
            seen.add(round(ratio, 6))
    assert seen == {0.25, 0.3, 0.312, 12.72, 12.8, 16.0}  # x0.8 and x1.2 inside; clamped past either end


def test_confirmation_takes_the_best_mean_over_seeds_and_new_seeds(tmp_path):
    study = _study(tmp_path, """
        name: s
        trial: {train: {steps: 100, eval_every: 50}}
        sweep: {optim.lr_ratio: {grid: [1, 2, 4]}}
        seeds: [0, 1]
        search: {metric: eq/acc_gap, mode: min}
        """)
    frame = pd.DataFrame({
        "optim.lr_ratio": [1, 1, 2, 2, 4, 4], "seed": [0, 1, 0, 1, 0, 1], "status": ["FINISHED"] * 6,
        # by one lucky seed lr_ratio=4 would win; by the mean over seeds, 2 then 1 do
        "eq/acc_gap": [0.30, 0.30, 0.20, 0.25, 0.01, 0.90],
    })
    points, ranking = confirmation_points(study, frame, top=2, seeds=3, metric="eq/acc_gap", mode="min")
    assert list(ranking["optim.lr_ratio"]) == [2, 1]
    assert ranking["mean eq/acc_gap"].tolist() == pytest.approx([0.225, 0.30])
    assert points == [{"optim.lr_ratio": r, "seed": s} for r in (2, 1) for s in (2, 3, 4)]  # seeds 0, 1 were used
    with pytest.raises(ConfigError, match="no metric 'eval/modes'"):
        confirmation_points(study, frame, 2, 3, "eval/modes", "max")


SYNCED_PBT_DRIVER = """
import sys
import time
from pathlib import Path

import ray
from ray import tune

from ganlab.study.search import SyncedPBT


def wait_for(path, timeout=60.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


class Member(tune.Trainable):
    \"\"\"A toy member whose order the scenario fixes, through files the scheduler below writes once it has
    decided on a result ('seen_b2': b's step-2 result). 'race': a reaches the perturbation at step 2 first and is
    paused; its pause-save is held until the scheduler has seen b, the last, report step 2 (and so has perturbed
    the population, cloning a, the worse, from b, while a's save was in flight). 'leave': a ends (done) at step
    3 only once b has been paused at the perturbation at 4 to wait for it.\"\"\"

    def setup(self, config):
        self.i = 0
        self.marks = Path(config["marks"])
        self.role = "a" if self.trial_id.endswith("_00000") else "b"  # a clone keeps its trial id

    def step(self):
        self.i += 1
        race = self.config["scenario"] == "race"
        if race and self.role == "b" and self.i == 2:
            wait_for(self.marks / "seen_a2")
        if not race and self.role == "a" and self.i == 3:
            wait_for(self.marks / "seen_b4")
        ends = 3 if not race and self.role == "a" else 6
        return {"step": self.i, "score": self.config["score"] + self.i, "done": self.i >= ends,
                "should_checkpoint": self.i in (3, 5)}

    def save_checkpoint(self, d):
        if self.config["scenario"] == "race" and self.role == "a" and self.i == 2:
            wait_for(self.marks / "seen_b2")
        (Path(d) / "i").write_text(str(self.i))
        return d

    def load_checkpoint(self, d):
        self.i = int((Path(d) / "i").read_text())


class Marking(SyncedPBT):
    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        role = "a" if trial.trial_id.endswith("_00000") else "b"
        (Path(trial.config["marks"]) / f"seen_{role}{result['step']}").touch()
        return decision


ray.init(address=sys.argv[1], log_to_driver=False)
failed = False
for scenario, interval in (("race", 2), ("leave", 4)):
    marks = Path(sys.argv[2]) / scenario
    marks.mkdir(parents=True)
    pbt = Marking(time_attr="step", metric="score", mode="max", perturbation_interval=interval, synch=True,
                    hyperparam_mutations={"score": [0.0, 0.5, 10.0]}, quantile_fraction=0.5,
                    resample_probability=0.0)
    results = tune.Tuner(
        tune.with_resources(Member, {"cpu": 0.5}),  # both members at once on the session's one CPU
        param_space={"scenario": scenario, "marks": str(marks), "score": tune.grid_search([0.0, 10.0])},
        tune_config=tune.TuneConfig(scheduler=pbt, reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(marks / "tune"), name=scenario, verbose=0),
    ).fit()
    ends = sorted((r.metrics["trial_id"][-5:], r.metrics.get("step"), bool(r.metrics.get("done"))) for r in results)
    print(scenario, ends, flush=True)
    failed |= ends != ([("00000", 6, True), ("00001", 6, True)] if scenario == "race"
                       else [("00000", 3, True), ("00001", 6, True)])
sys.exit(1 if failed else 0)
"""


def test_synced_pbt_neither_ends_a_member_cloned_mid_save_nor_stalls_when_a_member_leaves(tmp_path, ray_cluster):
    """Two races of Tune's synchronous PBT, made certain with toy members on the session's Ray head (files the
    scheduler writes once it has decided on a result order the members' steps). 'race': a member paused at a perturbation is cloned while its pause-save is in
    flight; Tune caches a STOP for that save, which then lands on the clone's next save and ends it at step 3 of
    6 as if finished (the CI failure: a trial 'done' at 200 of 400). 'leave': a member ends early while the other
    waits for it at the perturbation time; Tune's PBT never runs the waiting one again (Tune spins, 100% CPU,
    forever). ``SyncedPBT`` drops the stale STOP and keeps the perturbation time ahead of the live members."""
    import subprocess
    import sys

    address, cluster_env = ray_cluster
    proc = subprocess.run([sys.executable, "-c", SYNCED_PBT_DRIVER, address, str(tmp_path)], env=cluster_env,
                          capture_output=True, text=True, timeout=150)
    assert "race [('00000', 6, True), ('00001', 6, True)]" in proc.stdout, proc.stdout + proc.stderr[-4000:]
    assert "leave [('00000', 3, True), ('00001', 6, True)]" in proc.stdout, proc.stdout + proc.stderr[-4000:]
    assert proc.returncode == 0
