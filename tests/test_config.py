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
    assert err.key == "trial.data" and "ring8" in err.message


def test_duplicate_key_rejected(tmp_path):
    err = error_of(write(tmp_path, BASE + "name: again\n"))
    assert "duplicate key 'name'" in err.message and "line" in err.message


def test_not_yaml_and_missing_file(tmp_path):
    err = error_of(write(tmp_path, "name: [unclosed\n"))
    assert "not valid YAML" in err.message
    err = error_of(tmp_path / "nope.yaml")
    assert "does not exist" in err.message
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
