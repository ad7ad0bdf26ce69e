"""Pictures of samples and curves, written to PNG files: every trial of a study stores several, so they are
drawn at pack cost. A matplotlib figure costs ~50 ms to lay out and render, which for a study of 2,000 trials
with seven pictures each is ten minutes of a CPU; here points are rasterised with numpy (a whole pack's lanes
in one ``bincount``), lines and text drawn with Pillow, and each picture costs about a millisecond. The report
and the dashboards, which draw a few figures for people, keep matplotlib (``ganlab.analysis.figures``)."""

from __future__ import annotations

import functools

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFont

from ganlab.diagnose import metrics as M

SAMPLE_IMAGES = 64  # images in each sample grid
CURVES = ("{acc}/real", "{acc}/fake", M.LOSS_D, M.LOSS_G)  # the panels of curves.png ({acc}: acc or acc_sign)

SCATTER_SIZE = 360  # pixels, square
SCATTER_MARGIN = (44, 22, 10, 26)  # left, top, right, bottom: the plot area inside
POINT_BLUE = np.array([31, 119, 180], dtype=np.float64)
POINT_ALPHA = 0.35  # each point covers this fraction of what is under it: dense regions darken
MAX_STACK = 24  # points per pixel beyond which the colour no longer changes
GRID_TILE = 32  # sample-grid images are enlarged (nearest neighbour, by a whole factor) to about this many pixels
CURVE_WIDTH, CURVE_PANEL = 600, 120  # curves.png: pixels wide, pixels per panel
CURVE_MARGIN = (64, 8, 10, 22)  # left, top (per panel), right, bottom (below the last panel)
# Pictures are palette images (one byte a pixel: a third of RGB's encoding time): indices 0 .. MAX_STACK are the
# scatter's shades (0 is white), then the ink colours.
INK, FRAME, GRID, CROSS, LINE = range(MAX_STACK + 1, MAX_STACK + 6)
INKS = [(40, 40, 40), (120, 120, 120), (225, 225, 225), (214, 39, 40), (31, 119, 180)]


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


@functools.lru_cache(maxsize=4096)
def _glyphs(text: str, anchor: str) -> tuple[Image.Image, int, int]:
    """``text`` rendered once as a 1-bit mask, with its offset from the anchor point: a pack's pictures repeat
    the same labels and titles hundreds of times, and rendering them through FreeType each time was a third of
    a scatter's cost."""
    left, top, right, bottom = _font().getbbox(text, anchor=anchor)
    mask = Image.new("1", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=1, font=_font(), anchor=anchor)
    return mask, left, top


def _text(image: Image.Image, xy, text: str, fill: int, anchor: str) -> None:
    """``ImageDraw.text`` on a palette image (which draws unantialiased glyphs), from the cache."""
    if not text:
        return
    mask, left, top = _glyphs(text, anchor)
    image.paste(fill, (int(round(xy[0])) + left, int(round(xy[1])) + top), mask)


def _label(value: float) -> str:
    if value == int(value) and abs(value) < 1e7:
        return str(int(value))
    return f"{value:.3g}"


_PALETTE: list[int] | None = None


def _palette() -> list[int]:
    global _PALETTE
    if _PALETTE is None:
        _PALETTE = [c for shade in _shades().tolist() + INKS for c in shade]
    return _PALETTE


def _image(canvas: np.ndarray) -> Image.Image:
    """A palette image of ``canvas`` (palette indices)."""
    image = Image.fromarray(canvas, mode="P")
    image.putpalette(_palette())
    return image


def _ticks(low: float, high: float, n: int = 4) -> np.ndarray:
    """Round values between ``low`` and ``high`` (about ``n`` of them)."""
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return np.array([low])
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    return np.arange(math.ceil(low / step) * step, high + step * 1e-9, step)


# --- scatters ---------------------------------------------------------------------------------------------


