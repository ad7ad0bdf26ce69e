"""The pictures a run and a study trial store, read back pixel by pixel: a point lands where its coordinates
say, the mode centres are red crosses where the modes are, a digit grid keeps its pixels exactly, a rising
curve rises and a NaN is a gap; a pack's pictures drawn together are the pictures drawn one by one."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ganlab.diagnose import plots


def rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def plot_area(img: np.ndarray) -> np.ndarray:
    left, top, right, bottom = plots.SCATTER_MARGIN
    return img[top: plots.SCATTER_SIZE - bottom, left: plots.SCATTER_SIZE - right]


def blue(img: np.ndarray) -> np.ndarray:
    return (img[..., 2] > img[..., 0] + 40) & (img[..., 2] < 250)


def test_a_point_lands_on_the_pixel_its_coordinates_name(tmp_path):
    """Points at the view's centre and corners (the view is the mode centres padded by 10 %): each darkens the
    2 x 2 pixels at its coordinates and nothing else does."""
    means = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    points = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])  # none under a cross
    img = plot_area(rgb(plots.scatter(points, tmp_path / "s.png")))
    area = plot_area(rgb(plots.scatter(points, tmp_path / "m.png", means)))
    h, w = area.shape[:2]
    cx, cy, half = plots._extent(points.numpy(), means.numpy())
    assert (cx, cy) == (0.0, 0.0) and half == pytest.approx(1.1)
    for x, y in points.tolist():
        col = math.floor((x + half) / (2 * half) * (w - 1) + 0.5)
        row = math.floor((half - y) / (2 * half) * (h - 1) + 0.5)
        assert blue(area[row: row + 2, col: col + 2]).all(), (x, y)
    assert img.shape == area.shape == (plots.SCATTER_SIZE - 48, plots.SCATTER_SIZE - 54, 3)
    assert blue(area).sum() == 3 * 4  # three points, 2 x 2 pixels each, no cross is blue


def test_mode_centres_are_red_crosses_at_the_modes(tmp_path):
    means = torch.tensor([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 9)[:-1]], dtype=torch.float32)
    area = plot_area(rgb(plots.scatter(torch.zeros(1, 2), tmp_path / "s.png", means)))
    h, w = area.shape[:2]
    cx, cy, half = plots._extent(np.zeros((1, 2)), means.numpy())
    red = (area[..., 0] > 180) & (area[..., 1] < 80) & (area[..., 2] < 80)
    for x, y in means.tolist():
        col = math.floor((x - cx + half) / (2 * half) * (w - 1) + 0.5)
        row = math.floor((cy + half - y) / (2 * half) * (h - 1) + 0.5)
        assert red[row - 1: row + 2, col - 1: col + 2].any(), (x, y)
    assert not red[h // 2 - 3: h // 2 + 3, w // 2 - 3: w // 2 + 3].any()  # no mode at the centre


def test_dense_regions_are_darker_and_outliers_do_not_shrink_the_view(tmp_path):
    points = torch.cat([torch.zeros(198, 2), torch.tensor([[0.5, 0.5]]), torch.tensor([[1e6, 1e6]])])
    area = plot_area(rgb(plots.scatter(points, tmp_path / "s.png", torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))))
    dense = area[blue(area)].sum(-1).min()
    h, w = area.shape[:2]
    col = math.floor((0.5 + 1.1) / 2.2 * (w - 1) + 0.5)
    row = math.floor((1.1 - 0.5) / 2.2 * (h - 1) + 0.5)
    single = area[row, col].sum()
    assert dense < single < 3 * 255  # 50 stacked points darker than one, which is drawn at its place


def test_one_dimensional_points_lie_on_the_x_axis(tmp_path):
    area = plot_area(rgb(plots.scatter(torch.tensor([[-1.0], [1.0]]), tmp_path / "s.png")))
    rows = np.flatnonzero(blue(area).any(axis=1))
    assert abs(rows.mean() - (area.shape[0] - 1) / 2) <= 1.5  # y = 0: the middle row


def test_a_packs_scatters_drawn_together_are_the_scatters_drawn_one_by_one(tmp_path):
    samples = torch.randn(5, 300, 2) * torch.arange(1, 6).view(5, 1, 1)
    means = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    together = plots.scatters(samples, [tmp_path / f"t{i}.png" for i in range(5)], means, [f"lane {i}" for i in range(5)])
    for i in range(5):
        alone = plots.scatter(samples[i], tmp_path / f"a{i}.png", means, f"lane {i}")
        assert together[i].read_bytes() == alone.read_bytes()


def test_an_image_grid_keeps_every_pixel_of_its_images(tmp_path):
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    img = rgb(plots.image_grid(images, tmp_path / "g.png", nrow=3, title="step 1"))
    scale = plots.GRID_TILE // 8
    grid = img[plots.TITLE_BAND:]
    assert grid.shape[:2] == (2 * (8 * scale + 1) + 1, 3 * (8 * scale + 1) + 1)
    want = np.round((images.numpy() + 1) / 2 * 255).astype(int)
    for i in range(6):
        r, c = divmod(i, 3)
        top, left = 1 + r * (8 * scale + 1), 1 + c * (8 * scale + 1)
        tile = grid[top: top + 8 * scale: scale, left: left + 8 * scale: scale, 0]
        assert (np.abs(tile - want[i, 0]) <= 1).all(), i
        assert (grid[top - 1, left: left + 8 * scale] == 255).all()  # the white gutter above
    assert (img[..., 0] == img[..., 2]).all()  # grey


def test_an_rgb_grid_draws_colour(tmp_path):
    red = torch.stack([torch.ones(8, 8), -torch.ones(8, 8), -torch.ones(8, 8)])[None].repeat(4, 1, 1, 1)
    img = rgb(plots.image_grid(red, tmp_path / "r.png", nrow=2))[plots.TITLE_BAND:]
    is_red = (img[..., 0] > 250) & (img[..., 1] < 5) & (img[..., 2] < 5)
    assert is_red.mean() > 0.9


def curve_rows(img: np.ndarray, panel: int) -> dict[int, float]:
    """Column -> mean row of the curve's line pixels in one panel of curves.png."""
    top = panel * plots.CURVE_PANEL + plots.CURVE_MARGIN[1]
    part = img[top + 1: (panel + 1) * plots.CURVE_PANEL - 5, plots.CURVE_MARGIN[0] + 1: plots.CURVE_WIDTH - plots.CURVE_MARGIN[2] - 2]
    line = blue(part)
    return {c: float(np.flatnonzero(line[:, c]).mean()) for c in range(line.shape[1]) if line[:, c].any()}


