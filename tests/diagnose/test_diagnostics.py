import math

import pytest
import torch

from ganlab.config import Grid25Config, Ring8Config
from ganlab.data import make_dataset
from ganlab.diagnose.balance import d_accuracy
from ganlab.diagnose.oscillation import oscillation
from ganlab.diagnose.samples import mode_metrics
from ganlab.diagnose.stats import Collector, SlidingWindow


def test_d_accuracy_hand_computed():
    real = torch.tensor([2.0, -1.0, 0.5, 3.0])  # 3 of 4 called real
    fake = torch.tensor([-2.0, 1.0, 4.0, 0.1])  # 1 of 4 called fake
    acc_real, acc_fake = d_accuracy(real, fake)
    assert acc_real.item() == 0.75 and acc_fake.item() == 0.25


def test_oscillation_of_sine_and_constant():
    t = torch.arange(1000, dtype=torch.float64)
    sine = 1.386 + 0.3 * torch.sin(2 * math.pi * t / 40)  # 25 full periods, peaks sampled
    osc = oscillation(sine)
    assert osc["std"] == pytest.approx(0.3 / math.sqrt(2), rel=1e-6)
    assert osc["ptp"] == pytest.approx(0.6, rel=1e-9)
    flat = oscillation(torch.full((100,), 0.693, dtype=torch.float64))
    assert flat["std"] == pytest.approx(0.0, abs=1e-12) and flat["ptp"] == 0.0


def test_sliding_window_keeps_last_values():
    w = SlidingWindow(3)
    for v in [1, 2, 3, 4, 5]:
        w.push(v)
    assert w.values().tolist() == [3.0, 4.0, 5.0]  # oldest first: trends and periods need the steps' order
    rows = SlidingWindow(2, 3)
    for v in range(4):
        rows.push(torch.tensor([v, 10 * v, 100 * v]))
    assert rows.values().tolist() == [[2.0, 20.0, 200.0], [3.0, 30.0, 300.0]]
    w2 = SlidingWindow(10)
    w2.push(7)
    assert w2.values().tolist() == [7.0]


def test_collector_averages_per_interval():
    c = Collector()
    for v in [1.0, 2.0, 3.0]:
        c.report("a", torch.tensor(v))
    c.report("b", 5.0)
    assert c.reduce() == {"a": 2.0, "b": 5.0}
    assert c.reduce() == {}


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


# --- oscillation period, zero crossings, distances ---------------------------------------------------

from ganlab.diagnose.oscillation import periodicity, zero_crossing_rate  # noqa: E402
from ganlab.diagnose.samples import frechet_distance, gaussian_stats, sliced_wasserstein  # noqa: E402


@pytest.mark.parametrize("period", [10, 25, 40, 63])
def test_dominant_period_of_a_sine_on_a_trend(period):
    """The trend is removed first; the period is read between Fourier frequencies (63 is not n/k for n=400)."""
    t = torch.arange(400, dtype=torch.float64)
    series = 1.386 + 0.002 * t + 0.3 * torch.sin(2 * math.pi * t / period)
    found, p = periodicity(series)
    assert found.item() == pytest.approx(period, rel=0.02) and p.item() < 1e-10


def test_constant_series_has_no_period_and_no_crossings():
    flat = torch.full((200,), 0.693, dtype=torch.float64)
    found, p = periodicity(flat)
    assert math.isnan(found.item()) and p.item() == 1.0
    assert zero_crossing_rate(flat) == 0.0
    assert math.isnan(periodicity(flat[:4])[0].item())  # too short to test


def test_zero_crossing_rate():
    alternating = torch.tensor([1.0, -1.0] * 50)
    assert zero_crossing_rate(alternating) == pytest.approx(1.0)
    t = torch.arange(400, dtype=torch.float64)
    slow = torch.sin(2 * math.pi * t / 100)  # 8 crossings in 399 steps
    assert zero_crossing_rate(slow) == pytest.approx(8 / 399, abs=1 / 399)


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
