"""One stability verdict per trial, from the diagnostics of the latest window; every reason names the figures
that decided it. Thresholds: ``VerdictConfig`` (and ``DiagnosticsConfig.period_alpha``), each overridable.

Rules, first match wins:
1. ``diverged``: a non-finite loss, |loss| > explode_loss, a gradient norm > explode_grad, or (Dirac-GAN) the
   distance to the equilibrium grew by diverged_distance_factor from where the run started.
2. Dirac-GAN only: ``converged`` when ||(theta, psi)|| <= converged_distance, or when the D loss has settled
   (rules 6 and 7 pass) within settled_distance_fraction of the starting distance (noise keeps a floor);
   then rules 6, 7 and 9.
3. ``d_dominates``: D's AUC (window mean) >= d_dominates_auc: it tells real from generated almost perfectly.
4. ``mode_collapse``: fewer than mode_collapse_fraction of the data's modes covered (mixtures, digits).
5. ``g_dominates``: D's AUC <= g_dominates_auc: D scores generated samples above real ones.
6. ``oscillating``: the D loss moves beyond batch noise: its excess std > oscillating_excess, or its window
   has a significant period (Fisher's g, p < period_alpha) with an excess std of at least periodic_excess.
7. ``drifting``: not oscillating, but the D loss still changes steadily: |trend over the window| >
   drifting_trend. Not settled yet.
8. ``converged``: settled (rules 6 and 7 passed) and balanced: |AUC - 1/2| <= converged_auc_gap.
9. ``unbalanced``: settled away from 50/50: D (AUC above 1/2) or G (below) keeps a steady edge that does not
   dominate. What is left once every other rule failed is exactly this, so it is named for it.

Balance is read from the AUC rather than thresholded accuracies: the AUC is blind to D's offset and scale, so
it means the same for BCE, least squares and critics (whose sign accuracy is arbitrary), and a D at 1/2
everywhere cannot flip it by a tiny offset. Motion is read beyond batch noise, so a settled trial keeps its
verdict when only the batch size changes.
"""

from __future__ import annotations

import math

import torch

from ganlab.config import VerdictConfig
from ganlab.diagnose import metrics as M

VERDICTS = ("converged", "oscillating", "drifting", "unbalanced", "mode_collapse", "d_dominates", "g_dominates",
            "diverged")
DEFAULT_ALPHA = 0.01  # DiagnosticsConfig.period_alpha's default


def _motion(m: dict[str, float], cfg: VerdictConfig, alpha: float, floor: float | None = None) -> tuple[str | None, str]:
    """("oscillating" | "drifting" | None, the figures): how the D loss moves beyond batch noise. ``floor``: the
    excess a significant period needs (default periodic_excess)."""
    excess, noise = m.get(M.OSC_LOSS_D_EXCESS, math.nan), m.get(M.OSC_LOSS_D_NOISE, math.nan)
    p, period = m.get(M.OSC_LOSS_D_PERIOD_P, math.nan), m.get(M.OSC_LOSS_D_PERIOD, math.nan)
    trend = m.get(M.OSC_LOSS_D_TREND, math.nan)
    if excess > cfg.oscillating_excess:
        return "oscillating", (f"D loss oscillates beyond batch noise: excess std {excess:.3g} > {cfg.oscillating_excess:g} "
                               f"(batch noise {noise:.3g})")
    floor = cfg.periodic_excess if floor is None else floor
    if p < alpha and excess >= floor:
        return "oscillating", (f"D loss has a period of {period:.0f} iterations (Fisher p = {p:.2g} < {alpha:g}; "
                               f"excess std {excess:.3g})")
    if abs(trend) > cfg.drifting_trend:
        return "drifting", f"D loss still drifts: {trend:+.3g} across the window (|trend| > {cfg.drifting_trend:g})"
    return None, (f"D loss settled: excess std {excess:.3g} <= {cfg.oscillating_excess:g}, no period (p = {p:.2g}), "
                  f"trend {trend:+.3g}")


