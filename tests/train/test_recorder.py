"""The recorder keeps every diagnostic series by name: an iteration's value of a series is the mean over its D
(or G) steps, with 1/k of their mean noise variance, and what a config does not measure is absent."""

import math

import pytest
import torch

from ganlab.config import apply_overrides
from ganlab.train.objective import DObjective
from ganlab.train.recorder import SERIES, Recorder

BASE = {"device": "cpu", "data": {"name": "ring8", "batch_size": 4}, "diagnostics": {"window": 8},
        "train": {"steps": 100, "log_every": 1, "eval_every": 100}}


def objective(real_out, fake_out) -> DObjective:
    """A D objective from given outputs under the non-saturating loss (terms softplus(-real), softplus(fake))."""
    on_real, on_fake = torch.nn.functional.softplus(-real_out), torch.nn.functional.softplus(fake_out)
    loss = on_real.mean(-1) + on_fake.mean(-1)
    return DObjective(loss, torch.zeros_like(loss), real_out, fake_out, on_real, on_fake)


def test_an_iterations_series_are_the_mean_of_its_steps_with_a_kth_of_their_noise():
    rec = Recorder(apply_overrides(BASE, {"schedule.d_steps": 3}), n_lanes=2, device=torch.device("cpu"))
    rec.begin_iteration(0)
    grad = torch.ones(2, 5)
    outs = [(torch.tensor([[2.0, 1.0, 3.0, -1.0], [0.5, 0.5, 0.5, 0.5]]) * s, torch.full((2, 4), -0.5 * s))
            for s in (1.0, 2.0, 3.0)]
    for real_out, fake_out in outs:
        rec.d_step(objective(real_out, fake_out), grad)
    terms = torch.tensor([[0.1, 0.3], [0.2, 0.2]])
    rec.g_step(terms, grad)
    rec.end_iteration()
    window = rec.series_window.values()  # (1, lanes, series, value/noise)
    assert window.shape == (1, 2, len(SERIES), 2)
    col = {name: window[0, :, i] for i, name in enumerate(SERIES)}
    objs = [objective(r, f) for r, f in outs]
    loss_d = torch.stack([o.loss.double() for o in objs]).mean(0)
    noise_d = torch.stack([(o.on_real.var(-1) / 4 + o.on_fake.var(-1) / 4).double() for o in objs]).mean(0) / 3
    assert col["loss_d"][:, 0].tolist() == pytest.approx(loss_d.tolist())
    assert col["loss_d"][:, 1].tolist() == pytest.approx(noise_d.tolist())
    acc_real = torch.stack([(r > 0).double().mean(-1) for r, _ in outs]).mean(0)
    assert col["acc_real"][:, 0].tolist() == pytest.approx(acc_real.tolist())  # lane 0: 3/4 at every step
    assert col["acc_fake"][:, 0].tolist() == [1.0, 1.0]
    assert col["loss_g"][:, 0].tolist() == pytest.approx([0.2, 0.2])  # one G step: its own mean and noise
    assert col["loss_g"][:, 1].tolist() == pytest.approx([0.02 / 2, 0.0])


def test_without_per_step_diagnostics_the_accuracies_are_not_measured():
    rec = Recorder(apply_overrides(BASE, {"diagnostics.per_step": False}), n_lanes=1, device=torch.device("cpu"))
    rec.begin_iteration(0)
    rec.d_step(objective(torch.ones(1, 4), -torch.ones(1, 4)), torch.ones(1, 3))
    rec.g_step(torch.ones(1, 4), torch.ones(1, 3))
    rec.end_iteration()
    window = rec.series_window.values()[0, 0]
    assert math.isnan(window[SERIES.index("acc_real"), 0]) and math.isnan(window[SERIES.index("acc_fake"), 0])
    params = {"g": torch.ones(1, 3), "d": torch.ones(1, 3)}
    names = set(rec.metrics(params, params))
    assert "osc/loss_d_excess" in names and "osc/loss_g_std" in names
    assert not any(n.startswith(("osc/acc_", "acc/")) for n in names)


def test_the_update_ratio_is_over_the_weights_at_the_previous_log_step():
    rec = Recorder(apply_overrides(BASE, {}), n_lanes=2, device=torch.device("cpu"))
    rec.begin_iteration(0)
    rec.d_step(objective(torch.ones(2, 4), -torch.ones(2, 4)), torch.ones(2, 3))
    rec.g_step(torch.ones(2, 4), torch.ones(2, 3))
    rec.end_iteration()
    before = {"g": torch.tensor([[3.0, 4.0], [1.0, 0.0]]), "d": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}
    after = {"g": torch.tensor([[3.0, 4.5], [1.0, 0.0]]), "d": torch.tensor([[2.0, 0.0], [0.0, 2.0]])}
    m = rec.metrics(after, before)
    assert m["update/g"].tolist() == pytest.approx([0.5 / 5.0, 0.0])
    assert m["update/d"].tolist() == pytest.approx([1.0, 0.0])
    assert m["param/g"].tolist() == pytest.approx([math.hypot(3, 4.5), 1.0])


def test_the_oscillation_figures_of_a_known_series():
    """A sine of amplitude A over whole periods: std A / sqrt(2), peak to peak 2A, no noise, its period found;
    a lane holding a constant: 0 everywhere."""
    n, period, amp = 64, 16, 0.3
    rec = Recorder(apply_overrides(BASE, {"diagnostics.window": n}), n_lanes=2, device=torch.device("cpu"))
    for i in range(n):
        row = torch.zeros(2, len(SERIES), 2, dtype=torch.float64)
        row[0, SERIES.index("loss_d"), 0] = 1.0 + amp * math.sin(2 * math.pi * i / period)
        row[1, SERIES.index("loss_d"), 0] = 1.0
        rec.series_window.push(row)
    rec.delta_window.push(torch.zeros(2))
    rec.d_step(objective(torch.ones(2, 4), -torch.ones(2, 4)), torch.ones(2, 3))  # an interval's step figures
    rec.g_step(torch.ones(2, 4), torch.ones(2, 3))
    params = {"g": torch.ones(2, 3), "d": torch.ones(2, 3)}
    m = rec.metrics(params, params)
    assert m["osc/loss_d_std"].tolist() == pytest.approx([amp / math.sqrt(2), 0.0], rel=1e-6, abs=1e-12)
    assert m["osc/loss_d_ptp"][0] == pytest.approx(2 * amp, rel=1e-6)
    assert float(m["osc/loss_d_ptp"][1]) == 0.0
    assert m["osc/loss_d_noise"].tolist() == pytest.approx([0.0, 0.0])
    assert float(m["osc/loss_d_period"][0]) == pytest.approx(period, rel=0.05)
