"""A trainer's whole state as a checkpoint (resumes to exactly the uninterrupted run), and its trained
models as a self-verifying, weights-only export (``model/final.pt``, read by ``load_trial``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_VERSION = 3  # 3: a pack of lanes (2: noise-aware series window, AUC window)
MODELS_FORMAT = 1  # of export_models' dict (model/final.pt, model/best.pt)
EXPORT_CHECK_BATCH = 16  # inputs whose outputs are stored with exported weights


class CheckpointMismatch(ValueError):
    """A checkpoint written under a different training configuration: resuming would mix two runs."""


@torch.no_grad()
def export_models(trainer, lane: int = 0) -> dict[str, Any]:
    """A lane's G, D (and EMA G, when the lane keeps one) as the single models ``build_models`` makes, weights on
    CPU, with what load_trial needs to rebuild them without the data, and the outputs they give in evaluation
    mode on a fixed batch, so a loader can prove it rebuilt the same functions bit for bit. Loads with
    ``torch.load(weights_only=True)``: tensors and plain types only."""
    cfg = trainer.cfgs[lane]
    rng = torch.Generator().manual_seed(trainer._seeds[lane][5])
    z = torch.randn(EXPORT_CHECK_BATCH, trainer.latent_dim, generator=rng)
    x = trainer.data.to("cpu").sample(EXPORT_CHECK_BATCH, rng)
    G, D = trainer.evaluator.single_models(lane)
    G_ema = trainer.evaluator.single_models(lane, ema=True)[0] if cfg.optim.g_ema > 0 else None
    models = {"G": G, "D": D, "G_ema": G_ema}
    outputs: dict[str, torch.Tensor] = {}
    for name, model in models.items():
        if model is not None:
            outputs[name] = model.eval()((x if name == "D" else z).to(trainer.device)).cpu()
    return {
        "format": MODELS_FORMAT,
        "config": cfg.model_dump(mode="json"),
        "data_shape": list(trainer.data.shape),
        "iteration": trainer.iteration,
        "device": trainer.device.type,
        **{name: None if m is None else {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
           for name, m in models.items()},
        "check": {"z": z, "x": x, "outputs": outputs},
    }


# --- checkpoints ---------------------------------------------------------------------------


def state_of(trainer) -> dict[str, Any]:
    """Every lane's whole state. Random streams have none: each draw is addressed by the iteration."""
    return {
        "version": CHECKPOINT_VERSION,
        "trajectory_digests": [c.trajectory_digest() for c in trainer.cfgs],
        "configs": [c.model_dump(mode="json") for c in trainer.cfgs],
        "counters": {"iteration": trainer.iteration, "g_steps": trainer.g_steps, "d_steps": trainer.d_steps},
        "G": trainer.G.state_dict(),
        "D": trainer.D.state_dict(),
        "G_ema": trainer.G_ema.state_dict() if trainer.G_ema is not None else None,
        "opt_g": trainer.opt_g.state_dict(),
        "opt_d": trainer.opt_d.state_dict(),
        "stats": trainer.stats.state_dict(),
        "windows": {"series": trainer.series_window.state_dict(), "auc": trainer.auc_window.state_dict(),
                    "delta": trainer.delta_window.state_dict()},
        "last_params": trainer._last_params,
        "verdicts": [{"first_distance": v.first_distance, "latest": v.latest, "verdict": v.verdict, "reason": v.reason}
                     for v in trainer.verdicts],
        "active": trainer.active.clone(),
        "stopped": list(trainer.stopped),
    }


def restore(trainer, state: dict[str, Any], same_trajectory: bool = True) -> None:
    """``same_trajectory=False`` is population-based training's exploit: the state of another trial,
    continued under this trial's (mutated) hyper-parameters, which the trainer already holds."""
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatch(f"checkpoint format {state.get('version')} is not {CHECKPOINT_VERSION}")
    if len(state["trajectory_digests"]) != trainer.lanes:
        raise CheckpointMismatch(f"the checkpoint holds {len(state['trajectory_digests'])} lanes, this pack "
                                 f"{trainer.lanes}")
    if same_trajectory and state["trajectory_digests"] != [c.trajectory_digest() for c in trainer.cfgs]:
        raise CheckpointMismatch(
            "the checkpoint was written under a different trial config (only train.* and diagnostics.* "
            "may change on resume); start a new run or restore the original config"
        )
    trainer.G.load_state_dict(state["G"])
    trainer.D.load_state_dict(state["D"])
    if trainer.G_ema is not None:
        trainer.G_ema.load_state_dict(state["G_ema"])
    trainer.opt_g.load_state_dict(state["opt_g"])
    trainer.opt_d.load_state_dict(state["opt_d"])
    trainer.stats.load_state_dict(state["stats"])
    trainer.series_window.load_state_dict(state["windows"]["series"])
    trainer.auc_window.load_state_dict(state["windows"]["auc"])
    trainer.delta_window.load_state_dict(state["windows"]["delta"])
    trainer._last_params = {k: v.to(trainer.device) for k, v in state["last_params"].items()}
    for tracker, saved in zip(trainer.verdicts, state["verdicts"]):
        tracker.first_distance, tracker.latest = saved["first_distance"], dict(saved["latest"])
        tracker.verdict, tracker.reason = saved["verdict"], saved["reason"]
    trainer.active.copy_(state["active"])
    trainer.stopped = list(state["stopped"])
    c = state["counters"]
    trainer.iteration, trainer.g_steps, trainer.d_steps = c["iteration"], c["g_steps"], c["d_steps"]


def save(trainer, path: str | Path) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state_of(trainer), tmp)
    os.replace(tmp, path)


def load(trainer, path: str | Path) -> None:
    restore(trainer, torch.load(path, map_location=trainer.device, weights_only=True))
