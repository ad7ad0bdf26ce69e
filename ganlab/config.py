"""Study files and trial configs: the only place where user input becomes typed values.

Everything downstream (trainer, Ray Tune, MLflow) receives a validated ``TrialConfig``; nothing
downstream re-checks user input. Every threshold the code uses is a named field here, documented
where it is declared, so a study can override it and a paper can cite it.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import itertools
import json
import math
import operator
import random
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A study file or override is wrong. Carries the file and the dotted key path it concerns."""

    def __init__(self, source: str | Path | None, key: str | None, message: str):
        self.source = str(source) if source is not None else None
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"config file '{self.source}'" if self.source else "config"
        at = f", key '{self.key}'" if self.key else ""
        return f"Invalid {where}{at}: {self.message} Fix it and run again."


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a study file must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- data -----------------------------------------------------------------------------------------


class Ring8Config(_Strict):
    """8 Gaussians on a circle (VEEGAN/PacGAN protocol: radius 1, sigma 0.01)."""

    name: Literal["ring8"] = "ring8"
    batch_size: int = Field(256, gt=0)
    radius: float = Field(1.0, gt=0, description="radius of the circle the 8 means lie on")
    sigma: float = Field(0.01, gt=0, description="standard deviation of each mode, per dimension")


class Grid25Config(_Strict):
    """25 Gaussians on a 5x5 grid (VEEGAN/PacGAN protocol: means {-4,-2,0,2,4}^2, sigma 0.05)."""

    name: Literal["grid25"] = "grid25"
    batch_size: int = Field(256, gt=0)
    spacing: float = Field(2.0, gt=0, description="distance between neighbouring means")
    sigma: float = Field(0.05, gt=0, description="standard deviation of each mode, per dimension")


class DiracDataConfig(_Strict):
    """Real data is a point mass at 0 in one dimension (the Dirac-GAN of Mescheder et al. 2018)."""

    name: Literal["dirac"] = "dirac"
    batch_size: int = Field(1, gt=0, description="every sample is 0: any batch gives the exact gradient")


class DigitsConfig(_Strict):
    """scikit-learn's 8x8 digits (1797 images, ships with the package), scaled to [-1, 1], shape (1, 8, 8)."""

    name: Literal["digits"] = "digits"
    batch_size: int = Field(64, gt=0)


class StackedDigitsConfig(_Strict):
    """Three independent digits stacked as channels, shape (3, 8, 8): 1000 modes, an offline Stacked-MNIST."""

    name: Literal["stacked_digits"] = "stacked_digits"
    batch_size: int = Field(64, gt=0)


class NpzConfig(_Strict):
    """A user's own array: points (N, d) or NCHW images (N, C, H, W), floating point, in an ``.npz`` file."""

    name: Literal["npz"] = "npz"
    batch_size: int = Field(64, gt=0)
    path: str = Field(description="the .npz file; a relative path is resolved against the current directory")
    key: str = Field("x", description="the array's name inside the file")

    @model_validator(mode="after")
    def _check_file(self) -> "NpzConfig":
        import numpy as np

        path = Path(self.path).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"@path: no file at {path}")
        try:
            with np.load(path, allow_pickle=False) as archive:
                files = list(archive.files)
                arr = archive[self.key] if self.key in files else None
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"@path: {path} is not a readable .npz file ({e})") from None
        if arr is None:
            raise ValueError(f"@key: {path} has no array '{self.key}' (it has: {', '.join(files) or 'none'})")
        if arr.ndim not in (2, 4) or arr.shape[0] < 2 or 0 in arr.shape:
            raise ValueError(f"@key: array '{self.key}' has shape {arr.shape}; expected (N, d) points or (N, C, H, W) images")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(
                f"@key: array '{self.key}' has dtype {arr.dtype}; expected floating point (scale images to [-1, 1] first)"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"@key: array '{self.key}' holds NaN or infinite values")
        object.__setattr__(self, "path", str(path))  # absolute: trials run in other working directories
        return self


DataConfig = Annotated[
    Union[Ring8Config, Grid25Config, DiracDataConfig, DigitsConfig, StackedDigitsConfig, NpzConfig],
    Field(discriminator="name"),
]
IMAGE_DATA = ("digits", "stacked_digits")


# --- models ------------------------------------------------------------------------------------------


class MlpConfig(_Strict):
    name: Literal["mlp"] = "mlp"
    width: int = Field(128, gt=0, description="units per hidden layer, G and D alike")
    depth: int = Field(3, gt=0, description="hidden layers, G and D alike")
    latent_dim: int = Field(2, gt=0, description="dimension of z ~ N(0, I)")
    activation: Literal["relu", "leaky_relu", "elu", "tanh"] = "relu"
    norm: Literal["none", "batch", "layer"] = Field("none", description="normalisation in G's hidden layers")
    norm_d: Literal["none", "layer"] = Field(
        "none", description="normalisation in D's hidden layers (no batch norm: D sees real and fake batches apart)"
    )


class DcganConfig(_Strict):
    """DCGAN-style convolutional G and D for square images whose side is a power of two (>= 4)."""

    name: Literal["dcgan"] = "dcgan"
    latent_dim: int = Field(32, gt=0)
    channels: int = Field(32, gt=0, description="channel multiplier: the widest layer has channels * H/4 maps")


