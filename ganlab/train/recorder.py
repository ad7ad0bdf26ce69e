"""What a pack's training step is measured by: the diagnostics of each D and G step, taken from the outputs
the step computed anyway (no extra forward pass, no host sync), reduced into the logged figures at each log
step. Every series is kept by name: a window of per-iteration values with their batch-noise variances, the
window of E D(x) - E D(G(z)), and the window of D's AUC at logged iterations.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ganlab.config import TrialConfig
from ganlab.diagnose import metrics as M
from ganlab.diagnose.balance import acc_gap, binomial_var, d_auc
from ganlab.diagnose.oscillation import beyond_noise, periodicity, zero_crossings
from ganlab.diagnose.stats import Collector, SlidingWindow
from ganlab.train.losses import CRITICS, EQUILIBRIUM_LOSS, decision_threshold
from ganlab.train.objective import DObjective

SERIES = M.OSC_SERIES  # the per-iteration series whose oscillation is measured beyond batch noise
LOSS_SERIES = ("loss_d", "loss_g")  # what is measured without per-step diagnostics (accuracies need them)
D_SERIES, G_SERIES = ("loss_d", "acc_real", "acc_fake"), ("loss_g",)  # which player's steps measure each
ORDER = [(D_SERIES + G_SERIES).index(name) for name in SERIES]  # D's and G's series, back in SERIES order


def _mean_var(values: torch.Tensor) -> torch.Tensor:
    """The variance of the mean of each lane's values (L, n) from their own spread (0 for n = 1)."""
    n = values.shape[-1]
    return values.var(-1) / n if n > 1 else torch.zeros(values.shape[:-1], dtype=values.dtype, device=values.device)