def test_a_rising_curve_rises_and_a_nan_is_a_gap(tmp_path):
    steps = np.arange(10, 1010, 10)
    up = steps.astype(float)
    gap = np.where((steps > 300) & (steps < 700), np.nan, 1.0)
    img = rgb(plots.curves(pd.DataFrame({"step": steps, "up": up, "gap": gap}), tmp_path / "c.png", ["up", "gap"]))
    assert img.shape == (2 * plots.CURVE_PANEL + plots.CURVE_MARGIN[3], plots.CURVE_WIDTH, 3)
    rising = curve_rows(img, 0)
    cols = sorted(rising)
    assert len(cols) > 400 and rising[cols[0]] > rising[cols[-1]] + 50  # pixel rows grow downwards
    assert np.all(np.diff([rising[c] for c in cols]) <= 1)
    flat = curve_rows(img, 1)
    width = plots.CURVE_WIDTH - plots.CURVE_MARGIN[0] - plots.CURVE_MARGIN[2] - 1
    hole = [c for c in range(width) if 0.32 * width < c < 0.68 * width]
    assert not any(c in flat for c in hole) and len(flat) > 0.5 * width  # undrawn where the values are NaN


def test_curves_leave_out_columns_the_history_lacks_and_take_rows(tmp_path):
    rows = [{"step": 10, "loss/d": 1.0}, {"step": 20, "loss/d": 0.5, "eval/modes": 3.0}]
    img = rgb(plots.curves(rows, tmp_path / "c.png", ["loss/d", "missing", "eval/modes"]))
    assert img.shape[0] == 2 * plots.CURVE_PANEL + plots.CURVE_MARGIN[3]
    constant = rgb(plots.curves(pd.DataFrame({"step": [1, 2], "m": [np.inf, np.nan]}), tmp_path / "k.png", ["m"]))
    assert not blue(constant).any()  # nothing finite to draw: an empty panel, no crash
