"""What a study is: sweep axes, search, schedulers, confirmation, resources and artifacts around one
trial config."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from ganlab.config.base import _Strict
from ganlab.config.expressions import evaluate_expression
from ganlab.config.lanes import MUTABLE_KEYS
from ganlab.config.trial import TrialConfig


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

    def bounded(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with each mutated key kept in its mutation's range: Ray's PBT perturbs a number by x0.8 or
        x1.2 with no bound, so a value pushed past a bound is clamped to it, and a key whose listed values are
        integers (``schedule.d_steps``) is rounded to one. Keys not mutated pass through."""
        out = dict(values)
        for key, axis in self.mutations.items():
            value = out.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            listed = axis.grid or axis.choice
            numbers = [v for v in (listed or []) if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if listed is not None and len(numbers) != len(listed):
                continue  # a list of names or tuples: PBT only ever picks one of them
            low, high = (min(numbers), max(numbers)) if listed is not None else axis.uniform or axis.loguniform
            value = min(max(value, low), high)
            out[key] = round(value) if listed is not None and all(isinstance(v, int) for v in numbers) else value
        return out


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
    pack: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        "auto", description="trials trained together as one vectorised model (a pack: one worker, one step for "
        "all; each trial keeps its own seed, data, MLflow run and verdict). 'auto': trials of the same shape "
        "(ganlab.train.lanes.pack_shape) share packs sized to fill the cluster's trial slots, at most pack_max "
        "each; 1 under Optuna, ASHA and PBT, which choose, stop or clone trials one at a time. 1: no packs"
    )
    pack_max: int = Field(64, ge=1, description="the most trials one pack holds under pack: auto. On CPU a pack's "
                          "throughput peaks at 8 to 64 lanes and falls beyond (the lr_ratio trial: 155 trial-steps/s "
                          "at 64 lanes, 75 at 256; bench/packs.py); on a GPU raise it (memory per lane: bench/packs.py)")
    max_failures: int = Field(
        2, ge=-1, description="restarts of a trial whose worker died, each from its last checkpoint (-1: unlimited)"
    )
    checkpoint_interval_s: float = Field(
        30.0, gt=0, description="wall seconds between a trial's checkpoints when trial.train.checkpoint_every is 0: "
        "a crash or interrupt costs at most this much recomputation (resumed results are the same either way)"
    )
    stall_timeout_s: float = Field(
        120.0, gt=0, description="wall seconds Tune's trial loop may hold only paused trials (none running, none "
        "waiting to start) before ganlab counts it as stalled, stops it as Ctrl-C would and restarts it from its "
        "saved state (Tune 2.60's synchronous PBT once did this: ganlab.study.search.SyncedPBT mends that; this "
        "guards against any other stall). In a working loop a paused trial is picked again within a step"
    )
    stall_restarts: int = Field(
        3, ge=0, description="how many times one study phase restarts a stalled Tune loop before it stops with "
        "the study resumable (`ganlab run` again resumes it)"
    )
    chart_points: int = Field(
        50, ge=1, description="MLflow points per headline diagnostic (ganlab.diagnose.metrics.CHART: losses, D's AUC "
        "and accuracies, oscillation excess, gradient norms) per trial, at logged steps spread evenly over training; "
        "every metric also reaches MLflow at every eval step and the last step, and every logged step of every "
        "metric is in the trial's diagnostics.parquet. A chart a few hundred pixels wide shows no more; each point "
        "costs store time (docs/packs.md)"
    )
    background_flush: bool | None = Field(
        None, description="flush a pack's bookkeeping in a writer thread beside training, waiting for it only at "
        "checkpoints and ends (every point is still stored exactly once, in order); null: on a GPU, where the "
        "device would otherwise wait for the database, and not on CPU, where the thread competes with training"
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

    @property
    def packable(self) -> bool:
        """Packs train in lock step: only searches whose trials are fixed up front and never stopped or cloned
        one at a time (grid and random searches, the FIFO scheduler, a confirmation phase)."""
        return self.search.algorithm != "optuna" and isinstance(self.scheduler, FifoSchedulerConfig)

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


def short_names(keys: list[str]) -> dict[str, str]:
    """``optim.lr_ratio`` -> ``lr_ratio`` unless two swept keys end alike, then the full path."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}
