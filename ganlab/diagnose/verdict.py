"""One stability verdict per trial, from the diagnostics of the latest logged window.

Rules, first match wins (thresholds: ``VerdictConfig``, each a study-overridable value):
1. ``diverged``: a non-finite loss, |loss| > explode_loss, a gradient norm > explode_grad, or (Dirac-GAN)
   the distance to the equilibrium grew by diverged_distance_factor over the run.
2. Dirac-GAN: ``converged`` when ||(theta, psi)|| <= converged_distance, else ``oscillating``.
3. ``d_dominates``: D's accuracy on real and on fake both >= d_dominates_acc (G gets no useful signal).
4. ``mode_collapse``: fewer than mode_collapse_fraction of the data's modes covered (mixtures).
5. ``g_dominates``: D's accuracy on generated samples <= g_dominates_acc_fake (D takes fakes for real).
6. ``converged``: |acc_real - 1/2| + |acc_fake - 1/2| <= converged_gap and the D loss's window std
   <= converged_loss_std (near the equilibrium and settled).
7. ``oscillating``: everything else (near-balanced but not settled, or drifting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ganlab.config import VerdictConfig

VERDICTS = ("converged", "oscillating", "mode_collapse", "d_dominates", "g_dominates", "diverged")


def _acc(metrics: dict[str, float], which: str) -> float | None:
    for prefix in ("acc", "acc_sign"):
        if f"{prefix}/{which}" in metrics:
            return metrics[f"{prefix}/{which}"]
    return None


@dataclass
class VerdictTracker:
    """Keeps what the rules need across the run (the first Dirac distance, the latest eval figures)."""

    cfg: VerdictConfig
    n_modes: int | None = None
    first_distance: float | None = None
    latest: dict[str, float] = field(default_factory=dict)
    verdict: str = "oscillating"
    reason: str = "no diagnostics yet"

    def update(self, metrics: dict[str, float]) -> tuple[str, str]:
        self.latest.update(metrics)
        if self.first_distance is None and "eval/dirac_distance" in metrics:
            self.first_distance = metrics["eval/dirac_distance"]
        self.verdict, self.reason = judge(self.latest, self.cfg, self.n_modes, self.first_distance)
        return self.verdict, self.reason


def judge(m: dict[str, float], cfg: VerdictConfig, n_modes: int | None = None,
          first_distance: float | None = None) -> tuple[str, str]:
    for key in ("loss/d", "loss/g"):
        if key in m and not math.isfinite(m[key]):
            return "diverged", f"{key} is {m[key]}"
        if key in m and abs(m[key]) > cfg.explode_loss:
            return "diverged", f"|{key}| = {abs(m[key]):.3g} > explode_loss {cfg.explode_loss:g}"
    for key in ("grad/d", "grad/g"):
        if key in m and not (m[key] <= cfg.explode_grad):  # NaN fails this too
            return "diverged", f"{key} = {m[key]:.3g} > explode_grad {cfg.explode_grad:g}"
    if "eval/dirac_distance" in m:
        d = m["eval/dirac_distance"]
        if first_distance and d > cfg.diverged_distance_factor * first_distance:
            return "diverged", f"distance to equilibrium grew {d / first_distance:.2f}x"
        if d <= cfg.converged_distance:
            return "converged", f"distance to equilibrium {d:.3g} <= {cfg.converged_distance:g}"
        return "oscillating", f"distance to equilibrium {d:.3g} neither shrinks below nor grows"
    real, fake = _acc(m, "real"), _acc(m, "fake")
    if real is None or fake is None:
        return "oscillating", "no accuracy logged yet"
    if real >= cfg.d_dominates_acc and fake >= cfg.d_dominates_acc:
        return "d_dominates", f"D accuracy real {real:.2f}, fake {fake:.2f} >= {cfg.d_dominates_acc:g}"
    if n_modes and "eval/modes" in m and m["eval/modes"] < cfg.mode_collapse_fraction * n_modes:
        return "mode_collapse", f"{m['eval/modes']:.0f} of {n_modes} modes covered"
    if fake <= cfg.g_dominates_acc_fake:
        return "g_dominates", f"D accuracy on fakes {fake:.2f} <= {cfg.g_dominates_acc_fake:g}"
    gap = abs(real - 0.5) + abs(fake - 0.5)
    std = m.get("osc/loss_d_std", math.inf)
    if gap <= cfg.converged_gap and std <= cfg.converged_loss_std:
        return "converged", f"accuracy gap {gap:.2f} and D loss std {std:.3f} within bounds"
    return "oscillating", f"accuracy gap {gap:.2f}, D loss std {std:.3f}"
