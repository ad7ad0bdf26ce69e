"""The verdict against known answers (bench/calibration.py prints the full table for the docs): synthetic D-loss
windows (white batch noise at several batch sizes, sines under noise, drifts), the Dirac-GAN's closed-form
dynamics through the real trainer, and ring8 trials whose outcome is clear."""

import math
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import calibration  # noqa: E402

from ganlab.diagnose.oscillation import beyond_noise, periodicity  # noqa: E402


@pytest.fixture(scope="module")
def synthetic():
    return calibration.synthetic_cases(n_windows=60, seed=1)


def test_white_noise_is_never_called_oscillating_whatever_the_batch_size(synthetic):
    noise = [m for label, truth, _, m in synthetic if label.startswith("noise")]
    verdicts = Counter(calibration.verdict_of(m) for m in noise)
    assert verdicts["converged"] / len(noise) >= 0.97, verdicts  # false alarms at about alpha = 1%
    # the excess beyond noise is ~0 at every batch size, while the raw std follows 1/sqrt(B)
    excess = torch.tensor([m["osc/loss_d_excess"] for m in noise])
    assert excess.median() < 0.01


def test_period_p_values_are_uniform_under_white_noise():
    g = torch.Generator().manual_seed(3)
    _, p = periodicity(torch.randn(3000, 200, generator=g, dtype=torch.float64))
    assert stats.kstest(p.numpy(), "uniform").pvalue > 0.001
    assert (p < 0.01).double().mean().item() == pytest.approx(0.01, abs=0.006)


def test_sines_under_noise_oscillate_with_their_period(synthetic):
    sines = [(period, m) for label, truth, period, m in synthetic if truth == "oscillating"]
    assert all(calibration.verdict_of(m) == "oscillating" for _, m in sines)
    errors = [abs(m["osc/loss_d_period"] - period) / period for period, m in sines if m["osc/loss_d_period_p"] < 0.01]
    assert len(errors) >= 0.95 * len(sines) and max(errors) < 0.05


def test_a_drift_is_drifting_not_oscillating(synthetic):
    drifts = [m for _, truth, _, m in synthetic if truth == "drifting"]
    verdicts = Counter(calibration.verdict_of(m) for m in drifts)
    assert verdicts["drifting"] / len(drifts) >= 0.95, verdicts


def test_excess_recovers_a_sines_amplitude_beyond_the_noise():
    """A sine of amplitude A has std A / sqrt 2; under batch noise of std s per step the window's std is
    sqrt(A^2 / 2 + s^2), its excess A / sqrt 2, whatever s is."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(400, dtype=torch.float64)
    for noise_std in (0.01, 0.1, 0.3):
        values = 0.2 * torch.sin(2 * math.pi * t / 37) + noise_std * torch.randn(200, 400, generator=g, dtype=torch.float64)
        got = beyond_noise(values, torch.full_like(values, noise_std**2))
        assert got["excess"].mean().item() == pytest.approx(0.2 / math.sqrt(2), rel=0.05)
        assert got["noise"].mean().item() == pytest.approx(noise_std, rel=1e-9)


@pytest.fixture(scope="module")
def dirac():
    return calibration.dirac_cases()


def test_the_dirac_gan_matches_its_theory(dirac):
    for label, truth, _, metrics in dirac:
        assert calibration.verdict_of(metrics) == truth, (label, metrics["_verdict"])


def test_alternating_dirac_oscillates_at_half_the_linearised_rotation_period(dirac):
    (label, _, period, metrics), = [c for c in dirac if c[2] is not None]
    assert metrics["osc/loss_d_period"] == pytest.approx(period, rel=0.02), label  # pi / phi = 31.4 at h = 0.2


@pytest.mark.parametrize("label, truth, kwargs", [c for c in calibration.RING_CASES if "B=" not in c[0]],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_ring8_trials_whose_outcome_is_clear(label, truth, kwargs):
    assert calibration.ring_run(0, **kwargs)["_verdict"] == truth, label


def test_a_settled_trials_verdict_does_not_depend_on_the_batch_size():
    """Only the batch size changes (64 vs 1024): the raw window std shrinks with the noise, the excess does not
    move, and the verdict stays the same. The old rule on the raw std flipped on exactly this."""
    small = calibration.ring_run(0, batch=64, sigma=0.2, r1=1.0, steps=1000)
    large = calibration.ring_run(0, batch=1024, sigma=0.2, r1=1.0, steps=1000)
    assert small["_verdict"] == large["_verdict"] == "converged"
    assert small["osc/loss_d_noise"] > 3 * large["osc/loss_d_noise"]
    assert max(small["osc/loss_d_excess"], large["osc/loss_d_excess"]) < 0.01
