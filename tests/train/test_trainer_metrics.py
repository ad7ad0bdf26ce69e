"""The figures the trainer computes itself (losses, accuracies, D outputs and probabilities, gradient and
parameter norms, update ratios, equilibrium gaps, progress counters), against hand-computed values on the
Dirac-GAN, whose every quantity after one iteration has a closed form: data at 0, G a point mass at theta,
D(x) = psi x, plain SGD. One logged iteration (log_every 1), so interval means are the step's own values."""

import math

import pytest

from ganlab.config import parse_trial
from ganlab.train.trainer import Trainer

THETA, PSI, LR_G, RATIO, BATCH = 0.6, 0.5, 0.1, 2.0, 4


def sp(t: float) -> float:  # softplus
    return math.log1p(math.exp(t))


def sig(t: float) -> float:
    return 1 / (1 + math.exp(-t))


def first_report(loss: str, r1: float = 0.0, theta: float = THETA, psi: float = PSI) -> dict[str, float]:
    cfg = parse_trial({
        "seed": 0, "device": "cpu", "data": {"name": "dirac", "batch_size": BATCH},
        "model": {"name": "dirac", "theta0": theta, "psi0": psi}, "loss": {"name": loss},
        "regularizer": {"r1": r1}, "optim": {"name": "sgd", "lr_g": LR_G, "lr_ratio": RATIO},
        "train": {"steps": 3, "log_every": 1, "eval_every": 3},
    })
    return next(iter(Trainer(cfg).run())).metrics


def expected(loss: str, r1: float = 0.0, theta: float = THETA, psi: float = PSI) -> dict[str, float]:
    """D steps at (theta, psi), then G steps at (theta, psi1): alternating, D first."""
    a = psi * theta  # D(G(z)); D(real) = psi * 0 = 0
    if loss in ("minimax", "non_saturating"):
        loss_d, dloss_da = sp(0.0) + sp(a), sig(a)
    elif loss == "least_squares":
        loss_d, dloss_da = 0.5 * ((0 - 1) ** 2 + a * a), a
    else:  # hinge
        loss_d, dloss_da = max(0.0, 1 - 0) + max(0.0, 1 + a), (1.0 if 1 + a > 0 else 0.0)
    grad_psi = dloss_da * theta + r1 * psi  # d/dpsi [loss(psi theta)] + d/dpsi [r1/2 psi^2]
    psi1 = psi - LR_G * RATIO * grad_psi
    b = psi1 * theta  # D(G(z)) for G's step
    loss_g, dg_db = {"minimax": (-sp(b), -sig(b)), "non_saturating": (sp(-b), -sig(-b)),
                     "least_squares": (0.5 * (b - 1) ** 2, b - 1), "hinge": (-b, -1.0)}[loss]
    grad_theta = dg_db * psi1
    theta1 = theta - LR_G * grad_theta
    threshold = 0.5 if loss == "least_squares" else 0.0
    acc_real, acc_fake = float(0.0 > threshold), float(a < threshold)
    prefix = "acc_sign" if loss == "hinge" else "acc"
    out = {
        "loss/d": loss_d, "reg/d": r1 / 2 * psi * psi, "loss/g": loss_g,
        f"{prefix}/real": acc_real, f"{prefix}/fake": acc_fake, f"{prefix}/mean": (acc_real + acc_fake) / 2,
        "eq/acc_gap": abs(acc_real - 0.5) + abs(acc_fake - 0.5),
        "d/out_real": 0.0, "d/out_fake": a, "grad/d": abs(grad_psi), "grad/g": abs(grad_theta),
        "param/d": abs(psi1), "param/g": abs(theta1),
        "update/d": abs(psi1 - psi) / abs(psi), "update/g": abs(theta1 - theta) / abs(theta),
        "progress/d_steps": 1.0, "progress/g_steps": 1.0, "progress/real_samples": float(BATCH),
    }
    if loss in ("minimax", "non_saturating"):
        out.update({"d/prob_real": 0.5, "d/prob_fake": sig(a), "eq/loss_d_gap": loss_d - 2 * math.log(2),
                    "eq/loss_g_gap": loss_g - (-math.log(2) if loss == "minimax" else math.log(2))})
    return out


@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "least_squares", "hinge"])
@pytest.mark.parametrize("r1", [0.0, 0.3])
def test_every_trainer_metric_equals_its_closed_form(loss, r1):
    got, want = first_report(loss, r1), expected(loss, r1)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("theta, psi, bce, ls", [(0.6, 0.5, 0.0, 1.0), (1.6, 0.5, 0.0, 0.0), (0.6, -0.5, 1.0, 1.0)])
def test_thresholds_sit_where_each_loss_says_real_from_fake(theta, psi, bce, ls):
    """Least squares decides at 0.5 (its targets are 0 and 1), the BCE losses at logit 0: a fake scored 0.3
    is 'real' to BCE and 'fake' to LSGAN; one scored 0.8 is 'real' to both; -0.3 is 'fake' to both."""
    assert first_report("non_saturating", theta=theta, psi=psi)["acc/fake"] == bce
    assert first_report("least_squares", theta=theta, psi=psi)["acc/fake"] == ls
