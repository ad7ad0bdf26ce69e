"""What one training run is: data, models, loss, regularizers, optimiser, schedule and training length.

``TrialConfig`` is the ``trial:`` block of a study file and what ``ganlab train`` reads; its diagnostics
and verdict sections live in ``ganlab.config.diagnostics``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from ganlab.config.base import _Strict
from ganlab.config.diagnostics import DiagnosticsConfig, VerdictConfig


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
    fd_features: ClassVar[int] = 64  # the digit classifier's features: the Frechet distance's dimension


class StackedDigitsConfig(_Strict):
    """Three independent digits stacked as channels, shape (3, 8, 8): 1000 modes, an offline Stacked-MNIST."""

    name: Literal["stacked_digits"] = "stacked_digits"
    batch_size: int = Field(64, gt=0)
    fd_features: ClassVar[int] = 192  # three digits' features side by side


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

    @property
    def start_distance(self) -> float:
        """||(theta0, psi0)||: the distance to the equilibrium (0, 0) a run starts from, what the verdict's
        diverging and settling rules compare the current distance with."""
        return math.hypot(self.theta0, self.psi0)


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
        features = getattr(self.data, "fd_features", None)  # data scored by a Frechet distance declare its dimension
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


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out
