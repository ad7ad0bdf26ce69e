import itertools
import math

import pytest
import torch

from ganlab.config import Grid25Config, Ring8Config
from ganlab.data import make_dataset


def test_ring8_means_on_circle_and_distinct():
    ring = make_dataset(Ring8Config())
    assert ring.n_modes == 8 and ring.sigma == 0.01
    radii = ring.means.norm(dim=1)
    assert torch.allclose(radii, torch.ones(8), atol=1e-6)
    angles = torch.atan2(ring.means[:, 1], ring.means[:, 0]) % (2 * math.pi)
    expected = torch.arange(8) * 2 * math.pi / 8
    assert torch.allclose(angles.sort().values, expected, atol=1e-5)
    assert torch.cdist(ring.means, ring.means).add(torch.eye(8) * 10).min() > 0.7  # no merged modes


def test_ring_radius_and_sigma_are_config_values():
    ring = make_dataset(Ring8Config(radius=2.0, sigma=0.02))
    assert torch.allclose(ring.means.norm(dim=1), torch.full((8,), 2.0), atol=1e-6)
    assert ring.sigma == 0.02


def test_grid25_means():
    grid = make_dataset(Grid25Config())
    got = {tuple(round(v) for v in m.tolist()) for m in grid.means}
    assert got == set(itertools.product([-4, -2, 0, 2, 4], repeat=2))
    assert grid.sigma == 0.05


@pytest.mark.parametrize("cfg", [Ring8Config(), Grid25Config()])
def test_samples_have_configured_sigma_and_uniform_modes(cfg):
    data = make_dataset(cfg)
    x = data.sample(200_000, torch.Generator().manual_seed(0)).double()
    nearest = torch.cdist(x, data.means.double()).argmin(dim=1)
    residual = x - data.means.double()[nearest]
    assert residual.std().item() == pytest.approx(cfg.sigma, rel=0.02)
    counts = torch.bincount(nearest, minlength=data.n_modes).double()
    assert (counts / counts.sum() - 1 / data.n_modes).abs().max() < 0.01


def test_sampling_is_seeded():
    data = make_dataset(Ring8Config())
    a = data.sample(100, torch.Generator().manual_seed(3))
    b = data.sample(100, torch.Generator().manual_seed(3))
    c = data.sample(100, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
