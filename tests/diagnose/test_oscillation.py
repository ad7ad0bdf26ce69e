"""ganlab.diagnose.oscillation: a window's motion beyond batch noise, its period, and its zero-crossing rate,
against known answers."""

import math

import pytest
import torch

from ganlab.diagnose.oscillation import beyond_noise, periodicity, zero_crossings


def test_excess_of_a_noise_free_sine_and_a_constant():
    """A sine of amplitude A has std A / sqrt 2: with no batch noise all of it is excess (the detrending line
    through 25 whole periods, and its two degrees of freedom, move it by under 1e-3). A straight line added to a
    series changes its trend by the line's rise across the window and leaves its excess alone."""
    t = torch.arange(1000, dtype=torch.float64)
    sine = 1.386 + 0.3 * torch.sin(2 * math.pi * t / 40)  # 25 full periods, peaks sampled
    got = beyond_noise(sine, torch.zeros_like(sine))
    assert got["excess"].item() == pytest.approx(0.3 / math.sqrt(2), rel=1e-3) and got["noise"].item() == 0.0
    drifting = beyond_noise(sine + 0.002 * t, torch.zeros_like(sine))
    assert drifting["excess"].item() == pytest.approx(got["excess"].item(), rel=1e-9)
    assert drifting["trend"].item() - got["trend"].item() == pytest.approx(0.002 * 999, rel=1e-9)
    flat = beyond_noise(torch.full((100,), 0.693, dtype=torch.float64), torch.zeros(100, dtype=torch.float64))
    assert flat["excess"].item() == pytest.approx(0.0, abs=1e-12) and flat["trend"].item() == pytest.approx(0.0, abs=1e-12)
    assert flat["noise"].item() == 0.0


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
    assert zero_crossings(flat).item() == 0.0
    assert math.isnan(periodicity(flat[:4])[0].item())  # too short to test



# --- zero crossings: osc/delta_zcr, the rate of E D(x) - E D(G(z)) crossing its window's median -----------


def test_zero_crossings_of_an_alternating_and_a_slow_series():
    alternating = torch.tensor([1.0, -1.0] * 50)
    assert zero_crossings(alternating).item() == pytest.approx(1.0)  # a crossing at each of the 99 steps
    t = torch.arange(400, dtype=torch.float64)
    slow = torch.sin(2 * math.pi * t / 100)  # 8 crossings in 399 steps
    assert zero_crossings(slow).item() == pytest.approx(8 / 399, abs=1 / 399)


def test_a_monotone_series_crosses_its_median_once():
    for n in (2, 10, 11, 200):  # even: the median lies between two values; odd: on one (taking the sign before)
        assert zero_crossings(torch.arange(n, dtype=torch.float64)).item() == pytest.approx(1 / (n - 1), rel=1e-12)
        assert zero_crossings(-torch.arange(n, dtype=torch.float64) ** 3).item() == pytest.approx(1 / (n - 1), rel=1e-12)


def test_a_value_at_the_median_takes_the_sign_before_it():
    """Sign changes per step, over n - 1 steps, with a value at the median neither a crossing nor two."""
    assert zero_crossings(torch.tensor([2.0, 1.0, 1.0, 1.0, 0.0])).item() == 1 / 4  # +, 0, 0, 0, -: one crossing
    assert zero_crossings(torch.tensor([2.0, 1.0, 2.0, 0.0, 1.0])).item() == 1 / 4  # +, 0, +, -, 0: one
    assert zero_crossings(torch.tensor([1.0, 1.0, 3.0, 0.0, 1.0])).item() == 1 / 4  # 0, 0, +, -, 0: leading zeros none
    assert zero_crossings(torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0])).item() == 0.0  # 0, 0, +, 0, 0


def test_every_lane_gets_its_own_rate():
    """The recorder passes its window (n, L), oldest step first: one rate per lane, the rate it has alone."""
    n = 60
    t = torch.arange(n, dtype=torch.float64)
    lanes = torch.stack([torch.tensor([1.0, -1.0] * (n // 2)), t, torch.full((n,), 0.5), torch.sin(2 * math.pi * t / 20),
                         torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)], dim=1)
    rates = zero_crossings(lanes)
    assert rates.shape == (5,) and rates.dtype == torch.float64
    assert rates[:3].tolist() == [1.0, 1 / (n - 1), 0.0]
    assert rates.tolist() == [zero_crossings(lanes[:, i]).item() for i in range(5)]
    assert zero_crossings(lanes.reshape(n, 5, 1).expand(n, 5, 2)).tolist() == [[r, r] for r in rates.tolist()]
    assert zero_crossings(lanes.float()).tolist() == pytest.approx(rates.tolist())  # float32 windows too


def test_fewer_than_two_points_have_no_rate():
    for window in (torch.zeros(0, 3), torch.ones(1, 3)):
        rates = zero_crossings(window)
        assert rates.shape == (3,) and rates.isnan().all()
    assert zero_crossings(torch.tensor([4.0])).isnan()
