"""ganlab.analysis.figures and .report: the figures on hand-made frames, then `ganlab report` on a real finished study, opened in
headless Chromium with the network cut off (screenshot kept in test-artifacts/)."""

import math
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import ARTIFACTS, chromium
from forkserver import run_ganlab
from ganlab.analysis import figures, report
from ganlab.analysis import load_study, stability_table

TRIALS = pd.DataFrame({
    "run_id": [f"r{i}" for i in range(8)],
    "lr": [1.0, 1.0, 4.0, 4.0, 1.0, 1.0, 4.0, 4.0],
    "steps": [1, 1, 1, 1, 2, 2, 2, 2],
    "seed": [0, 1] * 4,
    "verdict": ["converged", "converged", "oscillating", "converged", "mode_collapse", "mode_collapse", None, "converged"],
    "trial_status": ["finished"] * 6 + ["failed", "finished"],
    "acc/real": [0.5, 0.52, 0.7, 0.55, 0.3, 0.35, np.nan, 0.5],
    "acc/fake": [0.5, 0.49, 0.8, 0.5, 1.0, 0.95, np.nan, 0.45],
    "eq/acc_gap": [0.0, 0.03, 0.5, 0.05, 0.7, 0.6, np.nan, 0.05],
    "osc/loss_d_ptp": [0.1, 0.2, 0.9, 0.3, 0.05, 0.04, np.nan, 0.2],
    "osc/loss_d_period": [5.0, 6.0, 40.0, 8.0, 100.0, 90.0, np.nan, 7.0],
})
TRIALS.attrs["swept"] = ["lr", "steps"]


def test_stability_grid_counts_converged_seeds_per_cell():
    converged, total = figures.stability_grid(TRIALS, "lr", "steps")
    assert converged.loc[1, 1.0] == 2 and converged.loc[1, 4.0] == 1
    assert converged.loc[2, 1.0] == 0 and converged.loc[2, 4.0] == 1  # the failed seed is not converged...
    assert (total == 2).all().all()  # ...but it is counted
    converged, total = figures.stability_grid(TRIALS, "lr")  # one axis: the other pooled into one row
    assert converged.loc["all seeds"].tolist() == [2, 2] and total.loc["all seeds"].tolist() == [4, 4]


def test_every_figure_draws_from_frames():
    history = pd.DataFrame({
        "run_id": np.repeat(TRIALS["run_id"], 4), "step": np.tile([10, 20, 10, 20], 8),
        "metric": np.tile(["acc/real", "acc/real", "acc/fake", "acc/fake"], 8), "value": 0.5,
    })
    drawn = {
        "map": figures.stability_map(TRIALS, "lr", "steps"),
        "verdicts": figures.verdict_counts(TRIALS, ["lr", "steps"]),
        "curves": figures.accuracy_curves(TRIALS, history, ["lr", "steps"]),
        "osc": figures.oscillation(TRIALS, "lr", "steps"),
        "parallel": figures.parallel_coordinates(TRIALS, ["lr", "steps"]),
    }
    assert len([a for a in drawn["curves"].axes if a.get_visible()]) == 4  # one panel per configuration
    assert drawn["osc"].axes[0].get_xscale() == "linear"  # 1 to 4 spans less than LOG_SPAN
    assert len(drawn["verdicts"].axes[0].patches) == 4 * 4  # 4 configurations x 4 verdicts present
    # what they draw is the frames' numbers: the map's cells, the bars' heights, the curves' points
    cells = drawn["map"].axes[0].images[0].get_array()
    assert cells.tolist() == [[1.0, 0.5], [0.0, 0.5]]  # steps 1: 2/2 at lr 1, 1/2 at lr 4; steps 2: 0/2, 1/2
    texts = {t.get_text() for t in drawn["map"].axes[0].texts}
    assert {"2/2", "1/2", "0/2", "2 mode collapse", "1 oscillating", "1 failed"} <= texts
    heights = [p.get_width() for p in drawn["verdicts"].axes[0].patches]  # horizontal bars: a count is a width
    assert sum(heights) == len(TRIALS) and sorted(h for h in heights if h) == [1, 1, 1, 1, 2, 2]
    for ax in [a for a in drawn["curves"].axes if a.get_visible()]:
        assert all(set(line.get_ydata()) <= {0.5} for line in ax.lines if len(line.get_xdata()) == 2)
    points = {tuple(p) for c in drawn["osc"].axes[0].collections for p in c.get_offsets().tolist()}
    assert {(1.0, 0.1), (4.0, 0.9), (1.0, 0.05)} <= points  # (lr, D-loss peak to peak) of trials
    for fig in drawn.values():
        png = report._png(fig)
        assert png.startswith(b"\x89PNG")


def test_at_a_glance_names_each_configuration_by_its_majority_verdict():
    lines = figures.at_a_glance(TRIALS, ["lr", "steps"])
    assert lines[0].startswith("<b>converged</b>") and "lr=1, steps=1 (2/2)" in lines[0]
    assert "lr=1, steps=2 (2/2)" in next(line for line in lines if "mode collapse" in line)
    assert "closest to 50%" in lines[-1] and lines[-1].index("lr=1, steps=1") < lines[-1].index("lr=4, steps=2")