class DiracModelConfig(_Strict):
    """G is a point mass at theta; D(x) = psi * x (Mescheder et al. 2018). Needs ``data: {name: dirac}``."""

    name: Literal["dirac"] = "dirac"
    theta0: float = Field(1.0, description="initial generator position")
    psi0: float = Field(1.0, description="initial discriminator slope")
    latent_dim: int = Field(1, gt=0, description="ignored by G; kept so every model has a latent size")


ModelConfig = Annotated[Union[MlpConfig, DcganConfig, DiracModelConfig], Field(discriminator="name")]


# --- losses and regularizers --------------------------------------------------------------------------


class LossConfig(_Strict):
    """``minimax`` (saturating) and ``non_saturating``: Goodfellow et al. 2014; ``hinge``; ``least_squares``
    (LSGAN, targets real 1 / fake 0). All work on D's raw output."""

    name: Literal["minimax", "non_saturating", "hinge", "least_squares"] = "non_saturating"


class WganConfig(_Strict):
    """Wasserstein loss with D's weights clipped to [-clip, clip] after every D update (Arjovsky et al. 2017)."""

    name: Literal["wgan"] = "wgan"
    clip: float = Field(0.01, gt=0)


class WganGpConfig(_Strict):
    """Wasserstein loss plus weight * E(||grad D(x_hat)|| - center)^2 on real/fake interpolates (Gulrajani et al. 2017)."""

    name: Literal["wgan_gp"] = "wgan_gp"
    gp_weight: float = Field(10.0, ge=0)
    gp_center: float = Field(1.0, ge=0)


Loss = Annotated[Union[LossConfig, WganConfig, WganGpConfig], Field(discriminator="name")]


class RegularizerConfig(_Strict):
    """Penalties and noise on D. Convention for R1/R2 (Mescheder et al. 2018): ``gamma/2 * E||grad_x D(x)||^2``.
    GAN_stability's code drops the 1/2, so its ``reg_param: 10`` is ``r1: 20`` here."""

    r1: float = Field(0.0, ge=0, description="gamma of the zero-centred penalty on real samples (0: off)")
    r2: float = Field(0.0, ge=0, description="gamma of the zero-centred penalty on generated samples (0: off)")
    instance_noise: float = Field(0.0, ge=0, description="sigma of Gaussian noise added to D's inputs (0: off)")
    instance_noise_anneal: int = Field(
        0, ge=0, description="iterations over which the noise decays linearly to 0 (0: constant)"
    )
    spectral_norm: Literal["none", "d", "both"] = Field("none", description="spectral normalisation of D, or D and G")


# --- optimisation and schedule --------------------------------------------------------------------------


def _check_betas(v: tuple[float, float] | None) -> tuple[float, float] | None:
    if v is not None and not all(0.0 <= b < 1.0 for b in v):
        raise ValueError("each beta must lie in [0, 1)")
    return v


class _OptimBase(_Strict):
    lr_g: float = Field(1e-4, gt=0)
    lr_ratio: float = Field(1.0, gt=0, description="lr_d / lr_g: D's learning rate is lr_ratio * lr_g")
    g_ema: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of G's weights, "
                         "used for evaluation (0: off; 0.999 is common)")

    @property
    def lr_d(self) -> float:
        return self.lr_g * self.lr_ratio


class AdamConfig(_OptimBase):
    name: Literal["adam"] = "adam"
    betas: tuple[float, float] = Field((0.5, 0.999), description="G's betas, and D's unless betas_d is set")
    betas_d: tuple[float, float] | None = None

    _betas = field_validator("betas", "betas_d")(classmethod(lambda cls, v: _check_betas(v)))


class SgdConfig(_OptimBase):
    """Plain SGD with momentum 0 is the update the Dirac-GAN theory analyses."""

    name: Literal["sgd"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)


class RmspropConfig(_OptimBase):
    name: Literal["rmsprop"] = "rmsprop"
    alpha: float = Field(0.99, gt=0, lt=1)
    momentum: float = Field(0.0, ge=0, lt=1)


OptimConfig = Annotated[Union[AdamConfig, SgdConfig, RmspropConfig], Field(discriminator="name")]

# Fields holding a discriminated union: pydantic puts the tag into error locations, we drop it.
_DEFAULT_NAMES = {"data": "ring8", "model": "mlp", "loss": "non_saturating", "optim": "adam"}
_DISCRIMINATED_FIELDS = set(_DEFAULT_NAMES)


class ScheduleConfig(_Strict):
    """One training iteration = ``d_steps`` D updates and ``g_steps`` G updates.

    ``alternating``: one player updates, then the other sees the result (``order`` says who goes first).
    ``simultaneous``: both gradients are taken at the same point, then both players update (one step each).
    """

    d_steps: int = Field(1, gt=0, description="discriminator updates per iteration")
    g_steps: int = Field(1, gt=0, description="generator updates per iteration")
    mode: Literal["alternating", "simultaneous"] = "alternating"
    order: Literal["d_first", "g_first"] = "d_first"

    @model_validator(mode="after")
    def _simultaneous_is_one_step_each(self) -> "ScheduleConfig":
        if self.mode == "simultaneous" and (self.d_steps, self.g_steps) != (1, 1):
            raise ValueError("@mode: simultaneous updates take one step per player: set d_steps and g_steps to 1")
        return self


