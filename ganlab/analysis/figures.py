"""The figures of a stability study. Each takes the frames of ``ganlab.analysis`` (``load_study``,
``history_of``) and returns a matplotlib ``Figure``, so the notebook in ``dashboards/`` draws exactly what the
report (``ganlab.analysis.report``) shows. ``Figure`` objects, not pyplot's: no backend is chosen or changed
(a notebook keeps its inline one) and no global figure registry grows.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D

from ganlab.analysis.frames import WINDOW, reading_client
from ganlab.analysis.tables import VERDICT_ORDER, verdicts_of
from ganlab.config.study import short_names
from ganlab.diagnose import metrics as M

VERDICT_COLOURS = {
    "converged": "#2ca02c", "oscillating": "#ff7f0e", "drifting": "#bcbd22", "unbalanced": "#17becf",
    "mode_collapse": "#9467bd", "d_dominates": "#d62728",
    "g_dominates": "#1f77b4", "diverged": "#222222", "failed": "#8c8c8c", "none": "#d9d9d9",
}
MAX_PANELS = 24  # per-configuration panels (curves, samples) beyond which the report shows the first ones
LOG_SPAN = 8.0  # a positive numeric axis spanning at least this factor is drawn on a log scale
EQUILIBRIUM_ACC = 0.5  # D's accuracy on real and on fake at the Nash equilibrium
MAX_LEVELS = 12  # a numeric swept key with more distinct values than this is binned for the report
BINS = 6  # bins of such a key
GLANCE_CLOSEST = 3  # configurations named as closest to the equilibrium in the report's summary


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_label(by: list[str], key) -> str:
    key = key if isinstance(key, tuple) else (key,)
    names = short_names(by)
    return ", ".join(f"{names[k]}={_fmt(v)}" for k, v in zip(by, key)) or "all trials"


def _groups(df: pd.DataFrame, by: list[str]):
    if not by:
        return [((), df)]
    return list(df.groupby(by, sort=True, dropna=False))


def _acc_prefix(columns) -> str:
    """Critics (wgan, hinge) log sign accuracy instead of a probability's."""
    return M.acc_prefix(columns)


def _positions(values: pd.Series) -> tuple[np.ndarray, list, bool]:
    """Where to draw each distinct value of a swept parameter: numbers at their value (log scale when they
    span LOG_SPAN or more), anything else evenly spaced."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # bins, in their order
        present = set(values.dropna())
        distinct = [c for c in values.cat.categories if c in present]
        return np.arange(len(distinct), dtype=float), distinct, False
    distinct = sorted(values.dropna().unique(), key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in distinct)
    if numeric and distinct:
        arr = np.asarray(distinct, dtype=float)
        log = bool(arr.min() > 0 and arr.max() / arr.min() >= LOG_SPAN)
        return arr, distinct, log
    return np.arange(len(distinct), dtype=float), distinct, False


def bin_continuous(df: pd.DataFrame, keys: list[str], max_levels: int = MAX_LEVELS, bins: int = BINS
                   ) -> tuple[pd.DataFrame, list[str]]:
    """A random or Optuna search gives every trial its own value of a continuous key: one configuration per
    trial says nothing about stability. Numeric keys with more than ``max_levels`` distinct values are cut
    into ``bins`` equal-width bins (log-spaced when they span LOG_SPAN or more), as ordered categories."""
    out = df.copy()
    out.attrs = dict(df.attrs)
    binned = []
    for key in keys:
        column = out[key]
        if column.nunique() <= max_levels or not pd.api.types.is_numeric_dtype(column):
            continue
        values = column.astype(float)
        lo, hi = values.min(), values.max()
        log = bool(lo > 0 and hi / lo >= LOG_SPAN)
        edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
        for digits in (3, 4, 6, 10):
            labels = [f"{a:.{digits}g}-{b:.{digits}g}" for a, b in zip(edges[:-1], edges[1:])]
            if len(set(labels)) == len(labels):
                break
        out[key] = pd.cut(values, edges, labels=labels, include_lowest=True)
        binned.append(key)
    return out, binned


def stability_grid(df: pd.DataFrame, x: str, y: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Converged and total trial counts per cell of the (y, x) grid, pooling every other swept key."""
    verdict = verdicts_of(df)
    frame = df.assign(_converged=verdict.eq("converged").astype(int), _row=df[y] if y else "all seeds")
    converged = frame.pivot_table(index="_row", columns=x, values="_converged", aggfunc="sum", fill_value=0)
    total = frame.pivot_table(index="_row", columns=x, values="_converged", aggfunc="count", fill_value=0)
    return converged, total


