"""Packing changes speed, never results: every lane of a pack logs what its trial logs alone.

Each case packs three trials that differ in everything a lane may own (seed, learning rates, betas/momentum/alpha,
regularizer strengths, G's EMA, the Dirac start) and compares every lane's logged metrics over ITERATIONS with the
same trial run alone (a pack of one). The two runs draw the same random numbers (a lane's streams depend only on
its seed) and do the same arithmetic, except that batched kernels (``baddbmm``, grouped convolutions) sum in a
different order than a single model's: float32 rounding, ~1e-7 relative per operation. Any real difference
between lanes (a wrong lane's weights, a shared random number, a hyper-parameter applied to the wrong lane) moves
the metrics by 1e-2 or more within a few steps; rounding stays below these allowances:

- TOLERANCE (1e-4) for losses, logits and parameter norms: measured at most 5e-6 over 60 iterations, with one
  torch thread or two, on two CPUs. GAN training is a feedback loop, so the difference grows: on a Xeon with
  AVX-512 and AMX the WGAN-GP lane with spectral norm went from 3e-6 at step 120 to 8e-4 at 200 (x10 per 20
  steps), which an earlier CPU never showed; so the window is 60 iterations, before any lane amplifies rounding.
- AMPLIFIED (1e-3) for figures that magnify a rounding difference by construction. Gradient and update norms sum
  per-sample contributions through (leaky) ReLUs: a pre-activation within rounding of 0 takes the other slope
  for that sample and unit, a jump of ~1/(B x width) for that step (measured: grad/g 3.3e-4 at one step of the
  batch-norm case with one thread, 1e-5 the step after, and eval/sliced_w 5.7e-5 at the next eval). The
  periodicity p-values are computed from the window's residuals, which in a calm lane are ~1e-4 of the loss's
  level, so a 1e-8 relative difference in the losses becomes ~1e-4 (measured 1.2e-4).
- FLIPS / B for figures that threshold or rank logits (accuracies, AUCs and what is computed from them): a
  sample's logit within rounding of the threshold flips its decision (1/B), two logits within rounding of each
  other swap an AUC pair (1/B^2; measured 1 pair at step 80 of the batch-norm case with one thread).
- Discrete eval figures (modes covered) are compared exactly at the first eval.

The agreement holds while the dynamics are not chaotic: in a lane whose small differences grow exponentially
(simultaneous minimax with batch norm at lr_g 2e-3 and a 4x slower D swings its AUC between 0.1 and 0.8), a
1e-8 difference becomes 1e-4 within 40 iterations, as it would between two machines or two torch versions.
The cases use settings whose trajectories are stable over the iterations compared.

Layers before batch norm have no bias: batch norm removes it, so its true gradient is 0 and under Adam's
normalised steps it random-walks on rounding noise, a 1e-4 drift of G's parameter norm in 200 steps that
changes nothing but makes equal runs differ; without it batch-norm models agree like the others.
"""

from __future__ import annotations

import math

import pytest

from ganlab.config import apply_overrides, parse_trial
from ganlab.train.lanes import check_packable, pack_shape
from ganlab.train.trainer import Trainer

ITERATIONS = 60
TOLERANCE = 1e-4  # relative (and absolute, near 0) deviation of any lane metric from its solo run
AMPLIFIED = 1e-3  # the same for figures that magnify rounding: gradient and update norms, eval figures, p-values
FLIPS = 2  # samples whose real/fake decision may flip on rounding, per logged accuracy figure

BASE = {"device": "cpu", "data": {"name": "ring8", "batch_size": 32}, "model": {"width": 16, "depth": 2},
        "train": {"steps": ITERATIONS, "log_every": 10, "eval_every": 30, "eval_samples": 256}}

# What each lane owns: three lanes per case, every per-lane key different in each.
LANES = [
    {"seed": 1, "optim.lr_g": 1e-3, "optim.lr_ratio": 1.0},
    {"seed": 2, "optim.lr_g": 5e-4, "optim.lr_ratio": 4.0},
    {"seed": 3, "optim.lr_g": 2e-3, "optim.lr_ratio": 0.25},
]

