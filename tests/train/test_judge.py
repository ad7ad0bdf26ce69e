"""The judge reads a pack's whole report at once: a lane that blows up stops at that step with the reason the
first failing rule gives, the others go on, and at eval steps every live lane gets the verdict of its own
latest figures."""

import math

import pytest
import torch

from ganlab.config import VerdictConfig, apply_overrides, parse_trial
from ganlab.diagnose.verdict import blown_up, blown_up_lanes, judge
from ganlab.train.judge import Judge

CFG = VerdictConfig()
SETTLED = {"loss/d": 1.38, "loss/g": 0.69, "grad/d": 1.0, "d/auc_mean": 0.5, "osc/loss_d_excess": 0.0,
           "osc/loss_d_noise": 0.01, "osc/loss_d_period_p": 0.5, "osc/loss_d_period": math.nan,
           "osc/loss_d_trend": 0.0}


def table(rows: list[dict[str, float]]) -> tuple[tuple[str, ...], torch.Tensor]:
    names = tuple(rows[0])
    return names, torch.tensor([[row[n] for n in names] for row in rows], dtype=torch.float64)


def pack_judge(lanes: int) -> Judge:
    cfgs = [parse_trial({"seed": s, "device": "cpu"}) for s in range(lanes)]
    return Judge(cfgs, n_modes=8, device=torch.device("cpu"))


def test_blow_ups_are_found_for_every_lane_at_once_with_the_first_rules_reason():
    rows = [dict(SETTLED), {**SETTLED, "loss/d": math.nan, "grad/d": 1e9}, {**SETTLED, "grad/d": 1e9},
            {**SETTLED, "loss/g": -1e9}, {**SETTLED, "grad/d": math.nan}]
    names, values = table(rows)
    why = blown_up_lanes({n: values[:, k] for k, n in enumerate(names)}, CFG)
    assert why[0] is None
    assert why[1] == "loss/d is nan"  # the loss rule comes before the gradient's
    assert why[2].startswith("grad/d = 1e+09 > explode_grad")
    assert why[3].startswith("|loss/g| = 1e+09 > explode_loss")
    assert why[4].startswith("grad/d = nan")  # NaN fails the bound too
    assert [blown_up(row, CFG) for row in rows] == why  # one trial's check is the pack's on one lane


def test_a_lane_that_blows_up_stops_there_and_keeps_its_last_figures():
    j = pack_judge(3)
    names, values = table([SETTLED, {**SETTLED, "loss/d": math.inf}, SETTLED])
    stopped = j(10, names, values, evaluated=False)
    assert stopped.tolist() == [False, True, False]
    assert j.active.tolist() == [True, False, True] and j.stopped == [None, 10, None]
    assert j.verdicts[1] == "diverged" and j.reasons[1] == "loss/d is inf"
    names, later = table([SETTLED, {**SETTLED, "loss/d": math.nan}, SETTLED])  # a frozen lane stays blown up
    assert j(20, names, later, evaluated=True).tolist() == [False, False, False]  # it stopped once, at 10
    assert j.stopped == [None, 10, None]
    assert j.figures(1)["loss/d"] == math.inf  # a stopped lane's figures are frozen
    assert j.verdicts[1] == "diverged"


def test_each_live_lane_gets_its_own_verdict_at_eval_steps_only():
    j = pack_judge(2)
    rows = [SETTLED, {**SETTLED, "d/auc_mean": 0.99}]
    names, values = table(rows)
    j(10, names, values, evaluated=False)
    assert j.verdicts == ["unbalanced", "unbalanced"] and j.reasons == ["no diagnostics yet"] * 2
    j(20, names, values, evaluated=True)
    assert j.verdicts == [judge(rows[0], CFG, 8)[0], judge(rows[1], CFG, 8)[0]] == ["converged", "d_dominates"]
    assert j.reasons[1] == judge(rows[1], CFG, 8)[1]


def test_an_eval_step_judges_from_the_latest_value_of_every_figure():
    """Figures logged at an earlier step (the oscillation window) still count at an eval step that only carries
    the eval/* ones."""
    j = pack_judge(1)
    names, values = table([{**SETTLED, "osc/loss_d_excess": 0.3}])
    j(10, names, values, evaluated=False)
    names, values = table([{"eval/modes": 8.0}])
    j(20, names, values, evaluated=True)
    assert j.verdicts == ["oscillating"]


def test_the_dirac_gan_starts_from_its_models_distance():
    cfg = parse_trial({"data": {"name": "dirac"}, "model": {"name": "dirac", "theta0": 3.0, "psi0": 4.0}})
    j = Judge([cfg, apply_overrides(cfg.model_dump(mode="json"), {"model.theta0": 0.0})], None, torch.device("cpu"))
    assert j.first_distance == [pytest.approx(5.0), pytest.approx(4.0)]
    assert Judge([parse_trial({})], 8, torch.device("cpu")).first_distance == [None]


def test_state_round_trip():
    j = pack_judge(2)
    names, values = table([SETTLED, {**SETTLED, "loss/g": math.nan}])
    j(10, names, values, evaluated=True)
    k = pack_judge(2)
    k.load_state_dict(j.state_dict())
    assert (k.verdicts, k.reasons, k.stopped) == (j.verdicts, j.reasons, j.stopped) == (
        [judge(SETTLED, CFG, 8)[0], "diverged"], [judge(SETTLED, CFG, 8)[1], "loss/g is nan"], [None, 10])
    assert k.active.tolist() == j.active.tolist() == [True, False]
    assert str(k.figures(0)) == str(j.figures(0))  # NaN figures included