def blown_up_lanes(columns: dict[str, torch.Tensor], cfg: VerdictConfig) -> list[str | None]:
    """Why each lane of a pack cannot recover (a non-finite or exploding loss or gradient), or None; ``columns``
    maps a metric name to its (L,) values. Checked at every logged step on the whole report at once, so a
    blown-up trial stops at once and a healthy pack costs no work per lane; only a flagged lane's reason is
    formatted. The first rule that holds gives the reason."""
    lanes = len(next(iter(columns.values()))) if columns else 0
    why: list[str | None] = [None] * lanes
    open_ = torch.ones(lanes, dtype=torch.bool)

    def flag(mask: torch.Tensor, reason) -> None:
        for lane in (mask & open_).nonzero().flatten().tolist():
            why[lane] = reason(lane)
            open_[lane] = False

    for key in (M.LOSS_D, M.LOSS_G):
        if key in columns:
            v = columns[key].double().cpu()
            flag(~torch.isfinite(v), lambda i: f"{key} is {v[i].item()}")
            flag(v.abs() > cfg.explode_loss,
                 lambda i: f"|{key}| = {abs(v[i].item()):.3g} > explode_loss {cfg.explode_loss:g}")
    for key in (M.GRAD_D, M.GRAD_G):
        if key in columns:
            v = columns[key].double().cpu()
            flag(~(v <= cfg.explode_grad),  # NaN fails this too
                 lambda i: f"{key} = {v[i].item():.3g} > explode_grad {cfg.explode_grad:g}")
    return why


def blown_up(m: dict[str, float], cfg: VerdictConfig) -> str | None:
    """``blown_up_lanes`` for one trial's figures."""
    return blown_up_lanes({k: torch.tensor([float(v)]) for k, v in m.items()}, cfg)[0]


def judge(m: dict[str, float], cfg: VerdictConfig, n_modes: int | None = None,
          first_distance: float | None = None, alpha: float = DEFAULT_ALPHA) -> tuple[str, str]:
    why = blown_up(m, cfg)
    if why is not None:
        return "diverged", why
    if M.EVAL_DIRAC_DISTANCE in m:
        d = m[M.EVAL_DIRAC_DISTANCE]
        if first_distance and d > cfg.diverged_distance_factor * first_distance:
            return "diverged", f"distance to equilibrium grew {d / first_distance:.2f}x"
        if d <= cfg.converged_distance:
            return "converged", f"distance to equilibrium {d:.3g} <= {cfg.converged_distance:g}"
        motion, why = _motion(m, cfg, alpha, floor=0.0)  # noise-free: any significant period is the game's
        if motion is None and first_distance and d <= cfg.settled_distance_fraction * first_distance:
            return "converged", (f"distance to equilibrium {d:.3g} <= {cfg.settled_distance_fraction:g} of its start "
                                 f"{first_distance:.3g}, and {why}")
        return motion or "unbalanced", f"distance to equilibrium {d:.3g}; {why}"
    auc = m.get(M.D_AUC_MEAN)
    if auc is None or not math.isfinite(auc):
        return "unbalanced", "no AUC logged yet"
    if auc >= cfg.d_dominates_auc:
        return "d_dominates", f"D's AUC {auc:.2f} >= {cfg.d_dominates_auc:g}: it tells real from generated"
    if n_modes and M.EVAL_MODES in m and m[M.EVAL_MODES] < cfg.mode_collapse_fraction * n_modes:
        return "mode_collapse", f"{m[M.EVAL_MODES]:.0f} of {n_modes} modes covered"
    if auc <= cfg.g_dominates_auc:
        return "g_dominates", f"D's AUC {auc:.2f} <= {cfg.g_dominates_auc:g}: it scores generated above real"
    motion, why = _motion(m, cfg, alpha)
    if motion is not None:
        return motion, f"{why}; AUC {auc:.2f}"
    if abs(auc - 0.5) <= cfg.converged_auc_gap:
        return "converged", f"{why}; balanced: AUC {auc:.2f} within {cfg.converged_auc_gap:g} of 1/2"
    side = "D" if auc > 0.5 else "G"
    return "unbalanced", f"{why}; but {side} keeps an edge: AUC {auc:.2f} (|AUC - 1/2| > {cfg.converged_auc_gap:g})"
