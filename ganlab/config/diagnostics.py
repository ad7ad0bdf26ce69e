"""What a trial measures and how it is judged: the diagnostics' settings and the stability verdict's
thresholds (rules in ``ganlab.diagnose.verdict``)."""

from __future__ import annotations

from pydantic import Field

from ganlab.config.base import _Strict


class DiagnosticsConfig(_Strict):
    per_step: bool = Field(
        True, description="per-step diagnostics (accuracies, D outputs, gradient norms); off leaves only the losses"
    )
    window: int = Field(
        200, gt=1, description="iterations in the sliding window of the oscillation statistics (osc/*) and of the "
        "window mean of D's AUC (d/auc_mean)"
    )
    period_alpha: float = Field(
        0.01, gt=0, lt=1, description="a window's dominant period is reported (osc/<series>_period) only when Fisher's "
        "g-test against white noise gives p below this (osc/<series>_period_p); the verdict's test too"
    )
    period_min_cycles: int = Field(
        3, ge=1, description="only periods that fit this many times in the window are tested: a slower change is a "
        "drift (osc/<series>_trend), not an oscillation"
    )
    jacobian: bool = Field(
        False, description="at eval steps, eigenvalues of the game's Jacobian (costly: Hessian-vector products)"
    )
    duality_gap: bool = Field(False, description="at eval steps, a duality-gap estimate (Grnarova et al. 2019; costly)")
    duality_gap_steps: int = Field(50, gt=0, description="optimiser steps of each inner best-response problem")
    duality_gap_lr: float = Field(1e-3, gt=0, description="learning rate of the inner problems (Adam; SGD in a box)")
    duality_gap_box: float = Field(
        0.0, ge=0, description="bound every parameter to [-box, box] in the inner problems (0: unbounded); the "
        "Dirac-GAN's gap is infinite without one"
    )
    hq_sigmas: float = Field(
        3.0, gt=0, description="a sample is high quality within this many sigmas of its nearest mode (VEEGAN: 3)"
    )
    d_probe: bool = Field(
        False, description="digits only, at eval steps: held-out accuracy of a logistic regression on D's penultimate "
        "features (eval/d_probe_acc), next to the same probe on D as initialised (eval/d_probe_acc_random)"
    )
    d_probe_c: float = Field(1.0, gt=0, description="inverse L2 strength of the probe's logistic regression (sklearn's C)")
    d_probe_max_iter: int = Field(1000, gt=0, description="L-BFGS iterations of the probe's logistic regression")
    d_probe_per_class: int = Field(
        0, ge=0, description="labelled training digits per class the probe fits on (0: all 1438). On 8x8 digits a "
        "probe on all labels saturates (~98% for trained and random D alike; raw pixels 97%); 5-10 per class "
        "shows what training added"
    )


class VerdictConfig(_Strict):
    """Thresholds of the stability verdict (rules in ``ganlab.diagnose.verdict``, applied at each eval step to the
    latest window). D's balance is read from its AUC (d/auc_mean: threshold-free, the same for every loss); the
    game's motion from the D loss's oscillation beyond batch noise (osc/loss_d_excess, in the loss's units),
    its period test and its trend."""

    d_dominates_auc: float = Field(
        0.95, gt=0.5, le=1, description="d_dominates when D's AUC reaches this: it tells real from generated almost "
        "perfectly, and G gets no useful signal"
    )
    g_dominates_auc: float = Field(
        0.3, ge=0, lt=0.5, description="g_dominates when D's AUC falls to this: D scores generated samples above real "
        "ones"
    )
    converged_auc_gap: float = Field(
        0.1, ge=0, lt=0.5, description="converged needs |AUC - 1/2| at most this (D cannot tell real from generated); "
        "unbalanced when settled with a larger gap"
    )
    oscillating_excess: float = Field(
        0.05, ge=0, description="oscillating when the D loss's std beyond batch noise (osc/loss_d_excess) exceeds "
        "this, in the loss's units (a BCE D loss is 2 ln 2 = 1.39 at the equilibrium)"
    )
    periodic_excess: float = Field(
        0.01, ge=0, description="a significant period (osc/loss_d_period_p < diagnostics.period_alpha) makes a trial "
        "oscillating when its excess std is at least this: a large batch makes a tiny wobble significant, and a "
        "verdict must not change with the batch size (the Dirac-GAN, free of batch noise, needs no floor)"
    )
    drifting_trend: float = Field(
        0.1, ge=0, description="drifting (not settled yet) when the straight-line fit of the D loss changes by more "
        "than this across the window (osc/loss_d_trend, loss units)"
    )
    converged_distance: float = Field(
        1e-2, gt=0, description="Dirac-GAN: converged when ||(theta, psi)|| is at most this"
    )
    settled_distance_fraction: float = Field(
        0.05, gt=0, lt=1, description="Dirac-GAN: also converged when the D loss has settled (no oscillation, no "
        "drift) within this fraction of the starting distance: noise (instance noise, small batches) keeps the "
        "distance at a floor above converged_distance"
    )
    diverged_distance_factor: float = Field(
        1.5, gt=1, description="Dirac-GAN: diverged when ||(theta, psi)|| exceeds its first value by this factor"
    )
    mode_collapse_fraction: float = Field(
        0.5, gt=0, le=1, description="mode_collapse when fewer than this fraction of the data's modes are covered"
    )
    explode_loss: float = Field(1e4, gt=0, description="diverged when |loss| exceeds this")
    explode_grad: float = Field(1e5, gt=0, description="diverged when a player's gradient norm exceeds this")
