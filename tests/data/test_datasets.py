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


# --- the other data sets ---------------------------------------------------------------------------

import numpy as np  # noqa: E402

from ganlab.config import (  # noqa: E402
    ConfigError,
    DigitsConfig,
    DiracDataConfig,
    StackedDigitsConfig,
    parse_trial,
)
from ganlab.data import GaussianMixture, load_digits  # noqa: E402


def test_digits():
    digits = make_dataset(DigitsConfig())
    assert digits.kind == "images" and digits.shape == (1, 8, 8)
    assert digits.images.shape == (1797, 1, 8, 8) and digits.labels.shape == (1797,)
    assert digits.images.min() == -1 and digits.images.max() == 1
    assert sorted(digits.labels.unique().tolist()) == list(range(10))
    x = digits.sample(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 1, 8, 8) and x.dtype == torch.float32


def test_digits_are_sklearn_scaled_and_cached():
    from sklearn.datasets import load_digits as sk_load_digits

    raw = sk_load_digits()
    digits = make_dataset(DigitsConfig())
    assert torch.allclose(digits.images[:, 0], torch.tensor(raw.images, dtype=torch.float32) / 16 * 2 - 1)
    assert torch.equal(digits.labels, torch.tensor(raw.target))
    assert make_dataset(DigitsConfig()) is digits  # loaded once per process


def test_digits_labels_match_sampled_images():
    digits = make_dataset(DigitsConfig())
    x, labels = digits.sample_with_labels(50, torch.Generator().manual_seed(1))
    assert labels.shape == (50,)
    for img, label in zip(x, labels):
        matches = (digits.images == img).flatten(1).all(1)
        assert label in digits.labels[matches]


def test_stacked_digits_channels_are_independent_digits():
    stacked = make_dataset(StackedDigitsConfig())
    x, labels = stacked.sample_with_labels(200, torch.Generator().manual_seed(0))
    assert stacked.kind == "images" and stacked.shape == (3, 8, 8)
    assert x.shape == (200, 3, 8, 8) and x.dtype == torch.float32 and labels.shape == (200, 3)
    pool = load_digits()
    for i in range(20):
        for c in range(3):
            matches = (pool.images[:, 0] == x[i, c]).flatten(1).all(1)
            assert matches.any() and labels[i, c] in pool.labels[matches]
    assert len({tuple(l.tolist()) for l in labels}) > 150  # many of the 1000 modes
    # independent channels: the three labels of one sample are not all equal
    assert (labels[:, 0] != labels[:, 1]).float().mean() > 0.8


def test_dirac_point_mass():
    d = make_dataset(DiracDataConfig())
    assert d.kind == "points" and d.shape == (1,)
    x = d.sample(3, torch.Generator())
    assert torch.equal(x, torch.zeros(3, 1)) and x.dtype == torch.float32


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_npz_points_round_trip(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 3))  # float64 on disk
    cfg = parse_trial({"data": {"name": "npz", "path": _npz(tmp_path, x=pts)}}).data
    d = make_dataset(cfg)
    assert d.kind == "points" and d.shape == (3,)
    x = d.sample(20, torch.Generator().manual_seed(0))
    assert x.shape == (20, 3) and x.dtype == torch.float32
    assert all(np.isclose(pts, row.numpy(), atol=1e-6).all(1).any() for row in x)
    assert len({tuple(r) for r in x.tolist()}) > 10  # rows drawn at random, not one row repeated


def test_npz_images_round_trip(tmp_path):
    imgs = np.random.default_rng(0).uniform(-1, 1, size=(10, 3, 8, 8)).astype(np.float32)
    cfg = parse_trial({"data": {"name": "npz", "path": _npz(tmp_path, images=imgs), "key": "images"}}).data
    d = make_dataset(cfg)
    assert d.kind == "images" and d.shape == (3, 8, 8)
    x, labels = d.sample_with_labels(30, torch.Generator().manual_seed(0))
    assert x.shape == (30, 3, 8, 8) and x.dtype == torch.float32 and labels is None
    flat = torch.from_numpy(imgs).flatten(1)
    assert all((flat == img.flatten()).all(1).any() for img in x)  # every sample is one of the images
    assert len({img.flatten()[0].item() for img in x}) > 5


