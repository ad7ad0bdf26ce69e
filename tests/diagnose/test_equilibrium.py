"""The Jacobian's eigenvalues at the Dirac-GAN's equilibrium have closed forms (science.md sec. 2.2):
GAN/NSGAN: +-i f'(0) = +-0.5i; R1 with gamma: -gamma/2 +- sqrt(gamma^2/4 - f'(0)^2)."""

import numpy as np
import pytest
import torch

from ganlab.config import parse_trial
from ganlab.diagnose.equilibrium import jacobian_eigenvalues, spectrum_metrics
from ganlab.train.trainer import Trainer
from ganlab.train.models import dirac_state


def dirac_at_equilibrium(loss="minimax", r1=0.0) -> Trainer:
    return Trainer(parse_trial({
        "data": {"name": "dirac"}, "model": {"name": "dirac", "theta0": 0.0, "psi0": 0.0},
        "loss": {"name": loss}, "regularizer": {"r1": r1}, "optim": {"name": "sgd", "lr_g": 0.1},
        "device": "cpu",
    }))


def eig(trainer):
    return np.sort_complex(jacobian_eigenvalues(trainer.game(), torch.zeros(4, 1), torch.zeros(4, 1)))


@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
def test_unregularized_gan_is_a_pure_rotation(loss):
    np.testing.assert_allclose(eig(dirac_at_equilibrium(loss)), [-0.5j, 0.5j], atol=1e-6)


@pytest.mark.parametrize("gamma, expected", [(0.3, [-0.15 - 0.47697j, -0.15 + 0.47697j]), (1.0, [-0.5, -0.5])])
def test_r1_adds_attraction(gamma, expected):
    got = eig(dirac_at_equilibrium(r1=gamma))
    np.testing.assert_allclose(got, np.sort_complex(np.array(expected, dtype=complex)), atol=1e-4)
    assert spectrum_metrics(got)["jac_max_real"] == pytest.approx(-gamma / 2, abs=1e-4)


def test_spectrum_metrics():
    m = spectrum_metrics(np.array([-0.15 + 0.48j, -0.15 - 0.48j, -2.0]))
    assert m["jac_max_real"] == -0.15 and m["jac_max_imag"] == 0.48
    assert m["jac_rotation"] == pytest.approx(0.48 / 0.15)


def test_large_game_uses_arpack_and_agrees_with_the_full_matrix():
    import ganlab.diagnose.equilibrium as eq

    cfg = parse_trial({"data": {"name": "ring8", "batch_size": 32}, "model": {"width": 8, "depth": 1},
                       "device": "cpu"})
    t = Trainer(cfg)
    real, z = t.data.sample(32, torch.Generator().manual_seed(0)), torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    full = jacobian_eigenvalues(t.game(), real, z)
    old = eq.FULL_MATRIX_MAX_PARAMS
    eq.FULL_MATRIX_MAX_PARAMS = 10
    try:
        sparse = jacobian_eigenvalues(t.game(), real, z, k=3)
    finally:
        eq.FULL_MATRIX_MAX_PARAMS = old
    assert full.real.max() == pytest.approx(sparse.real.max(), abs=1e-5)
    assert np.abs(full.imag).max() == pytest.approx(np.abs(sparse.imag).max(), abs=1e-5)


def test_jacobian_at_eval_steps_does_not_change_training():
    base = {"data": {"name": "ring8", "batch_size": 32}, "model": {"width": 8, "depth": 2, "norm": "batch"},
            "regularizer": {"spectral_norm": "d"}, "train": {"steps": 40, "log_every": 10, "eval_every": 20}}
    plain = [r.metrics for r in Trainer(parse_trial(base)).run()]
    with_jac = [r.metrics for r in Trainer(parse_trial({**base, "diagnostics": {"jacobian": True}})).run()]
    assert "eval/jac_max_real" in with_jac[1] and "eval/jac_max_imag" in with_jac[-1]
    for a, b in zip(plain, with_jac):
        assert a["loss/d"] == b["loss/d"] and a["loss/g"] == b["loss/g"]


@pytest.mark.parametrize(
    "theta, psi, expected",
    [(0.5, 0.0, 0.21907), (0.0, 0.5, 0.28093), (0.3, -0.7, 0.548831), (-1.0, 1.0, 1.0)],
)
def test_duality_gap_matches_the_dirac_closed_form(theta, psi, expected):
    # Box |theta|, |psi| <= c = 1: DG_c = log(1 + e^{c|psi|}) - log(1 + e^{-c|theta|}) (science.md sec. 3.3).
    from ganlab.diagnose.equilibrium import duality_gap

    t = Trainer(parse_trial({"data": {"name": "dirac"}, "model": {"name": "dirac", "theta0": theta, "psi0": psi},
                             "loss": {"name": "minimax"}, "device": "cpu"}))
    before = tuple(dirac_state(t.model.G, t.model.D)[0].tolist())
    got = duality_gap(t.game(), torch.zeros(8, 1), torch.zeros(8, 1), steps=200, lr=0.5, box=1.0)
    assert got == pytest.approx(expected, abs=1e-4)
    assert tuple(dirac_state(t.model.G, t.model.D)[0].tolist()) == before  # the players themselves are untouched


def test_duality_gap_zero_at_equilibrium_and_falls_along_an_r1_trajectory():
    from ganlab.diagnose.equilibrium import duality_gap

    base = {"data": {"name": "dirac"}, "loss": {"name": "minimax"}, "device": "cpu",
            "optim": {"name": "sgd", "lr_g": 0.2}, "schedule": {"mode": "simultaneous"}}
    at_eq = Trainer(parse_trial({**base, "model": {"name": "dirac", "theta0": 0.0, "psi0": 0.0}}))
    assert duality_gap(at_eq.game(), torch.zeros(4, 1), torch.zeros(4, 1), 100, 0.5, box=1.0) == pytest.approx(0, abs=1e-6)
    t = Trainer(parse_trial({**base, "model": {"name": "dirac", "theta0": 1.0, "psi0": -1.0},
                             "regularizer": {"r1": 0.3}}))
    gaps = []
    for _ in range(4):
        gaps.append(duality_gap(t.game(), torch.zeros(4, 1), torch.zeros(4, 1), 100, 0.5, box=1.0))
        for _ in range(100):
            t.train_step()
    assert all(a > b for a, b in zip(gaps, gaps[1:]))


def test_duality_gap_at_eval_steps_leaves_training_alone():
    base = {"data": {"name": "ring8", "batch_size": 32}, "model": {"width": 8, "depth": 2, "norm": "batch"},
            "train": {"steps": 40, "log_every": 10, "eval_every": 20}}
    plain = [r.metrics for r in Trainer(parse_trial(base)).run()]
    with_dg = [r.metrics for r in Trainer(parse_trial({**base, "diagnostics": {"duality_gap": True,
                                                                               "duality_gap_steps": 5}})).run()]
    assert with_dg[1]["eval/duality_gap"] >= 0 and "eval/duality_gap" in with_dg[-1]
    assert [m["loss/d"] for m in plain] == [m["loss/d"] for m in with_dg]
