"""The stability verdict: each rule on hand-made diagnostics, then against the Dirac-GAN's known dynamics
and, on ring8, as rates across seeds."""

import math

import pytest
import torch

from ganlab.config import VerdictConfig, parse_trial
from ganlab.train.trainer import Trainer
from ganlab.diagnose.verdict import VERDICTS, judge

CFG = VerdictConfig()
BALANCED = {"acc/real": 0.55, "acc/fake": 0.5, "osc/loss_d_std": 0.01, "loss/d": 1.38, "loss/g": 0.7}


@pytest.mark.parametrize(
    "changes, first, expected",
    [
        ({}, None, "converged"),
        ({"osc/loss_d_std": 0.2}, None, "oscillating"),
        ({"acc/real": 0.9, "acc/fake": 0.2}, None, "oscillating"),
        ({"loss/d": math.nan}, None, "diverged"),
        ({"loss/g": math.inf}, None, "diverged"),
        ({"loss/g": 2e4}, None, "diverged"),
        ({"grad/d": 1e6}, None, "diverged"),
        ({"acc/real": 0.99, "acc/fake": 0.97}, None, "d_dominates"),
        ({"acc/fake": 0.01}, None, "g_dominates"),
        ({"eval/modes": 3.0}, None, "mode_collapse"),
        ({"eval/modes": 8.0}, None, "converged"),
        ({"eval/dirac_distance": 1e-4}, 1.4, "converged"),
        ({"eval/dirac_distance": 3.1}, 1.4, "diverged"),
        ({"eval/dirac_distance": 1.3}, 1.4, "oscillating"),
    ],
)
def test_rules(changes, first, expected):
    verdict, reason = judge({**BALANCED, **changes}, CFG, n_modes=8, first_distance=first)
    assert verdict == expected and verdict in VERDICTS and reason


def test_sign_accuracy_of_critics_is_read_too():
    m = {"acc_sign/real": 0.99, "acc_sign/fake": 0.99, "loss/d": -3.0, "loss/g": 1.0}
    assert judge(m, CFG)[0] == "d_dominates"


def test_thresholds_are_config_values():
    strict = VerdictConfig(converged_gap=0.01)
    assert judge(BALANCED, CFG)[0] == "converged" and judge(BALANCED, strict)[0] == "oscillating"
    assert parse_trial({"verdict": {"d_dominates_acc": 0.9}}).verdict.d_dominates_acc == 0.9


def _dirac_verdict(**schedule):
    cfg = parse_trial({
        "data": {"name": "dirac"}, "model": {"name": "dirac", "theta0": 1.0, "psi0": -1.0},
        "loss": {"name": "minimax"}, "optim": {"name": "sgd", "lr_g": 0.2},
        "schedule": {"order": "g_first", **{k: v for k, v in schedule.items() if k != "r1"}},
        "regularizer": {"r1": schedule.get("r1", 0.0)},
        "train": {"steps": 600, "log_every": 10, "eval_every": 50}, "device": "cpu",
    })
    return list(Trainer(cfg).run())[-1].verdict


def test_dirac_verdicts_match_theory():
    assert _dirac_verdict(mode="simultaneous") == "diverged"  # spirals out (O1)
    assert _dirac_verdict(mode="alternating") == "oscillating"  # bounded cycle (O2)
    assert _dirac_verdict(mode="simultaneous", r1=0.3) == "converged"  # O5
    assert _dirac_verdict(mode="alternating", r1=1.0) == "converged"


def test_nan_stops_the_run_as_diverged():
    # An absurd SGD step blows the weights up; the run must end cleanly, early, with the step recorded.
    cfg = parse_trial({"data": {"name": "ring8", "batch_size": 32}, "model": {"width": 16, "depth": 2},
                       "loss": {"name": "least_squares"}, "optim": {"name": "sgd", "lr_g": 1e6},
                       "train": {"steps": 500, "log_every": 10, "eval_every": 100}})
    reports = list(Trainer(cfg).run())
    last = reports[-1]
    assert last.stopped and last.verdict == "diverged" and last.step < 500
    assert all(not r.stopped for r in reports[:-1])


def _converged_rate(extra: dict, seeds=range(4)) -> float:
    torch.set_num_threads(1)
    hits = 0
    for seed in seeds:
        cfg = parse_trial({"seed": seed, "data": {"name": "ring8", "batch_size": 128},
                           "model": {"width": 64, "depth": 2}, "optim": {"lr_g": 1e-3, **extra.get("optim", {})},
                           "regularizer": extra.get("regularizer", {}),
                           "train": {"steps": 1500, "eval_every": 500, "log_every": 10}})
        hits += list(Trainer(cfg).run())[-1].verdict == "converged"
    return hits / len(seeds)


def test_r1_converges_more_often_than_an_unbalanced_lr_ratio():
    r1 = _converged_rate({"regularizer": {"r1": 1.0}})
    slow_d = _converged_rate({"optim": {"lr_ratio": 0.25}})
    assert r1 >= 0.75 and slow_d <= 0.25 and r1 > slow_d
