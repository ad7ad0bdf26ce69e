"""ganlab.config.study: a study's trials (grid points, conditional axes, derived keys, seeded random draws),
its schedulers' settings and PBT's bounded perturbations."""

import textwrap

import pytest

from ganlab.config import ConfigError, apply_overrides, load_study

from studyfile import BASE, error_of, write


def test_trial_count(tmp_path):
    text = BASE + "seeds: [0, 1, 2]\nsweep:\n  optim.lr_ratio: {grid: [1, 2]}\n  model.width: {grid: [8, 16]}\n"
    assert load_study(write(tmp_path, text)).trial_count() == 12


GP = BASE + """
sweep:
  loss.name: {grid: [non_saturating, hinge, wgan_gp]}
  loss.gp_weight: {grid: [1.0, 10.0], when: {loss.name: wgan_gp}}
seeds: [0, 1]
"""


def test_conditional_axis_applies_only_where_its_condition_holds(tmp_path):
    study = load_study(write(tmp_path, GP))
    points = study.points()
    # 2 losses without a GP weight + 2 GP weights with wgan_gp, each with 2 seeds; no repeated trial.
    assert study.trial_count() == len(points) == (2 + 2) * 2
    for p in points:
        assert ("loss.gp_weight" in p) == (p["loss.name"] == "wgan_gp")
        cfg = apply_overrides(study.trial, p)  # every point is a valid trial
        assert cfg.loss.name == p["loss.name"]
    assert {p["loss.gp_weight"] for p in points if "loss.gp_weight" in p} == {1.0, 10.0}


def test_derived_keys_are_computed_per_trial(tmp_path):
    text = BASE + """
sweep:
  optim.lr_ratio: {grid: [1, 2, 4]}
derived:
  optim.lr_g: "4.0e-4 / optim.lr_ratio"      # keeps lr_d = lr_ratio * lr_g fixed at 4e-4
  schedule.d_steps: "2 if optim.lr_ratio < 2 else 1"
"""
    study = load_study(write(tmp_path, text))
    trials = [apply_overrides(study.trial, p) for p in study.points()]
    assert [t.optim.lr_d for t in trials] == pytest.approx([4e-4] * 3)
    assert [t.schedule.d_steps for t in trials] == [2, 1, 1]
    assert study.swept_keys == ["optim.lr_ratio", "optim.lr_g", "schedule.d_steps"]


def test_random_search_is_seeded_and_grid_search_rejects_distributions(tmp_path):
    text = BASE + "sweep:\n  optim.lr_g: {loguniform: [1.0e-5, 1.0e-3]}\n  model.width: {grid: [8, 16]}\nnum_samples: 3\n"
    err = error_of(write(tmp_path, text))
    assert err.key == "sweep.optim.lr_g" and "random or optuna" in err.message
    a = load_study(write(tmp_path, text + "search: {algorithm: random, seed: 7}\n"))
    b = load_study(write(tmp_path, text + "search: {algorithm: random, seed: 7}\n"))
    c = load_study(write(tmp_path, text + "search: {algorithm: random, seed: 8}\n"))
    assert a.points() == b.points() != c.points()
    assert a.trial_count() == 6 and all(1e-5 <= p["optim.lr_g"] <= 1e-3 for p in a.points())


def test_pbt_study_carries_mutated_keys(tmp_path):
    text = BASE + ("sweep:\n  optim.lr_ratio: {grid: [1, 4]}\nscheduler: {name: pbt, metric: eq/acc_gap, mode: min, "
                   "interval: 10, mutations: {optim.lr_ratio: {loguniform: [0.5, 8.0]}, schedule.d_steps: {grid: [1, 2]}}}\n")
    study = load_study(write(tmp_path, text))
    # every member starts with an explicit value of each mutated key (PBT perturbs what is in the config)
    assert study.points() == [{"optim.lr_ratio": 1, "schedule.d_steps": 1}, {"optim.lr_ratio": 4, "schedule.d_steps": 1}]
    assert study.scheduler_objective() == ("eq/acc_gap", "min")


def test_pbt_perturbations_stay_in_their_mutations_range(tmp_path):
    """Ray's PBT multiplies by 0.8 or 1.2 without bound: ganlab clamps to the mutation's range and keeps integer
    keys integers; values it does not mutate pass through."""
    study = load_study(write(tmp_path, BASE.replace("steps: 20", "steps: 40") + textwrap.dedent("""
        sweep:
          optim.lr_ratio: {grid: [1, 2, 4]}
        scheduler:
          name: pbt
          metric: eq/acc_gap
          mode: min
          interval: 10
          mutations:
            optim.lr_ratio: {loguniform: [0.25, 8.0]}
            schedule.d_steps: {grid: [1, 2, 5]}
        """)))
    assert study.sweep["optim.lr_ratio"].grid == [1.0, 2.0, 4.0] and all(
        isinstance(v, float) for v in study.sweep["optim.lr_ratio"].grid)  # a float key's grid holds floats
    assert all(isinstance(v, int) for v in study.scheduler.mutations["schedule.d_steps"].grid)
    bounded = study.scheduler.bounded
    assert bounded({"optim.lr_ratio": 9.6, "schedule.d_steps": 6.0, "seed": 3}) == {
        "optim.lr_ratio": 8.0, "schedule.d_steps": 5, "seed": 3}
    assert bounded({"optim.lr_ratio": 0.2, "schedule.d_steps": 1.2}) == {"optim.lr_ratio": 0.25, "schedule.d_steps": 1}
    assert bounded({"optim.lr_ratio": 3.3}) == {"optim.lr_ratio": 3.3}

