import math

import pytest
import torch

from ganlab.config import Grid25Config, Ring8Config
from ganlab.data import make_dataset
from ganlab.diagnostics import Collector, SlidingWindow, d_accuracy, mode_metrics, oscillation


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
    assert sorted(w.values().tolist()) == [3.0, 4.0, 5.0]
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
