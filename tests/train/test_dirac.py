"""The Dirac-GAN (Mescheder, Geiger, Nowozin 2018) run through ganlab's real trainer: the real loss,
regularizer, optimizer and schedule code, plain SGD, checked against the closed forms and reference
simulations in shared/reference/science.md section 2.

Sign convention: ganlab's D output means "realness"; the paper's D(x) = psi x means the opposite, so
ganlab's psi is minus the paper's. Norms are unaffected; a start at the paper's (1, 1) is psi0 = -1 here.
"""

import math

import numpy as np
import pytest

from ganlab.config import TrialConfig, parse_trial
from ganlab.train.trainer import Trainer
from ganlab.train.models import dirac_state


def dirac_config(loss="minimax", h=0.2, mode="simultaneous", order="g_first", d_steps=1, g_steps=1, r1=0.0,
                 theta0=1.0, psi0=-1.0, lr_ratio=1.0, steps=500, **loss_extra) -> TrialConfig:
    return parse_trial({
        "data": {"name": "dirac"},
        "model": {"name": "dirac", "theta0": theta0, "psi0": psi0},
        "loss": {"name": loss, **loss_extra},
        "regularizer": {"r1": r1},
        "optim": {"name": "sgd", "lr_g": h, "lr_ratio": lr_ratio},
        "schedule": {"mode": mode, "order": order, "d_steps": d_steps, "g_steps": g_steps},
        "train": {"steps": steps, "log_every": steps, "eval_every": steps},
        "device": "cpu",
    })


def dirac(**kwargs) -> Trainer:
    return Trainer(dirac_config(**kwargs))


def dirac_pack(lanes: list[dict], **shared) -> Trainer:
    """Several Dirac-GANs (learning rates, ratios, R1 weights per lane) trained as one pack: each lane must
    follow its own closed form, as it would alone."""
    return Trainer([dirac_config(**shared, **lane) for lane in lanes])


def trajectories(t: Trainer, iterations: int) -> np.ndarray:
    """Every lane's (theta, psi) before the first and after every iteration: (iterations + 1, lanes, 2), float64."""
    out = np.empty((iterations + 1, t.n_lanes, 2))
    out[0] = dirac_state(t.model.G, t.model.D).numpy()
    for k in range(1, iterations + 1):
        t.train_step()
        out[k] = dirac_state(t.model.G, t.model.D).numpy()
    return out


def trajectory(t: Trainer, iterations: int) -> np.ndarray:
    """(theta, psi) of a lone trainer before the first and after every iteration, in float64."""
    return trajectories(t, iterations)[:, 0]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_simultaneous_unregularized_grows_by_the_exact_factor():
    # O1: ||x_{k+1}||^2 = (1 + h^2 f'(theta psi)^2) ||x_k||^2 with f'(t) = sigmoid(-t) (paper's psi);
    # in ganlab's sign f'(.) = sigmoid(theta psi). From (1, 1), h = 0.2: 1.4142 -> 3.0969 after 500 steps.
    h = 0.2
    x = trajectory(dirac(h=h), 500)
    sq = (x**2).sum(1)
    factor = 1 + h**2 * sigmoid(x[:-1, 0] * x[:-1, 1]) ** 2
    np.testing.assert_allclose(sq[1:] / sq[:-1], factor, rtol=1e-5)
    assert np.all(np.diff(sq) > 0)
    assert math.sqrt(sq[0]) == pytest.approx(1.4142, abs=1e-4)
    assert math.sqrt(sq[-1]) == pytest.approx(3.0969, rel=1e-3)


def test_no_lr_ratio_makes_simultaneous_converge():
    # With h_g = h, h_d = ratio * h, the scaled state (theta / sqrt(h_g), psi / sqrt(h_d)) is rotated and
    # stretched by exactly sqrt(1 + h_g h_d f'(theta psi)^2) > 1 per step: TTUR cannot fix simultaneous GD.
    h, ratios = 0.2, [0.1, 0.5, 2.0, 10.0]
    xs = trajectories(dirac_pack([{"lr_ratio": r} for r in ratios], h=h), 300)
    for lane, lr_ratio in enumerate(ratios):
        x = xs[:, lane]
        h_g, h_d = h, h * lr_ratio
        energy = x[:, 0] ** 2 / h_g + x[:, 1] ** 2 / h_d
        factor = 1 + h_g * h_d * sigmoid(x[:-1, 0] * x[:-1, 1]) ** 2
        np.testing.assert_allclose(energy[1:] / energy[:-1], factor, rtol=1e-5, err_msg=f"lr_ratio {lr_ratio}")
        # Never shrinks (up to float32 rounding); growth only stalls where f' ~ 0, far from the equilibrium.
        assert np.all(np.diff(energy) >= -1e-6 * energy[1:]) and energy[-1] > 1.2 * energy[0], lr_ratio


