"""A finished trial's models, in hand: found in MLflow by run id, by study and trial, or as a study's best
trial, loaded weights-only and checked against the outputs recorded when they were saved.

Weights live with the trial's MLflow run (``model/final.pt``, and ``model/best.pt`` with
``artifacts.save_best``), so any machine that reaches the tracking store and its artifacts finds them.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ganlab.config import TrialConfig
from ganlab.diagnose import metrics as M
from ganlab.train.models import Discriminator, Generator, build_models
from ganlab.analysis.frames import reading_client
from ganlab.track.store import TAG_KIND, resolve_tracking_uri

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
WEIGHTS = {"final": "model/final.pt", "best": "model/best.pt"}
METRIC_MODES = {M.EVAL_MODES: "max", M.EVAL_HQ_FRACTION: "max", M.EVAL_CLASSIFIER_ACC: "max",
                M.EVAL_D_PROBE_ACC: "max"}
"""Diagnostics where larger is better; every other one (gaps, distances, KL, FD, oscillation) is smaller-better."""


class TrialNotFound(LookupError):
    """The run, the trial or its weights do not exist: the message says which and what to do."""


@dataclass
class TrialModels:
    run_id: str  # "" for a `ganlab train` folder
    trial: str
    config: TrialConfig
    G: Generator
    D: Discriminator
    G_ema: Generator | None
    iteration: int
    weights: str  # final or best
    best: dict[str, Any] | None = None  # metric, mode, value, iteration of model/best.pt
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def generator(self) -> Generator:
        """The generator evaluation used: the EMA one when the trial kept it."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, ema: bool = True, batch_size: int = 4096) -> torch.Tensor:
        """n samples on CPU from latents drawn on CPU from ``seed``: the same numbers on any machine and device
        for the latents; the samples equal bit for bit on the same device type."""
        G = self.generator if ema else self.G
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, G.latent_dim, generator=rng)
        return torch.cat([G(chunk.to(self.device)).cpu() for chunk in z.split(batch_size)]) if n else z.new_zeros(0)


def _client(tracking_uri: str | None):
    return reading_client(tracking_uri)


def find_run(spec: str, tracking_uri: str | None = None):
    """A trial's MLflow run from a run id, or ``STUDY/TRIAL`` where TRIAL is the run name, its leading
    number (``00003``) or the Ray trial id."""
    client = _client(tracking_uri)
    if RUN_ID.match(spec):
        try:
            run = client.get_run(spec)
        except Exception as e:  # noqa: BLE001 - MLflow raises its own exception types per store
            raise TrialNotFound(f"no run {spec} in {client.tracking_uri}") from e
        if run.data.tags.get(TAG_KIND) != "trial":
            raise TrialNotFound(f"run {spec} is not a ganlab trial (a study's parent run?); pass a trial's run id")
        return run
    if "/" not in spec:
        raise TrialNotFound(f"{spec!r} is neither a run id (32 hex digits) nor STUDY/TRIAL")
    study, trial = spec.split("/", 1)
    from ganlab.analysis.frames import load_study

    df = load_study(study, client.tracking_uri, run="all", window=None)
    match = df[(df["trial"] == trial) | (df["trial_id"] == trial) | (df["trial"].str.split(" ").str[0] == trial)]
    if match.empty:
        raise TrialNotFound(f"study {study!r} has no trial {trial!r}; its trials: {', '.join(df['trial'][:20])}")
    return client.get_run(match["run_id"].iloc[0])  # the newest `ganlab run` first


def best_trial(study: str, metric: str, mode: Literal["min", "max"] | None = None, tracking_uri: str | None = None,
               **load: Any) -> tuple[str, float, str]:
    """(run id, value, mode) of the study's best finished trial by ``metric`` (a column of load_study, such as
    ``eval/fd`` or ``window/eq/acc_gap``); diverged, stopped and failed trials are not candidates."""
    from ganlab.analysis.frames import load_study

    return pick_best(load_study(study, resolve_tracking_uri(tracking_uri), **load), metric, mode, study)


