"""The stability verdict: each rule on hand-made diagnostics, then against the Dirac-GAN's known dynamics
and, on ring8, as rates across seeds."""

import math

import pytest
import torch

from ganlab.config import VerdictConfig, parse_trial
from ganlab.train.trainer import Trainer
from ganlab.diagnose.verdict import VERDICTS, judge

CFG = VerdictConfig()
# settled and balanced: small excess beyond noise, no period, no trend, AUC near 1/2
BALANCED = {"d/auc_mean": 0.53, "osc/loss_d_excess": 0.01, "osc/loss_d_noise": 0.04, "osc/loss_d_period_p": 0.4,
            "osc/loss_d_period": math.nan, "osc/loss_d_trend": 0.02, "loss/d": 1.38, "loss/g": 0.7}


@pytest.mark.parametrize(
    "changes, first, expected",
    [
        ({}, None, "converged"),
        ({"osc/loss_d_excess": 0.2}, None, "oscillating"),  # beyond noise
        ({"osc/loss_d_period_p": 0.001, "osc/loss_d_period": 40.0, "osc/loss_d_excess": 0.02}, None, "oscillating"),
        ({"osc/loss_d_period_p": 0.001, "osc/loss_d_period": 40.0, "osc/loss_d_excess": 0.005}, None, "converged"),
        ({"osc/loss_d_trend": -0.3}, None, "drifting"),
        ({"d/auc_mean": 0.75}, None, "unbalanced"),  # settled, D keeps an edge
        ({"d/auc_mean": 0.35}, None, "unbalanced"),  # settled, G keeps an edge
        ({"d/auc_mean": 0.75, "osc/loss_d_excess": 0.2}, None, "oscillating"),  # motion is judged before balance
        ({"loss/d": math.nan}, None, "diverged"),
        ({"loss/g": math.inf}, None, "diverged"),
        ({"loss/g": 2e4}, None, "diverged"),
        ({"grad/d": 1e6}, None, "diverged"),
        ({"d/auc_mean": 0.97}, None, "d_dominates"),
        ({"d/auc_mean": 0.2}, None, "g_dominates"),
        ({"eval/modes": 3.0}, None, "mode_collapse"),
        ({"eval/modes": 8.0}, None, "converged"),
        ({"eval/dirac_distance": 1e-4}, 1.4, "converged"),
        ({"eval/dirac_distance": 3.1}, 1.4, "diverged"),
        ({"eval/dirac_distance": 1.3, "osc/loss_d_excess": 0.3}, 1.4, "oscillating"),
    ],
)
def test_rules(changes, first, expected):
    verdict, reason = judge({**BALANCED, **changes}, CFG, n_modes=8, first_distance=first)
    assert verdict == expected and verdict in VERDICTS and reason


def test_every_reason_names_the_figures_that_decided_it():
    assert "excess std 0.2 > 0.05" in judge({**BALANCED, "osc/loss_d_excess": 0.2}, CFG)[1]
    assert "period of 40 iterations (Fisher p = 0.001 < 0.01; excess std 0.02)" in judge(
        {**BALANCED, "osc/loss_d_period_p": 0.001, "osc/loss_d_period": 40.0, "osc/loss_d_excess": 0.02}, CFG)[1]
    converged = judge(BALANCED, CFG)[1]
    assert "AUC 0.53 within 0.1 of 1/2" in converged and "excess std 0.01 <= 0.05" in converged
    assert "D keeps an edge: AUC 0.75" in judge({**BALANCED, "d/auc_mean": 0.75}, CFG)[1]


def test_critics_are_judged_by_the_same_auc():
    """A WGAN critic's sign accuracy is arbitrary (its offset is free); its AUC is not: the verdict never reads
    the thresholded accuracies."""
    m = {**BALANCED, "acc_sign/real": 0.0, "acc_sign/fake": 1.0, "loss/d": -3.0, "loss/g": 1.0}
    assert judge(m, CFG)[0] == "converged"
    assert judge({**m, "d/auc_mean": 0.99}, CFG)[0] == "d_dominates"


def test_thresholds_are_config_values():
    strict = VerdictConfig(converged_auc_gap=0.01)
    assert judge(BALANCED, CFG)[0] == "converged" and judge(BALANCED, strict)[0] == "unbalanced"
    assert judge(BALANCED, VerdictConfig(oscillating_excess=0.005))[0] == "oscillating"
    periodic = {**BALANCED, "osc/loss_d_period_p": 0.02, "osc/loss_d_excess": 0.02}
    assert judge(periodic, CFG)[0] == "converged" and judge(periodic, CFG, alpha=0.05)[0] == "oscillating"
    assert judge({**periodic, "osc/loss_d_period_p": 0.001}, VerdictConfig(periodic_excess=0.03))[0] == "converged"
    assert parse_trial({"verdict": {"d_dominates_auc": 0.9}}).verdict.d_dominates_auc == 0.9


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


def _verdicts(*extras: dict, seeds=range(4)) -> list[list[str]]:
    """Final verdicts of each variant over the seeds, every (variant, seed) a lane of one pack: lanes differ only
    in continuous hyper-parameters and seeds, so one vectorised model trains them all."""
    torch.set_num_threads(1)
    cfgs = [parse_trial({"seed": seed, "data": {"name": "ring8", "batch_size": 128},
                         "model": {"width": 64, "depth": 2}, "optim": {"lr_g": 1e-3, **extra.get("optim", {})},
                         "regularizer": extra.get("regularizer", {}),
                         "train": {"steps": 1500, "eval_every": 500, "log_every": 10}})
            for extra in extras for seed in seeds]
    last = list(Trainer(cfgs).run_pack())[-1].lanes
    verdicts = [lane.verdict for lane in last]
    return [verdicts[i * len(seeds):(i + 1) * len(seeds)] for i in range(len(extras))]


def test_r1_settles_where_a_slower_d_collapses():
    """Ring8, 4 seeds: with R1 the game settles (no oscillation beyond batch noise, no drift: converged, or
    unbalanced where D keeps a small steady edge on the ring's 0.01-wide modes); a D four times slower than G
    lets G collapse in every seed."""
    r1, slow_d = _verdicts({"regularizer": {"r1": 1.0}}, {"optim": {"lr_ratio": 0.25}})
    assert sum(v in ("converged", "unbalanced") for v in r1) >= 3, r1
    assert slow_d.count("mode_collapse") >= 3, slow_d