class TrainConfig(_Strict):
    steps: int = Field(3000, gt=0, description="training iterations (the x-axis of every metric)")
    log_every: int = Field(10, gt=0, description="iterations between logged diagnostics")
    eval_every: int = Field(250, gt=0, description="iterations between sample-quality evaluations")
    eval_samples: int = Field(2500, gt=0, description="generated samples per evaluation (VEEGAN/PacGAN: 2500)")
    checkpoint_every: int = Field(0, ge=0, description="iterations between checkpoints (0: only where a caller asks)")


class DiagnosticsConfig(_Strict):
    per_step: bool = Field(
        True, description="per-step diagnostics (accuracies, D outputs, gradient norms); off leaves only the losses"
    )
    window: int = Field(
        200, gt=1, description="iterations in the sliding window of the loss-oscillation statistics"
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
    """Thresholds of the stability verdict (rules in ``ganlab.verdict``, applied to the latest logged window).

    Accuracies are D's interval-mean accuracy on real and on generated samples (sign-based for critics).
    """

    converged_gap: float = Field(
        0.3, ge=0, description="converged needs |acc_real - 1/2| + |acc_fake - 1/2| at most this"
    )
    converged_loss_std: float = Field(
        0.05, ge=0, description="converged needs the D loss's sliding-window std at most this (settled)"
    )
    converged_distance: float = Field(
        1e-2, gt=0, description="Dirac-GAN: converged when ||(theta, psi)|| is at most this"
    )
    diverged_distance_factor: float = Field(
        1.5, gt=1, description="Dirac-GAN: diverged when ||(theta, psi)|| exceeds its first value by this factor"
    )
    d_dominates_acc: float = Field(
        0.95, gt=0.5, le=1, description="d_dominates when D's accuracy on real and on fake both reach this"
    )
    g_dominates_acc_fake: float = Field(
        0.05, ge=0, lt=0.5, description="g_dominates when D's accuracy on generated samples falls to this"
    )
    mode_collapse_fraction: float = Field(
        0.5, gt=0, le=1, description="mode_collapse when fewer than this fraction of the data's modes are covered"
    )
    explode_loss: float = Field(1e4, gt=0, description="diverged when |loss| exceeds this")
    explode_grad: float = Field(1e5, gt=0, description="diverged when a player's gradient norm exceeds this")


class TrialConfig(_Strict):
    """One training run, fully specified. The ``trial:`` block of a study file and ``ganlab train`` use it."""

    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when one is visible, else CPU")
    data: DataConfig = Field(default_factory=Ring8Config)
    model: ModelConfig = Field(default_factory=MlpConfig)
    loss: Loss = Field(default_factory=LossConfig)
    regularizer: RegularizerConfig = Field(default_factory=RegularizerConfig)
    optim: OptimConfig = Field(default_factory=AdamConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, raw: Any) -> Any:
        """``optim: {lr_g: 1e-3}`` means the default optimiser: fill in the union's tag when it is left out."""
        if isinstance(raw, dict):
            raw = dict(raw)
            for key, name in _DEFAULT_NAMES.items():
                if isinstance(raw.get(key), dict) and "name" not in raw[key]:
                    raw[key] = {"name": name, **raw[key]}
        return raw

    @model_validator(mode="after")
    def _model_fits_data(self) -> "TrialConfig":
        if (self.model.name == "dirac") != (self.data.name == "dirac"):
            raise ValueError("@model.name: the Dirac-GAN needs both model: {name: dirac} and data: {name: dirac}")
        features = {"digits": 64, "stacked_digits": 192}.get(self.data.name)  # the Frechet distance's dimension
        if features and self.train.eval_samples <= features:
            raise ValueError(
                f"@train.eval_samples: {self.data.name} is scored by a Frechet distance over {features} features, "
                f"which needs more than {features} samples (got {self.train.eval_samples})"
            )
        if self.diagnostics.d_probe and self.data.name != "digits":
            raise ValueError(
                f"@diagnostics.d_probe: the D-feature probe classifies digits by their labels; it needs data: "
                f"{{name: digits}}, not '{self.data.name}'"
            )
        if self.model.name == "dcgan" and self.data.name not in IMAGE_DATA + ("npz",):
            raise ValueError(
                f"@model.name: 'dcgan' needs image data (digits, stacked_digits or npz images), not '{self.data.name}'"
            )
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, as logged to MLflow params (``optim.lr_ratio`` -> 0.5)."""
        return flatten(self.model_dump(mode="json"))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def trajectory_digest(self) -> str:
        """Digest of everything that shapes the training trajectory; ``train`` (length, cadences) and
        ``diagnostics`` and ``verdict`` may change on resume, nothing else may."""
        d = self.model_dump(mode="json", exclude={"train", "diagnostics", "verdict", "device"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --- studies ---------------------------------------------------------------------------------------


Condition = dict[str, Any]


class SweepAxis(_Strict):
    """One swept key: exactly one of a grid (every value) or a distribution (sampled ``num_samples`` times).

    ``when`` makes the axis conditional: it applies only to trials whose other keys have the given values
    (a value, or a list of allowed values), e.g. a GP weight only with ``loss.name: wgan_gp``. Trials where
    the condition fails keep the trial's default and are not repeated once per value of this axis.
    """

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    when: Condition | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SweepAxis":
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of grid, choice, uniform, loguniform (got {given or 'none'})"
            )
        if self.grid is not None and not self.grid or self.choice is not None and not self.choice:
            raise ValueError("the list of values is empty")
        for kind in ("uniform", "loguniform"):
            bounds = getattr(self, kind)
            if bounds is not None:
                low, high = bounds
                if not low < high:
                    raise ValueError(f"{kind} needs [low, high] with low < high, got {list(bounds)}")
                if kind == "loguniform" and low <= 0:
                    raise ValueError(f"loguniform needs low > 0, got {low}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None)

    @property
    def is_random(self) -> bool:
        return self.kind != "grid"

    def probe_values(self) -> list[Any]:
        """Values that, if all valid, make every value this axis can produce valid (bounds are monotone)."""
        return list(self.grid or self.choice or self.uniform or self.loguniform)  # type: ignore[arg-type]

    def draw(self, rng: "random.Random") -> Any:
        if self.choice is not None:
            return rng.choice(self.choice)
        if self.uniform is not None:
            return rng.uniform(*self.uniform)
        low, high = self.loguniform  # type: ignore[misc]
        return math.exp(rng.uniform(math.log(low), math.log(high)))

    def holds(self, values: dict[str, Any]) -> bool:
        """Does this axis apply to a trial whose dotted keys have ``values``?"""
        for key, wanted in (self.when or {}).items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if values.get(key) not in allowed:
                return False
        return True


class Resources(_Strict):
    """Ray resources per trial. A GPU fraction lets several small trials share one GPU (no memory
    partitioning: they must fit together); each still needs its CPU share, which is also its torch thread
    count."""

    cpu: float = Field(1.0, gt=0, description="CPUs per trial; also the trial's torch thread count")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial; fractions share one GPU")

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("more than one GPU per trial must be a whole number")
        return v


Mode = Literal["min", "max"]


class SearchConfig(_Strict):
    """How trial configurations are chosen.

    ``grid``: every combination of the grid axes (no distributions). ``random``: grid axes enumerated,
    distributions drawn ``num_samples`` times per grid point, from a seeded generator. ``optuna``: TPE over
    every axis (grids become categorical), ``num_samples`` trials, one or several objectives.
    """

    algorithm: Literal["grid", "random", "optuna"] = "grid"
    metric: str | list[str] | None = Field(
        None, description="objective: any logged diagnostic (e.g. eq/acc_gap, eval/modes), or a list for Pareto search"
    )
    mode: Mode | list[Mode] | None = Field(None, description="min or max, one per metric")
    seed: int = Field(0, ge=0, description="seed of the random draws / of Optuna's TPE sampler")
    startup_trials: int = Field(10, gt=0, description="Optuna: random trials before TPE models the objective")
    penalty: float = Field(
        1e6, gt=0, description="objective reported for a trial whose objective is NaN, inf or missing (diverged): "
        "+penalty when minimising, -penalty when maximising, so searchers never see NaN"
    )

    @model_validator(mode="after")
    def _objective_shape(self) -> "SearchConfig":
        metrics, modes = self.metrics, self.modes
        if (self.metric is None) != (self.mode is None):
            raise ValueError("@mode: give both metric and mode, or neither")
        if len(metrics) != len(modes):
            raise ValueError(f"@mode: {len(metrics)} metric(s) need as many modes, got {len(modes)}")
        if len(set(metrics)) != len(metrics):
            raise ValueError("@metric: a metric is listed twice")
        if self.algorithm == "optuna" and not metrics:
            raise ValueError("@metric: optuna needs an objective: metric (a diagnostic name) and mode (min or max)")
        return self

    @property
    def metrics(self) -> list[str]:
        return [] if self.metric is None else [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def modes(self) -> list[str]:
        return [] if self.mode is None else [self.mode] if isinstance(self.mode, str) else list(self.mode)


class FifoSchedulerConfig(_Strict):
    """Every trial runs to the end."""

    name: Literal["fifo"] = "fifo"


class AshaSchedulerConfig(_Strict):
    """Asynchronous successive halving: at rungs grace_steps * reduction_factor^k (in training iterations),
    a trial whose metric is not in the best 1/reduction_factor of those that reached the rung stops."""

    name: Literal["asha"] = "asha"
    metric: str | None = Field(None, description="default: the search's (single) metric")
    mode: Mode | None = None
    grace_steps: int = Field(gt=0, description="iterations every trial runs before it can be stopped")
    reduction_factor: float = Field(3.0, gt=1, description="keep the best 1/reduction_factor at each rung")


MUTABLE_KEYS = (
    "optim.lr_g", "optim.lr_ratio", "schedule.d_steps", "schedule.g_steps", "regularizer.r1", "regularizer.r2",
    "regularizer.instance_noise", "loss.gp_weight",
)  # hyper-parameters a running trial can change without rebuilding its models


class PbtSchedulerConfig(_Strict):
    """Population-based training: every ``interval`` iterations, a trial in the bottom ``quantile`` clones a
    trial of the top quantile (weights, optimiser state) and perturbs the ``mutations`` keys (x0.8 / x1.2
    for numbers, a neighbouring value for lists, or a fresh draw with ``resample_probability``)."""

    name: Literal["pbt"] = "pbt"
    metric: str | None = Field(None, description="default: the search's (single) metric")
    mode: Mode | None = None
    interval: int = Field(gt=0, description="iterations between perturbations; a multiple of train.eval_every")
    mutations: dict[str, SweepAxis] = Field(min_length=1, description=f"keys to mutate, among {', '.join(MUTABLE_KEYS)}")
    quantile: float = Field(0.25, gt=0, le=0.5, description="fraction of the population cloned from / replaced")
    resample_probability: float = Field(0.25, ge=0, le=1)
    synchronous: bool = Field(
        True, description="every trial reaches a perturbation step before any exploits (reproducible, and the "
        "clone source is always checkpointed there); false lets fast trials run ahead"
    )


SchedulerConfig = Annotated[
    Union[FifoSchedulerConfig, AshaSchedulerConfig, PbtSchedulerConfig], Field(discriminator="name")
]


class ConfirmConfig(_Strict):
    """The confirmation phase ("Are GANs created equal?", Lucic et al. 2018): after the search, the ``top``
    configurations by the objective (mean over their seeds) run again with ``seeds`` new seeds, so stability
    is reported as a rate across seeds rather than from the lucky seed that won the search."""

    top: int = Field(5, gt=0)
    seeds: int = Field(10, gt=0, description="new seeds per configuration, none of them used in the search")
    metric: str | None = Field(None, description="ranking metric; default: the search's first metric")
    mode: Mode | None = None


class BestWeightsConfig(_Strict):
    """Which eval step's weights are a trial's best (kept in memory, checkpointed, stored once at the end)."""

    metric: str = Field(description="a diagnostic logged at eval steps, e.g. eval/fd or eq/acc_gap")
    mode: Literal["min", "max"]


class ArtifactsConfig(_Strict):
    """What each trial stores beside its metrics, as artifacts of its MLflow run. Always stored: the
    resolved trial config, the full-resolution diagnostics (diagnostics.parquet) and curves.png."""

    sample_plots: int = Field(
        5, ge=0, description="sample plots per trial (a scatter with the mode centres, or an image grid) at eval "
        "steps spread evenly over training, the last one included; 0: none (each costs ~0.1 s)"
    )
    save_models: bool = Field(
        True, description="store the final weights of G, D (and G's EMA) as model/final.pt, with the outputs they "
        "gave on a fixed batch (load_trial checks them); `ganlab sample` and ganlab.load_trial read it"
    )
    save_best: BestWeightsConfig | None = Field(
        None, description="also keep the weights at the eval step where this metric was best, as model/best.pt"
    )


class StudyConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    trial: TrialConfig = Field(default_factory=TrialConfig)
    sweep: dict[str, SweepAxis] = Field(default_factory=dict)
    derived: dict[str, str] = Field(
        default_factory=dict,
        description="keys computed from others per trial, e.g. optim.lr_g: '2.0e-4 / optim.lr_ratio' keeps lr_d fixed",
    )
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="every configuration runs once per seed; overrides trial.seed"
    )
    num_samples: int = Field(1, gt=0, description="random: draws per grid point; optuna: number of trials")
    search: SearchConfig = Field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = Field(default_factory=FifoSchedulerConfig)
    confirm: ConfirmConfig | None = Field(None, description="run a confirmation phase after the search")
    resources: Resources = Field(default_factory=Resources)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    max_concurrent: int | None = Field(None, gt=0)
    max_failures: int = Field(
        2, ge=-1, description="restarts of a trial whose worker died, each from its last checkpoint (-1: unlimited)"
    )
    checkpoint_interval_s: float = Field(
        30.0, gt=0, description="wall seconds between a trial's checkpoints when trial.train.checkpoint_every is 0: "
        "a crash or interrupt costs at most this much recomputation (resumed results are the same either way)"
    )
    mlflow_every_logs: int = Field(
        5, ge=1, description="send every k-th logged step (and every eval step) to MLflow as step-indexed metrics; "
        "every logged step goes to the trial's diagnostics.parquet. MLflow stores a point in ~70 µs, which at "
        "k = 1 costs ~10 % of a small model's training time"
    )
    flush_interval_s: float = Field(
        5.0, ge=0, description="wall seconds between a trial's metric flushes to MLflow (also at every checkpoint "
        "and at the end): how fresh the MLflow UI is, against one database write per eval step"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_scheduler_name(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("scheduler"), dict) and "name" not in raw["scheduler"]:
            raw = {**raw, "scheduler": {"name": "fifo", **raw["scheduler"]}}
        return raw

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {v}")
        return v

    @property
    def has_random_axes(self) -> bool:
        return any(a.is_random for a in self.sweep.values())

    @property
    def swept_keys(self) -> list[str]:
        """Keys that vary between trials: axes, derived keys, PBT's mutations and the seed."""
        keys = list(self.sweep) + [k for k in self.derived if k not in self.sweep]
        if isinstance(self.scheduler, PbtSchedulerConfig):
            keys += [k for k in self.scheduler.mutations if k not in keys]
        return keys + (["seed"] if self.seeds is not None else [])

    def scheduler_objective(self) -> tuple[str, str] | None:
        s = self.scheduler
        if isinstance(s, FifoSchedulerConfig):
            return None
        if s.metric is not None:
            return s.metric, s.mode or "min"
        return self.search.metrics[0], self.search.modes[0]

    def confirm_objective(self, metric: str | None = None, mode: str | None = None) -> tuple[str, str] | None:
        c = self.confirm
        metric = metric or (c.metric if c else None)
        mode = mode or (c.mode if c else None)
        if metric:
            return metric, mode or "min"
        if self.search.metrics:
            return self.search.metrics[0], self.search.modes[0]
        objective = self.scheduler_objective()
        return objective

    def base_values(self) -> dict[str, Any]:
        return self.trial.flat()

    def resolve(self, point: dict[str, Any]) -> dict[str, Any]:
        """The overrides of one trial: axes whose condition fails are dropped (in sweep order, so a
        condition may depend on an earlier axis), then the derived keys are computed."""
        values = self.base_values()
        out: dict[str, Any] = {}
        for key, axis in self.sweep.items():
            if key in point and axis.holds(values):
                out[key] = point[key]
                values[key] = point[key]
        for key in point:
            if key not in self.sweep:  # seed, PBT's mutated keys
                out[key] = point[key]
                values[key] = point[key]
        for key, expression in self.derived.items():
            out[key] = values[key] = evaluate_expression(expression, values)
        return out

    def points(self) -> list[dict[str, Any]]:
        """Every trial of a grid or random search as its overrides, in a fixed order, without repeats."""
        grid_keys = [k for k, a in self.sweep.items() if not a.is_random]
        random_keys = [k for k, a in self.sweep.items() if a.is_random]
        rng = random.Random(self.search.seed)
        seeds = self.seeds if self.seeds is not None else [None]
        draws = self.num_samples if random_keys else 1
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for combo in itertools.product(*(self.sweep[k].grid for k in grid_keys)):  # type: ignore[misc]
            for _ in range(draws):
                point = dict(zip(grid_keys, combo))
                point.update({k: self.sweep[k].draw(rng) for k in random_keys})
                if isinstance(self.scheduler, PbtSchedulerConfig):
                    base = self.base_values()
                    point.update({k: base[k] for k in self.scheduler.mutations if k not in point})
                resolved = self.resolve(point)
                for seed in seeds:
                    trial = resolved if seed is None else {**resolved, "seed": seed}
                    digest = json.dumps(trial, sort_keys=True)
                    if digest not in seen:
                        seen.add(digest)
                        out.append(trial)
        return out

    def search_space(self) -> dict[str, Any]:
        """The search space as flat, JSON-able entries (the parent run's MLflow params)."""
        out: dict[str, Any] = {f"sweep.{k}": a.model_dump(exclude_none=True) for k, a in self.sweep.items()}
        out.update({f"derived.{k}": v for k, v in self.derived.items()})
        out["seeds"] = self.seeds if self.seeds is not None else [self.trial.seed]
        out["num_samples"] = self.num_samples
        out["trial_count"] = self.trial_count()
        out["search"] = self.search.model_dump(exclude_none=True)
        out["scheduler"] = self.scheduler.model_dump(exclude_none=True)
        if self.confirm is not None:
            out["confirm"] = self.confirm.model_dump(exclude_none=True)
        out["resources"] = self.resources.model_dump()
        out["max_concurrent"] = self.max_concurrent
        out["max_failures"] = self.max_failures
        return out

    def trial_count(self) -> int:
        if self.search.algorithm == "optuna":
            return self.num_samples
        return len(self.points())

    def digest(self) -> str:
        """Identity of a study's plan: a resumed study must be the same study."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


# --- derived keys: a tiny, safe arithmetic language -------------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "round": round, "int": int, "float": float,
              "sqrt": math.sqrt, "log": math.log, "exp": math.exp}


def _dotted_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted_name(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def expression_names(expression: str) -> list[str]:
    """The dotted keys an expression reads; raises ValueError if it is not a plain arithmetic expression."""
    tree = _parse_expression(expression)
    names: list[str] = []

    def walk(node: ast.AST) -> None:
        name = _dotted_name(node)
        if name is not None:
            if name not in _FUNCTIONS:
                names.append(name)
            return
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return names


def _parse_expression(expression: str) -> ast.AST:
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"'{expression}' is not an expression ({e.msg})") from None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Attribute, ast.Load, ast.Call,
               ast.Compare, ast.IfExp, ast.USub, ast.UAdd, ast.BoolOp, ast.And, ast.Or, ast.Not,
               *_BINARY, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ValueError(f"'{expression}' uses {type(node).__name__}; only arithmetic, comparisons, "
                             f"'x if c else y' and {', '.join(_FUNCTIONS)} are allowed")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
            raise ValueError(f"'{expression}' calls something other than {', '.join(_FUNCTIONS)}")
    return tree


def evaluate_expression(expression: str, values: dict[str, Any]) -> Any:
    """Evaluate a derived key's expression over the trial's dotted keys (no Python eval)."""

    def ev(node: ast.AST) -> Any:
        name = _dotted_name(node)
        if name is not None:
            if name not in values:
                raise ValueError(f"'{expression}' reads '{name}', which is not a trial key")
            return values[name]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else (+v if isinstance(node.op, ast.UAdd) else not v)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            results = [ev(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))  # type: ignore[attr-defined]
        raise ValueError(f"cannot evaluate {type(node).__name__}")

    return ev(_parse_expression(expression))


# --- loading ---------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string and silently keeps the last of two equal keys; we do neither."""


_FLOAT_RE = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$")
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, None, "the file does not exist (or is not a regular file).")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(path, None, f"it is not valid YAML{where}: {problem}.") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "it is not a text file.") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"the top level must be a mapping of keys, got {type(data).__name__}.")
    return data


