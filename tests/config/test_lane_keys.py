"""ganlab.config.lanes: the one spec of per-lane and PBT-mutable keys names real trial-config keys, and the
study checks enforce exactly its mutable keys. (Named test_lane_keys: tests/train/test_lanes.py holds the
tests of ganlab.train.lanes, and two test modules of one name cannot both be collected.)"""

import pytest

from ganlab.config import LANE_KEYS, MUTABLE_KEYS, PER_LANE_KEYS, TrialConfig, apply_overrides, load_study, parse_trial
from ganlab.config.study import PbtSchedulerConfig

from studyfile import BASE, error_of, write

# Keys of a union's members exist only in configs that choose that member.
CONFIGS = {
    "default (adam, mlp, non_saturating)": parse_trial({}),
    "sgd": apply_overrides(TrialConfig(), {"optim.name": "sgd"}),
    "rmsprop": apply_overrides(TrialConfig(), {"optim.name": "rmsprop"}),
    "wgan": parse_trial({"loss": {"name": "wgan"}}),
    "wgan_gp": parse_trial({"loss": {"name": "wgan_gp"}}),
    "dirac": parse_trial({"data": {"name": "dirac"}, "model": {"name": "dirac"}}),
}
FLAT = {name: cfg.flat() for name, cfg in CONFIGS.items()}


@pytest.mark.parametrize("lane_key", LANE_KEYS, ids=lambda k: k.key)
def test_every_lane_key_is_a_trial_config_key(lane_key):
    assert any(lane_key.key in flat for flat in FLAT.values()), f"{lane_key.key} is in no trial config's flat()"


def test_member_keys_exist_only_with_their_member():
    """Why the configs above are several: each of these keys is in a config choosing its member, not in one
    choosing another member of the same union."""
    with_without = {"optim.betas": ("default (adam, mlp, non_saturating)", "sgd"),
                    "optim.alpha": ("rmsprop", "default (adam, mlp, non_saturating)"),
                    "loss.clip": ("wgan", "wgan_gp"), "loss.gp_weight": ("wgan_gp", "wgan"),
                    "model.theta0": ("dirac", "default (adam, mlp, non_saturating)")}
    for key, (with_it, without_it) in with_without.items():
        assert key in FLAT[with_it] and key not in FLAT[without_it], key


def test_the_spec_lists_each_key_once_and_derives_its_lists():
    keys = [k.key for k in LANE_KEYS]
    assert len(keys) == len(set(keys))
    assert PER_LANE_KEYS == tuple(k.key for k in LANE_KEYS if k.per_lane)
    assert MUTABLE_KEYS == tuple(k.key for k in LANE_KEYS if k.mutable)
    assert {"optim.lr_g", "optim.lr_ratio", "schedule.d_steps"} <= set(MUTABLE_KEYS)
    assert "seed" in PER_LANE_KEYS and "seed" not in MUTABLE_KEYS


def test_mutable_keys_are_numbers():
    """PBT perturbs a number (x0.8 / x1.2) or steps through listed values; every mutable key holds a number."""
    for key in MUTABLE_KEYS:
        values = [flat[key] for flat in FLAT.values() if key in flat]
        assert values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values), key


PBT = BASE + "scheduler: {name: pbt, metric: eq/acc_gap, mode: min, interval: 10, mutations: {MUTATIONS}}\n"


def test_pbt_refuses_a_key_that_is_not_mutable_naming_exactly_the_mutable_ones(tmp_path):
    err = error_of(write(tmp_path, PBT.replace("MUTATIONS", "optim.betas: {grid: [[0.5, 0.999], [0.0, 0.9]]}")))
    assert err.key == "scheduler.mutations.optim.betas"
    allowed = err.message.split("PBT can change only ", 1)[1].split(" in a running trial", 1)[0]
    assert allowed.split(", ") == list(MUTABLE_KEYS)
    field = PbtSchedulerConfig.model_fields["mutations"].description  # what the docs of the key say
    assert field.split("among ", 1)[1].split(", ") == list(MUTABLE_KEYS)


def test_pbt_accepts_every_mutable_key(tmp_path):
    axes = {"optim.lr_g": "{loguniform: [1.0e-5, 1.0e-3]}", "optim.lr_ratio": "{grid: [1, 2]}",
            "regularizer.r1": "{uniform: [0.0, 1.0]}", "regularizer.r2": "{uniform: [0.0, 1.0]}",
            "regularizer.instance_noise": "{uniform: [0.0, 0.1]}", "loss.gp_weight": "{uniform: [1.0, 10.0]}",
            "schedule.d_steps": "{grid: [1, 2]}", "schedule.g_steps": "{grid: [1, 2]}"}
    assert set(axes) == set(MUTABLE_KEYS)
    text = PBT.replace("MUTATIONS", ", ".join(f"{k}: {v}" for k, v in axes.items()))
    text = text.replace("  optim:", "  loss: {name: wgan_gp}\n  optim:")  # the GP weight needs the GP loss
    study = load_study(write(tmp_path, text))
    assert set(study.scheduler.mutations) == set(MUTABLE_KEYS)