def pick_best(df, metric: str, mode: Literal["min", "max"] | None = None, study: str = "the study"
              ) -> tuple[str, float, str]:
    """``best_trial`` on a ``load_study`` frame: the finished trial with the smallest (``min``) or largest
    (``max``) finite ``metric``; without ``mode``, max for the metrics in METRIC_MODES, min otherwise."""
    if metric not in df.columns:
        known = ", ".join(sorted(c for c in df.columns if "/" in str(c)))
        raise KeyError(f"no metric {metric!r} in study {study!r}; it has: {known}")
    mode = mode or METRIC_MODES.get(M.base_name(metric), "min")
    candidates = df[(df["trial_status"] == "finished") & df[metric].map(lambda v: v is not None and math.isfinite(v))]
    if candidates.empty:
        raise TrialNotFound(f"study {study!r} has no finished trial with a finite {metric}")
    row = candidates.loc[candidates[metric].idxmin() if mode == "min" else candidates[metric].idxmax()]
    return row["run_id"], float(row[metric]), mode


def load_trial(
    run_id_or_trial: str,
    tracking_uri: str | None = None,
    device: str | torch.device = "cpu",
    weights: Literal["final", "best"] = "final",
    verify: bool = True,
) -> TrialModels:
    """The trial's config and its G, D (and EMA G) as ready modules in evaluation mode on ``device``.

    ``run_id_or_trial``: a trial's MLflow run id, ``STUDY/TRIAL``, or a ``ganlab train`` output folder. The weights file is loaded with
    ``torch.load(weights_only=True)`` (no code from the file runs). With ``verify``, the rebuilt modules must
    reproduce the outputs recorded when the weights were saved: bit for bit on the device type they were
    saved from, to float tolerance on another.
    """
    device = torch.device(device)
    folder = Path(run_id_or_trial)
    if folder.is_dir():  # a `ganlab train` output folder
        path = folder / WEIGHTS[weights]
        if not path.is_file():
            raise TrialNotFound(f"{folder} holds no {WEIGHTS[weights]} (a `ganlab train` run writes model/final.pt "
                                "when it completes)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        run_id, name = "", folder.name
    else:
        run = find_run(run_id_or_trial, tracking_uri)
        run_id, name = run.info.run_id, run.info.run_name
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = _client(tracking_uri).download_artifacts(run_id, WEIGHTS[weights], tmp)
            except Exception as e:  # noqa: BLE001
                hint = ("run the study with `artifacts: {save_best: {metric: ..., mode: ...}}`" if weights == "best"
                        else "it ran with `artifacts: {save_models: false}` or ended before its last step")
                raise TrialNotFound(f"trial {name!r} (run {run_id}) stored no {WEIGHTS[weights]}: {hint}") from e
            state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrialConfig.model_validate(state["config"])
    with torch.random.fork_rng(devices=[]):  # building draws initial weights; the caller's RNG stays as it was
        G, D = build_models(cfg.model, tuple(state["data_shape"]), cfg.regularizer.spectral_norm)
        G_ema = build_models(cfg.model, tuple(state["data_shape"]), cfg.regularizer.spectral_norm)[0] \
            if state.get("G_ema") is not None else None
    models = {"G": G, "D": D, "G_ema": G_ema}
    for name, model in models.items():
        if model is not None:
            model.load_state_dict(state[name])
            model.to(device).eval().requires_grad_(False)
    if verify:
        _verify(models, state, device)
    return TrialModels(run_id, name, cfg, G, D, G_ema, int(state["iteration"]), weights, state.get("best"), device)


@torch.no_grad()
def _verify(models: dict[str, torch.nn.Module | None], state: dict[str, Any], device: torch.device) -> None:
    check = state["check"]
    for name, model in models.items():
        if model is None:
            continue
        expected = check["outputs"][name]
        got = model((check["x"] if name == "D" else check["z"]).to(device)).cpu()
        same = torch.equal(got, expected) if device.type == state["device"] else torch.allclose(got, expected,
                                                                                                 rtol=1e-4, atol=1e-5)
        if not same:
            raise RuntimeError(
                f"the loaded {name} does not reproduce the outputs recorded with its weights (max difference "
                f"{(got - expected).abs().max().item():.3g}): the architecture code changed since the trial ran; "
                "load with verify=False to use it anyway"
            )