@pytest.mark.parametrize(
    "arrays, key, bad_key, words",
    [
        ({"x": np.zeros((5, 2))}, "y", "data.key", "no array 'y'"),
        ({"x": np.zeros((5, 2), dtype=np.int64)}, "x", "data.key", "dtype int64"),
        ({"x": np.zeros((5, 2, 2))}, "x", "data.key", "shape (5, 2, 2)"),
        ({"x": np.array([[0.0, np.nan], [1.0, 1.0]])}, "x", "data.key", "NaN"),
    ],
)
def test_npz_bad_arrays_refused(tmp_path, arrays, key, bad_key, words):
    with pytest.raises(ConfigError) as info:
        parse_trial({"data": {"name": "npz", "path": _npz(tmp_path, **arrays), "key": key}})
    assert info.value.key == bad_key and words in info.value.message


def test_npz_bad_files_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_trial({"data": {"name": "npz", "path": str(tmp_path / "missing.npz")}})
    assert info.value.key == "data.path" and "no file" in info.value.message
    junk = tmp_path / "junk.npz"
    junk.write_text("not an archive")
    with pytest.raises(ConfigError) as info:
        parse_trial({"data": {"name": "npz", "path": str(junk)}})
    assert info.value.key == "data.path" and "not a readable .npz" in info.value.message


@pytest.fixture
def all_configs(tmp_path):
    """One config per data set name, npz in both its forms."""
    rng = np.random.default_rng(0)
    pts = _npz(tmp_path, "pts.npz", x=rng.normal(size=(40, 5)))
    imgs = _npz(tmp_path, "imgs.npz", x=rng.uniform(-1, 1, size=(40, 2, 4, 4)))
    npz = [parse_trial({"data": {"name": "npz", "path": p}}).data for p in (pts, imgs)]
    return {
        "ring8": Ring8Config(),
        "grid25": Grid25Config(),
        "dirac": DiracDataConfig(),
        "digits": DigitsConfig(),
        "stacked_digits": StackedDigitsConfig(),
        "npz_points": npz[0],
        "npz_images": npz[1],
    }


EXPECTED = {  # name -> (kind, shape of one sample)
    "ring8": ("points", (2,)),
    "grid25": ("points", (2,)),
    "dirac": ("points", (1,)),
    "digits": ("images", (1, 8, 8)),
    "stacked_digits": ("images", (3, 8, 8)),
    "npz_points": ("points", (5,)),
    "npz_images": ("images", (2, 4, 4)),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_kind_shape_and_sample_contract(all_configs, name):
    d = make_dataset(all_configs[name])
    kind, shape = EXPECTED[name]
    assert d.kind == kind and tuple(d.shape) == shape
    x = d.sample(7, torch.Generator().manual_seed(0))
    assert x.shape == (7, *shape) and x.dtype == torch.float32 and x.device.type == "cpu"


@pytest.mark.parametrize("name", EXPECTED)
def test_every_dataset_is_seeded(all_configs, name):
    d = make_dataset(all_configs[name])
    a, b = d.sample(32, torch.Generator().manual_seed(5)), d.sample(32, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    if name != "dirac":  # the point mass has nothing to draw
        assert not torch.equal(a, d.sample(32, torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("name", EXPECTED)
def test_sampling_ignores_global_rng(all_configs, name):
    d = make_dataset(all_configs[name])
    torch.manual_seed(0)
    a = d.sample(16, torch.Generator().manual_seed(2))
    torch.manual_seed(1)
    torch.rand(100)
    assert torch.equal(a, d.sample(16, torch.Generator().manual_seed(2)))


def test_gaussian_mixture_interface():
    ring = make_dataset(Ring8Config())
    assert isinstance(ring, GaussianMixture) and ring.kind == "points" and ring.shape == (2,)
    assert ring.dim == 2 and ring.n_modes == 8


def test_unknown_config_is_a_type_error():
    with pytest.raises(TypeError, match="no data set for"):
        make_dataset(object())
