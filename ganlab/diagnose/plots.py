"""Pictures of samples and curves, written to files. Figures are built with matplotlib's object API (no pyplot:
no global figure registry, no display, safe beside other threads) and laid out with fixed margins: every
trial draws several, and ``tight_layout`` measuring every label cost more than drawing them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from ganlab.diagnose import metrics as M


def _xy(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first two coordinates; 1-D points lie on the x-axis."""
    p = points.detach().cpu().float().reshape(len(points), -1)
    return p[:, 0], p[:, 1] if p.shape[1] > 1 else torch.zeros(len(p))


def scatter(samples: torch.Tensor, path: str | Path, means: torch.Tensor | None = None, title: str = "") -> Path:
    """Generated points (1-D points are drawn on a line; beyond 2-D, the first two coordinates),
    with the data's mode centres as red crosses when given."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.07, top=0.93)
    ax.scatter(*_xy(samples), s=3, alpha=0.4, label="generated")
    if means is not None:
        ax.scatter(*_xy(means), marker="x", c="red", s=40, label="mode centres")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    return _save(fig, path)


def image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, title: str = "") -> Path:
    """(N, C, H, W) images in [-1, 1], ``nrow`` per row; one channel is drawn grey, three as RGB
    (any other channel count: the first channel, grey)."""
    x = (images.detach().cpu().float().clamp(-1, 1) + 1) / 2
    if x.shape[1] not in (1, 3):
        x = x[:, :1]
    n, c, h, w = x.shape
    nrow = max(1, min(nrow, n))
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1)  # 1-pixel white gutters
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = 1 + r * (h + 1), 1 + col * (w + 1)
        canvas[:, top: top + h, left: left + w] = x[i]
    height = rows * 0.6 + 0.4
    fig = Figure(figsize=(nrow * 0.6, height))
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.35 / height)
    if c == 1:
        ax.imshow(canvas[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


SAMPLE_IMAGES = 64  # images in each sample grid
CURVES = ("{acc}/real", "{acc}/fake", M.LOSS_D, M.LOSS_G)  # the panels of curves.png ({acc}: acc or acc_sign)


def samples(trainer, path: str | Path, step: int, lane: int = 0) -> Path:
    """A trainer's (lane's) current samples: an image grid, or a scatter with the mixture's mode centres."""
    from ganlab.data import GaussianMixture

    if trainer.data.kind == "images":
        return image_grid(trainer.generate(SAMPLE_IMAGES, lane), path, title=f"step {step}")
    means = trainer.data.means.cpu() if isinstance(trainer.data, GaussianMixture) else None
    return scatter(trainer.generate(trainer.cfg.train.eval_samples, lane), path, means, title=f"step {step}")


def curves(df: pd.DataFrame | Sequence[dict[str, float]], path: str | Path, columns: Sequence[str],
           x: str = "step") -> Path:
    """Metric histories against ``x``, one panel per column (a column the history lacks is left out)."""
    df = df if isinstance(df, pd.DataFrame) else pd.DataFrame(list(df))
    columns = [c for c in columns if c in df.columns] or list(columns[:1])
    height = 1.8 * len(columns) + 0.4
    fig = Figure(figsize=(6, height))
    axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.5 / height, top=1 - 0.12 / height, hspace=0.12)
    for ax, col in zip(axes[:, 0], columns):
        if col in df.columns:
            s = df[[x, col]].dropna()
            ax.plot(s[x], s[col], lw=1)
        ax.set_ylabel(col, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(x)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