def _xy(points: torch.Tensor | np.ndarray) -> np.ndarray:
    """(..., N, 2): the first two coordinates; 1-D points lie on the x-axis."""
    p = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, dtype=float)
    p = p.reshape(*p.shape[: p.ndim - 1 if p.ndim > 1 else 0], -1) if p.ndim > 1 else p[:, None]
    if p.shape[-1] == 1:
        return np.concatenate([p, np.zeros_like(p)], axis=-1)
    return p[..., :2]


def _extent(points: np.ndarray, means: np.ndarray | None) -> tuple[float, float, float]:
    """(centre x, centre y, half-width) of a square view: the mode centres and the points but their extreme 1 %
    on each side (one exploded sample in a hundred does not shrink the rest to a dot), padded by 10 %."""
    finite = np.sort(points[np.isfinite(points).all(axis=1)], axis=0)
    cut = len(finite) // 100
    parts = [finite[[cut, len(finite) - 1 - cut]]] if len(finite) else []
    if means is not None and len(means):
        parts.append(np.stack([means.min(axis=0), means.max(axis=0)]))
    if not parts:
        return 0.0, 0.0, 1.0
    box = np.concatenate(parts)
    low, high = box.min(axis=0), box.max(axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2 * 1.1, 1e-6)
    return float(centre[0]), float(centre[1]), half


def _pixels(xy: np.ndarray, view: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column, row and in-view mask of data points in the scatter's plot area."""
    left, top, right, bottom = SCATTER_MARGIN
    w, h = SCATTER_SIZE - left - right, SCATTER_SIZE - top - bottom
    cx, cy, half = view
    col = np.floor((xy[..., 0] - (cx - half)) / (2 * half) * (w - 1) + 0.5)
    row = np.floor(((cy + half) - xy[..., 1]) / (2 * half) * (h - 1) + 0.5)
    inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < w - 1) & (row >= 0) & (row < h - 1)
    return np.where(inside, col, 0).astype(np.int64), np.where(inside, row, 0).astype(np.int64), inside


_SHADES = None


def _shades() -> np.ndarray:
    """Colour of a pixel under k stacked points, k = 0 .. MAX_STACK."""
    global _SHADES
    if _SHADES is None:
        keep = (1 - POINT_ALPHA) ** np.arange(MAX_STACK + 1)[:, None]
        _SHADES = np.round(255 * keep + POINT_BLUE * (1 - keep)).astype(np.uint8)
    return _SHADES