def _top_other_verdict(df: pd.DataFrame, x: str, y: str | None) -> pd.DataFrame:
    """Per cell, the most common verdict other than converged and its count."""
    frame = df.assign(_verdict=verdicts_of(df), _row=df[y] if y else "all seeds")
    frame = frame[frame["_verdict"] != "converged"]

    def top(verdicts: pd.Series):
        counts = verdicts.value_counts()
        return (counts.index[0], int(counts.iloc[0])) if len(counts) else ("", 0)

    return frame.groupby(["_row", x])["_verdict"].agg(top).unstack()


def stability_map(df: pd.DataFrame, x: str, y: str | None = None):
    """Heatmap over two swept axes: each cell the fraction of its trials (seeds) that converged, and the count."""
    converged, total = stability_grid(df, x, y)
    frac = converged / total.where(total > 0)
    others = _top_other_verdict(df, x, y).reindex(index=frac.index, columns=frac.columns)
    names = short_names([k for k in (x, y) if k])
    fig = Figure(figsize=(max(4.5, 1.0 * frac.shape[1] + 2.5), max(2.4, 0.75 * frac.shape[0] + 1.6)))
    ax = fig.subplots()
    image = ax.imshow(frac.to_numpy(dtype=float), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(frac.shape[0]):
        for j in range(frac.shape[1]):
            n = int(total.iat[i, j])
            text = f"{int(converged.iat[i, j])}/{n}" if n else "-"
            colour = "black" if n == 0 or 0.25 < frac.iat[i, j] < 0.85 else "white"
            ax.text(j, i - 0.08, text, ha="center", va="center", fontsize=11, weight="bold", color=colour)
            if n and converged.iat[i, j] < n:  # what the others did instead
                verdict, count = others.iat[i, j]
                ax.text(j, i + 0.22, f"{count} {verdict.replace('_', ' ')}", ha="center", va="center",
                        fontsize=7, color=colour)
    ax.set_xticks(range(frac.shape[1]), [_fmt(v) for v in frac.columns])
    ax.set_yticks(range(frac.shape[0]), [_fmt(v) for v in frac.index])
    ax.set_xlabel(names[x])
    ax.set_ylabel(names[y] if y else "")
    pooled = [k for k in df.attrs.get("swept", []) if k not in (x, y)]
    ax.set_title("fraction of seeds converged" + (f" (pooled over {', '.join(short_names(pooled).values())})"
                                                  if pooled else ""), fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="converged")
    fig.tight_layout()
    return fig


def verdict_counts(df: pd.DataFrame, by: list[str]):
    """How many trials of each configuration ended in each verdict (stacked bars, counts labelled)."""
    frame = df.assign(_verdict=verdicts_of(df))
    groups = _groups(frame, by)
    verdicts = [v for v in VERDICT_ORDER if (frame["_verdict"] == v).any()]
    fig = Figure(figsize=(8, max(2.2, 0.38 * len(groups) + 1.2)))
    ax = fig.subplots()
    labels = [group_label(by, key) for key, _ in groups]
    left = np.zeros(len(groups))
    for verdict in verdicts:
        counts = np.array([(g["_verdict"] == verdict).sum() for _, g in groups], dtype=float)
        bars = ax.barh(range(len(groups)), counts, left=left, color=VERDICT_COLOURS[verdict], label=verdict)
        ax.bar_label(bars, labels=[str(int(c)) if c else "" for c in counts], label_type="center",
                     color="white" if verdict not in ("none", "oscillating") else "black", fontsize=8)
        left += counts
    ax.set_yticks(range(len(groups)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("trials (seeds)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("verdict per configuration", fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_curves(df: pd.DataFrame, history: pd.DataFrame, by: list[str], max_panels: int = MAX_PANELS):
    """D's accuracy on real and on fake over training, one panel per configuration: each seed thin, their
    mean bold, the equilibrium's 50% dashed."""
    prefix = _acc_prefix(history["metric"].unique())
    groups = _groups(df.assign(_verdict=verdicts_of(df)), by)
    shown = groups[:max_panels]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.5 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax, (key, group) in zip(axes.flat, shown):
        for which, colour in (("real", "#1f77b4"), ("fake", "#d62728")):
            curves = history[(history["metric"] == M.acc_name(prefix, which)) & history["run_id"].isin(group["run_id"])]
            wide = curves.pivot_table(index="step", columns="run_id", values="value")
            for run in wide.columns:
                ax.plot(wide.index, wide[run], color=colour, alpha=0.25, lw=0.7)
            if not wide.empty:
                ax.plot(wide.index, wide.mean(axis=1), color=colour, lw=1.8, label=which)
        ax.axhline(EQUILIBRIUM_ACC, color="black", ls="--", lw=0.9)
        converged = int((group["_verdict"] == "converged").sum())
        ax.set_title(f"{group_label(by, key)}\n{converged}/{len(group)} converged", fontsize=8)
        ax.set_ylim(-0.03, 1.03)
    axes.flat[0].legend(fontsize=7, loc="lower left")
    for ax in axes[-1]:
        ax.set_xlabel("iteration", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"D {prefix.replace('_', ' ')}", fontsize=8)
    note = f" (first {len(shown)} of {len(groups)} configurations)" if len(groups) > len(shown) else ""
    fig.suptitle(f"D accuracy on real (blue) and fake (red); dashed: the equilibrium's 50%{note}", fontsize=10)
    fig.tight_layout()
    return fig


OSCILLATION = ((M.OSC_LOSS_D_PTP, "D-loss amplitude (peak to peak)"), (M.OSC_LOSS_D_PERIOD, "D-loss period (iterations)"))


def oscillation(df: pd.DataFrame, x: str, hue: str | None = None):
    """Oscillation amplitude and period of D's loss (last window) against a swept parameter: each seed a
    dot, the mean over seeds with its 95% interval as error bars, one line per value of ``hue``."""
    from scipy import stats

    pos, distinct, log = _positions(df[x])
    where = {v: p for v, p in zip(distinct, pos)}
    fig = Figure(figsize=(9, 3.3))
    axes = fig.subplots(1, 2)
    hues = [((), df)] if hue is None else list(df.groupby(hue, sort=True))
    for ax, (metric, title) in zip(axes, OSCILLATION):
        if metric not in df.columns:
            ax.text(0.5, 0.5, f"{metric} not logged", ha="center", transform=ax.transAxes)
            continue
        for i, (h, sub) in enumerate(hues):
            colour = f"C{i}"
            xs = sub[x].map(where).to_numpy(dtype=float)
            ax.scatter(xs, sub[metric], s=10, color=colour, alpha=0.45)
            agg = sub.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
            t = agg["count"].map(lambda n: stats.t.ppf(0.975, n - 1) if n > 1 else 0.0)
            ax.errorbar(agg[x].map(where), agg["mean"], yerr=(t * agg["std"] / agg["count"].pow(0.5)).fillna(0),
                        color=colour, marker="o", capsize=3,
                        label=None if hue is None else f"{short_names([hue])[hue]}={_fmt(h[0] if isinstance(h, tuple) else h)}")
        ax.set_ylim(bottom=0)  # both are non-negative; a wide interval over few seeds may reach below
        if log:
            ax.set_xscale("log")
        ax.set_xticks(pos, [_fmt(v) for v in distinct])
        ax.minorticks_off()
        ax.set_xlabel(short_names([x])[x])
        ax.set_title(title, fontsize=9)
    if hue is not None:
        axes[0].legend(fontsize=7)
    fig.suptitle("loss oscillation over the last diagnostics window: seeds (dots), mean and 95% interval", fontsize=10)
    fig.tight_layout()
    return fig


def parallel_coordinates(df: pd.DataFrame, params: list[str], metrics: list[str] | None = None):
    """Each trial a line through its swept parameters and final stability figures, coloured by verdict."""
    prefix = _acc_prefix(df.columns)
    metrics = metrics or [m for m in (M.acc_name(prefix, "real"), M.acc_name(prefix, "fake"), M.EQ_ACC_GAP, M.OSC_LOSS_D_PTP)
                          if m in df.columns]
    axes_keys = params + ["seed"] + metrics
    names = short_names(axes_keys)
    coords, ticks = [], []
    for key in axes_keys:
        column = df[key]
        if key in params or key == "seed":
            pos, distinct, log = _positions(column)
            mapping = {v: (math.log(p) if log else p) for v, p in zip(distinct, pos)}
            values = column.map(mapping).astype(float)
            lo, hi = min(mapping.values(), default=0), max(mapping.values(), default=1)
            span = (hi - lo) or 1.0
            coords.append(((values - lo) / span).to_numpy())
            ticks.append([((m - lo) / span, _fmt(v)) for v, m in mapping.items()])
        else:
            values = pd.to_numeric(column, errors="coerce").astype(float)
            lo, hi = np.nanmin(values) if values.notna().any() else 0, np.nanmax(values) if values.notna().any() else 1
            span = (hi - lo) or 1.0
            coords.append(((values - lo) / span).to_numpy())
            ticks.append([(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")])
    data = np.vstack(coords).T if coords else np.zeros((len(df), 0))
    fig = Figure(figsize=(max(6, 1.6 * len(axes_keys)), 3.8))
    ax = fig.subplots()
    verdicts = verdicts_of(df).to_numpy()
    for row, verdict in zip(data, verdicts):
        ax.plot(range(len(axes_keys)), row, color=VERDICT_COLOURS.get(verdict, "#999999"), alpha=0.6, lw=1.2)
    for i, axis_ticks in enumerate(ticks):
        ax.axvline(i, color="black", lw=0.8)
        for y, label in axis_ticks:
            ax.text(i + 0.03, y, label, fontsize=7, va="center")
    ax.set_xticks(range(len(axes_keys)), [names[k] for k in axes_keys], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    present = [v for v in VERDICT_ORDER if v in set(verdicts)]
    ax.legend(handles=[Line2D([], [], color=VERDICT_COLOURS[v], label=v) for v in present], fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(present), frameon=False)
    ax.set_title("parameters against stability, one line per trial (colour: verdict)", fontsize=10)
    fig.tight_layout()
    return fig


def sample_snapshots(df: pd.DataFrame, by: list[str], tracking_uri: str | None = None, max_panels: int = MAX_PANELS):
    """The last sample plot (``samples/step_*.png``) of the lowest seed of each configuration; None when the
    study saved no sample plots."""
    client = reading_client(tracking_uri)
    picked = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, group in _groups(df.assign(_verdict=verdicts_of(df)), by)[:max_panels]:
            row = group.sort_values("seed").iloc[0]
            try:
                plots = sorted(a.path for a in client.list_artifacts(row["run_id"], "samples") if a.path.endswith(".png"))
            except Exception:  # noqa: BLE001 - a run without the folder
                plots = []
            if not plots:
                continue
            image = imread(client.download_artifacts(row["run_id"], plots[-1], tmp))
            step = int(Path(plots[-1]).stem.rsplit("_", 1)[-1])
            picked.append((f"{group_label(by, key)}\nseed {row['seed']}, step {step}: {row['_verdict']}", image))
    if not picked:
        return None
    cols = min(4, len(picked))
    rows = math.ceil(len(picked) / cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image) in zip(axes.flat, picked):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    fig.suptitle("final samples, lowest seed of each configuration", fontsize=10)
    fig.tight_layout()
    return fig


def choose_axes(df: pd.DataFrame, by: list[str], axes: list[str] | None = None) -> tuple[str | None, str | None]:
    """The stability map's x and y: those asked for, else the first two swept keys that vary."""
    if axes:
        missing = [a for a in axes if a not in df.columns]
        if missing:
            raise KeyError(f"no swept key {missing[0]!r} for the stability map; swept keys: {', '.join(by)}")
        return axes[0], axes[1] if len(axes) > 1 else None
    varying = [k for k in by if df[k].nunique(dropna=False) > 1]
    return (varying[0] if varying else None), (varying[1] if len(varying) > 1 else None)


def at_a_glance(df: pd.DataFrame, by: list[str]) -> list[str]:
    """One sentence per outcome: which configurations ended how, by the verdict most of their seeds reached."""
    frame = df.assign(_verdict=verdicts_of(df))
    outcome: dict[str, list[str]] = {}
    for key, group in _groups(frame, by):
        counts = group["_verdict"].value_counts()
        top = counts.index[0]
        outcome.setdefault(top, []).append(f"{group_label(by, key)} ({counts.iloc[0]}/{len(group)})")
    lines = [f"<b>{v.replace('_', ' ')}</b> in most seeds: {'; '.join(outcome[v])}" for v in VERDICT_ORDER if v in outcome]
    gap = next((m for m in (M.window_name(M.EQ_ACC_GAP), M.EQ_ACC_GAP) if m in frame.columns and frame[m].notna().any()), None)
    if gap is not None and by:
        means = frame.groupby(by, sort=True)[gap].mean().dropna().sort_values()
        best = [f"{group_label(by, key)} ({value:.2f})" for key, value in means.head(GLANCE_CLOSEST).items()]
        where = f"mean over the last {WINDOW:.0%} of training" if gap.startswith(M.WINDOW_PREFIX) else "final"
        lines.append(f"<b>D accuracy closest to 50%</b> (smallest equilibrium gap |acc_real - 1/2| + |acc_fake - 1/2|, "
                     f"{where}, mean over seeds): {'; '.join(best)}")
    return lines
