"""Pictures of samples and curves, written to files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def scatter(samples: torch.Tensor, path: str | Path, means: torch.Tensor | None = None, title: str = "") -> Path:
    """Generated points (1-D points are drawn on a line), with the data's mode centres when known."""
    x = samples.detach().cpu().float()
    ys = x[:, 1] if x.shape[1] > 1 else torch.zeros(len(x))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(x[:, 0], ys, s=3, alpha=0.4, label="generated")
    if means is not None:
        m = means.cpu()
        ax.scatter(m[:, 0], m[:, 1] if m.shape[1] > 1 else torch.zeros(len(m)), marker="x", c="red", s=40,
                   label="mode centres")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    return _save(fig, path)


def image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, title: str = "") -> Path:
    """(N, C, H, W) images in [-1, 1]; one channel is drawn grey, three as RGB."""
    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) / 2)
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(n):
        r, col = divmod(i, nrow)
        canvas[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + col * (w + 1): 1 + col * (w + 1) + w] = x[i]
    fig, ax = plt.subplots(figsize=(nrow * 0.6, rows * 0.6 + 0.4))
    ax.imshow(canvas[0] if c == 1 else canvas.permute(1, 2, 0), cmap="gray" if c == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def curves(rows: list[dict[str, float]], path: str | Path, columns: list[str], x: str = "step") -> Path:
    """Metric histories, one panel per column."""
    fig, axes = plt.subplots(len(columns), 1, figsize=(6, 1.8 * len(columns)), sharex=True)
    for ax, col in zip(axes if len(columns) > 1 else [axes], columns):
        pts = [(r[x], r[col]) for r in rows if col in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        ax.set_ylabel(col, fontsize=8)
        ax.grid(alpha=0.3)
    (axes[-1] if len(columns) > 1 else axes).set_xlabel(x)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
