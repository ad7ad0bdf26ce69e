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
