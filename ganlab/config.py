"""Study files and trial configs: the only place where user input becomes typed values.

Everything downstream (trainer, Ray Tune, MLflow) receives a validated ``TrialConfig``; nothing
downstream re-checks user input. Every threshold the code uses is a named field here, documented
where it is declared, so a study can override it and a paper can cite it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
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
        where = f"study file '{self.source}'" if self.source else "config"
        at = f", key '{self.key}'" if self.key else ""
        return (
            f"Invalid {where}{at}: {self.message} "
            "Fix the file and run again; `ganlab validate FILE` checks a study without starting anything."
        )


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


DataConfig = Annotated[Union[Ring8Config, Grid25Config], Field(discriminator="name")]

# Fields holding a discriminated union: pydantic puts the tag into error locations, we drop it.
_DISCRIMINATED_FIELDS = {"data"}


# --- models, losses, optimisation ------------------------------------------------------------------


class ModelConfig(_Strict):
    name: Literal["mlp"] = "mlp"
    width: int = Field(128, gt=0, description="units per hidden layer, G and D alike")
    depth: int = Field(3, gt=0, description="hidden layers, G and D alike")
    latent_dim: int = Field(2, gt=0, description="dimension of z ~ N(0, I)")


class LossConfig(_Strict):
    """``minimax``: G minimises log(1 - D(G(z))) (saturating); ``non_saturating``: G maximises log D(G(z))."""

    name: Literal["minimax", "non_saturating"] = "non_saturating"


class OptimConfig(_Strict):
    """Adam for both players; D's learning rate is ``lr_ratio * lr_g`` so the ratio is the swept axis."""

    name: Literal["adam"] = "adam"
    lr_g: float = Field(1e-4, gt=0)
    lr_ratio: float = Field(1.0, gt=0, description="lr_d / lr_g")
    betas: tuple[float, float] = (0.5, 0.999)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must lie in [0, 1), got {list(v)}")
        return v

    @property
    def lr_d(self) -> float:
        return self.lr_g * self.lr_ratio


class ScheduleConfig(_Strict):
    d_steps: int = Field(1, gt=0, description="discriminator updates per generator update")


class TrainConfig(_Strict):
    steps: int = Field(3000, gt=0, description="generator updates")
    log_every: int = Field(10, gt=0, description="generator steps between logged diagnostics")
    eval_every: int = Field(250, gt=0, description="generator steps between sample-quality evaluations")
    eval_samples: int = Field(2500, gt=0, description="generated points per evaluation (VEEGAN/PacGAN: 2500)")


class DiagnosticsConfig(_Strict):
    window: int = Field(
        200, gt=1, description="generator steps in the sliding window of the loss-oscillation statistics"
    )
    hq_sigmas: float = Field(
        3.0, gt=0, description="a sample is high quality within this many sigmas of its nearest mode (VEEGAN: 3)"
    )


class TrialConfig(_Strict):
    """One training run, fully specified. The ``trial:`` block of a study file and ``ganlab train`` use it."""

    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=Ring8Config)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, as logged to MLflow params (``optim.lr_ratio`` -> 0.5)."""
        return flatten(self.model_dump(mode="json"))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


# --- studies ---------------------------------------------------------------------------------------


class SweepAxis(_Strict):
    """One swept key: exactly one of a grid (every value) or a distribution (sampled ``num_samples`` times)."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None

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

    def probe_values(self) -> list[Any]:
        """Values that, if all valid, make every value this axis can produce valid (bounds are monotone)."""
        return list(self.grid or self.choice or self.uniform or self.loguniform)  # type: ignore[arg-type]


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0, description="CPUs per trial; also the trial's torch thread count")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial; fractions share one GPU")


class StudyConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    trial: TrialConfig = Field(default_factory=TrialConfig)
    sweep: dict[str, SweepAxis] = Field(default_factory=dict)
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="every configuration runs once per seed; overrides trial.seed"
    )
    num_samples: int = Field(1, gt=0, description="draws of the random axes (Ray Tune repeats grids this often)")
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, gt=0)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {v}")
        return v

    @property
    def has_random_axes(self) -> bool:
        return any(a.kind in ("choice", "uniform", "loguniform") for a in self.sweep.values())

    def search_space(self) -> dict[str, Any]:
        """The search space as flat, JSON-able entries (the parent run's MLflow params)."""
        out: dict[str, Any] = {f"sweep.{k}": a.model_dump(exclude_none=True) for k, a in self.sweep.items()}
        out["seeds"] = self.seeds if self.seeds is not None else [self.trial.seed]
        out["num_samples"] = self.num_samples
        out["trial_count"] = self.trial_count()
        out["resources"] = self.resources.model_dump()
        out["max_concurrent"] = self.max_concurrent
        return out

    def trial_count(self) -> int:
        grid = math.prod(len(a.grid) for a in self.sweep.values() if a.grid is not None)
        return grid * len(self.seeds or [None]) * self.num_samples


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
        raw = set_dotted(raw, key, value)
    return parse_trial(raw)


def _key_exists(trial: TrialConfig, dotted: str) -> bool:
    node: Any = trial
    for part in dotted.split("."):
        if not isinstance(node, BaseModel) or part not in type(node).model_fields:
            return False
        node = getattr(node, part)
    return True


def load_study(path: str | Path) -> StudyConfig:
    """Read and fully validate a study: every value any trial can receive is checked before Ray starts."""
    raw = read_yaml(path)
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as e:
        key, msg = _format_validation_error(e)
        raise ConfigError(path, key, msg) from None
    for dotted, axis in study.sweep.items():
        key = f"sweep.{dotted}"
        if not _key_exists(study.trial, dotted):
            raise ConfigError(path, key, f"the trial config has no key 'trial.{dotted}' to sweep.")
        if dotted == "seed" and study.seeds is not None:
            raise ConfigError(path, key, "seeds are already set by the top-level 'seeds' list; use one of them.")
        if axis.kind in ("uniform", "loguniform"):
            current = _get_dotted(study.trial, dotted)
            if not isinstance(current, float):
                kind = "an integer" if isinstance(current, int) and not isinstance(current, bool) else "not a number"
                raise ConfigError(
                    path, key, f"{axis.kind} draws real numbers, but 'trial.{dotted}' is {kind}; use grid or choice."
                )
        for value in axis.probe_values():
            try:
                apply_overrides(raw.get("trial", {}), {dotted: value})
            except ConfigError as e:
                raise ConfigError(path, key, f"value {value!r} is invalid for 'trial.{dotted}': {e.message}") from None
    grids = {k: a.grid for k, a in study.sweep.items() if a.grid is not None}
    if 1 < len(grids) and math.prod(len(v) for v in grids.values()) <= 10_000:
        for combo in itertools.product(*grids.values()):
            try:
                apply_overrides(raw.get("trial", {}), dict(zip(grids, combo)))
            except ConfigError as e:
                point = ", ".join(f"{k}={v!r}" for k, v in zip(grids, combo))
                raise ConfigError(path, f"sweep.{e.key}", f"the grid point ({point}) is invalid: {e.message}") from None
    return study


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
