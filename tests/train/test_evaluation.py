"""What the evaluator measures is chosen by what the data set and the model know (``Dataset.quality``, a
packed generator's own ``state_metrics``), drawn from the lane's evaluation stream by iteration only."""

import math

import pytest
import torch

from ganlab.config import apply_overrides, parse_trial
from ganlab.train.trainer import Trainer

RING = {"device": "cpu", "data": {"name": "ring8", "batch_size": 32}, "model": {"width": 16, "depth": 2},
        "train": {"steps": 20, "log_every": 10, "eval_every": 20, "eval_samples": 300}}


def test_a_mixture_is_scored_by_its_modes_and_the_dirac_gan_by_its_state():
    ring = Trainer(parse_trial(RING)).evaluate()
    assert {"eval/sliced_w", "eval/modes", "eval/hq_fraction", "eval/reverse_kl"} <= set(ring)
    assert not any(k.startswith("eval/dirac") for k in ring)
    dirac = Trainer(parse_trial({"device": "cpu", "data": {"name": "dirac"},
                                 "model": {"name": "dirac", "theta0": 0.6, "psi0": -0.8}})).evaluate()
    assert set(dirac) == {"eval/dirac_theta", "eval/dirac_psi", "eval/dirac_distance"}
    assert float(dirac["eval/dirac_theta"][0]) == pytest.approx(0.6)
    assert float(dirac["eval/dirac_psi"][0]) == pytest.approx(-0.8)
    assert float(dirac["eval/dirac_distance"][0]) == pytest.approx(1.0)


def test_digits_are_scored_by_the_digit_classifier():
    cfg = parse_trial({"device": "cpu", "data": {"name": "digits"}, "model": {"name": "dcgan"},
                       "train": {"steps": 1, "eval_samples": 100}})
    out = Trainer(cfg).evaluate()
    assert {"eval/fd", "eval/modes", "eval/classifier_acc"} <= set(out)
    assert 0 <= float(out["eval/modes"][0]) <= 10


def test_samples_depend_on_the_iteration_and_seed_only():
    a = Trainer([apply_overrides(RING, {"seed": 3}), apply_overrides(RING, {"seed": 4})])
    b = Trainer(apply_overrides(RING, {"seed": 3}))
    assert torch.equal(a.evaluator.generate(50, iteration=7)[0], b.evaluator.generate(50, iteration=7)[0])
    assert not torch.equal(b.evaluator.generate(50, iteration=7), b.evaluator.generate(50, iteration=8))
    assert torch.equal(a.generate(50, lane=0), b.generate(50))  # Trainer.generate: at its current iteration


def test_evaluating_leaves_training_mode_and_weights_alone():
    t = Trainer(apply_overrides(RING, {"model.norm": "batch"}))
    state = {k: v.clone() for k, v in t.model.G.state_dict().items()}
    t.evaluate()
    assert t.model.G.training
    assert all(torch.equal(v, state[k]) for k, v in t.model.G.state_dict().items())  # batch-norm stats too


def test_the_eval_figures_of_a_pack_are_each_lanes_alone():
    cfgs = [apply_overrides(RING, {"seed": s}) for s in (0, 1)]
    pack = Trainer(cfgs).evaluate()
    for lane, cfg in enumerate(cfgs):
        alone = Trainer(cfg).evaluate()
        for k, v in alone.items():
            a, b = float(pack[k][lane]), float(v[0])
            assert a == pytest.approx(b, rel=1e-5, abs=1e-7) or (math.isnan(a) and math.isnan(b)), k