def _format_validation_error(err: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The first error as (dotted key, sentence); one precise error reads better than a list of ten."""
    first = err.errors()[0]
    loc: list[str] = []
    for i, part in enumerate(first["loc"]):
        if i > 0 and str(first["loc"][i - 1]) in _DISCRIMINATED_FIELDS:
            continue  # the union's tag ("ring8"), not a key the user wrote
        loc.append(str(part))
    key = ".".join(([prefix] if prefix else []) + loc)
    cross_field = re.match(r"^Value error, @([\w.]+): (.*)$", first["msg"])
    if cross_field:  # a validator over several keys names the one to change as "@key: message"
        loc.append(cross_field.group(1))
        key = ".".join(([prefix] if prefix else []) + loc)
        first = {**first, "msg": cross_field.group(2), "input": {}}
    elif first["msg"].startswith("Value error, "):
        first = {**first, "msg": first["msg"][len("Value error, "):]}
    if first["type"] == "extra_forbidden":
        msg = "unknown key (misspelt, or not valid in this section)."
    else:
        got = first.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = f"{first['msg']}{shown}."
    n = len(err.errors())
    if n > 1:
        msg += f" ({n - 1} more error{'s' if n > 2 else ''} after this one.)"
    return key, msg


def parse_trial(raw: dict[str, Any], source: str | Path | None = None, prefix: str = "") -> TrialConfig:
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as e:
        key, msg = _format_validation_error(e, prefix)
        raise ConfigError(source, key, msg) from None


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``dotted`` set; intermediate mappings are created as needed."""
    out = copy.deepcopy(tree)
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
    return out


def apply_overrides(base: TrialConfig | dict[str, Any], overrides: dict[str, Any]) -> TrialConfig:
    """The trial a sweep point describes. Values arrive from Ray Tune or ``--set`` as plain data."""
    raw = base.model_dump(mode="json") if isinstance(base, TrialConfig) else copy.deepcopy(base)
    for key, value in overrides.items():
        block = key.split(".")[0]
        if key == f"{block}.name" and block in _DISCRIMINATED_FIELDS and isinstance(raw.get(block), dict):
            # Switching a union member (loss: wgan_gp -> hinge) keeps only the keys the new member has.
            fields = _member_fields(block, value)
            raw = {**raw, block: {k: v for k, v in raw[block].items() if k in fields}}
        raw = set_dotted(raw, key, value)
    return parse_trial(raw)


def _member_fields(block: str, name: Any) -> set[str]:
    for member in typing.get_args(TrialConfig.model_fields[block].annotation):
        if name in typing.get_args(member.model_fields["name"].annotation):
            return set(member.model_fields)
    return {"name"}


def _key_exists(trial: TrialConfig, dotted: str) -> bool:
    node: Any = trial
    for part in dotted.split("."):
        if not isinstance(node, BaseModel) or part not in type(node).model_fields:
            return False
        node = getattr(node, part)
    return True


MAX_POINTS_CHECKED = 10_000  # larger grids are checked axis by axis only


def load_study(path: str | Path) -> StudyConfig:
    """Read and fully validate a study: every value any trial can receive is checked before Ray starts."""
    raw = read_yaml(path)
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as e:
        key, msg = _format_validation_error(e)
        raise ConfigError(path, key, msg) from None
    base_raw = raw.get("trial", {})
    flat = study.trial.flat()
    for dotted, axis in study.sweep.items():
        _check_axis(path, f"sweep.{dotted}", dotted, axis, study, base_raw)
        for cond_key, wanted in (axis.when or {}).items():
            if cond_key not in flat and cond_key not in study.sweep:
                raise ConfigError(path, f"sweep.{dotted}.when.{cond_key}", f"'{cond_key}' is neither a trial key nor swept.")
    for target, expression in study.derived.items():
        key = f"derived.{target}"
        if target not in flat:
            raise ConfigError(path, key, f"the trial config has no key 'trial.{target}' to derive.")
        if target in study.sweep or target == "seed":
            raise ConfigError(path, key, f"'{target}' is swept; a key is either swept or derived.")
        try:
            names = expression_names(expression)
        except ValueError as e:
            raise ConfigError(path, key, f"{e}.") from None
        unknown = [n for n in names if n not in flat and n not in study.sweep]
        if unknown:
            raise ConfigError(path, key, f"the expression reads '{unknown[0]}', which is not a trial key "
                                         "(write dotted keys such as optim.lr_ratio).")
    t = study.trial.train
    if t.checkpoint_every % t.eval_every:
        raise ConfigError(path, "trial.train.checkpoint_every", f"in a study, trials checkpoint at eval steps: use a "
                          f"multiple of train.eval_every ({t.eval_every}), or 0 for every checkpoint_interval_s.")
    _check_search(path, study)
    _check_scheduler(path, study, base_raw)
    if study.confirm is not None and study.confirm_objective() is None:
        raise ConfigError(path, "confirm.metric", "the confirmation phase ranks configurations by a metric: set "
                                                  "confirm.metric and confirm.mode (or search.metric and search.mode).")
    if study.search.algorithm != "optuna":
        _check_points(path, study, base_raw)
    return study


def _check_axis(path: str | Path, key: str, dotted: str, axis: SweepAxis, study: StudyConfig, base_raw: dict) -> None:
    if not _key_exists(study.trial, dotted) and not _is_union_member_key(dotted, axis):
        raise ConfigError(path, key, f"the trial config has no key 'trial.{dotted}' to sweep.")
    if dotted == "seed" and study.seeds is not None:
        raise ConfigError(path, key, "seeds are already set by the top-level 'seeds' list; use one of them.")
    if axis.kind in ("uniform", "loguniform") and _key_exists(study.trial, dotted):
        current = _get_dotted(study.trial, dotted)
        if not isinstance(current, float):
            kind = "an integer" if isinstance(current, int) and not isinstance(current, bool) else "not a number"
            raise ConfigError(
                path, key, f"{axis.kind} draws real numbers, but 'trial.{dotted}' is {kind}; use grid or choice."
            )
    # A conditional axis is checked where its condition holds (a GP weight next to the GP loss).
    context = {k: (v[0] if isinstance(v, list) else v) for k, v in (axis.when or {}).items()}
    for value in axis.probe_values():
        try:
            apply_overrides(base_raw, {**context, dotted: value})
        except ConfigError as e:
            raise ConfigError(path, key, f"value {value!r} is invalid for 'trial.{dotted}': {e.message}") from None


def _is_union_member_key(dotted: str, axis: SweepAxis) -> bool:
    """``loss.gp_weight`` exists only for some losses: sweeping it is fine when ``when`` selects one."""
    return axis.when is not None and dotted.split(".")[0] in _DISCRIMINATED_FIELDS


def _check_search(path: str | Path, study: StudyConfig) -> None:
    search = study.search
    if search.algorithm == "grid":
        for dotted, axis in study.sweep.items():
            if axis.is_random:
                raise ConfigError(path, f"sweep.{dotted}", f"a grid search enumerates values, but this axis is "
                                  f"{axis.kind}; use grid, or set search.algorithm to random or optuna.")
        if study.num_samples != 1:
            raise ConfigError(path, "num_samples", "a grid search runs each point once per seed; repeat a "
                              "configuration with more seeds, or set search.algorithm to random.")
    if search.algorithm == "optuna":
        if study.seeds is not None and len(study.seeds) > 1:
            raise ConfigError(path, "seeds", "Optuna searches configurations, not seeds: give one seed (or none) "
                              "and use a confirmation phase (confirm: {top: K, seeds: M}) for rates across seeds.")
        if not study.sweep:
            raise ConfigError(path, "sweep", "an Optuna search needs at least one swept key.")
        if isinstance(study.scheduler, PbtSchedulerConfig):
            raise ConfigError(path, "scheduler.name", "PBT mutates configurations itself; use it with grid or random.")


def _check_scheduler(path: str | Path, study: StudyConfig, base_raw: dict) -> None:
    s = study.scheduler
    if isinstance(s, FifoSchedulerConfig):
        return
    if s.metric is None and len(study.search.metrics) != 1:
        raise ConfigError(path, "scheduler.metric", f"{s.name} needs one metric to compare trials by: set "
                          "scheduler.metric and scheduler.mode (or a single search.metric).")
    if s.metric is not None and s.mode is None:
        raise ConfigError(path, "scheduler.mode", "give min or max with scheduler.metric.")
    steps, every = study.trial.train.steps, study.trial.train.eval_every
    if isinstance(s, AshaSchedulerConfig) and s.grace_steps >= steps:
        raise ConfigError(path, "scheduler.grace_steps", f"must be below train.steps ({steps}), or no trial can "
                          "ever be stopped early.")
    if isinstance(s, PbtSchedulerConfig):
        if s.interval % every or s.interval >= steps:
            raise ConfigError(path, "scheduler.interval", f"must be a multiple of train.eval_every ({every}) and "
                              f"below train.steps ({steps}): trials report, and are checkpointed, at eval steps.")
        for dotted, axis in s.mutations.items():
            key = f"scheduler.mutations.{dotted}"
            if dotted not in MUTABLE_KEYS:
                raise ConfigError(path, key, f"PBT can change only {', '.join(MUTABLE_KEYS)} in a running trial "
                                  "(others would rebuild the models).")
            if axis.when is not None:
                raise ConfigError(path, f"{key}.when", "mutations cannot be conditional.")
            if dotted in study.sweep and study.sweep[dotted].when is not None:
                raise ConfigError(path, key, "a mutated key cannot also be a conditional sweep axis.")
            _check_axis(path, key, dotted, axis, study, base_raw)


def _check_points(path: str | Path, study: StudyConfig, base_raw: dict) -> None:
    """Validate every trial the study will run (conditions and derived keys applied), up to a limit."""
    grid_sizes = [len(a.grid) for a in study.sweep.values() if a.grid is not None]
    if math.prod(grid_sizes) * (study.num_samples if study.has_random_axes else 1) > MAX_POINTS_CHECKED:
        return
    try:
        points = study.points()
    except (ValueError, ArithmeticError, TypeError) as e:
        raise ConfigError(path, "derived", f"a derived key cannot be computed: {e}.") from None
    for point in points:
        try:
            apply_overrides(base_raw, point)
        except ConfigError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items() if k != "seed")
            where = "derived" if e.key in study.derived else "sweep"
            raise ConfigError(path, f"{where}.{e.key}", f"the trial ({shown}) is invalid: {e.message}") from None


def _get_dotted(trial: TrialConfig, dotted: str) -> Any:
    node: Any = trial
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out