def test_alternating_cycles_without_converging():
    # O2: alternating GD, h = 0.2, stays on a bounded cycle, ||x|| in [1.3435, 1.4950] (50 000 steps in
    # the reference; ~80 rotations here). alpha = h sqrt(ratio) f'(0) < 2: bounded for every ratio tried.
    # The ratios train as one pack of three lanes.
    ratios = [0.25, 1.0, 4.0]
    xs = trajectories(dirac_pack([{"lr_ratio": r} for r in ratios], h=0.2, mode="alternating"), 5000)
    for lane, lr_ratio in enumerate(ratios):
        x = xs[:, lane]
        norms = np.linalg.norm(x, axis=1)
        if lr_ratio == 1.0:
            assert norms.min() >= 1.3435 - 1e-3 and norms.max() <= 1.4950 + 1e-3
        assert norms[-1000:].min() > 0.5 * norms[0], lr_ratio  # never settles at the equilibrium
        assert norms.max() < 3 * norms[0], lr_ratio
        angle = np.unwrap(np.arctan2(x[:, 1], x[:, 0]))
        assert abs(angle[-1] - angle[0]) > 2 * math.pi * 10, lr_ratio  # it keeps rotating


def test_wgan_alternating_conserves_its_invariant():
    # O3: WGAN without clipping, G first: Q = theta^2 + psi^2 - h theta psi (paper's psi) is conserved;
    # ganlab's psi flips the sign of the cross term. Simultaneous: ||x||^2 grows by (1 + h^2) per step.
    h = 0.3
    x = trajectory(dirac(loss="wgan", clip=1e9, h=h, mode="alternating", order="g_first"), 10_000)
    q = x[:, 0] ** 2 + x[:, 1] ** 2 + h * x[:, 0] * x[:, 1]
    sq = (x**2).sum(1)
    assert np.abs(q - q[0]).max() < 1e-4 * q[0]  # float32 parameters: rounding only
    assert sq.max() - sq.min() > 0.1  # while ||x||^2 itself moves: Q, not the norm, is the invariant
    xs = trajectory(dirac(loss="wgan", clip=1e9, h=h), 50)
    sqs = (xs**2).sum(1)
    np.testing.assert_allclose(sqs[1:] / sqs[:-1], 1 + h**2, rtol=1e-5)


def test_r1_converges_at_the_linear_rate():
    # O5: R1 gamma = 0.3, h = 0.2, simultaneous: rate rho = sqrt(1 - h gamma + h^2/4) = 0.97468 and
    # ||x_500|| = 2.64e-6 from the paper's (1, 1).
    x = trajectory(dirac(h=0.2, r1=0.3), 500)
    norms = np.linalg.norm(x, axis=1)
    assert norms[-1] == pytest.approx(2.64e-6, rel=0.05)
    # The norm wobbles within each rotation (J is not normal): fit the log-norm's slope over 400 steps.
    slope = np.polyfit(np.arange(100, 501), np.log(norms[100:]), 1)[0]
    assert math.exp(slope) == pytest.approx(math.sqrt(1 - 0.2 * 0.3 + 0.04 / 4), abs=3e-4)
    alt = np.linalg.norm(trajectory(dirac(h=0.2, r1=0.3, mode="alternating"), 500)[-1])
    assert alt < 1e-4  # alternating also converges


def test_r1_step_size_threshold():
    # O5b: simultaneous GD with R1 converges iff h < gamma / f'(0)^2 = 4 gamma (complex-eigenvalue case):
    # 10% either side of it, for two gammas, as one pack of four lanes.
    cases = [(0.3, 1.08, 1.32), (0.6, 2.16, 2.64)]
    lanes = [{"r1": gamma, "h": h} for gamma, h_ok, h_bad in cases for h in (h_ok, h_bad)]
    last = np.linalg.norm(trajectories(dirac_pack(lanes, theta0=0.01, psi0=-0.01, steps=2000), 2000)[-1], axis=1)
    for i, (gamma, h_ok, h_bad) in enumerate(cases):
        ok, bad = last[2 * i], last[2 * i + 1]
        assert ok < 1e-6, (gamma, h_ok, ok)
        assert bad > 0.01 * math.sqrt(2), (gamma, h_bad, bad)  # did not converge: at least as far out as it started


@pytest.mark.parametrize("d_steps, escapes", [(1, False), (4, False), (8, False), (20, True)])
def test_d_steps_alpha_threshold(d_steps, escapes):
    # O4: alternating, h = 1, ||x_0|| = 1.4e-3, alpha = sqrt(n_d) h f'(0): n_d = 1, 4, 8 (alpha <= 1.41)
    # stay at ~1.4e-3; n_d = 20 (alpha = 2.24 > 2) escapes (the reference: to ~5 within 3000 rounds;
    # here beyond 1 within 300).
    t = dirac(h=1.0, mode="alternating", order="g_first", d_steps=d_steps, theta0=1e-3, psi0=-1e-3, steps=300)
    norms = np.linalg.norm(trajectory(t, 300), axis=1)
    if escapes:
        assert norms[-1] > 1.0
    else:
        assert 0.5 * norms[0] < norms.min() and norms.max() < 3 * norms[0]  # bounded (alpha < 2)
