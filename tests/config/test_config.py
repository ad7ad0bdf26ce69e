import textwrap
from pathlib import Path

import pytest

from ganlab.config import ConfigError, TrialConfig, apply_overrides, load_study, parse_trial

from conftest import STUDIES

BASE = """
name: t
trial:
  data: {name: ring8, batch_size: 64}
  optim: {lr_g: 1e-4, lr_ratio: 2}
  train: {steps: 20, eval_every: 10, log_every: 5}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_study(path)
    return info.value


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_studies_are_valid(path):
    study = load_study(path)
    assert study.trial_count() >= 1


def test_lr_ratio_study_matches_its_promise():
    study = load_study(STUDIES / "lr_ratio.yaml")
    assert set(study.sweep["optim.lr_ratio"].grid) >= {0.25, 0.5, 1, 2, 4, 8}
    assert len(study.seeds) >= 3 and study.trial.data.name == "ring8"


def test_exponent_floats_without_dot_are_floats(tmp_path):
    study = load_study(write(tmp_path, BASE))
    assert study.trial.optim.lr_g == 1e-4 and study.trial.optim.lr_d == pytest.approx(2e-4)


def test_unknown_key_names_file_and_path(tmp_path):
    path = write(tmp_path, BASE.replace("lr_ratio: 2", "lr_rtio: 2"))
    err = error_of(path)
    assert err.key == "trial.optim.lr_rtio"
    assert str(path) in str(err) and "unknown key" in str(err)
    assert "\n" not in str(err)


def test_unknown_top_level_key(tmp_path):
    err = error_of(write(tmp_path, BASE + "seedz: [1]\n"))
    assert err.key == "seedz"


def test_bad_value_names_path(tmp_path):
    err = error_of(write(tmp_path, BASE.replace("lr_ratio: 2", "lr_ratio: -1")))
    assert err.key == "trial.optim.lr_ratio" and "greater than 0" in err.message


def test_union_member_key_path_has_no_tag(tmp_path):
    err = error_of(write(tmp_path, BASE.replace("{name: ring8, batch_size: 64}", "{name: grid25, radius: 2}")))
    assert err.key == "trial.data.radius"
    err = error_of(write(tmp_path, BASE.replace("name: ring8", "name: ring9")))
    assert err.key == "trial.data.name" and "ring8" in err.message


def test_a_misspelt_key_gets_a_suggestion_from_its_own_section(tmp_path):
    err = error_of(write(tmp_path, BASE.replace("lr_ratio: 2", "lr_ratoi: 2")))
    assert err.key == "trial.optim.lr_ratoi" and err.message.endswith("Did you mean 'lr_ratio'?")
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_ratio: {grdi: [1, 2]}\n"))
    assert err.key == "sweep.optim.lr_ratio.grdi" and "Did you mean 'grid'?" in err.message
    err = error_of(write(tmp_path, BASE + "seedz: [1]\n"))
    assert "Did you mean 'seeds'?" in err.message
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_ratoi: {grid: [1, 2]}\n"))
    assert err.key == "sweep.optim.lr_ratoi" and "Did you mean 'optim.lr_ratio'?" in err.message
    err = error_of(write(tmp_path, BASE.replace("lr_ratio: 2", "zzz: 2")))
    assert "Did you mean" not in err.message  # nothing close: no guess


def test_a_bad_name_says_the_choices_in_ganlabs_words(tmp_path):
    err = error_of(write(tmp_path, BASE + "  loss: {name: nonsaturating}\n"))
    assert err.key == "trial.loss.name"
    assert err.message.startswith("loss.name 'nonsaturating' is not one of: minimax, non_saturating, hinge, "
                                  "least_squares, wgan, wgan_gp.")
    assert err.message.endswith("Did you mean 'non_saturating'?") and "tag" not in err.message
    err = error_of(write(tmp_path, BASE + "scheduler: {name: ashe, grace_steps: 5}\n"))
    assert err.key == "scheduler.name" and "Did you mean 'asha'?" in err.message
    err = error_of(write(tmp_path, BASE + "  model: {activation: rellu}\n"))
    assert err.key == "trial.model.activation" and "'rellu' is not one of: relu, leaky_relu, elu, tanh." in err.message
    assert "Did you mean 'relu'?" in err.message


def test_duplicate_key_rejected(tmp_path):
    err = error_of(write(tmp_path, BASE + "name: again\n"))
    assert "duplicate key 'name'" in err.message and "line" in err.message


def test_not_yaml_and_missing_file(tmp_path):
    err = error_of(write(tmp_path, "name: [unclosed\n"))
    assert "not valid YAML" in err.message
    err = error_of(tmp_path / "nope.yaml")
    assert str(err).startswith(f"No such file: '{tmp_path / 'nope.yaml'}'.")
    err = error_of(write(tmp_path, "- a list\n"))
    assert "mapping" in err.message


def test_sweep_of_missing_key(tmp_path):
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_d: {grid: [1, 2]}\n"))
    assert err.key == "sweep.optim.lr_d" and "trial.optim.lr_d" in err.message


def test_sweep_value_invalid_for_key(tmp_path):
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_ratio: {grid: [1, -2]}\n"))
    assert err.key == "sweep.optim.lr_ratio" and "-2" in err.message
    err = error_of(write(tmp_path, BASE + "sweep:\n  loss.name: {choice: [minimax, wgann]}\n"))
    assert err.key == "sweep.loss.name" and "wgann" in err.message


def test_sweep_axis_shape(tmp_path):
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_g: {grid: [1], uniform: [0, 1]}\n"))
    assert err.key.startswith("sweep.optim.lr_g")
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_g: {loguniform: [0, 1]}\n"))
    assert "low > 0" in err.message
    err = error_of(write(tmp_path, BASE + "sweep:\n  loss.name: {uniform: [0, 1]}\n"))
    assert "not a number" in err.message
    err = error_of(write(tmp_path, BASE + "sweep:\n  model.width: {uniform: [8, 64]}\n"))
    assert "integer" in err.message and err.key == "sweep.model.width"


def test_seed_twice_rejected(tmp_path):
    err = error_of(write(tmp_path, BASE + "seeds: [0, 1]\nsweep:\n  seed: {grid: [3]}\n"))
    assert err.key == "sweep.seed"


def test_grid_points_validated_jointly(tmp_path):
    # radius exists for ring8 only: sweeping data.name to grid25 alongside it must fail up front.
    text = BASE + "sweep:\n  data.name: {grid: [ring8, grid25]}\n  data.radius: {grid: [1.0]}\n"
    err = error_of(write(tmp_path, text))
    assert "grid25" in str(err)


def test_trial_count(tmp_path):
    text = BASE + "seeds: [0, 1, 2]\nsweep:\n  optim.lr_ratio: {grid: [1, 2]}\n  model.width: {grid: [8, 16]}\n"
    assert load_study(write(tmp_path, text)).trial_count() == 12


def test_overrides_and_defaults():
    cfg = apply_overrides(TrialConfig(), {"optim.lr_ratio": 4, "seed": 3})
    assert cfg.optim.lr_ratio == 4.0 and cfg.seed == 3 and cfg.optim.lr_d == pytest.approx(4e-4)
    assert cfg.flat()["optim.betas"] == [0.5, 0.999]
    with pytest.raises(ConfigError) as info:
        parse_trial({"optim": {"betas": [0.5, 1.5]}})
    assert info.value.key == "optim.betas"


def test_digest_tracks_content():
    assert TrialConfig().digest() == TrialConfig().digest()
    assert TrialConfig().digest() != apply_overrides(TrialConfig(), {"seed": 1}).digest()


# --- search, conditions, derived keys, schedulers -----------------------------------------------------------

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


def test_switching_a_union_member_drops_keys_the_new_member_lacks():
    base = {"loss": {"name": "wgan_gp", "gp_weight": 5.0}}
    assert apply_overrides(base, {"loss.name": "hinge"}).loss.name == "hinge"
    assert apply_overrides(base, {"loss.name": "wgan_gp"}).loss.gp_weight == 5.0


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


@pytest.mark.parametrize("expression, words", [
    ("__import__('os').system('x')", "calls something other than"),
    ("optim.lr_ratio.__class__", "not a trial key"),
    ("optim.nope * 2", "not a trial key"),
    ("1 +", "not an expression"),
    ("[1, 2]", "List"),
])
def test_derived_expressions_are_arithmetic_only(tmp_path, expression, words):
    err = error_of(write(tmp_path, BASE + f"derived:\n  optim.lr_g: \"{expression}\"\n"))
    assert err.key == "derived.optim.lr_g" and words in err.message


def test_derived_key_cannot_be_swept(tmp_path):
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_g: {grid: [1.0e-4]}\nderived:\n  optim.lr_g: '1.0e-4'\n"))
    assert err.key == "derived.optim.lr_g" and "swept" in err.message


def test_derived_value_is_validated(tmp_path):
    text = BASE + "sweep:\n  optim.lr_ratio: {grid: [1, 2]}\nderived:\n  optim.lr_g: '1.0e-4 - optim.lr_ratio * 1.0e-4'\n"
    err = error_of(write(tmp_path, text))
    assert err.key == "derived.optim.lr_g" and "greater than 0" in err.message


def test_random_search_is_seeded_and_grid_search_rejects_distributions(tmp_path):
    text = BASE + "sweep:\n  optim.lr_g: {loguniform: [1.0e-5, 1.0e-3]}\n  model.width: {grid: [8, 16]}\nnum_samples: 3\n"
    err = error_of(write(tmp_path, text))
    assert err.key == "sweep.optim.lr_g" and "random or optuna" in err.message
    a = load_study(write(tmp_path, text + "search: {algorithm: random, seed: 7}\n"))
    b = load_study(write(tmp_path, text + "search: {algorithm: random, seed: 7}\n"))
    c = load_study(write(tmp_path, text + "search: {algorithm: random, seed: 8}\n"))
    assert a.points() == b.points() != c.points()
    assert a.trial_count() == 6 and all(1e-5 <= p["optim.lr_g"] <= 1e-3 for p in a.points())


@pytest.mark.parametrize("extra, key, words", [
    ("search: {algorithm: optuna}\nsweep:\n  optim.lr_ratio: {uniform: [0.5, 4.0]}\n", "search.metric", "objective"),
    ("search: {algorithm: optuna, metric: eq/acc_gap, mode: min}\nsweep:\n  optim.lr_ratio: {uniform: [0.5, 4.0]}\n"
     "seeds: [0, 1]\n", "seeds", "confirmation phase"),
    ("search: {metric: [eq/acc_gap, eval/modes], mode: min}\n", "search.mode", "2 metric(s)"),
    ("scheduler: {name: asha, grace_steps: 5}\n", "scheduler.metric", "one metric"),
    ("scheduler: {name: asha, metric: eq/acc_gap, mode: min, grace_steps: 20}\n", "scheduler.grace_steps", "below"),
    ("scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 5, mutations: {optim.lr_ratio: {grid: [1, 2]}}}\n",
     "scheduler.interval", "multiple of train.eval_every"),
    ("scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 10, mutations: {model.width: {grid: [8, 16]}}}\n",
     "scheduler.mutations.model.width", "rebuild the models"),
    ("confirm: {top: 3}\n", "confirm.metric", "ranks configurations"),
])
def test_search_and_scheduler_errors_name_the_key(tmp_path, extra, key, words):
    err = error_of(write(tmp_path, BASE + extra))
    assert err.key == key and words in err.message, (err.key, err.message)


def test_pbt_study_carries_mutated_keys(tmp_path):
    text = BASE + ("sweep:\n  optim.lr_ratio: {grid: [1, 4]}\nscheduler: {name: pbt, metric: eq/acc_gap, mode: min, "
                   "interval: 10, mutations: {optim.lr_ratio: {loguniform: [0.5, 8.0]}, schedule.d_steps: {grid: [1, 2]}}}\n")
    study = load_study(write(tmp_path, text))
    # every member starts with an explicit value of each mutated key (PBT perturbs what is in the config)
    assert study.points() == [{"optim.lr_ratio": 1, "schedule.d_steps": 1}, {"optim.lr_ratio": 4, "schedule.d_steps": 1}]
    assert study.scheduler_objective() == ("eq/acc_gap", "min")


def test_d_probe_needs_digits(tmp_path):
    err = error_of(write(tmp_path, BASE + "  diagnostics: {d_probe: true}\n"))
    assert err.key == "trial.diagnostics.d_probe" and "digits" in err.message


def test_best_weights_metric_must_be_logged(tmp_path):
    from ganlab.study.runner import check_objectives

    path = write(tmp_path, BASE + "artifacts: {save_best: {metric: eval/fid, mode: min}}\n")
    with pytest.raises(ConfigError) as info:
        check_objectives(load_study(path), path)
    assert info.value.key == "artifacts.save_best.metric" and "eval/sliced_w" in info.value.message


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