class Recorder:
    def __init__(self, cfg: TrialConfig, n_lanes: int, device: torch.device):
        self.cfg, self.n_lanes, self.device = cfg, n_lanes, device
        self.per_step = cfg.diagnostics.per_step
        self.threshold = decision_threshold(cfg.loss.name)
        # Critics have no probability: their accuracy is the sign of the output, and is named so.
        self.acc = "acc_sign" if cfg.loss.name in CRITICS else "acc"
        self.bce = cfg.loss.name in ("minimax", "non_saturating")
        self.d_names = (M.LOSS_D, M.REG_D, M.acc_name(self.acc, "real"), M.acc_name(self.acc, "fake"), M.D_OUT_REAL,
                        M.D_OUT_FAKE)
        self.d_sampled = (M.GRAD_D, M.D_AUC, M.D_AUC_NOISE) + ((M.D_PROB_REAL, M.D_PROB_FAKE) if self.bce else ())
        self.stats = Collector()
        window = cfg.diagnostics.window
        # (n, L, series, 2): each iteration's value of every series and its noise variance
        self.series_names = SERIES
        self.series_window = SlidingWindow(window, n_lanes, len(SERIES), 2, device=device)
        self.delta_window = SlidingWindow(window, n_lanes, device=device)  # E D(x) - E D(G(z))
        self.auc_window = SlidingWindow(max(1, window // cfg.train.log_every), n_lanes, device=device)
        # this iteration's steps: (L, len(D_SERIES), 2) per D step, (L, len(G_SERIES), 2) per G step
        self._steps: dict[str, list[torch.Tensor]] = {"d": [], "g": []}
        self._nan = torch.full((n_lanes,), math.nan, dtype=torch.float64, device=device)
        self._delta: torch.Tensor | None = None
        self.sample_now = True  # is this iteration's end logged? (the costlier statistics are sampled then)

    # --- during the step ---------------------------------------------------------------------------

    def begin_iteration(self, iteration: int) -> None:
        t = self.cfg.train
        nxt = iteration + 1
        self.sample_now = nxt % t.log_every == 0 or nxt == t.steps

    def d_step(self, obj: DObjective, d_grad: torch.Tensor) -> None:
        """D's figures for the D that produced the outputs (pre-update); ``d_grad`` its flat gradient (L, P)."""
        loss, reg = obj.loss.detach(), obj.reg.detach()
        real_out, fake_out = obj.real_out.detach(), obj.fake_out.detach()
        self._delta = real_out.mean(-1) - fake_out.mean(-1)
        loss_noise = (_mean_var(obj.on_real.detach()) + _mean_var(obj.on_fake.detach())).double()
        if self.sample_now:
            auc, auc_var = d_auc(real_out, fake_out)
            sampled = [d_grad.norm(dim=1).double(), auc, auc_var.sqrt()]
            if self.bce:
                sampled += [torch.sigmoid(real_out).mean(-1).double(), torch.sigmoid(fake_out).mean(-1).double()]
            self.stats.report(self.d_sampled, torch.stack(sampled, dim=1))
        if not self.per_step:
            self.stats.report((M.LOSS_D, M.REG_D), torch.stack([loss, reg], dim=1))
            nan = self._nan
            self._steps["d"].append(torch.stack([loss.double(), loss_noise, nan, nan, nan, nan], 1).view(-1, 3, 2))
            return
        acc_real = (real_out > self.threshold).double().mean(-1)
        acc_fake = (fake_out < self.threshold).double().mean(-1)
        stats = [loss.double(), reg.double(), acc_real, acc_fake,
                 real_out.mean(-1).double(), fake_out.mean(-1).double()]
        self.stats.report(self.d_names, torch.stack(stats, dim=1))
        series = [loss.double(), loss_noise, acc_real, binomial_var(acc_real, real_out.shape[-1]),
                  acc_fake, binomial_var(acc_fake, fake_out.shape[-1])]  # D_SERIES, each value and noise
        self._steps["d"].append(torch.stack(series, dim=1).view(-1, len(D_SERIES), 2))

    def g_step(self, terms: torch.Tensor, g_grad: torch.Tensor) -> None:
        """G's figures from its loss's per-sample terms (L, B) and its flat gradient."""
        terms = terms.detach()
        loss = terms.mean(-1).double()
        self.stats.report(M.LOSS_G, loss)
        if self.per_step and self.sample_now:
            self.stats.report(M.GRAD_G, g_grad.norm(dim=1).double())
        self._steps["g"].append(torch.stack([loss, _mean_var(terms).double()], dim=1).view(-1, len(G_SERIES), 2))

    def end_iteration(self) -> None:
        """An iteration's value of each series is the mean over its D (or G) steps, whose batches are
        independent, so a mean of k steps has 1/k of their mean noise variance. Series a config does not
        measure (accuracies without per-step diagnostics) are NaN."""
        means = []
        for player in ("d", "g"):
            steps = self._steps[player]
            mean = steps[0]
            if len(steps) > 1:
                mean = torch.stack(steps).mean(0) * torch.tensor([1.0, 1.0 / len(steps)], dtype=mean.dtype,
                                                                 device=mean.device)
            means.append(mean)
            steps.clear()
        self.series_window.push(torch.cat(means, dim=1)[:, ORDER])
        self.delta_window.push(self._delta)

    # --- at a log step ----------------------------------------------------------------------------------

    def metrics(self, params: dict[str, torch.Tensor], last_params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every lane's logged figures of this interval: name -> (L,) tensor. ``params``: each player's flat
        parameters now, ``last_params`` at the previous log step (for the update-to-weight ratio)."""
        metrics = self.stats.reduce_lanes()
        acc = self.acc
        if M.acc_name(acc, "real") in metrics:
            real, fake = metrics[M.acc_name(acc, "real")], metrics[M.acc_name(acc, "fake")]
            metrics[M.acc_name(acc, "mean")] = (real + fake) / 2
            metrics[M.EQ_ACC_GAP] = acc_gap(real, fake)
        reference = EQUILIBRIUM_LOSS.get(self.cfg.loss.name)
        if reference is not None:
            metrics[M.EQ_LOSS_D_GAP] = metrics[M.LOSS_D] - reference[0]
            metrics[M.EQ_LOSS_G_GAP] = metrics[M.LOSS_G] - reference[1]
        metrics.update(self._oscillation())
        if M.D_AUC in metrics:
            self.auc_window.push(metrics[M.D_AUC])
            metrics[M.D_AUC_MEAN] = self.auc_window.values().mean(0)
        metrics[M.OSC_DELTA_ZCR] = zero_crossings(self.delta_window.values())
        for player, param, update in (("g", M.PARAM_G, M.UPDATE_G), ("d", M.PARAM_D, M.UPDATE_D)):
            flat, previous = params[player], last_params[player]
            metrics[param] = flat.norm(dim=1)
            metrics[update] = (flat - previous).norm(dim=1) / previous.norm(dim=1).clamp(min=1e-12)
        return metrics

    def _oscillation(self) -> dict[str, torch.Tensor]:
        """osc/<series>_{std, ptp, noise, excess, trend, period, period_p} over the window, every lane at once."""
        window = self.series_window.values()  # (n, L, series, 2)
        if window.shape[0] == 0:
            return {}
        values, noise = window[..., 0].permute(1, 2, 0), window[..., 1].permute(1, 2, 0)  # (L, series, n)
        d = self.cfg.diagnostics
        period, p = periodicity(values, d.period_min_cycles, d.period_alpha)
        stats = {"std": values.std(-1, unbiased=False), "ptp": values.amax(-1) - values.amin(-1),
                 **beyond_noise(values, noise), "period": period, "period_p": p}
        kept = SERIES if self.per_step else LOSS_SERIES
        return {M.osc_name(name, k): v[:, i] for i, name in enumerate(SERIES) if name in kept for k, v in stats.items()}

    # --- state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A partly filled interval and the windows survive a checkpoint, so resumed metrics match."""
        return {"stats": self.stats.state_dict(), "series": self.series_window.state_dict(),
                "delta": self.delta_window.state_dict(), "auc": self.auc_window.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        self.series_window.load_state_dict(state["series"])
        self.delta_window.load_state_dict(state["delta"])
        self.auc_window.load_state_dict(state["auc"])
