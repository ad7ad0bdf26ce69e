"""A trainer's whole state as a checkpoint (resumes to exactly the uninterrupted run), and its trained
models as a self-verifying, weights-only export (``model/final.pt``, read by ``load_trial``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ganlab.train.pack import EXPORT_SEED

CHECKPOINT_VERSION = 4  # 4: the trainer's parts' state dicts, named series (3: a pack of lanes)
MODELS_FORMAT = 1  # of export_models' dict (model/final.pt, model/best.pt)
EXPORT_CHECK_BATCH = 16  # inputs whose outputs are stored with exported weights


class CheckpointMismatch(ValueError):
    """A checkpoint written under a different training configuration: resuming would mix two runs."""


@torch.no_grad()
def export_models(pack, lane: int, iteration: int) -> dict[str, Any]:
    """A lane's G, D (and EMA G, when the lane keeps one) as the single models ``build_models`` makes, weights on
    CPU, with what load_trial needs to rebuild them without the data, and the outputs they give in evaluation
    mode on a fixed batch, so a loader can prove it rebuilt the same functions bit for bit. Loads with
    ``torch.load(weights_only=True)``: tensors and plain types only."""
    cfg = pack.cfgs[lane]
    rng = torch.Generator().manual_seed(pack.seeds[lane][EXPORT_SEED])
    z = torch.randn(EXPORT_CHECK_BATCH, pack.latent_dim, generator=rng)
    x = pack.data.to("cpu").sample(EXPORT_CHECK_BATCH, rng)
    G, D = pack.single_models(lane)
    G_ema = pack.single_models(lane, ema=True)[0] if cfg.optim.g_ema > 0 else None
    models = {"G": G, "D": D, "G_ema": G_ema}
    outputs: dict[str, torch.Tensor] = {}
    for name, model in models.items():
        if model is not None:
            outputs[name] = model.eval()((x if name == "D" else z).to(pack.device)).cpu()
    return {
        "format": MODELS_FORMAT,
        "config": cfg.model_dump(mode="json"),
        "data_shape": list(pack.data.shape),
        "iteration": iteration,
        "device": pack.device.type,
        **{name: None if m is None else {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
           for name, m in models.items()},
        "check": {"z": z, "x": x, "outputs": outputs},
    }


# --- checkpoints ---------------------------------------------------------------------------


def state_of(trainer) -> dict[str, Any]:
    """Every lane's whole state: the state dicts of the trainer's parts and its counters. Random streams have
    none: each draw is addressed by the iteration."""
    return {
        "version": CHECKPOINT_VERSION,
        "trajectory_digests": [c.trajectory_digest() for c in trainer.cfgs],
        "configs": [c.model_dump(mode="json") for c in trainer.cfgs],
        "counters": {"iteration": trainer.iteration, "g_steps": trainer.g_steps, "d_steps": trainer.d_steps},
        "model": trainer.model.state_dict(),
        "recorder": trainer.recorder.state_dict(),
        "judge": trainer.judge.state_dict(),
        "last_params": trainer.last_params,
    }


def restore(trainer, state: dict[str, Any], same_trajectory: bool = True) -> None:
    """``same_trajectory=False`` is population-based training's exploit: the state of another trial,
    continued under this trial's (mutated) hyper-parameters, which the trainer already holds."""
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatch(f"checkpoint format {state.get('version')} is not {CHECKPOINT_VERSION} (written "
                                 "by another version of ganlab); start the run afresh")
    if len(state["trajectory_digests"]) != trainer.n_lanes:
        raise CheckpointMismatch(f"the checkpoint holds {len(state['trajectory_digests'])} lanes, this pack "
                                 f"{trainer.n_lanes}")
    if same_trajectory and state["trajectory_digests"] != [c.trajectory_digest() for c in trainer.cfgs]:
        raise CheckpointMismatch(
            "the checkpoint was written under a different trial config (only train.* and diagnostics.* "
            "may change on resume); start a new run or restore the original config"
        )
    trainer.model.load_state_dict(state["model"])
    trainer.recorder.load_state_dict(state["recorder"])
    trainer.judge.load_state_dict(state["judge"])
    trainer.last_params = {k: v.to(trainer.device) for k, v in state["last_params"].items()}
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
