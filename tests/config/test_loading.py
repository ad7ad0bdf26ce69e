"""ganlab.config.loading: the strict YAML reader, overrides by dotted key, and the checks a study gets before
Ray starts (sweep axes, derived keys, search and scheduler), each error naming the key."""

import pytest

from ganlab.config import apply_overrides, load_study

from conftest import STUDIES
from studyfile import BASE, error_of, write


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


def test_switching_a_union_member_drops_keys_the_new_member_lacks():
    base = {"loss": {"name": "wgan_gp", "gp_weight": 5.0}}
    assert apply_overrides(base, {"loss.name": "hinge"}).loss.name == "hinge"
    assert apply_overrides(base, {"loss.name": "wgan_gp"}).loss.gp_weight == 5.0


def test_derived_key_cannot_be_swept(tmp_path):
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_g: {grid: [1.0e-4]}\nderived:\n  optim.lr_g: '1.0e-4'\n"))
    assert err.key == "derived.optim.lr_g" and "swept" in err.message


def test_derived_value_is_validated(tmp_path):
    text = BASE + "sweep:\n  optim.lr_ratio: {grid: [1, 2]}\nderived:\n  optim.lr_g: '1.0e-4 - optim.lr_ratio * 1.0e-4'\n"
    err = error_of(write(tmp_path, text))
    assert err.key == "derived.optim.lr_g" and "greater than 0" in err.message


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



def test_listed_numbers_take_their_keys_type(tmp_path):
    """A float key's listed 1 is 1.0 and an integer key's 8.0 is 8, in sweep axes and PBT mutations alike: Ray
    Tune and PBT read a hyper-parameter's type from its values, and PBT rounds one it takes for an integer."""
    text = BASE + ("sweep:\n  optim.lr_ratio: {grid: [1, 2, 4]}\n  model.width: {grid: [8.0, 16.0]}\n"
                   "scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 10, "
                   "mutations: {optim.lr_g: {grid: [1, 2]}, schedule.d_steps: {choice: [1.0, 2.0]}}}\n")
    study = load_study(write(tmp_path, text))
    lr_ratio, width = study.sweep["optim.lr_ratio"].grid, study.sweep["model.width"].grid
    assert lr_ratio == [1.0, 2.0, 4.0] and all(type(v) is float for v in lr_ratio)
    assert width == [8, 16] and all(type(v) is int for v in width)
    mutations = study.scheduler.mutations
    assert all(type(v) is float for v in mutations["optim.lr_g"].grid)
    assert mutations["schedule.d_steps"].choice == [1, 2] and all(type(v) is int for v in mutations["schedule.d_steps"].choice)