def test_continuous_keys_of_a_random_search_are_binned_in_order():
    rng = np.random.default_rng(0)
    searched = pd.DataFrame({"lr": np.exp(rng.uniform(np.log(0.25), np.log(8.0), 40)), "steps": rng.choice([1, 2], 40)})
    binned, which = figures.bin_continuous(searched, ["lr", "steps"])
    assert which == ["lr"]  # two D-step values stay as they are
    assert len(binned["lr"].cat.categories) == figures.BINS and binned["lr"].notna().all()
    lows = [float(c.split("-")[0]) for c in binned["lr"].cat.categories]
    assert lows == sorted(lows) and lows[0] == pytest.approx(searched["lr"].min(), rel=1e-2)
    ratios = np.array(lows[1:]) / np.array(lows[:-1])
    assert ratios == pytest.approx(ratios[0], rel=0.02)  # 0.25..8 spans 32x: log-spaced bins
    inside = [float(c.split("-")[0]) <= v * 1.001 for v, c in zip(searched["lr"], binned["lr"])]
    assert all(inside)
    _, positions = figures._positions(binned["lr"])[:2]
    assert positions == [c for c in binned["lr"].cat.categories if c in set(binned["lr"])]


def test_a_study_without_swept_keys_still_draws():
    alone = TRIALS.assign(run_id=TRIALS["run_id"])
    alone.attrs = {"swept": []}
    history = pd.DataFrame({"run_id": alone["run_id"], "step": 10, "metric": "acc/real", "value": 0.5})
    assert len(figures.verdict_counts(alone, []).axes[0].patches) == 4  # one bar per verdict present
    assert figures.accuracy_curves(alone, history, []).axes[0].get_title().startswith("all trials")
    assert figures.at_a_glance(alone, [])[0].startswith("<b>converged</b> in most seeds: all trials (4/8)")


# --- a real study -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_report_is_one_offline_html_file_that_renders(grid_study, tmp_path):
    workdir, _, uri = grid_study
    out = tmp_path / "out" / "report.html"
    proc = run_ganlab(["report", "grid", "-o", str(out), "--attach"], cwd=workdir, timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    figures = sorted(p.name for p in (tmp_path / "out" / "report_figures").iterdir())
    assert figures == ["d_accuracy.png", "oscillation.png", "parallel.png", "samples.png", "stability_map.png",
                       "verdicts.png"]
    assert html.count('<img class="figure"') == len(figures)
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<link" not in html
    # the table's numbers are the study's: every cell of the stability table, in order, as the report shows it
    df = load_study("grid", uri)
    assert f"{len(df)} trials" in html and all(run in html for run in df["trial"])
    table = stability_table(df)
    rows = re.findall(r"<tr>(.*?)</tr>", html[html.index(">rate converged<"):])[: len(table)]
    assert len(rows) == len(table)
    for shown, (_, expected) in zip(rows, table.iterrows()):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", shown)
        assert len(cells) == len(expected)
        for cell, value in zip(cells, expected):
            if isinstance(value, float) and math.isnan(value):
                assert cell == ""
            elif isinstance(value, (int, float, np.number)):
                assert float(cell) == pytest.approx(float(value), rel=5e-3, abs=5e-3)
    attached = MlflowClient(uri).download_artifacts(df["parent_run_id"][0], "report/report.html", str(tmp_path))
    assert Path(attached).read_text() == html  # --attach: the same file on the study's parent run

    dom = chromium(tmp_path, "--dump-dom", out.as_uri(), offline=True).stdout
    assert 'data-rendered="6/6"' in dom, dom[-1500:]  # every figure decoded and laid out
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, f"--screenshot={shot}", out.as_uri(), offline=True)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1000, 1600) and pixels[..., :3].std() > 0.05  # not a blank page


@pytest.mark.integration
def test_a_failed_report_writes_nothing(grid_study, tmp_path):
    workdir, _, _ = grid_study
    out = tmp_path / "report.html"
    proc = run_ganlab(["report", "grid", "-o", str(out), "--axes", "optim.lr,seed"], cwd=workdir, timeout=300)
    assert proc.returncode == 2 and "'optim.lr'" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_report_axes_choose_the_stability_maps_axes(grid_study, tmp_path):
    """--axes x,y: the map (and the oscillation figure) are drawn against the keys asked for, not the default."""
    workdir, _, _ = grid_study
    texts = {}
    for name, extra in (("default", []), ("swapped", ["--axes", "schedule.d_steps,optim.lr_ratio"])):
        out = tmp_path / name / "report.html"
        proc = run_ganlab(["report", "grid", "-o", str(out), *extra], cwd=workdir, timeout=300)
        assert proc.returncode == 0, proc.stderr
        texts[name] = out.read_text()
    assert "against lr_ratio." in texts["default"] and "against d_steps." in texts["swapped"]
    df, by = load_study("grid", f"sqlite:///{workdir / 'mlflow.db'}"), ["optim.lr_ratio", "schedule.d_steps"]
    assert figures.choose_axes(df, by, ["schedule.d_steps", "optim.lr_ratio"]) == ("schedule.d_steps", "optim.lr_ratio")
    drawn = figures.stability_map(df, "schedule.d_steps", "optim.lr_ratio").axes[0]
    assert drawn.get_xlabel() == "d_steps" and drawn.get_ylabel() == "lr_ratio"
