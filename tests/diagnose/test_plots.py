"""The pictures a run and a study trial store: digit grids keep their pixels' colours, scatters and curves are
real PNG files."""

import matplotlib.image
import pandas as pd
import torch

from ganlab.diagnose import plots


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_grid_draws_grey_and_rgb_pixels(tmp_path):
    grey = torch.full((4, 1, 8, 8), -1.0)  # black images on a white canvas
    img = matplotlib.image.imread(plots.image_grid(grey, tmp_path / "g.png", nrow=2))
    assert (img[..., :3] < 0.05).all(-1).mean() > 0.2  # plenty of black
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()  # grey only
    red = torch.stack([torch.ones(8, 8), -torch.ones(8, 8), -torch.ones(8, 8)])[None].repeat(4, 1, 1, 1)
    img = matplotlib.image.imread(plots.image_grid(red, tmp_path / "r.png", nrow=2))
    is_red = (img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)
    assert is_red.mean() > 0.2


def test_scatter_and_curves_write_pictures(tmp_path):
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert is_png(plots.scatter(torch.randn(50, 2), tmp_path / "a" / "s.png", means, title="t"))
    assert is_png(plots.scatter(torch.randn(50, 1), tmp_path / "line.png"))  # 1-D points
    rows = [{"step": 10, "loss/d": 1.0}, {"step": 20, "loss/d": 0.5, "eval/modes": 3.0}]
    assert is_png(plots.curves(pd.DataFrame(rows), tmp_path / "c.png", ["loss/d", "eval/modes"]))
    assert is_png(plots.curves(rows, tmp_path / "c2.png", ["loss/d"]))
