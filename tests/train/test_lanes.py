"""The one spec of per-lane keys (``ganlab.config.lanes``) decides both what may differ inside a pack and what
the pack holds per lane: every per-lane key reaches the lane's tensors or its initial weights, and every
other key makes another pack."""

import pytest
import torch

from ganlab.config import PER_LANE_KEYS, apply_overrides, parse_trial
from ganlab.train.lanes import Hyper, check_packable, pack_shape
from ganlab.train.pack import PackModel

CPU = torch.device("cpu")
# for each per-lane key: a config that has it, and another value for it
WHERE = {
    "seed": ({}, 5), "model.theta0": ({"data": {"name": "dirac"}, "model": {"name": "dirac"}}, 0.3),
    "model.psi0": ({"data": {"name": "dirac"}, "model": {"name": "dirac"}}, -0.3),
    "optim.lr_g": ({}, 3e-3), "optim.lr_ratio": ({}, 4.0), "optim.betas": ({}, [0.0, 0.9]),
    "optim.betas_d": ({}, [0.1, 0.8]), "optim.momentum": ({"optim": {"name": "sgd"}}, 0.9),
    "optim.alpha": ({"optim": {"name": "rmsprop"}}, 0.5), "optim.g_ema": ({}, 0.9),
    "regularizer.r1": ({}, 1.0), "regularizer.r2": ({}, 1.0), "regularizer.instance_noise": ({}, 0.1),
    "regularizer.instance_noise_anneal": ({"regularizer": {"instance_noise": 0.1}}, 100),
    "loss.gp_weight": ({"loss": {"name": "wgan_gp"}}, 3.0), "loss.gp_center": ({"loss": {"name": "wgan_gp"}}, 0.0),
    "loss.clip": ({"loss": {"name": "wgan"}}, 0.05),
}


def test_the_spec_names_every_per_lane_key_this_test_covers():
    assert set(WHERE) == set(PER_LANE_KEYS)


@pytest.mark.parametrize("key", PER_LANE_KEYS)
def test_every_per_lane_key_packs_and_reaches_the_lane(key):
    base, value = WHERE[key]
    a = parse_trial({**base, "device": "cpu", "model": {**base.get("model", {}), **({"width": 8} if "model" not in
                                                                                        base else {})}})
    b = apply_overrides(a.model_dump(mode="json"), {key: value})
    assert pack_shape(a) == pack_shape(b)
    check_packable([a, b])
    pack = PackModel([a, b], CPU)
    h = Hyper.of([a, b], CPU)
    differs = [name for name, t in vars(h).items() if not torch.equal(t[0], t[1])]
    weights_differ = not torch.equal(pack.g_player.flat[0], pack.g_player.flat[1]) or \
        not torch.equal(pack.d_player.flat[0], pack.d_player.flat[1])
    assert differs or weights_differ, f"{key} changed nothing the pack holds per lane"
    if key != "seed" and not key.startswith("model."):
        assert not weights_differ  # a hyper-parameter never changes the initial weights


def test_other_keys_make_another_pack_and_say_which():
    a = parse_trial({"device": "cpu"})
    b = apply_overrides(a.model_dump(mode="json"), {"schedule.d_steps": 2, "data.batch_size": 32})
    assert pack_shape(a) != pack_shape(b)
    with pytest.raises(ValueError, match="they differ in data.batch_size, schedule.d_steps"):
        check_packable([a, b])


def test_hyper_holds_each_lanes_values():
    cfgs = [parse_trial({"optim": {"lr_g": 1e-3, "lr_ratio": 2.0, "betas": [0.0, 0.9], "betas_d": [0.5, 0.99]}}),
            parse_trial({"optim": {"lr_g": 2e-3, "lr_ratio": 0.5}})]
    h = Hyper.of(cfgs, CPU)
    assert h.lr_g.tolist() == pytest.approx([1e-3, 2e-3]) and h.lr_d.tolist() == pytest.approx([2e-3, 1e-3])
    assert h.betas_g.tolist() == [[0.0, pytest.approx(0.9)], [0.5, pytest.approx(0.999)]]
    assert h.betas_d.tolist() == [[0.5, pytest.approx(0.99)], [0.5, pytest.approx(0.999)]]
    sgd = Hyper.of([parse_trial({"optim": {"name": "sgd", "momentum": 0.9}})], CPU)
    assert sgd.momentum.tolist() == pytest.approx([0.9]) and sgd.betas_g.tolist() == [[0.0, 0.0]]