def _finish_scatter(counts: np.ndarray, view, means: np.ndarray | None, title: str, path: str | Path) -> Path:
    left, top, right, bottom = SCATTER_MARGIN
    canvas = np.zeros((SCATTER_SIZE, SCATTER_SIZE), dtype=np.uint8)
    canvas[top: SCATTER_SIZE - bottom, left: SCATTER_SIZE - right] = np.minimum(counts, MAX_STACK)
    image = _image(canvas)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = left, top, SCATTER_SIZE - right - 1, SCATTER_SIZE - bottom - 1
    draw.rectangle([x0, y0, x1, y1], outline=FRAME)
    cx, cy, half = view
    for value in _ticks(cx - half, cx + half):
        col = x0 + (value - (cx - half)) / (2 * half) * (x1 - x0)
        draw.line([(col, y1), (col, y1 + 3)], fill=FRAME)
        _text(image, (col, y1 + 5), _label(value), INK, "ma")
    for value in _ticks(cy - half, cy + half):
        row = y0 + ((cy + half) - value) / (2 * half) * (y1 - y0)
        draw.line([(x0 - 3, row), (x0, row)], fill=FRAME)
        _text(image, (x0 - 5, row), _label(value), INK, "rm")
    if means is not None and len(means):
        cols, rows, inside = _pixels(means, view)
        for c, r in zip(cols[inside] + x0, rows[inside] + y0):
            draw.line([(c - 4, r - 4), (c + 4, r + 4)], fill=CROSS, width=2)
            draw.line([(c - 4, r + 4), (c + 4, r - 4)], fill=CROSS, width=2)
        _text(image, (x1 - 4, y0 + 4), "x mode centres", CROSS, "ra")
    _text(image, (SCATTER_SIZE // 2, 6), title, INK, "ma")
    return _save(image, path)


def scatters(samples: torch.Tensor | np.ndarray, paths: Sequence[str | Path], means=None,
             titles: Sequence[str] | None = None) -> list[Path]:
    """Several lanes' generated points at once, (L, N, d): each lane's own square view, all lanes rasterised
    in one ``bincount``; with the data's mode centres as red crosses when given (the same for every lane)."""
    xy = _xy(samples)
    if xy.ndim == 2:
        xy = xy[None]
    means_xy = None if means is None else _xy(means)
    n_lanes = xy.shape[0]
    titles = list(titles) if titles is not None else [""] * n_lanes
    left, top, right, bottom = SCATTER_MARGIN
    w, h = SCATTER_SIZE - left - right, SCATTER_SIZE - top - bottom
    views = [_extent(xy[i], means_xy) for i in range(n_lanes)]
    cx, cy, half = (np.array(v)[:, None] for v in zip(*views))
    col = np.floor((xy[..., 0] - (cx - half)) / (2 * half) * (w - 1) + 0.5)
    row = np.floor(((cy + half) - xy[..., 1]) / (2 * half) * (h - 1) + 0.5)
    inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < w - 1) & (row >= 0) & (row < h - 1)
    lane = np.broadcast_to(np.arange(n_lanes)[:, None], col.shape)[inside]
    col, row = col[inside].astype(np.int64), row[inside].astype(np.int64)
    flat = np.concatenate([lane * h * w + (row + dr) * w + col + dc for dr in (0, 1) for dc in (0, 1)])  # 2x2 px
    counts = np.bincount(flat, minlength=n_lanes * h * w).reshape(n_lanes, h, w)
    return [_finish_scatter(counts[i], views[i], means_xy, titles[i], paths[i]) for i in range(n_lanes)]


def scatter(samples: torch.Tensor, path: str | Path, means: torch.Tensor | None = None, title: str = "") -> Path:
    """Generated points (1-D points are drawn on a line; beyond 2-D, the first two coordinates), with the
    data's mode centres as red crosses when given."""
    return scatters(_xy(samples)[None], [path], means, [title])[0]


# --- image grids ------------------------------------------------------------------------------------------


def _grid_canvas(images: np.ndarray, nrow: int) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (rows, cols, C) uint8 grid, each image enlarged by a whole factor, 1-px white
    gutters."""
    n, c, h, w = images.shape
    scale = max(1, GRID_TILE // max(h, w))
    nrow = max(1, min(nrow, n))
    rows = math.ceil(n / nrow)
    x = np.round(images * 255).astype(np.uint8).repeat(scale, axis=2).repeat(scale, axis=3)
    hs, ws = h * scale, w * scale
    canvas = np.full((rows * (hs + 1) + 1, nrow * (ws + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        canvas[1 + r * (hs + 1): 1 + r * (hs + 1) + hs, 1 + col * (ws + 1): 1 + col * (ws + 1) + ws] = x[i].transpose(1, 2, 0)
    return canvas


TITLE_BAND = 16  # pixels above a sample grid for its title


def image_grids(images: torch.Tensor, paths: Sequence[str | Path], nrow: int = 8,
                titles: Sequence[str] | None = None) -> list[Path]:
    """Several lanes' (L, N, C, H, W) images in [-1, 1], ``nrow`` per row; one channel is drawn grey, three as
    RGB (any other count: the first channel, grey)."""
    x = (images.detach().cpu().float().clamp(-1, 1).numpy() + 1) / 2
    if x.shape[2] not in (1, 3):
        x = x[:, :, :1]
    titles = list(titles) if titles is not None else [""] * len(x)
    out = []
    for lane, path in enumerate(paths):
        grid = _grid_canvas(x[lane], nrow)
        canvas = np.full((grid.shape[0] + TITLE_BAND, *grid.shape[1:]), 255, dtype=np.uint8)
        canvas[TITLE_BAND:] = grid
        image = Image.fromarray(canvas[..., 0], mode="L") if canvas.shape[2] == 1 else Image.fromarray(canvas, mode="RGB")
        ink = 40 if image.mode == "L" else (40, 40, 40)
        ImageDraw.Draw(image).text((canvas.shape[1] // 2, 2), titles[lane], fill=ink, font=_font(), anchor="ma")
        out.append(_save(image, path))
    return out


def image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, title: str = "") -> Path:
    """(N, C, H, W) images in [-1, 1], ``nrow`` per row (see ``image_grids``)."""
    return image_grids(images[None], [path], nrow, [title])[0]


def samples(trainer, path: str | Path, step: int, lane: int = 0) -> Path:
    """A trainer's (lane's) current samples: an image grid, or a scatter with the mixture's mode centres."""
    from ganlab.data import GaussianMixture

    if trainer.data.kind == "images":
        return image_grid(trainer.generate(SAMPLE_IMAGES, lane), path, title=f"step {step}")
    means = trainer.data.means.cpu() if isinstance(trainer.data, GaussianMixture) else None
    return scatter(trainer.generate(trainer.cfg.train.eval_samples, lane), path, means, title=f"step {step}")


