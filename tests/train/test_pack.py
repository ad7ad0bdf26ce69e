"""A pack model holds its lanes as the trials alone would be: each lane's initial weights and every input it
draws depend on its own seed only, and an inactive lane's weights (and EMA) stay as they were."""

import pytest
import torch

from ganlab.config import apply_overrides
from ganlab.train.pack import PackModel, d_address, g_address
from ganlab.train.packed import lane_state

BASE = {"device": "cpu", "data": {"name": "ring8", "batch_size": 16}, "model": {"width": 8, "depth": 2},
        "regularizer": {"instance_noise": 0.1}, "optim": {"g_ema": 0.5},
        "train": {"steps": 10, "log_every": 5, "eval_every": 10, "eval_samples": 100}}
CPU = torch.device("cpu")


def pack_of(*seeds: int) -> PackModel:
    return PackModel([apply_overrides(BASE, {"seed": s}) for s in seeds], CPU)


def test_a_lanes_weights_and_inputs_do_not_depend_on_its_pack():
    alone, a, b = pack_of(7), pack_of(7, 3), pack_of(5, 7)
    G, D = alone.initial_models(0)
    for pack, lane in ((a, 0), (b, 1)):
        assert all(torch.equal(v, G.state_dict()[k]) for k, v in lane_state(pack.G, lane).items())
        assert all(torch.equal(v, D.state_dict()[k]) for k, v in lane_state(pack.D, lane).items())
        address = d_address(4, 1)
        assert torch.equal(pack.latents(address)[lane], alone.latents(address)[0])
        assert torch.equal(pack.real(address)[lane], alone.real(address)[0])
        x = torch.zeros(pack.n_lanes, 16, 2)
        assert torch.equal(pack.noisy(x, address, 4)[lane], alone.noisy(x[:1], address, 4)[0])
    assert not torch.equal(a.latents(d_address(0, 0))[0], a.latents(d_address(0, 0))[1])


def test_every_step_of_an_iteration_draws_from_its_own_address():
    addresses = [d_address(i, k) for i in range(3) for k in range(4)] + [g_address(i, j) for i in range(3) for j in range(4)]
    assert len(set(addresses)) == len(addresses)


def step(pack: PackModel, active: torch.Tensor) -> None:
    obj = pack.d_objective(0, 0)
    pack.d_player.zero_grad()
    (obj.loss + obj.reg).sum().backward()
    pack.update_d(active)
    terms = pack.generator_terms(0, 0)
    pack.g_player.zero_grad()
    terms.mean(-1).sum().backward()
    pack.update_g(active)


def test_an_inactive_lane_keeps_its_weights_and_ema():
    pack = pack_of(0, 1)
    step(pack, torch.tensor([True, True]))  # the EMA now differs from G
    obj = pack.d_objective(0, 0)
    pack.d_player.zero_grad()
    (obj.loss + obj.reg).sum().backward()
    terms = pack.generator_terms(0, 0)
    pack.g_player.zero_grad()
    terms.mean(-1).sum().backward()
    before = {name: {k: v.clone() for k, v in getattr(pack, name).state_dict().items()} for name in ("G", "D", "G_ema")}
    active = torch.tensor([True, False])
    pack.update_d(active)
    pack.update_g(active)
    for name in ("G", "D", "G_ema"):
        for k, v in getattr(pack, name).state_dict().items():
            if v.dtype.is_floating_point and "running" not in k:
                assert torch.equal(v[1], before[name][k][1]), (name, k)
    assert not torch.equal(lane_state(pack.G, 0)["net.0.weight"], before["G"]["net.0.weight"][0])  # lane 0 moved
    assert not torch.equal(lane_state(pack.D, 0)["net.0.weight"], before["D"]["net.0.weight"][0])


def test_learning_rates_are_each_lanes_own():
    pack = PackModel([apply_overrides(BASE, {"seed": 0, "optim.lr_g": 1e-3, "optim.lr_ratio": 2.0}),
                      apply_overrides(BASE, {"seed": 1, "optim.lr_g": 5e-4, "optim.lr_ratio": 0.5})], CPU)
    assert pack.learning_rates(0) == pytest.approx((1e-3, 2e-3))
    assert pack.learning_rates(1) == pytest.approx((5e-4, 2.5e-4))


def test_state_round_trip():
    pack = pack_of(0, 1)
    obj = pack.d_objective(0, 0)
    (obj.loss + obj.reg).sum().backward()
    pack.update_d(torch.tensor([True, True]))
    other = pack_of(0, 1)
    other.load_state_dict(pack.state_dict())
    assert torch.equal(other.d_player.flat, pack.d_player.flat)
    assert torch.equal(other.opt_d.state_dict()["exp_avg"], pack.opt_d.state_dict()["exp_avg"])
