"""What a trial's pictures cost: matplotlib figures (what ganlab drew until the pack was booked as one) against
the numpy + Pillow renderer it draws with now, side by side in one run.

    .venv/bin/python bench/plots.py [--repeats 20] [--lanes 400]

Pictures: a ring8 scatter (2,000 points, 8 mode centres), curves.png (4 panels x 100 points), a 64-image grid of
8 x 8 digits, and a pack's scatters drawn together (``plots.scatters`` over ``--lanes`` lanes, per lane).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ganlab.diagnose import plots


def mpl_scatter(samples, path, means, title):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.07, top=0.93)
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.4, label="generated")
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="red", s=40, label="mode centres")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    fig.savefig(path, dpi=110)


def mpl_curves(df, path, columns):
    from matplotlib.figure import Figure

    height = 1.8 * len(columns) + 0.4
    fig = Figure(figsize=(6, height))
    axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.5 / height, top=1 - 0.12 / height, hspace=0.12)
    for ax, col in zip(axes[:, 0], columns):
        s = df[["step", col]].dropna()
        ax.plot(s["step"], s[col], lw=1)
        ax.set_ylabel(col, fontsize=8)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def mpl_grid(images, path, title, nrow=8):
    from matplotlib.figure import Figure

    x = (images.clamp(-1, 1) + 1) / 2
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(n):
        r, col = divmod(i, nrow)
        canvas[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + col * (w + 1): 1 + col * (w + 1) + w] = x[i]
    fig = Figure(figsize=(nrow * 0.6, rows * 0.6 + 0.4))
    ax = fig.add_subplot()
    ax.imshow(canvas[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)


def timed(fn, repeats: int) -> float:
    fn()  # warm: fonts, imports
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - started) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--lanes", type=int, default=400)
    args = ap.parse_args()
    angles = torch.linspace(0, 2 * math.pi, 9)[:-1]
    means = torch.stack([angles.cos(), angles.sin()], 1)
    samples = means[torch.randint(0, 8, (2000,))] + 0.05 * torch.randn(2000, 2)
    steps = np.arange(10, 1010, 10)
    df = pd.DataFrame({"step": steps, **{c: np.sin(steps / (100 + 10 * i)) for i, c in
                                         enumerate(("acc/real", "acc/fake", "loss/d", "loss/g"))}})
    images = torch.rand(64, 1, 8, 8) * 2 - 1
    pack = means[torch.randint(0, 8, (args.lanes, 2000))] + 0.05 * torch.randn(args.lanes, 2000, 2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = [
            ("scatter, 2,000 points", timed(lambda: mpl_scatter(samples, out / "a.png", means, "step 1"), args.repeats),
             timed(lambda: plots.scatter(samples, out / "b.png", means, "step 1"), args.repeats)),
            ("curves, 4 panels x 100 points", timed(lambda: mpl_curves(df, out / "c.png", list(df.columns[1:])), args.repeats),
             timed(lambda: plots.curves(df, out / "d.png", list(df.columns[1:])), args.repeats)),
            ("grid of 64 8x8 images", timed(lambda: mpl_grid(images, out / "e.png", "step 1"), args.repeats),
             timed(lambda: plots.image_grid(images, out / "f.png", title="step 1"), args.repeats)),
        ]
        paths = [out / f"lane{i}.png" for i in range(args.lanes)]
        started = time.perf_counter()
        plots.scatters(pack, paths, means, [f"step {i}" for i in range(args.lanes)])
        rows.append((f"a pack's scatters, per lane ({args.lanes} lanes)", rows[0][1],
                     1000 * (time.perf_counter() - started) / args.lanes))
    print(f"ms per picture, median-free mean of {args.repeats} (matplotlib figure vs numpy + Pillow), this machine")
    print(f"{'picture':<44} {'matplotlib':>11} {'raster':>8} {'speed-up':>9}")
    for name, before, after in rows:
        print(f"{name:<44} {before:>11.1f} {after:>8.1f} {before / after:>8.1f}x")


if __name__ == "__main__":
    main()