# --- curves -----------------------------------------------------------------------------------------------


def curves(df: pd.DataFrame | Sequence[dict[str, float]], path: str | Path, columns: Sequence[str],
           x: str = "step") -> Path:
    """Metric histories against ``x``, one panel per column (a column the history lacks is left out; NaN and
    infinite values are gaps)."""
    df = df if isinstance(df, pd.DataFrame) else pd.DataFrame(list(df))
    columns = [c for c in columns if c in df.columns] or list(columns[:1])
    left, top, right, bottom = CURVE_MARGIN
    height = len(columns) * CURVE_PANEL + bottom
    image = _image(np.zeros((height, CURVE_WIDTH), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    xs = df[x].to_numpy(dtype=float) if x in df.columns and len(df) else np.zeros(0)
    x_low, x_high = (float(np.nanmin(xs)), float(np.nanmax(xs))) if len(xs) else (0.0, 1.0)
    x_span = (x_high - x_low) or 1.0
    x0, x1 = left, CURVE_WIDTH - right - 1
    for i, column in enumerate(columns):
        y0, y1 = i * CURVE_PANEL + top, (i + 1) * CURVE_PANEL - 4
        draw.rectangle([x0, y0, x1, y1], outline=FRAME)
        _text(image, (x0 - 6, (y0 + y1) // 2), column, INK, "rm")
        ys = df[column].to_numpy(dtype=float) if column in df.columns else np.full(len(xs), np.nan)
        ok = np.isfinite(ys) & np.isfinite(xs)
        if ok.any():
            low, high = float(ys[ok].min()), float(ys[ok].max())
            pad = (high - low) * 0.05 or max(abs(low) * 0.05, 0.5)
            low, high = low - pad, high + pad
            for value in _ticks(low, high, 3):
                row = y1 - (value - low) / (high - low) * (y1 - y0)
                draw.line([(x0 + 1, row), (x1 - 1, row)], fill=GRID)
                _text(image, (x0 + 3, row), _label(value), FRAME, "lm")
            cols = x0 + (xs - x_low) / x_span * (x1 - x0)
            rows = y1 - (ys - low) / (high - low) * (y1 - y0)
            breaks = np.flatnonzero(~ok)
            for segment in np.split(np.arange(len(xs)), breaks):
                segment = segment[ok[segment]]
                if len(segment) == 1:
                    draw.point((float(cols[segment[0]]), float(rows[segment[0]])), fill=LINE)
                elif len(segment) > 1:
                    draw.line(list(zip(cols[segment].tolist(), rows[segment].tolist())),
                              fill=LINE, width=1)
    for value in _ticks(x_low, x_high, 5):
        col = x0 + (value - x_low) / x_span * (x1 - x0)
        _text(image, (col, height - bottom + 4), _label(value), INK, "ma")
    _text(image, (4, height - 2), x, INK, "ld")
    return _save(image, path)


def _save(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", compress_level=1)  # fast: pictures of flat colour compress well anyway
    return path