CASES = {
    "mlp, non-saturating, adam": ({}, [{"optim.betas": (0.5, 0.999)}, {"optim.betas": (0.0, 0.9)},
                                       {"optim.betas": (0.9, 0.99), "optim.betas_d": (0.5, 0.9)}]),
    "mlp batch norm in G, minimax, simultaneous": (
        {"model.norm": "batch", "loss.name": "minimax", "schedule.mode": "simultaneous"},
        [{}, {}, {"optim.lr_g": 1e-3}]),  # at lr 2e-3 this lane is chaotic from step ~140: see above
    "mlp layer norm G and D, hinge, R1": (
        {"model.norm": "layer", "model.norm_d": "layer", "loss.name": "hinge"},
        [{"regularizer.r1": 0.1}, {"regularizer.r1": 1.0}, {"regularizer.r1": 10.0}]),
    "least squares, R2, instance noise, d_steps 2": (
        {"loss.name": "least_squares", "schedule.d_steps": 2},
        [{"regularizer.r2": 0.5, "regularizer.instance_noise": 0.1},
         {"regularizer.r2": 1.0, "regularizer.instance_noise": 0.3, "regularizer.instance_noise_anneal": 30},
         {"regularizer.r2": 2.0, "regularizer.instance_noise": 0.0}]),
    "wgan (clip), rmsprop, g_steps 2, g first": (
        {"loss": {"name": "wgan"}, "optim.name": "rmsprop", "schedule.g_steps": 2, "schedule.order": "g_first"},
        [{"loss.clip": 0.01, "optim.alpha": 0.99}, {"loss.clip": 0.05, "optim.alpha": 0.9},
         {"loss.clip": 0.1, "optim.alpha": 0.5, "optim.momentum": 0.5}]),
    "wgan-gp, spectral norm on both, G's EMA": (
        {"loss": {"name": "wgan_gp"}, "regularizer.spectral_norm": "both"},
        [{"loss.gp_weight": 10.0, "optim.g_ema": 0.99}, {"loss.gp_weight": 1.0, "optim.g_ema": 0.9},
         {"loss.gp_weight": 5.0, "loss.gp_center": 0.0, "optim.g_ema": 0.0}]),
    "sgd with momentum, spectral norm on D": (
        {"optim.name": "sgd", "regularizer.spectral_norm": "d"},
        [{"optim.momentum": 0.0}, {"optim.momentum": 0.5}, {"optim.momentum": 0.9}]),
    "dcgan with batch norm on digits": (
        {"data": {"name": "digits", "batch_size": 16}, "model": {"name": "dcgan", "channels": 4, "latent_dim": 8},
         "train.eval_samples": 128},
        [{}, {"regularizer.r1": 1.0}, {"optim.g_ema": 0.9}]),
    "dirac, alternating sgd, R1": (
        {"data": {"name": "dirac"}, "model": {"name": "dirac"}, "optim.name": "sgd", "loss.name": "minimax"},
        [{"model.theta0": 1.0, "model.psi0": -1.0, "regularizer.r1": 0.3},
         {"model.theta0": 0.5, "model.psi0": 0.2, "regularizer.r1": 0.0},
         {"model.theta0": -1.0, "model.psi0": 1.0, "regularizer.r1": 1.0}]),
}

DISCRETE = ("eval/modes",)


def trials(shape: dict, lanes: list[dict]):
    base = apply_overrides(BASE, shape) if shape else parse_trial(BASE)
    return [apply_overrides(base.model_dump(mode="json"), {**common, **own}) for common, own in zip(LANES, lanes)]


def deviation(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    return abs(a - b) / max(1.0, abs(b))


def allowed(metric: str, batch_size: int) -> float:
    if "acc" in metric or "auc" in metric:  # an AUC ranks real against fake logits: a flip moves pairs
        return FLIPS / batch_size
    if metric.startswith(("grad/", "update/", "eval/")) or metric.endswith("_period_p"):
        return AMPLIFIED
    return TOLERANCE


@pytest.mark.parametrize("case", list(CASES))
def test_every_lane_logs_what_its_trial_logs_alone(case):
    cfgs = trials(*CASES[case])
    check_packable(cfgs)
    assert len({pack_shape(c) for c in cfgs}) == 1
    packed = [[lane for lane in report.lanes] for report in Trainer(cfgs).run_pack()]
    for lane, cfg in enumerate(cfgs):
        alone = list(Trainer(cfg).run())
        mine = [step[lane] for step in packed]
        assert [r.step for r in mine] == [r.step for r in alone]
        assert set(mine[0].metrics) == set(alone[0].metrics)
        b = cfg.data.batch_size
        worst = max(((deviation(m.metrics[k], a.metrics[k]) / allowed(k, b), k, m.step)
                     for m, a in zip(mine, alone) for k in a.metrics if k not in DISCRETE), default=(0.0, "", 0))
        assert worst[0] <= 1, f"lane {lane}: {worst[1]} at step {worst[2]} is {worst[0]:.2f} of its tolerance"
        first_eval = next(i for i, r in enumerate(alone) if r.evaluated)
        for k in DISCRETE:
            if k in alone[first_eval].metrics:
                assert mine[first_eval].metrics[k] == alone[first_eval].metrics[k], k


def test_lanes_do_not_depend_on_their_neighbours():
    # The same trial in two different packs (other seeds, other learning rates beside it) logs the same numbers:
    # nothing a lane draws or computes depends on which trials share its pack.
    a, b, c = trials({}, [{}, {}, {}])
    first = [r.lanes[0].metrics for r in Trainer([a, b]).run_pack()]
    second = [r.lanes[1].metrics for r in Trainer([c, a]).run_pack()]
    for x, y in zip(first, second):
        assert max(deviation(x[k], y[k]) / allowed(k, a.data.batch_size) for k in x) <= 1


def test_trials_of_different_shapes_are_refused_with_the_keys_that_differ():
    a = parse_trial(BASE)
    b = apply_overrides(BASE, {"schedule.d_steps": 2, "model.width": 32})
    with pytest.raises(ValueError, match=r"model\.width, schedule\.d_steps"):
        Trainer([a, b])
