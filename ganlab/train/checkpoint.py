"""A trainer's whole state as a checkpoint (resumes to exactly the uninterrupted run), and its trained
models as a self-verifying, weights-only export (``model/final.pt``, read by ``load_trial``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_VERSION = 2  # 2: noise-aware series window, AUC window
MODELS_FORMAT = 1  # of export_models' dict (model/final.pt, model/best.pt)
EXPORT_CHECK_BATCH = 16  # inputs whose outputs are stored with exported weights


class CheckpointMismatch(ValueError):
    """A checkpoint written under a different training configuration: resuming would mix two runs."""


@torch.no_grad()
def export_models(trainer) -> dict[str, Any]:
    """G, D (and EMA G) weights on CPU with what load_trial needs to rebuild them without the data, and the
    outputs they give in evaluation mode on a fixed batch, so a loader can prove it rebuilt the same
    functions bit for bit. Loads with ``torch.load(weights_only=True)``: tensors and plain types only."""
    rng = torch.Generator().manual_seed(trainer._export_seed)
    z = torch.randn(EXPORT_CHECK_BATCH, trainer.G.latent_dim, generator=rng)
    x = trainer.data.sample(EXPORT_CHECK_BATCH, rng)
    models = {"G": trainer.G, "D": trainer.D, "G_ema": trainer.G_ema}
    outputs: dict[str, torch.Tensor] = {}
    for name, model in models.items():
        if model is None:
            continue
        was_training = model.training
        model.eval()
        outputs[name] = model((x if name == "D" else z).to(trainer.device)).cpu()
        model.train(was_training)
    return {
        "format": MODELS_FORMAT,
        "config": trainer.cfg.model_dump(mode="json"),
        "data_shape": list(trainer.data.shape),
        "iteration": trainer.iteration,
        "device": trainer.device.type,
        **{name: None if m is None else {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
           for name, m in models.items()},
        "check": {"z": z, "x": x, "outputs": outputs},
    }

# --- checkpoints ---------------------------------------------------------------------------

def state_of(trainer) -> dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "trajectory_digest": trainer.cfg.trajectory_digest(),
        "config": trainer.cfg.model_dump(mode="json"),
        "counters": {"iteration": trainer.iteration, "g_steps": trainer.g_steps, "d_steps": trainer.d_steps},
        "G": trainer.G.state_dict(),
        "D": trainer.D.state_dict(),
        "G_ema": trainer.G_ema.state_dict() if trainer.G_ema is not None else None,
        "opt_g": trainer.opt_g.state_dict(),
        "opt_d": trainer.opt_d.state_dict(),
        "rngs": {name: g.get_state() for name, g in trainer.rngs.items()},
        "stats": trainer.stats.state_dict(),
        "windows": {"series": trainer.series_window.state_dict(), "auc": trainer.auc_window.state_dict(),
                    "delta": trainer.delta_window.state_dict()},
        "last_params": trainer._last_params,
        "verdict": {"first_distance": trainer.verdict.first_distance, "latest": trainer.verdict.latest},
    }


def restore(trainer, state: dict[str, Any], same_trajectory: bool = True) -> None:
    """``same_trajectory=False`` is population-based training's exploit: the state of another trial,
    continued under this trial's (mutated) hyper-parameters; the learning rates are this config's."""
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatch(f"checkpoint format {state.get('version')} is not {CHECKPOINT_VERSION}")
    if same_trajectory and state["trajectory_digest"] != trainer.cfg.trajectory_digest():
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
    for name, g in trainer.rngs.items():
        g.set_state(state["rngs"][name])
    trainer.stats.load_state_dict(state["stats"])
    trainer.series_window.load_state_dict(state["windows"]["series"])
    trainer.auc_window.load_state_dict(state["windows"]["auc"])
    trainer.delta_window.load_state_dict(state["windows"]["delta"])
    trainer._last_params = state["last_params"]
    trainer.verdict.first_distance = state["verdict"]["first_distance"]
    trainer.verdict.latest = dict(state["verdict"]["latest"])
    c = state["counters"]
    trainer.iteration, trainer.g_steps, trainer.d_steps = c["iteration"], c["g_steps"], c["d_steps"]
    if not same_trajectory:
        for opt, lr in ((trainer.opt_g, trainer.cfg.optim.lr_g), (trainer.opt_d, trainer.cfg.optim.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr

def save(trainer, path: str | Path) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state_of(trainer), tmp)
    os.replace(tmp, path)

def load(trainer, path: str | Path) -> None:
    restore(trainer, torch.load(path, map_location=trainer.device, weights_only=True))
