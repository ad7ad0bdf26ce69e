"""ganlab.diagnose.samples: sample quality against known answers (modes and high-quality samples of the mixtures,
reverse KL, Frechet distance, sliced Wasserstein), and the digits' scores through their classifier."""

import math

import pytest
import torch

from ganlab.config import Grid25Config, Ring8Config
from ganlab.data import StackedDigits, load_digits, make_dataset
from ganlab.data.classifier import digit_classifier
from ganlab.diagnose.samples import digit_metrics, frechet_distance, gaussian_stats, mode_metrics, sliced_wasserstein


@pytest.mark.parametrize("cfg, kl_bound", [(Ring8Config(), 0.006), (Grid25Config(), 0.012)])
def test_perfect_generator_matches_closed_form(cfg, kl_bound):
    # HQ = P(chi2_2 <= 9) = 1 - exp(-4.5) = 0.98889; reverse KL ~ (K-1)/(2n) (science.md sec. 1.2).
    data = make_dataset(cfg)
    x = data.sample(2500, torch.Generator().manual_seed(1))
    m = mode_metrics(x, data, hq_sigmas=3.0)
    assert 0.982 <= m["hq_fraction"] <= 0.995
    assert m["modes"] == data.n_modes
    assert m["reverse_kl"] < kl_bound
    big = mode_metrics(data.sample(200_000, torch.Generator().manual_seed(2)), data, 3.0)
    assert big["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=1e-3)


def test_collapse_onto_one_mode_gives_log_k():
    data = make_dataset(Ring8Config())
    x = data.means[3] + data.sigma * torch.randn(2500, 2, generator=torch.Generator().manual_seed(0)) * 0.5
    m = mode_metrics(x, data, 3.0)
    assert m["modes"] == 1
    assert m["reverse_kl"] == pytest.approx(math.log(8), abs=1e-12)


def test_uniform_over_twelve_grid_modes():
    data = make_dataset(Grid25Config())
    x = data.means[:12].repeat(100, 1)  # exactly on 12 of the 25 means
    m = mode_metrics(x, data, 3.0)
    assert m["modes"] == 12 and m["hq_fraction"] == 1.0
    assert m["reverse_kl"] == pytest.approx(math.log(25 / 12), abs=1e-12)


def test_no_high_quality_sample():
    data = make_dataset(Ring8Config())
    m = mode_metrics(torch.full((100, 2), 10.0), data, 3.0)
    assert m["modes"] == 0 and m["hq_fraction"] == 0.0 and math.isnan(m["reverse_kl"])


def test_frechet_distance_closed_forms():
    # N(0, 1) vs N(1, 4): 1 + 1 + 4 - 2 * 2 = 2.0 (science.md sec. 5).
    one = torch.ones(1, 1)
    assert frechet_distance(torch.zeros(1), one, torch.ones(1), 4 * one) == pytest.approx(2.0, abs=1e-12)
    # Equal covariances, mean shift 0.5 in each of 64 dims: 64 * 0.25 = 16.0.
    cov = torch.eye(64) * 0.3 + 0.1
    assert frechet_distance(torch.zeros(64), cov, torch.full((64,), 0.5), cov) == pytest.approx(16.0, abs=1e-6)
    assert frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(3)) == pytest.approx(0, abs=1e-9)


def test_frechet_of_samples_and_its_limits():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20000, 1, generator=g, dtype=torch.float64), 1 + 2 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(b)) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="more samples"):
        gaussian_stats(torch.randn(10, 10))


def test_sliced_wasserstein():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, generator=g)
    assert sliced_wasserstein(x, x.clone(), 50, torch.Generator().manual_seed(1)) == 0.0
    # A shift by c along every direction u moves each projection by c.u: mean |c.u| over unit u in 2-D is 2|c|/pi.
    shift = torch.tensor([3.0, 0.0])
    got = sliced_wasserstein(x, x + shift, 2000, torch.Generator().manual_seed(1))
    assert got == pytest.approx(2 * 3.0 / math.pi, rel=0.03)
    with pytest.raises(ValueError, match="equal sample sizes"):
        sliced_wasserstein(x, x[:10], 5, torch.Generator())



# --- the digits, scored by their classifier ---------------------------------------------------------


@pytest.fixture(scope="module")
def clf():
    """The classifier every trainer scores digits with (trained into the cache once, then loaded; its training and
    cache: tests/data/test_classifier.py)."""
    return digit_classifier()


def test_real_digits_score_near_the_floor_and_noise_far_away(clf):
    digits = load_digits()
    g = torch.Generator().manual_seed(0)
    a, b = digits.sample(1000, g), digits.sample(1000, g)
    real = digit_metrics(a, b, clf, stacked=False)
    noise = digit_metrics(torch.rand(1000, 1, 8, 8, generator=g) * 2 - 1, b, clf, stacked=False)
    one_class = digit_metrics(digits.images[digits.labels == 3][:170].repeat(6, 1, 1, 1)[:1000], b, clf, stacked=False)
    assert real["modes"] == 10 and real["reverse_kl"] < 0.02
    assert real["fd"] < 0.1 * noise["fd"] and real["fd"] < 0.1 * one_class["fd"]
    assert one_class["modes"] <= 2 and one_class["reverse_kl"] > math.log(10) - 0.3
    assert real["fd_n"] == 1000 and real["classifier_acc"] == clf.heldout_accuracy


def test_stacked_digits_count_triples(clf):
    stacked = StackedDigits(load_digits())
    g = torch.Generator().manual_seed(1)
    m = digit_metrics(stacked.sample(2500, g), stacked.sample(2500, g), clf, stacked=True)
    # 2500 uniform draws over 1000 triples cover 1000 (1 - e^-2.5) ~ 918; misclassification blurs a little.
    assert 850 <= m["modes"] <= 1000
    assert m["reverse_kl"] < 0.6

